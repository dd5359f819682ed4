//! The Linux kernel's own AoE initiator (`aoe.ko` of Debian's stock kernel, booted in QEMU)
//! against the real `aoe-xdp` binary.
//!
//! Network: the target's veth (one queue, MTU 1500) in one namespace; its peer in a second
//! namespace, bridged to the tap of QEMU's virtio-net. No IP addresses, IPv6 off. The guest
//! (see `xtask/src/guest.rs`, included here) runs a busybox script as init and reports on its
//! serial console; this test asserts on what it printed and on the backing files:
//! 1. both exported devices are discovered as `/dev/etherd/e1.N` with the exported size;
//! 2. a random pattern written with `dd` (O_DIRECT) to the last 4 MiB of `e1.1` reads back
//!    identical in the guest, and sits at exactly that offset of the backing file;
//! 3. an ext4 file system made on `e1.2` holds files that survive `sync`, a SIGKILL of the
//!    target right after that `sync`, a restart on the same backing files and state
//!    directory (the guest's reads, sent while the target is dead, are retransmitted by the
//!    driver until the new target answers), `umount` and `e2fsck -fn` in the guest and on the
//!    host; `debugfs` on the host finds the pattern in the file system.
//!
//! Handshake: the guest prints `@@ synced` after `sync` and waits for a line on its console;
//! the host kills the target, types `go`, watches the tap until the guest has sent one ATA
//! request three times (retransmissions), and only then restarts the target.
//!
//! Needs root, `qemu-system-x86_64`, `busybox-static`, e2fsprogs and the first time the
//! package registry (`apt-get download` of the kernel, cached in `target/kernel-initiator/`).
//! Prints "skipping: ..." without them, or fails with `AOE_XDP_REQUIRE_PRIV=1`. About 15 s
//! here (the guest boots in 2 s under TCG; most of the rest is the guest's writes, each
//! acknowledged once durable). Hazards: the guest is killed by its pid when the
//! test ends or passes its hard timeout; the namespaces (with the tap and the bridge) are
//! deleted last.

mod common;
#[path = "../xtask/src/guest.rs"]
mod guest;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aoe_xdp::wire::{AoeCommand, AoePacket, AtaPacket, EthernetFrame, ETHERTYPE_AOE};
use common::netns::PacketSocket;
use common::target::{DeviceSpec, TargetDir};
use netns_rig::Netns;

/// `e1.1`: raw, the pattern goes at its end.
const RAW_SECTORS: u64 = 32 * 1024;
/// `e1.2`: ext4.
const FS_SECTORS: u64 = 64 * 1024;
/// The pattern: 4 MiB, written in 64 KiB blocks.
const PATTERN_BYTES: usize = 4 << 20;
const BLOCK_BYTES: usize = 64 << 10;
/// Where the pattern starts on `e1.1`: its last [`PATTERN_BYTES`].
const PATTERN_OFFSET: u64 = RAW_SECTORS * 512 - PATTERN_BYTES as u64;
// `dd` moves whole blocks, at a whole number of blocks from the start.
const _: () = assert!(PATTERN_BYTES % BLOCK_BYTES == 0);
const _: () = assert!(PATTERN_OFFSET % BLOCK_BYTES as u64 == 0);
/// QEMU is killed this long after boot whatever happens.
const HARD_TIMEOUT: Duration = Duration::from_secs(170);
/// How long the target may stay dead waiting for the guest to retransmit.
const RETRANSMIT_WAIT: Duration = Duration::from_secs(20);
/// How often one request (direction, LBA, sector count) must be seen while the target is
/// dead: twice could be two reads of the same sectors, three times is a retransmission.
const SENDS_OF_ONE_REQUEST: u32 = 3;

/// Deterministic pseudo-random bytes (splitmix64): no two sectors alike, nothing zero for long.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The guest's checks, run by its init after `aoe` is loaded (see `guest::init_script`).
fn guest_body() -> String {
    let seek = PATTERN_OFFSET / BLOCK_BYTES as u64;
    let count = PATTERN_BYTES / BLOCK_BYTES;
    format!(
        r#"
P=/pattern.bin
for d in e1.1 e1.2; do
    wait_dev $d
    say "size $d $(cat "/sys/block/etherd!$d/size")"
done
say "pattern-md5 $(md5sum < $P | cut -d' ' -f1)"
dd if=$P of=/dev/etherd/e1.1 bs={BLOCK_BYTES} seek={seek} oflag=direct 2>/tmp/dd.log || fail "dd to e1.1: $(cat /tmp/dd.log)"
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/etherd/e1.1 of=/tmp/back.bin bs={BLOCK_BYTES} skip={seek} count={count} iflag=direct 2>/tmp/dd.log || fail "dd from e1.1: $(cat /tmp/dd.log)"
say "readback-md5 $(md5sum < /tmp/back.bin | cut -d' ' -f1)"
cmp -s /tmp/back.bin $P
say "readback-cmp $?"
rm /tmp/back.bin
say "mkfs-start $(now)"
/sbin/mke2fs -t ext4 -F -q -E lazy_itable_init=0,lazy_journal_init=0 /dev/etherd/e1.2 || fail "mke2fs"
mount -t ext4 /dev/etherd/e1.2 /mnt || fail "mount"
mkdir /mnt/dir
cp $P /mnt/a.bin || fail "cp"
dd if=/dev/urandom of=/mnt/b.bin bs={BLOCK_BYTES} count=16 2>/dev/null || fail "dd to b.bin"
i=0
while [ $i -lt 20 ]; do
    i=$((i + 1))
    echo "small file $i" > /mnt/dir/f$i
done
sums() {{
    find /mnt -type f | sort | while read -r f; do
        say "$1 $(md5sum < "$f" | cut -d' ' -f1) $f"
    done
}}
sums sum-before
sync
say "synced $(now)"
read -r reply
say "resumed $reply $(now)"
echo 3 > /proc/sys/vm/drop_caches
sums sum-after
say "read-back $(now)"
umount /mnt || fail "umount"
/sbin/e2fsck -fn /dev/etherd/e1.2 > /tmp/fsck.log 2>&1
rc=$?
sed 's/^/fsck: /' /tmp/fsck.log
say "fsck $rc"
"#
    )
}

/// Every log of the target's runs, for failure messages.
fn target_logs(dir: &TargetDir) -> String {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir.path())
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("run-"))
    });
    logs.sort();
    logs.iter()
        .map(|path| {
            format!(
                "--- {} ---\n{}",
                path.display(),
                fs::read_to_string(path).unwrap_or_default().trim_end()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An ATA request seen on the wire: (write, LBA, sector count).
type AtaKey = (bool, u64, u8);

/// The ATA request in `frame` if it is one the guest sent.
fn ata_request(frame: &[u8]) -> Option<AtaKey> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != ETHERTYPE_AOE {
        return None;
    }
    let aoe = AoePacket::new_checked(ethernet.payload()).ok()?;
    if aoe.is_response() || aoe.command() != AoeCommand::Ata {
        return None;
    }
    let ata = AtaPacket::new_checked(aoe.payload()).ok()?;
    Some((ata.is_write(), ata.lba(), ata.sector_count()))
}

/// Watches the guest's requests on `socket` until one ATA request has been sent
/// [`SENDS_OF_ONE_REQUEST`] times (the driver's retransmissions after timeouts), at most
/// `timeout`. Returns how many ATA requests were seen and the repeated one.
fn wait_for_retransmission(socket: &PacketSocket, timeout: Duration) -> (usize, Option<AtaKey>) {
    let deadline = Instant::now() + timeout;
    let mut seen: HashMap<AtaKey, u32> = HashMap::new();
    let mut count = 0;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(frame) = socket.recv_matching(left, |f| ata_request(f).is_some()) else {
            break;
        };
        let key = ata_request(&frame).expect("filtered");
        count += 1;
        let times = seen.entry(key).or_default();
        *times += 1;
        if *times >= SENDS_OF_ONE_REQUEST {
            return (count, Some(key));
        }
    }
    (count, None)
}

/// The value of the only result line `key`, or a panic naming it.
fn single<'a>(results: &'a [(String, String)], key: &str, report: &dyn Fn() -> String) -> &'a str {
    let values: Vec<&str> = results
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        values.len(),
        1,
        "expected one `@@ {key}` line, got {values:?}\n{}",
        report()
    );
    values[0]
}

/// path → md5 from the guest's `KEY md5 path` lines.
fn sums(results: &[(String, String)], key: &str) -> BTreeMap<String, String> {
    results
        .iter()
        .filter(|(k, _)| k == key)
        .filter_map(|(_, v)| {
            let (md5, path) = v.split_once(' ')?;
            Some((path.to_owned(), md5.to_owned()))
        })
        .collect()
}

fn run_host(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|error| panic!("cannot run {cmd:?}: {error}"))
}

/// The kernel, or `None` after saying why the test cannot run.
fn prerequisites() -> Option<guest::Kernel> {
    let tools = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
        ("mke2fs", "e2fsprogs"),
        ("e2fsck", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("apt-get", "apt"),
        ("dpkg", "dpkg"),
    ];
    guest::kernel_for_test("the kernel-initiator test", &tools)
}

/// The guest's initramfs in `work`: busybox, mke2fs and e2fsck, the pattern, the checks.
fn initramfs(kernel: &guest::Kernel, pattern: &[u8], work: &Path) -> PathBuf {
    let mut initramfs = guest::Initramfs::new(kernel).unwrap_or_else(|e| panic!("{e:#}"));
    for binary in ["/sbin/mke2fs", "/sbin/e2fsck"] {
        initramfs
            .host_binary(binary)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    if let Ok(conf) = fs::read("/etc/mke2fs.conf") {
        initramfs.data("etc/mke2fs.conf", conf);
    }
    initramfs.data("pattern.bin", pattern.to_vec());
    initramfs.init(&guest::init_script(&guest_body()));
    let image = work.join("initramfs.cpio");
    initramfs.write(&image).unwrap_or_else(|e| panic!("{e:#}"));
    image
}

/// Checks 1 to 4 on what the guest printed; `repeated` is the request seen retransmitted
/// while the target was dead, out of `requests`.
fn check_guest(
    results: &[(String, String)],
    repeated: Option<AtaKey>,
    requests: usize,
    report: &dyn Fn() -> String,
) {
    // 1. Discovery and size.
    for (name, sectors) in [("e1.1", RAW_SECTORS), ("e1.2", FS_SECTORS)] {
        let found = results
            .iter()
            .find(|(k, v)| k == "size" && v.starts_with(&format!("{name} ")))
            .map(|(_, v)| v.clone());
        assert_eq!(
            found,
            Some(format!("{name} {sectors}")),
            "/sys/block/etherd!{name}/size in the guest\n{}",
            report()
        );
    }
    // 2. The pattern read back in the guest.
    let pattern_md5 = single(results, "pattern-md5", report);
    assert_eq!(pattern_md5.len(), 32, "md5 of the pattern: {pattern_md5:?}");
    assert_eq!(
        single(results, "readback-md5", report),
        pattern_md5,
        "the pattern read back from /dev/etherd/e1.1 differs\n{}",
        report()
    );
    assert_eq!(
        single(results, "readback-cmp", report),
        "0",
        "cmp\n{}",
        report()
    );
    // 3 and 4. The files before the kill and after the restart, and the file system.
    let before = sums(results, "sum-before");
    let after = sums(results, "sum-after");
    assert_eq!(
        before.len(),
        22,
        "files written in the guest: {before:?}\n{}",
        report()
    );
    assert_eq!(
        before.get("/mnt/a.bin").map(String::as_str),
        Some(pattern_md5),
        "a.bin is a copy of the pattern\n{}",
        report()
    );
    assert_eq!(
        after,
        before,
        "files read back after the target was killed and restarted differ\n{}",
        report()
    );
    assert!(
        repeated.is_some(),
        "the guest sent {requests} ATA requests in {RETRANSMIT_WAIT:?} while the target was \
         dead, none of them {SENDS_OF_ONE_REQUEST} times: the outage did not exercise the \
         driver's retransmission\n{}",
        report()
    );
    assert_eq!(
        single(results, "fsck", report),
        "0",
        "e2fsck -fn in the guest\n{}",
        report()
    );
}

/// Checks on the backing files once the guest is done: the pattern at its offset of `e1.1`
/// and nothing else, a clean ext4 on `e1.2` (host `e2fsck -fn`) whose `/a.bin` is the
/// pattern (host `debugfs`).
fn check_backing_files(dir: &TargetDir, pattern: &[u8]) {
    let raw = fs::read(dir.disk(0)).expect("read e1.1's backing file");
    let offset = usize::try_from(PATTERN_OFFSET).expect("offset fits");
    assert_eq!(
        raw.len(),
        offset + PATTERN_BYTES,
        "e1.1's backing file size"
    );
    assert!(
        raw[..offset].iter().all(|&b| b == 0),
        "e1.1's backing file has data before the pattern (first at byte {:?})",
        raw[..offset].iter().position(|&b| b != 0)
    );
    assert!(
        raw[offset..] == *pattern,
        "e1.1's backing file does not hold the pattern at {PATTERN_OFFSET} (first difference \
         at byte {:?} of it)",
        raw[offset..].iter().zip(pattern).position(|(a, b)| a != b)
    );
    let fsck = run_host(Command::new("e2fsck").arg("-fn").arg(dir.disk(1)));
    assert!(
        fsck.status.success(),
        "e2fsck -fn on the host: {}\n{}{}",
        fsck.status,
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let cat = run_host(
        Command::new("debugfs")
            .args(["-R", "cat /a.bin"])
            .arg(dir.disk(1)),
    );
    assert!(
        cat.status.success() && cat.stdout == pattern,
        "debugfs cat /a.bin on the host: {} ({} bytes, {} expected) {}",
        cat.status,
        cat.stdout.len(),
        pattern.len(),
        String::from_utf8_lossy(&cat.stderr)
    );
}

#[test]
fn linux_aoe_initiator_discovers_writes_and_survives_a_killed_target() {
    let Some(kernel) = prerequisites() else {
        return;
    };
    let started = Instant::now();
    // Declared first, so that they go last: after QEMU and the target have stopped.
    let target_ns = Netns::unique("kt").unwrap();
    let guest_ns = Netns::unique("kg").unwrap();
    guest::tap_wire(&target_ns, "aoe0", &guest_ns).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = TargetDir::new(
        &["aoe0"],
        "",
        &[
            DeviceSpec::new(1, 1, RAW_SECTORS),
            DeviceSpec::new(1, 2, FS_SECTORS),
        ],
    );
    let target = dir.start(&target_ns);
    let work = tempfile::Builder::new()
        .prefix("aoe-xdp-guest-")
        .tempdir()
        .expect("temporary directory");
    let pattern = pattern(PATTERN_BYTES);
    let image = initramfs(&kernel, &pattern, work.path());
    let mut vm = guest::Guest::boot(
        &kernel,
        &guest::GuestSpec {
            netns: guest_ns.name(),
            tap: Some("tap0"),
            host_root: false,
            cpus: 1,
            append: "",
            initramfs: &image,
            log_dir: work.path(),
            memory_mib: 256,
            core: None,
            hard_timeout: HARD_TIMEOUT,
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let wait = |vm: &guest::Guest, key: &str, seconds: u64| -> String {
        vm.wait_for(key, Duration::from_secs(seconds))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", target_logs(&dir)))
    };
    eprintln!("guest booted: {}", wait(&vm, "aoe-loaded", 60));
    eprintln!("guest synced: {}", wait(&vm, "synced", 90));

    // The guest's sync returned: every write it made was acknowledged. Kill the target now,
    // let the guest read (it blocks, and retransmits), and start the target again.
    target.kill();
    let killed_at = Instant::now();
    let tap = PacketSocket::open(&guest_ns, "tap0");
    vm.send_line("go").unwrap_or_else(|e| panic!("{e:#}"));
    let (requests, repeated) = wait_for_retransmission(&tap, RETRANSMIT_WAIT);
    let target = dir.start(&target_ns);
    eprintln!(
        "target dead for {:?}; the guest sent {requests} ATA requests meanwhile, repeated: \
         {repeated:?}",
        killed_at.elapsed()
    );
    eprintln!("guest read back: {}", wait(&vm, "read-back", 60));
    wait(&vm, "end", 30);
    let status = vm
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let report = || format!("{}\n{}", vm.tail(80), target_logs(&dir));
    assert!(status.success(), "QEMU exited with {status}\n{}", report());
    check_guest(&guest::results(&vm.console()), repeated, requests, &report);
    // The target served to the end and stops cleanly; the files hold what the guest wrote.
    target.stop();
    check_backing_files(&dir, &pattern);
    eprintln!(
        "kernel initiator test took {:?} (Linux {} from {})",
        started.elapsed(),
        kernel.release,
        kernel.package
    );
}
