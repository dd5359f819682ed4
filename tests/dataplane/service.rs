//! Running as a service: the systemd notification protocol (`Type=notify`, watchdog) and the
//! least privilege `config/aoe-xdp.service` grants (an unprivileged user with exactly the
//! capabilities the README lists).

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::target::Launch;
use crate::fixture::Setup;
use crate::patterns::pattern;

/// The capabilities `config/aoe-xdp.service` gives the target (`AmbientCapabilities=`), as
/// `setpriv` names them ("net_admin" for CAP_NET_ADMIN).
fn service_caps() -> Vec<String> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/aoe-xdp.service"
    ))
    .expect("read config/aoe-xdp.service");
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("AmbientCapabilities="))
        .expect("an AmbientCapabilities= line");
    line.split_whitespace()
        .map(|cap| cap.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

/// Messages on `socket` until `until` says stop or `timeout` passes.
fn messages(socket: &UnixDatagram, timeout: Duration, until: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    let mut all = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        all.push_str(&String::from_utf8_lossy(&buf[..len]));
        all.push('\n');
        if until(&all) {
            break;
        }
    }
    all
}

/// With `NOTIFY_SOCKET` set, the target says READY=1 once it serves (a client finds and uses
/// the device right after), pings the watchdog at half of `WATCHDOG_USEC` while it runs, and
/// says STOPPING=1 when it shuts down.
#[test]
fn test_systemd_notify_ready_watchdog_and_stopping() {
    let Some((net, dir)) = Setup::new("dp-notify").build() else {
        return;
    };
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // systemd names the process the watchdog is for: the target's own pid, which `sh` keeps
    // when it execs the target.
    let launch = Launch {
        wrapper: ["sh", "-c", "export WATCHDOG_PID=$$; exec \"$0\" \"$@\""]
            .map(String::from)
            .to_vec(),
        env: vec![
            ("NOTIFY_SOCKET".into(), path.display().to_string()),
            ("WATCHDOG_USEC".into(), "200000".into()),
        ],
    };
    let target = dir.start_with(&net.target_ns, &launch);
    let ready = messages(&socket, Duration::from_secs(5), |m| m.contains("READY=1"));
    assert!(ready.contains("READY=1"), "{ready:?}");
    assert!(
        ready.contains("STATUS=serving 1 device(s) on vt"),
        "{ready:?}"
    );
    let (mut client, device) = net.discover(0);
    let data = pattern(4, 2, 9);
    client.write(&device, 4, &data, true).expect("write");
    assert_eq!(client.read(&device, 4, 2, true).expect("read"), data);
    // 1 s at a 100 ms ping interval.
    let pings = messages(&socket, Duration::from_secs(1), |_| false);
    let count = pings.matches("WATCHDOG=1").count();
    assert!((5..=15).contains(&count), "{count} pings in 1 s: {pings:?}");
    target.stop();
    let stopping = messages(&socket, Duration::from_secs(2), |m| {
        m.contains("STOPPING=1")
    });
    assert!(stopping.contains("STOPPING=1"), "{stopping:?}");
}

/// `setpriv` as `nobody` with `caps` only (ambient, as systemd's `AmbientCapabilities=` gives
/// them, and nothing else in the bounding set).
fn as_nobody(caps: &[String]) -> Launch {
    let caps: Vec<String> = caps.iter().map(|cap| format!("+{cap}")).collect();
    let caps = caps.join(",");
    Launch {
        wrapper: [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            &format!("--inh-caps=-all,{caps}"),
            &format!("--ambient-caps=-all,{caps}"),
            &format!("--bounding-set=-all,{caps}"),
        ]
        .map(String::from)
        .to_vec(),
        env: Vec::new(),
    }
}

/// The service's capabilities without `cap`.
fn service_caps_but(cap: &str) -> Vec<String> {
    service_caps().into_iter().filter(|c| c != cap).collect()
}

/// Runs the target as `nobody` with `caps` only; returns its log after a verified write and
/// read.
fn serve_as_nobody(tag: &str, caps: &[String]) -> Option<String> {
    // The defaults, as the service runs them (the busy-poll options are set).
    let (net, dir) = Setup::new(tag).build()?;
    dir.open_to_all();
    let target = dir.start_with(&net.target_ns, &as_nobody(caps));
    let (mut client, device) = net.discover(0);
    let data = pattern(12, 2, 3);
    client.write(&device, 12, &data, true).expect("write");
    assert_eq!(client.read(&device, 12, 2, true).expect("read"), data);
    Some(target.stop())
}

/// The service's five capabilities are enough for the fast path: an unprivileged user loads
/// and attaches the XDP program, binds the AF_XDP socket, registers io_uring buffers, serves,
/// and stops cleanly.
#[test]
fn test_the_service_capabilities_serve_over_af_xdp() {
    let caps = service_caps();
    assert_eq!(caps, ["net_admin", "net_raw", "bpf", "perfmon", "ipc_lock"]);
    let Some(log) = serve_as_nobody("dp-caps", &caps) else {
        return;
    };
    assert!(log.contains("AF_XDP socket ready"), "{log}");
    // The busy-poll options (SO_BUSY_POLL needs CAP_NET_ADMIN) are accepted; on veth they
    // reach no NAPI, so the worker busy-polls veth's NAPI in its wait (netlink and io_uring
    // need no capability more), and the log says so.
    assert!(!log.contains("busy-poll options refused"), "{log}");
    assert!(
        log.contains("the socket is tied to no NAPI (the driver registers none for its queue"),
        "{log}"
    );
    assert!(
        log.contains("busy-polls its interfaces' NAPIs in its wait"),
        "{log}"
    );
    assert!(!log.contains("FALLING BACK"), "{log}");
    assert!(!log.contains("io_uring unavailable"), "{log}");
}

/// Without CAP_NET_ADMIN, CAP_BPF or CAP_PERFMON the XDP program cannot be loaded (its maps
/// cannot be created, the program cannot be loaded, or the verifier refuses its packet
/// pointers): the target says so loudly and serves over AF_PACKET.
#[test]
fn test_without_a_bpf_capability_it_falls_back_to_af_packet() {
    for cap in ["net_admin", "bpf", "perfmon"] {
        let Some(log) = serve_as_nobody(&format!("dp-no{cap}"), &service_caps_but(cap)) else {
            return;
        };
        assert!(
            log.contains("FALLING BACK TO AF_PACKET"),
            "without {cap}: {log}"
        );
        assert!(
            log.contains("cannot load the XDP program"),
            "without {cap}: {log}"
        );
    }
}

/// Without CAP_IPC_LOCK the UMEM and io_uring's registered buffers do not fit the locked-memory
/// limit (8 MiB by default; the UMEM alone is 16 MiB): AF_PACKET and synchronous I/O, said
/// loudly, and the device is still served.
#[test]
fn test_without_cap_ipc_lock_it_serves_slowly_and_says_why() {
    let Some(log) = serve_as_nobody("dp-nolock", &service_caps_but("ipc_lock")) else {
        return;
    };
    assert!(log.contains("cannot create the UMEM"), "{log}");
    assert!(log.contains("FALLING BACK TO AF_PACKET"), "{log}");
    assert!(log.contains("io_uring unavailable"), "{log}");
}

/// Without CAP_NET_RAW there is no socket at all: the target refuses to start and says which
/// capability it needs.
#[test]
fn test_without_cap_net_raw_it_refuses_to_start() {
    let Some((net, dir)) = Setup::new("dp-noraw").build() else {
        return;
    };
    dir.open_to_all();
    let log = dir.start_refused_with(&net.target_ns, &as_nobody(&service_caps_but("net_raw")));
    assert!(log.contains("AF_PACKET needs CAP_NET_RAW"), "{log}");
}
