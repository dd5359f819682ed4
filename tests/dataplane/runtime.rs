//! Changes while it serves: interfaces that appear, disappear or change their MTU (followed
//! through rtnetlink), and a configuration reloaded by `aoe-xdp ctl reload` or SIGHUP.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aoe_xdp::initiator::client::Client;
use aoe_xdp::initiator::frames::Reply;
use aoe_xdp::sys::packet::raw::RawSocket;
use aoe_xdp::wire::{AoeCommand, MacAddr};
use netns_rig::Veth;

use crate::common::mounts::{losetup, Detach};
use crate::common::netns::{in_netns, PacketSocket};
use crate::common::target::{TargetDir, TargetProcess};
use crate::fixture::{discover_one, Net, Setup, SECTORS, SHELF, SLOT};
use crate::patterns::pattern;
use crate::stops::{assert_read_back, spawn_writer, wait_acked, ROOMY_SECTORS};

/// How long the target may take to follow a change.
const FOLLOW: Duration = Duration::from_secs(10);

/// A client on the client end `name` (in the client namespace).
fn client_on(net: &Net, name: &str) -> Client {
    let end = net.client_ns.interface(name).expect("client end");
    let socket = in_netns(&net.client_ns, || RawSocket::open(name)).expect("raw socket");
    Client::new(socket, MacAddr(end.mac))
}

/// The `pause_ms` of every restart in `log` (how long requests went unanswered); each must be
/// well under the Linux initiator's retransmit patience.
fn pauses(log: &str) -> Vec<u64> {
    let pauses: Vec<u64> = log
        .split("pause_ms=")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    eprintln!("restart pauses (ms): {pauses:?}");
    assert!(pauses.iter().all(|&ms| ms < 2000), "{pauses:?}");
    pauses
}

/// The target's configuration file as it is, and that file with a second device of
/// `SECTORS` sectors in slot `slot` (its backing file made in the target's directory).
fn with_second_device(dir: &TargetDir, slot: u16) -> (String, String) {
    let original = std::fs::read_to_string(dir.config()).unwrap();
    let second = dir.path().join("second.img");
    std::fs::File::create(&second)
        .and_then(|file| file.set_len(SECTORS * 512))
        .unwrap();
    let grown =
        format!("{original}\n[[device]]\npath = {second:?}\nshelf = {SHELF}\nslot = {slot}\n");
    (original, grown)
}

/// Waits until the target's log has `count` lines containing `needle`.
fn wait_log(target: &TargetProcess<'_>, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + FOLLOW;
    loop {
        let log = target.log();
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {count}x {needle:?} in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An interface created while the target runs, matching its glob, is attached and announced;
/// when the first interface is deleted, the target releases it and serves on through the new
/// one; it stops cleanly (exit 0, no error for the interface that is gone).
#[test]
fn test_interfaces_that_appear_are_served_and_deleted_ones_released() {
    let Some((net, dir)) = Setup::new("dp-hotplug").interfaces(&["vt*"]).build() else {
        return;
    };
    let target = dir.start(&net.target_ns);
    let (mut first, device) = net.discover(0);
    let data = pattern(2, 2, 1);
    first
        .write(&device, 2, &data, true)
        .expect("write on the first path");

    let _added = Veth::new(&net.target_ns, "vtx", &net.client_ns, "vcx")
        .create()
        .expect("a new veth pair");
    wait_log(&target, "serving again", 1);
    let mut second = client_on(&net, "vcx");
    let found = discover_one(&mut second);
    assert_eq!((found.shelf, found.slot), (SHELF, SLOT));
    assert_eq!(
        second
            .read(&found, 2, 2, true)
            .expect("read on the new path"),
        data
    );

    net.target_ns
        .ip(&["link", "del", "vt"])
        .expect("delete the first veth");
    let log = wait_log(&target, "serving again", 2);
    let data = pattern(6, 2, 2);
    second
        .write(&found, 6, &data, true)
        .expect("served on after the first interface is gone");
    assert_eq!(second.read(&found, 6, 2, true).expect("read"), data);
    assert!(
        log.contains("released: sockets closed, XDP program detached interface=vt\n"),
        "{log}"
    );
    let log_after = target.stop();
    assert!(!log_after.contains("ERROR"), "{log}\n{log_after}");
    assert_eq!(pauses(&log_after).len(), 2);
}

/// A new interface that matches but cannot be served (a bridge, which has no native
/// XDP, under `socket = "xdp"`, `xdp-mode = "native"`) is left out with an error in the log;
/// the target keeps serving the others and does not stop.
#[test]
fn test_a_new_interface_that_cannot_be_served_is_left_out() {
    let Some((net, dir)) = Setup::new("dp-refuse")
        .interfaces(&["vt*"])
        .target("socket = \"xdp\"\nxdp-mode = \"native\"")
        .build()
    else {
        return;
    };
    let target = dir.start(&net.target_ns);
    let (mut client, device) = net.discover(0);
    net.target_ns
        .ip(&["link", "add", "vtd", "type", "bridge"])
        .expect("a bridge");
    net.target_ns
        .ip(&["link", "set", "vtd", "up"])
        .expect("bridge up");
    let log = wait_log(&target, "cannot serve a new interface", 1);
    assert!(log.contains("interface=vtd"), "{log}");
    let data = pattern(10, 2, 4);
    client
        .write(&device, 10, &data, true)
        .expect("still served");
    assert_eq!(client.read(&device, 10, 2, true).expect("read"), data);
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
}

/// A one-path set-up and a capture on the client end, opened before the target starts (so it
/// sees the start-up advertisement too).
fn watched(tag: &str) -> Option<(Net, TargetDir, PacketSocket)> {
    let (net, dir) = Setup::new(tag).build()?;
    let capture = net.monitor(0);
    Some((net, dir, capture))
}

/// A new MTU changes the sectors per request at once, and the devices are announced again
/// with it (the Linux initiator takes the new count from that advertisement).
#[test]
fn test_an_mtu_change_is_announced_with_its_sectors() {
    let Some((net, dir, capture)) = watched("dp-mtu") else {
        return;
    };
    let target = dir.start(&net.target_ns);
    let (_, before) = net.discover(0);
    assert_eq!(before.sector_count, 2, "(1500 - 36) / 512");
    let is_advert =
        |f: &[u8]| Reply::parse(f).is_some_and(|r| r.aoe.command == AoeCommand::QueryConfig);
    while capture
        .recv_matching(Duration::from_millis(200), is_advert)
        .is_some()
    {}

    for (ns, end) in [(&net.target_ns, "vt"), (&net.client_ns, "vc")] {
        ns.ip(&["link", "set", end, "mtu", "9000"])
            .expect("mtu 9000");
    }
    wait_log(&target, "serving again", 1);
    let advert = capture
        .recv_matching(FOLLOW, is_advert)
        .expect("an advertisement after the MTU change");
    assert!(Reply::parse(&advert).unwrap().dst.is_broadcast());
    let (mut client, after) = net.discover(0);
    assert_eq!(after.sector_count, 17, "(9000 - 36) / 512");
    let data = pattern(0, 17, 3);
    client
        .write(&after, 0, &data, true)
        .expect("a 17-sector write");
    assert_eq!(client.read(&after, 0, 17, true).expect("read"), data);
}

/// Runs `aoe-xdp ctl --socket SOCKET reload`; (exit code, standard output and error).
fn ctl_reload(socket: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_aoe-xdp"))
        .args(["ctl", "--socket"])
        .arg(socket)
        .arg("reload")
        .output()
        .expect("run aoe-xdp ctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// `ctl reload` applies a changed configuration file (a second device appears, the first
/// keeps its data); a file with a problem is refused with that problem and the running
/// configuration stays; SIGHUP reloads too.
#[test]
fn test_reload_adds_a_device_and_refuses_a_broken_file() {
    let Some((net, dir)) = Setup::new("dp-reload").build() else {
        return;
    };
    let socket = dir.control_socket();
    let target = dir.start(&net.target_ns);
    let (mut client, device) = net.discover(0);
    let data = pattern(4, 2, 7);
    client.write(&device, 4, &data, true).expect("write");

    let (original, broken) = with_second_device(&dir, 300);
    let (_, grown) = with_second_device(&dir, u16::from(SLOT) + 1);
    std::fs::write(dir.config(), &broken).unwrap();
    let (code, said) = ctl_reload(&socket);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("slot") && said.contains("the running configuration stays"),
        "{said}"
    );
    client.read(&device, 4, 2, true).expect("still served");
    let hup = || {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(i32::try_from(target.pid()).unwrap()).unwrap(),
            rustix::process::Signal::HUP,
        )
        .expect("SIGHUP");
    };
    // The same file by SIGHUP: refused in the log, nothing restarted.
    hup();
    let log = wait_log(
        &target,
        "reload refused: the running configuration stays",
        1,
    );
    assert!(!log.contains("serving again"), "{log}");
    client.read(&device, 4, 2, true).expect("still served");

    std::fs::write(dir.config(), &grown).unwrap();
    let (code, said) = ctl_reload(&socket);
    assert_eq!(code, Some(0), "{said}");
    wait_log(&target, "serving again", 1);
    let found = client.discover(Duration::from_secs(2)).expect("discover");
    let mut slots: Vec<u8> = found.iter().map(|f| f.slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, [SLOT, SLOT + 1], "{found:?}");
    let first = found.iter().find(|f| f.slot == SLOT).unwrap();
    assert_eq!(
        client.read(first, 4, 2, true).expect("read"),
        data,
        "kept its data"
    );

    // SIGHUP: back to one device.
    std::fs::write(dir.config(), &original).unwrap();
    hup();
    let log = wait_log(&target, "serving again", 2);
    assert_eq!(pauses(&log).len(), 2);
    let found = client.discover(Duration::from_secs(2)).expect("discover");
    assert_eq!(found.len(), 1, "{found:?}");
}

/// With the default idle mode (`poll`: an idle worker sleeps in `poll(2)` for up to 10 ms),
/// a reload's pause is not a sleep running out: the stop wakes the old workers at once. Eight
/// reloads, each with the device idle for a while first, pause requests for a median under
/// 8 ms (1-3 ms each on an idle machine, 4-7 ms right after a build; old workers that saw the
/// stop only when their sleep ended paused them 2-23 ms, median 12.5 ms). The median, not the
/// mean: in CI, with other suites running (a QEMU guest among them), two of eight pauses once
/// took 9 and 14 ms.
#[test]
fn test_a_reload_wakes_sleeping_workers() {
    let Some((net, dir)) = Setup::new("dp-rewake").build() else {
        return;
    };
    let target = dir.start(&net.target_ns);
    let (mut client, device) = net.discover(0);
    let (original, grown) = with_second_device(&dir, u16::from(SLOT) + 1);
    let reloads = 8;
    for reload in 0..reloads {
        client.read(&device, 4, 2, true).expect("served");
        // Idle long enough for every worker to be asleep.
        std::thread::sleep(Duration::from_millis(50));
        let text = if reload % 2 == 0 { &grown } else { &original };
        std::fs::write(dir.config(), text).unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(i32::try_from(target.pid()).unwrap()).unwrap(),
            rustix::process::Signal::HUP,
        )
        .expect("SIGHUP");
        wait_log(&target, "serving again", reload + 1);
    }
    let pauses = pauses(&target.stop());
    assert_eq!(pauses.len(), reloads);
    let mut sorted = pauses.clone();
    sorted.sort_unstable();
    let median = (sorted[reloads / 2 - 1] + sorted[reloads / 2]) as f64 / 2.0;
    assert!(
        median < 8.0,
        "reloads paused requests for a median of {median:.1} ms: {pauses:?}"
    );
}

/// The device's size from IDENTIFY (LBA48 words 100..104).
fn identified_sectors(client: &mut Client, device: &aoe_xdp::initiator::client::Found) -> u64 {
    let identify = client.identify(device).expect("identify");
    (100..104).rev().fold(0u64, |sum, index| {
        sum << 16 | u64::from(crate::answers::word(&identify, index))
    })
}

/// A backing file that grows while served: IDENTIFY reports the new size, the device is
/// announced again, and the new sectors are served; one that shrinks: requests beyond the new
/// end get ATA IDNF, and the data before it is intact.
#[test]
fn test_a_backing_file_that_grows_or_shrinks_is_followed() {
    let Some((net, dir, capture)) = watched("dp-resize") else {
        return;
    };
    let target = dir.start(&net.target_ns);
    let (mut client, device) = net.discover(0);
    assert_eq!(identified_sectors(&mut client, &device), SECTORS);
    let data = pattern(4, 2, 11);
    client.write(&device, 4, &data, true).expect("write");
    let is_advert =
        |f: &[u8]| Reply::parse(f).is_some_and(|r| r.aoe.command == AoeCommand::QueryConfig);
    while capture
        .recv_matching(Duration::from_millis(200), is_advert)
        .is_some()
    {}

    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.disk(0))
        .unwrap();
    file.set_len(4 * SECTORS * 512).expect("grow");
    let log = wait_log(&target, "backing store resized", 1);
    assert!(
        log.contains(&format!("{SECTORS} -> {} sectors", 4 * SECTORS)),
        "{log}"
    );
    capture
        .recv_matching(FOLLOW, is_advert)
        .expect("announced again after growing");
    let (mut client, device) = net.discover(0);
    assert_eq!(identified_sectors(&mut client, &device), 4 * SECTORS);
    let far = pattern(3 * SECTORS, 2, 12);
    client
        .write(&device, 3 * SECTORS, &far, true)
        .expect("a write in the new part");
    assert_eq!(
        client.read(&device, 3 * SECTORS, 2, true).expect("read"),
        far
    );

    file.set_len(SECTORS / 2 * 512).expect("shrink");
    wait_log(&target, "serving again", 2);
    let (mut client, device) = net.discover(0);
    assert_eq!(identified_sectors(&mut client, &device), SECTORS / 2);
    crate::answers::assert_ata_error(
        client.read(&device, SECTORS / 2, 2, true),
        aoe_xdp::wire::ata::error::IDNF,
        "a read past the shrunken end",
    );
    assert_eq!(
        client.read(&device, 4, 2, true).expect("read"),
        data,
        "intact"
    );
    pauses(&target.stop());
}

/// A block device (a loop device over a file) that grows while served: the running target,
/// which holds it with `O_EXCL`, still sees its new size (from sysfs), and IDENTIFY reports it;
/// the new workers open it again with `O_EXCL` at once (the old engine's ring let go of it),
/// and so does a reload that adds a device.
#[test]
fn test_a_block_device_that_grows_is_followed() {
    let Some((net, dir, _capture)) = watched("dp-bresize") else {
        return;
    };
    let image = tempfile::NamedTempFile::new_in("/var/tmp").expect("image file");
    image.as_file().set_len(SECTORS * 512).expect("size");
    let dev = losetup(image.path(), 512);
    let _detach = Detach(dev.clone());
    dir.back_first_device_with(&dev);
    let target = dir.start(&net.target_ns);
    let (mut client, device) = net.discover(0);
    assert_eq!(identified_sectors(&mut client, &device), SECTORS);
    let data = pattern(4, 2, 11);
    client.write(&device, 4, &data, true).expect("write");

    image.as_file().set_len(2 * SECTORS * 512).expect("grow");
    let out = Command::new("losetup")
        .arg("-c")
        .arg(&dev)
        .output()
        .expect("losetup");
    assert!(out.status.success(), "losetup -c: {out:?}");
    let log = wait_log(&target, "backing store resized", 1);
    assert!(
        log.contains(&format!("{SECTORS} -> {} sectors", 2 * SECTORS)),
        "{log}"
    );
    wait_log(&target, "serving again", 1);
    let (mut client, device) = net.discover(0);
    assert_eq!(identified_sectors(&mut client, &device), 2 * SECTORS);
    assert_eq!(
        client.read(&device, 4, 2, true).expect("read"),
        data,
        "intact"
    );
    let (_, grown) = with_second_device(&dir, u16::from(SLOT) + 1);
    std::fs::write(dir.config(), grown).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(target.pid()).unwrap()).unwrap(),
        rustix::process::Signal::HUP,
    )
    .expect("SIGHUP");
    wait_log(&target, "serving again", 2);
    assert_eq!(
        client
            .read(&device, 4, 2, true)
            .expect("read after the reload"),
        data
    );
    pauses(&target.stop());
}

/// With the default `interfaces` (every Ethernet interface that is up), an interface that goes
/// down and up again keeps its sockets and resumes: no restart, and the device is served again.
#[test]
fn test_down_and_up_under_the_default_interfaces_needs_no_restart() {
    let Some((net, dir)) = Setup::new("dp-downall").interfaces(&[]).build() else {
        return;
    };
    let target = dir.start(&net.target_ns);
    let (mut client, device) = net.discover(0);
    let data = pattern(8, 2, 21);
    client.write(&device, 8, &data, true).expect("write");
    net.target_ns.link_down("vt").expect("down");
    std::thread::sleep(Duration::from_millis(500));
    net.target_ns.link_up("vt").expect("up");
    let mut client = net.client(0).with_retry(Duration::from_millis(200), 20);
    assert_eq!(
        client.read(&device, 8, 2, true).expect("served after up"),
        data
    );
    let log = target.stop();
    assert!(
        !log.contains("serving again"),
        "a restart for a down/up:\n{log}"
    );
}

/// Changes elsewhere leave a path's verified I/O undisturbed: while an initiator writes over
/// `vt1` with little patience (100 ms, 3 tries, then the write fails), a reload adds a device,
/// another removes it, and `vt0` is deleted under a second initiator's writes and created
/// again. Every write over `vt1` is acknowledged and reads back, as does every write `vt0`
/// acknowledged before it went; `vt1` keeps its sockets through every handover (its receive
/// path is never rebuilt), the added device was served, and the new `vt0` is served again.
#[test]
fn test_changes_elsewhere_leave_a_paths_io_undisturbed() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let Some((net, dir)) = Setup::new("dp-calm")
        .paths(2)
        .interfaces(&["vt*"])
        .target("socket = \"xdp\"")
        .sectors(2 * ROOMY_SECTORS)
        .build()
    else {
        return;
    };
    let socket = dir.control_socket();
    let target = dir.start(&net.target_ns);
    let blocks = ROOMY_SECTORS / 2;
    let writers: Vec<_> = (0..2u64)
        .map(|path| {
            let index = usize::try_from(path).unwrap();
            let mut client = net.client(index).with_retry(Duration::from_millis(100), 3);
            let device = discover_one(&mut client);
            let acked = Arc::new(AtomicU64::new(0));
            let stream = (path * ROOMY_SECTORS, blocks, 11 + 5000 * path);
            let writer = spawn_writer(client, device, stream, false, Arc::clone(&acked));
            wait_acked(&acked, 50);
            (writer, acked)
        })
        .collect();
    let [(on_vt0, _), (on_vt1, acked)] = <[_; 2]>::try_from(writers).ok().unwrap();
    let mut handovers = 0;
    let mut writes_after = |what: &str| {
        handovers += 1;
        let before = acked.load(Ordering::Relaxed);
        wait_log(&target, "serving again", handovers);
        wait_acked(&acked, before + 20);
        assert!(
            acked.load(Ordering::Relaxed) >= before + 20,
            "vt1 stopped answering after {what}"
        );
    };

    // A reload adds a device; it is served (over vt1, beside the writes).
    let (original, added) = with_second_device(&dir, u16::from(SLOT) + 1);
    std::fs::write(dir.config(), added).unwrap();
    assert_eq!(ctl_reload(&socket).0, Some(0));
    writes_after("a reload that added a device");
    let mut other = net.client(1);
    let found = other.discover(Duration::from_secs(2)).expect("discover");
    let new_device = found
        .iter()
        .find(|f| f.slot == SLOT + 1)
        .expect("the added device");
    let data = pattern(8, 2, 3);
    other
        .write(new_device, 8, &data, true)
        .expect("write to the added device");
    assert_eq!(other.read(new_device, 8, 2, true).expect("read"), data);

    // A reload removes it again.
    std::fs::write(dir.config(), &original).unwrap();
    assert_eq!(ctl_reload(&socket).0, Some(0));
    writes_after("a reload that removed a device");

    // vt0 goes away under its writes, and comes back.
    net.target_ns
        .ip(&["link", "del", "vt0"])
        .expect("delete vt0");
    writes_after("vt0 was deleted");
    let (lost_path, _) = on_vt0.join().expect("vt0's writer");
    let _again = Veth::new(&net.target_ns, "vt0", &net.client_ns, "vc0")
        .create()
        .expect("vt0 again");
    writes_after("vt0 was created again");
    let mut first = client_on(&net, "vc0");
    let found = discover_one(&mut first);
    assert_eq!((found.shelf, found.slot), (SHELF, SLOT));

    assert!(
        !on_vt1.is_finished(),
        "the writes ended before the changes did: the test proves nothing"
    );
    let (done, _) = on_vt1.join().expect("vt1's writer");
    assert_eq!(done.len() as u64, blocks, "a write over vt1 failed");
    assert_read_back(&net, 1, &done, "the changes");
    assert_read_back(&net, 1, &lost_path, "vt0 went away");
    let log = target.stop();
    assert!(!log.contains("ERROR aoe_xdp: "), "{log}");
    let served_again = pauses(&log).len();
    assert!(served_again >= handovers, "{log}");
    assert_eq!(
        log.matches("unchanged: its sockets stay interface=vt1")
            .count(),
        served_again,
        "{log}"
    );
}
