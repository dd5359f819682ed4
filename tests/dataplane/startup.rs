//! Starting up: a second instance on a served interface is refused, and `socket = "auto"`
//! falls back to AF_PACKET where XDP cannot attach; the cores workers and their I/O threads run
//! on.

use crate::common::target::{DeviceSpec, Launch, TargetDir};
use crate::fixture::{Setup, Transport, SECTORS, SHELF, SLOT};
use crate::patterns::pattern;

/// A second aoe-xdp on an interface that a running one serves refuses to start, naming the
/// other one's pid, whatever its transport; it neither removes the first one's XDP program
/// nor falls back to AF_PACKET (the program would take every request away from it). The
/// first one keeps serving.
pub fn test_second_instance_refused(transport: Transport) {
    let Some((net, first)) = Setup::new(&transport.tag("dp-twice"))
        .target(&Transport::Xdp.config(""))
        .build()
    else {
        return;
    };
    let running = first.start(&net.target_ns);
    let second = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT + 1, SECTORS)],
    );
    let log = second.start_refused(&net.target_ns);
    assert!(
        log.contains("already served by another aoe-xdp (pid "),
        "{log}"
    );
    assert!(!log.contains("FALLING BACK"), "{log}");
    let (mut client, device) = net.discover(0);
    assert_eq!((device.shelf, device.slot), (SHELF, SLOT));
    let data = pattern(8, 2, 77);
    client.write(&device, 8, &data, true).expect("write");
    assert_eq!(client.read(&device, 8, 2, true).expect("read"), data);
    let pid = running.pid();
    let holder = log
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .expect("a pid in the message");
    // `ip netns exec` runs aoe-xdp in its own process (exec), so the pid is the target's.
    assert_eq!(holder, pid, "{log}");
}

/// `socket = "auto"` falls back to AF_PACKET, loudly, where XDP cannot attach: native XDP on
/// veth refuses a peer with more TX queues than it has RX queues, and `xdp-mode = "native"`
/// forbids the generic fallback. The device is still served, and nothing is left attached.
#[test]
fn test_auto_falls_back_to_af_packet_when_xdp_cannot_attach() {
    Setup::new("dp-auto")
        .mtu(9000)
        .client_tx_queues(2)
        .target("socket = \"auto\"\nxdp-mode = \"native\"")
        .serve(|net, _dir, target| {
            let log = target.log();
            assert!(log.contains("FALLING BACK TO AF_PACKET"), "{log}");
            assert!(
                !net.target_ns
                    .ip(&["link", "show", "vt"])
                    .unwrap()
                    .contains("xdp"),
                "a failed XDP attach must leave nothing behind"
            );
            let (mut client, device) = net.discover(0);
            // The fallback carries jumbo frames too: (9000 - 36) / 512 sectors.
            assert_eq!(device.sector_count, 17);
            let data = pattern(7, 17, 11);
            client.write(&device, 7, &data, true).expect("write");
            assert_eq!(client.read(&device, 7, 17, true).expect("read"), data);
            let log = target.stop();
            assert!(log.contains("stopped cleanly"), "{log}");
        });
}

/// A control socket that cannot be made (its directory cannot be created: a file stands in
/// the way) costs `aoe-xdp ctl`, not the storage: the target says so and serves.
#[test]
fn test_no_control_socket_is_a_warning_not_a_failure() {
    Setup::new("dp-noctl")
        .target("control-socket = \"/proc/version/ctl.sock\"")
        .serve(|net, _dir, target| {
            let (mut client, device) = net.discover(0);
            client.read(&device, 0, 2, true).expect("served");
            let log = target.stop();
            assert!(log.contains("no control socket: no aoe-xdp ctl"), "{log}");
        });
}

/// The online CPUs, from /sys.
fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Without `worker-cores`, aoe-xdp runs workers only on the CPUs it was allowed (here
/// `taskset -c 1`, as systemd's `CPUAffinity=` would): one worker, on core 1.
#[test]
fn test_default_workers_stay_inside_the_process_cpu_mask() {
    if online_cpus() < 2 {
        eprintln!("skipping: needs two CPUs");
        return;
    }
    let Some((net, dir)) = Setup::new("dp-mask")
        .target("# worker-cores: the target's default")
        .build()
    else {
        return;
    };
    let launch = Launch {
        wrapper: ["taskset", "-c", "1"].map(String::from).to_vec(),
        env: Vec::new(),
    };
    let target = dir.start_with(&net.target_ns, &launch);
    let (mut client, device) = net.discover(0);
    client.read(&device, 0, 2, true).expect("served");
    let log = target.stop();
    let running: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("worker running"))
        .collect();
    assert_eq!(running.len(), 1, "{log}");
    assert!(running[0].contains("core=1"), "{log}");
}

/// io_uring's blocking-I/O threads (which run every data sync) stay off the core their worker
/// busy-polls: with `worker-cores = [0]` on this two-CPU machine they run on CPU 1 only.
#[test]
fn test_io_threads_run_off_the_worker_core() {
    if online_cpus() < 2 {
        eprintln!("skipping: needs two CPUs");
        return;
    }
    Setup::new("dp-iowq")
        .target("worker-cores = [0]")
        .serve(|net, _dir, target| {
            let (mut client, device) = net.discover(0);
            // The default durability acknowledges a write after a data sync, which io_uring
            // runs in one of its `iou-wrk` threads.
            let data = pattern(3, 2, 5);
            client.write(&device, 4, &data, true).expect("write");
            let tasks = format!("/proc/{}/task", target.pid());
            let mut io_threads = Vec::new();
            for entry in std::fs::read_dir(&tasks).unwrap().flatten() {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                if !comm.starts_with("iou-wrk") {
                    continue;
                }
                let status = std::fs::read_to_string(entry.path().join("status")).unwrap();
                let cpus = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(str::trim)
                    .unwrap()
                    .to_owned();
                io_threads.push((comm.trim().to_owned(), cpus));
            }
            assert!(
                !io_threads.is_empty(),
                "no iou-wrk thread after a synced write"
            );
            for (name, cpus) in &io_threads {
                assert_eq!(cpus, "1", "{name} may run on {cpus}");
            }
        });
}
