//! `config/aoe-xdp.service` run by a real systemd, sandbox and all: the unit's hardening
//! (ProtectSystem=strict, PrivateTmp, RestrictAddressFamilies, NoNewPrivileges, five ambient
//! capabilities, a system user) must not break XDP, AF_XDP or io_uring.
//!
//! systemd cannot run as PID 1 on this host (and must never be booted on the host's own root
//! file system: its boot-time cleanup would empty the host's /tmp), so the test boots a guest:
//! Debian's stock kernel in QEMU (TCG), whose init mounts the host's root file system, shared
//! read-only by QEMU (9p), under a RAM overlay, installs the binary and the unit as the unit's
//! header says, and hands over to the host's own systemd (`systemd.unit=aoe-test.target`).
//! `aoe-test.service` then runs [`RUN`] in the guest, which reports `@@ KEY VALUE` lines on
//! the serial console, and this test asserts on them:
//! 1. `systemd-analyze verify` accepts the unit; `systemctl start` returns once the target
//!    said READY=1 (Type=notify) and the service is `active running`;
//! 2. the process runs as the system user `aoe-xdp` with exactly the unit's five capabilities
//!    (effective, permitted, ambient, bounding), no new privileges, a seccomp filter, a
//!    read-only root and a writable `/srv/aoe` in its mount namespace, a private /tmp;
//! 3. it serves through AF_XDP (the XDP program on the interface, an AF_XDP socket, no
//!    AF_PACKET or synchronous-I/O fallback in its log): our initiator writes self-describing
//!    blocks and reads every byte back (`aoe-bench check`), and `aoe-xdp ctl` reaches the
//!    control socket in the unit's RuntimeDirectory;
//! 4. `systemctl reload` with a second device: the same process serves it, verified; a broken
//!    file is refused (logged) and the running configuration keeps serving, verified;
//! 5. the watchdog is fed: past WatchdogSec the process is the same, never restarted;
//! 6. a SIGKILL: `Restart=on-failure` starts it again and the new process serves both devices
//!    through AF_XDP, verified (the dead one's program went with its BPF link; as a netlink
//!    attachment it stayed, and the unit's capabilities could not remove it: AF_PACKET);
//! 7. `systemctl stop` ends it with exit status 0 and the XDP program detached.
//!
//! Needs root, `qemu-system-x86_64`, `busybox-static`, the host's systemd, and the first time
//! the package registry (`apt-get download` of the kernel, cached in `target/kernel-initiator/`,
//! shared with `tests/kernel_initiator.rs`). Prints "skipping: ..." without them, or fails with
//! `AOE_XDP_REQUIRE_PRIV=1`. About a minute here (systemd boots in ~15 s under TCG).
//! Hazards: nothing in the guest can write to the host (QEMU refuses writes to the share);
//! QEMU runs in a namespace of its own without a network device and is killed by its pid when
//! the test ends or passes its hard timeout.

#[path = "../xtask/src/guest.rs"]
#[allow(
    dead_code,
    reason = "the kernel initiator's parts (tap, aoe init) are not used here"
)]
mod guest;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netns_rig::Netns;

/// QEMU is killed this long after boot whatever happens.
const HARD_TIMEOUT: Duration = Duration::from_secs(420);
/// The unit under test.
const UNIT: &str = include_str!("../config/aoe-xdp.service");
/// Where the guest's init puts the test's files (`run.sh` and the configurations).
const TEST_DIR: &str = "/usr/local/lib/aoe-test";
/// CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_IPC_LOCK (14), CAP_PERFMON (38), CAP_BPF (39): the
/// unit's AmbientCapabilities and CapabilityBoundingSet, as /proc/PID/status prints them.
const UNIT_CAPS: &str = "000000c000007000";

/// The guest's PID 1 until systemd: modules, the overlay root, the installation, systemd.
const INIT: &str = r#"#!/bin/busybox sh
# PID 1 of the systemd guest until switch_root (written by tests/systemd_unit.rs).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "@@ $*"; }
fail() {
    say "fail $*"
    dmesg | tail -n 40 | sed 's/^/dmesg: /'
    poweroff -f
}
say "booted $(uname -r) $(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /modules/order); do
    [ "$m" = aoe ] && continue
    insmod "/modules/$m.ko" || fail "insmod $m"
done
. /stage/paths
mkdir -p /lower /upper /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 "$HOST_ROOT_TAG" /lower \
    || fail "mount the host's root (9p)"
mount -t tmpfs -o size=900m tmpfs /upper || fail "mount tmpfs"
mkdir /upper/data /upper/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work /newroot \
    || fail "mount the overlay"
# The installation the unit's header describes (the user and files: run.sh).
cp "/lower$BIN" /newroot/usr/local/bin/aoe-xdp && chmod 755 /newroot/usr/local/bin/aoe-xdp \
    || fail "install aoe-xdp"
cp "/lower$BENCH" /newroot/usr/local/bin/aoe-bench && chmod 755 /newroot/usr/local/bin/aoe-bench \
    || fail "install aoe-bench"
cp /stage/aoe-xdp.service /stage/aoe-test.service /stage/aoe-test.target \
    /newroot/etc/systemd/system/ || fail "install the units"
mkdir -p "/newroot$TEST_DIR" && cp /stage/test/* "/newroot$TEST_DIR/" \
    && chmod 755 "/newroot$TEST_DIR/run.sh" || fail "install the checks"
# The host's container marker: systemd would take the guest for a container and ignore the
# kernel command line (systemd.unit=).
rm -f /newroot/.dockerenv
# A /tmp of its own, as with tmp.mount: systemd-tmpfiles would otherwise walk (and hide, in
# the overlay) everything in the host's /tmp at boot.
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || fail "mount /tmp"
umount /proc /sys /dev
exec switch_root /newroot /lib/systemd/systemd
"#;

/// The checks, run by `aoe-test.service` under systemd in the guest.
const RUN: &str = r#"#!/bin/sh
# The checks of tests/systemd_unit.rs, run by systemd in the guest (aoe-test.service).
exec > /dev/ttyS0 2>&1
T=$(dirname "$0")
SOCK=/run/aoe-xdp/aoe-xdp.sock
say() { echo "@@ $*"; }
now() { cut -d' ' -f1 /proc/uptime; }
fail() {
    say "fail $*"
    systemctl status aoe-xdp --no-pager -l 2>&1 | sed 's/^/status: /'
    journalctl -u aoe-xdp --no-pager -o cat 2>&1 | tail -n 60 | sed 's/^/journal: /'
    systemctl poweroff -ff
    exit 1
}
show() { systemctl show aoe-xdp -p "$1" --value; }
check() {
    aoe-bench check -i vc -t "$1" --sectors 2048 --generation "$2" > /tmp/check.log 2>&1 \
        || { sed 's/^/check: /' /tmp/check.log; fail "aoe-bench check $1 (generation $2)"; }
    say "checked $1 $2"
}
say "systemd-up $(now)"

# Installed as the unit's header says; the binary and the unit were put in place by init.
useradd --system --no-create-home --shell /usr/sbin/nologin aoe-xdp || fail useradd
mkdir -p /srv/aoe && truncate -s 16M /srv/aoe/e1.1.img /srv/aoe/e1.2.img || fail "backing files"
chown aoe-xdp:aoe-xdp /srv/aoe/e1.1.img /srv/aoe/e1.2.img || fail chown
cp "$T/one.toml" /etc/aoe-xdp.toml || fail "config"
ip link add vt numrxqueues 1 numtxqueues 1 type veth peer name vc numrxqueues 1 numtxqueues 1 \
    || fail "ip link add"
ip link set vt up && ip link set vc up || fail "ip link set up"
systemd-analyze verify /etc/systemd/system/aoe-xdp.service > /tmp/verify.log 2>&1 \
    || { sed 's/^/verify: /' /tmp/verify.log; fail "systemd-analyze verify"; }
say "verified"
systemctl daemon-reload
started=$(now)
systemctl start aoe-xdp || fail "systemctl start"
say "state $(show ActiveState) $(show SubState)"
PID=$(show MainPID)
[ "$PID" -gt 0 ] 2>/dev/null || fail "no MainPID"
say "pid $PID"
say "user $(id -nu "$(awk '$1 == "Uid:" {print $2}' /proc/$PID/status)")"
for cap in CapEff CapPrm CapAmb CapBnd; do
    say "$cap $(awk -v k="$cap:" '$1 == k {print $2}' /proc/$PID/status)"
done
say "nonewprivs $(awk '$1 == "NoNewPrivs:" {print $2}' /proc/$PID/status)"
say "seccomp $(awk '$1 == "Seccomp:" {print $2}' /proc/$PID/status)"
say "root-mount $(awk '$5 == "/" {print $6}' /proc/$PID/mountinfo | tail -n 1)"
say "srv-mount $(awk '$5 == "/srv/aoe" {print $6}' /proc/$PID/mountinfo | tail -n 1)"
if [ "$(stat -L -c %d:%i /proc/$PID/root/tmp)" = "$(stat -c %d:%i /tmp)" ]; then
    say "private-tmp no"
else
    say "private-tmp yes"
fi
say "xdp-program $(ip -d link show vt | grep -c 'prog/xdp')"

check 1.1 1
aoe-xdp ctl --socket "$SOCK" stats > /tmp/stats.log 2>&1 \
    || { sed 's/^/ctl: /' /tmp/stats.log; fail "aoe-xdp ctl stats"; }
say "ctl ok"

# Reload with a second device: the same process serves both.
cp "$T/two.toml" /etc/aoe-xdp.toml
systemctl reload aoe-xdp || fail "systemctl reload"
i=0
until aoe-bench discover -i vc 2>/dev/null | grep -q '1\.2'; do
    i=$((i + 1))
    [ $i -gt 30 ] && fail "e1.2 not served 30 s after the reload"
    sleep 1
done
check 1.2 2
say "after-reload $(show ActiveState) $(show MainPID)"

# A broken file is refused; the running configuration keeps serving.
cp "$T/bad.toml" /etc/aoe-xdp.toml
systemctl reload aoe-xdp || fail "systemctl reload (bad file)"
i=0
until journalctl -u aoe-xdp -o cat | grep -q 'reload refused'; do
    i=$((i + 1))
    [ $i -gt 30 ] && fail "no 'reload refused' 30 s after reloading a broken file"
    sleep 1
done
check 1.1 3
check 1.2 3
say "after-bad $(show ActiveState) $(show MainPID)"

# Past WatchdogSec (10 s) since the start: fed, so never restarted.
while [ "$(awk -v s="$started" '{print ($1 - s < 12)}' /proc/uptime)" = 1 ]; do sleep 1; done
say "watchdog $(show NRestarts) $(show MainPID)"

# A crash: Restart=on-failure starts it again (RestartSec=2s) and the new process serves.
cp "$T/two.toml" /etc/aoe-xdp.toml
kill -KILL "$PID"
i=0
while :; do
    NEW=$(show MainPID)
    [ "$(show ActiveState)" = active ] && [ "$NEW" != "$PID" ] && [ "$NEW" != 0 ] && break
    i=$((i + 1))
    [ $i -gt 60 ] && fail "not running again 60 s after a SIGKILL"
    sleep 1
done
say "restarted $(show NRestarts)"
check 1.1 4
check 1.2 4

journalctl -u aoe-xdp -o cat > /tmp/journal.log
say "af-xdp-sockets $(grep -c 'AF_XDP socket ready' /tmp/journal.log)"
grep -E 'WARN|ERROR' /tmp/journal.log | sed 's/^/@@ logged /'

systemctl stop aoe-xdp
say "stopped $(show Result) $(show ExecMainCode) $(show ExecMainStatus)"
say "xdp-program-after-stop $(ip -d link show vt | grep -c 'prog/xdp')"
say "end $(now)"
systemctl poweroff -ff
"#;

/// The unit that runs [`RUN`], and the target the guest boots into.
const TEST_SERVICE: &str = "[Unit]
Description=tests/systemd_unit.rs: the checks

[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/usr/local/lib/aoe-test/run.sh
";
const TEST_TARGET: &str = "[Unit]
Description=tests/systemd_unit.rs
Requires=aoe-test.service
";

fn config(devices: &[u8], extra: &str) -> String {
    let mut text = format!(
        "[target]\ninterfaces = [\"vt\"]\ncontrol-socket = \"/run/aoe-xdp/aoe-xdp.sock\"\n{extra}\n"
    );
    for slot in devices {
        text.push_str(&format!(
            "\n[[device]]\npath = \"/srv/aoe/e1.{slot}.img\"\nshelf = 1\nslot = {slot}\n"
        ));
    }
    text
}

/// The kernel, or `None` after saying why the test cannot run.
fn prerequisites() -> Option<guest::Kernel> {
    let tools = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
        ("/lib/systemd/systemd", "systemd"),
        ("systemd-analyze", "systemd"),
        ("useradd", "passwd"),
        ("apt-get", "apt"),
    ];
    guest::kernel_for_test("the systemd unit test", &tools)
}

/// The single value of result `key`.
fn single<'a>(results: &'a BTreeMap<String, Vec<String>>, key: &str, report: &str) -> &'a str {
    match results.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("expected one `@@ {key}` line, got {other:?}\n{report}"),
    }
}

#[test]
fn the_systemd_unit_serves_verified_io_under_its_sandbox() {
    let Some(kernel) = prerequisites() else {
        return;
    };
    let started = Instant::now();
    let ns = Netns::unique("sd").unwrap();
    guest::isolate(ns.name()).unwrap_or_else(|e| panic!("{e:#}"));
    let work = tempfile::Builder::new()
        .prefix("aoe-xdp-systemd-")
        .tempdir()
        .expect("temporary directory");

    let mut initramfs = guest::Initramfs::new(&kernel).unwrap_or_else(|e| panic!("{e:#}"));
    let paths = format!(
        "BIN='{}'\nBENCH='{}'\nHOST_ROOT_TAG='{}'\nTEST_DIR='{TEST_DIR}'\n",
        env!("CARGO_BIN_EXE_aoe-xdp"),
        env!("CARGO_BIN_EXE_aoe-bench"),
        guest::HOST_ROOT_TAG,
    );
    initramfs.data("stage/paths", paths.into_bytes());
    initramfs.data("stage/aoe-xdp.service", UNIT.as_bytes().to_vec());
    initramfs.data("stage/aoe-test.service", TEST_SERVICE.as_bytes().to_vec());
    initramfs.data("stage/aoe-test.target", TEST_TARGET.as_bytes().to_vec());
    initramfs.data("stage/test/run.sh", RUN.as_bytes().to_vec());
    initramfs.data("stage/test/one.toml", config(&[1], "").into_bytes());
    initramfs.data("stage/test/two.toml", config(&[1, 2], "").into_bytes());
    initramfs.data(
        "stage/test/bad.toml",
        config(&[1, 2], "no-such-key = true").into_bytes(),
    );
    initramfs.init(INIT);
    let image = work.path().join("initramfs.cpio");
    initramfs.write(&image).unwrap_or_else(|e| panic!("{e:#}"));

    let mut vm = guest::Guest::boot(
        &kernel,
        &guest::GuestSpec {
            netns: ns.name(),
            tap: None,
            host_root: true,
            // The target's default idle mode spins a worker on a core: leave one for the rest.
            cpus: 2,
            append: "systemd.unit=aoe-test.target systemd.show_status=0",
            initramfs: &image,
            log_dir: work.path(),
            memory_mib: 1536,
            core: None,
            hard_timeout: HARD_TIMEOUT,
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let wait = |key: &str, seconds: u64| -> String {
        vm.wait_for(key, Duration::from_secs(seconds))
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    eprintln!("guest booted: {}", wait("booted", 60));
    eprintln!("systemd ran the checks at {} s", wait("systemd-up", 180));
    eprintln!("checks ended at {} s", wait("end", 300));
    let status = vm
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report = vm.tail(120);
    assert!(status.success(), "QEMU exited with {status}\n{report}");

    let mut results: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in guest::results(&vm.console()) {
        results.entry(key).or_default().push(value);
    }
    let one = |key: &str| single(&results, key, &report);
    // 1. Accepted and started: Type=notify returned after READY=1.
    assert!(results.contains_key("verified"), "{report}");
    assert_eq!(one("state"), "active running", "{report}");
    // 2. Who it runs as, with what, inside what.
    let pid = one("pid");
    assert_eq!(one("user"), "aoe-xdp", "{report}");
    for cap in ["CapEff", "CapPrm", "CapAmb", "CapBnd"] {
        assert_eq!(one(cap), UNIT_CAPS, "{cap}\n{report}");
    }
    assert_eq!(one("nonewprivs"), "1", "{report}");
    assert_eq!(one("seccomp"), "2", "a seccomp filter\n{report}");
    let option = |options: &str, wanted: &str| options.split(',').any(|o| o == wanted);
    assert!(
        option(one("root-mount"), "ro"),
        "ProtectSystem=strict\n{report}"
    );
    assert!(option(one("srv-mount"), "rw"), "ReadWritePaths\n{report}");
    assert_eq!(one("private-tmp"), "yes", "{report}");
    // 3. Served through AF_XDP, verified, with the control socket reachable.
    assert_eq!(one("xdp-program"), "1", "{report}");
    assert!(
        one("af-xdp-sockets").parse::<u32>().is_ok_and(|n| n >= 2),
        "one AF_XDP socket per start (two starts)\n{report}"
    );
    let logged = results.get("logged").cloned().unwrap_or_default();
    for line in &logged {
        assert!(
            !line.contains("AF_PACKET") && !line.contains("io_uring unavailable"),
            "a fallback under the sandbox: {line}\n{report}"
        );
    }
    let checked = results.get("checked").cloned().unwrap_or_default();
    for expected in ["1.1 1", "1.2 2", "1.1 3", "1.2 3", "1.1 4", "1.2 4"] {
        assert!(
            checked.iter().any(|c| c == expected),
            "no verified check {expected}: {checked:?}\n{report}"
        );
    }
    assert_eq!(one("ctl"), "ok", "{report}");
    // 4. Reloads: the same process throughout; the broken file was refused and logged.
    assert_eq!(one("after-reload"), format!("active {pid}"), "{report}");
    assert_eq!(one("after-bad"), format!("active {pid}"), "{report}");
    assert!(
        logged.iter().any(|line| line.contains("reload refused")),
        "{logged:?}\n{report}"
    );
    // 5. Fed watchdog: no restart past WatchdogSec.
    assert_eq!(one("watchdog"), format!("0 {pid}"), "{report}");
    // 6. Restarted after a SIGKILL, through AF_XDP again (the killed process's program went
    //    with its link: no fallback logged above), both devices served.
    assert_eq!(one("restarted"), "1", "{report}");
    // 7. A clean stop.
    let stopped: Vec<&str> = one("stopped").split(' ').collect();
    assert!(
        matches!(stopped.as_slice(), ["success", _, "0"]),
        "Result and ExecMainStatus after systemctl stop: {stopped:?}\n{report}"
    );
    assert_eq!(one("xdp-program-after-stop"), "0", "{report}");
    eprintln!(
        "systemd unit test took {:?} (Linux {}); logged: {logged:?}",
        started.elapsed(),
        kernel.release
    );
}
