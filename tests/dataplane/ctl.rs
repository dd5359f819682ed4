//! `aoe-xdp ctl` against the running target: `show` and `clear` of a device's reservation,
//! mask and config string (how an operator frees a device a fenced initiator holds),
//! `announce`, `clear-stats` and `monitor`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use aoe_xdp::initiator::frames::Reply;
use aoe_xdp::wire::{
    AoeCommand, AoeError, ConfigCommand, DirectiveCommand, DirectiveRepr, MacMaskCommand,
    ReserveCommand,
};

use crate::answers::assert_aoe_error;
use crate::fixture::{discover_one, Setup, SHELF, SLOT};
use crate::patterns::pattern;

/// Runs `aoe-xdp ctl --socket SOCKET ARGS...` (the control socket is a file: no namespace).
fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aoe-xdp"))
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run aoe-xdp ctl")
}

/// Its standard output, asserting it succeeded.
fn ctl_ok(socket: &Path, args: &[&str]) -> String {
    let output = ctl(socket, args);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "aoe-xdp ctl {args:?}: {}{text}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// An initiator that reserved the device and then went away (fenced) holds it until the
/// operator clears the reservation: `show` names it, `clear` frees the device at once for
/// another initiator, and the cleared state is what a restart finds. `clear` of the mask and
/// the config string likewise; an unknown device is an error with exit status 1.
#[test]
fn test_show_and_clear_free_a_device_a_fenced_initiator_holds() {
    let Some((net, dir)) = Setup::new("dp-ctl").paths(2).build() else {
        return;
    };
    let socket = dir.control_socket();
    let target = dir.start(&net.target_ns);
    let (mut a, mut b) = (net.client(0), net.client(1));
    let (dev_a, dev_b) = (discover_one(&mut a), discover_one(&mut b));
    let a_mac = a.mac();
    a.reserve(&dev_a, ReserveCommand::Set, &[a_mac])
        .expect("reserve");
    a.mac_mask(
        &dev_a,
        MacMaskCommand::Edit,
        &[
            DirectiveRepr {
                command: DirectiveCommand::Add,
                mac: a_mac,
            },
            DirectiveRepr {
                command: DirectiveCommand::Add,
                mac: b.mac(),
            },
        ],
    )
    .expect("mask");
    a.query_config(&dev_a, ConfigCommand::Set, b"cluster=x")
        .expect("config string");
    assert_aoe_error(
        b.write(&dev_b, 0, &pattern(0, 2, 1), false),
        AoeError::TargetReserved,
    );

    let address = format!("{SHELF}.{SLOT}");
    let shown = ctl_ok(&socket, &["show", &address]);
    assert!(shown.contains(&format!("reservation  {a_mac}")), "{shown}");
    assert!(shown.contains("cluster=x"), "{shown}");
    ctl_ok(&socket, &["clear", &address, "reservation"]);
    // At once: the very next write of the other initiator is served.
    let data = pattern(0, 2, 2);
    b.write(&dev_b, 0, &data, true).expect("served after clear");
    assert_eq!(b.read(&dev_b, 0, 2, true).expect("read"), data);
    ctl_ok(&socket, &["clear", &address, "mask"]);
    ctl_ok(&socket, &["clear", &address, "config"]);
    let json: serde_json::Value =
        serde_json::from_str(&ctl_ok(&socket, &["show", &address, "--json"])).unwrap();
    assert_eq!(json["reservation"], serde_json::json!([]), "{json}");
    assert_eq!(json["mask"], serde_json::json!([]), "{json}");
    assert_eq!(json["config"], "", "{json}");

    let unknown = ctl(&socket, &["clear", "9.9", "mask"]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no device \"9.9\""));

    // The cleared state is saved: a restart does not bring the reservation back.
    target.stop();
    let _target = dir.start(&net.target_ns);
    let shown = ctl_ok(&socket, &["show", &address]);
    assert!(shown.contains("reservation  (empty: everyone)"), "{shown}");
}

/// `announce` sends each device's advertisement again, as at start-up; `clear-stats` makes
/// the counters start from zero; `monitor` prints the rates of the I/O done meanwhile.
#[test]
fn test_announce_clear_stats_and_monitor() {
    let Some((net, dir)) = Setup::new("dp-ctl2").build() else {
        return;
    };
    let socket = dir.control_socket();
    let capture = net.monitor(0);
    let _target = dir.start(&net.target_ns);
    let is_advert =
        |f: &[u8]| Reply::parse(f).is_some_and(|r| r.aoe.command == AoeCommand::QueryConfig);
    capture
        .recv_matching(Duration::from_secs(2), is_advert)
        .expect("the start-up advertisement");
    assert!(
        capture
            .recv_matching(Duration::from_millis(300), is_advert)
            .is_none(),
        "one advertisement at start-up"
    );
    ctl_ok(&socket, &["announce"]);
    let advert = capture
        .recv_matching(Duration::from_secs(2), is_advert)
        .expect("an advertisement after ctl announce");
    let advert = Reply::parse(&advert).unwrap();
    assert!(advert.dst.is_broadcast());

    let (mut client, device) = net.discover(0);
    for lba in 0..20 {
        client.read(&device, lba * 2, 2, true).expect("read");
    }
    let stats = |socket: &Path| -> serde_json::Value {
        serde_json::from_str(&ctl_ok(socket, &["stats", "--json"])).unwrap()
    };
    // Published every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    assert!(stats(&socket)["devices"][0]["read_cmds"].as_u64().unwrap() >= 20);
    ctl_ok(&socket, &["clear-stats"]);
    assert_eq!(stats(&socket)["devices"][0]["read_cmds"], 0);
    for lba in 0..3 {
        client.read(&device, lba * 2, 2, true).expect("read");
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = stats(&socket);
    assert_eq!(report["devices"][0]["read_cmds"], 3);
    // Service times are cleared with the counters: the three reads since.
    let service: u64 = report["devices"][0]["service_ns"]["buckets"]
        .as_object()
        .unwrap()
        .values()
        .map(|count| count.as_u64().unwrap())
        .sum();
    assert_eq!(service, 3, "{report}");

    // A reader keeps reading while monitor takes two one-second samples.
    let reading = std::sync::atomic::AtomicBool::new(true);
    let table = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut lba = 0;
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                client.read(&device, lba % 64 * 2, 2, true).expect("read");
                lba += 1;
            }
        });
        let table = ctl_ok(&socket, &["monitor", "1", "--count", "2"]);
        reading.store(false, std::sync::atomic::Ordering::Relaxed);
        table
    });
    let rows: Vec<&str> = table
        .lines()
        .filter(|line| line.starts_with(&format!("e{SHELF}.{SLOT}")))
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    for row in rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let reads_per_s: f64 = cells[1].parse().unwrap();
        assert!(reads_per_s > 10.0, "{table}");
        // The target's own service time of those reads, p50 and p99 in microseconds.
        let (p50, p99): (f64, f64) = (cells[5].parse().unwrap(), cells[6].parse().unwrap());
        assert!(0.0 < p50 && p50 <= p99 && p99 < 1e6, "{table}");
    }
}

/// `metrics-listen`: GET /metrics on the target's loopback answers every counter of `stats`
/// and each device's service-time histogram, as Prometheus reads them; anything else is 404.
#[test]
fn test_metrics_endpoint_exports_counters_and_service_times() {
    use std::io::{Read, Write};
    let Some((net, dir)) = Setup::new("dp-metrics")
        .target("metrics-listen = \"127.0.0.1:9469\"")
        .build()
    else {
        return;
    };
    net.target_ns.link_up("lo").expect("loopback up");
    let _target = dir.start(&net.target_ns);
    let (mut client, device) = net.discover(0);
    for lba in 0..10 {
        client.read(&device, lba * 2, 2, true).expect("read");
    }
    std::thread::sleep(Duration::from_millis(300));
    let get = |path: &str| -> String {
        crate::common::netns::in_netns(&net.target_ns, || {
            let mut stream = std::net::TcpStream::connect("127.0.0.1:9469")?;
            write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok::<_, std::io::Error>(answer)
        })
        .expect("HTTP on the target's loopback")
    };
    let answer = get("/metrics");
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    let name = format!("e{SHELF}.{SLOT}");
    let value = |metric: &str| -> f64 {
        let line = answer
            .lines()
            .find(|line| line.starts_with(metric))
            .unwrap_or_else(|| panic!("{metric} missing:\n{answer}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        value(&format!(
            "aoe_xdp_device_read_cmds_total{{device=\"{name}\"}}"
        )) >= 10.0
    );
    assert!(
        value(&format!(
            "aoe_xdp_device_service_seconds_count{{device=\"{name}\"}}"
        )) >= 10.0
    );
    assert!(value("aoe_xdp_port_rx_frames_total{port=\"vt:0:") >= 10.0);
    assert!(answer.contains("# TYPE aoe_xdp_device_service_seconds histogram"));
    assert!(get("/").contains(" 404 "), "anything else is 404");
}
