//! `cargo xtask bench --kernel-initiator`: sequential throughput through the Linux kernel's own
//! `aoe` driver, aoe-xdp against vblade.
//!
//! The guest of `tests/kernel_initiator.rs` ([`crate::guest`]: Debian's stock kernel in QEMU
//! with TCG, one vCPU, its virtio-net on a tap bridged to the target's veth, MTU 1500) writes
//! and then reads [`DISK_MIB`] MiB of `/dev/etherd/e1.1` with busybox `dd bs=1M` and
//! `oflag=direct`/`iflag=direct` (so the guest's page cache measures nothing; the write is
//! followed by `sync`), [`ROUNDS`] times, and reports the times from its `/proc/uptime`
//! (10 ms resolution). Each system gets a fresh backing file of that size under /var/tmp
//! (written full of zeros and synced first, so that no round allocates blocks), its own
//! namespaces and a fresh boot of the same guest: the target pinned to core
//! [`super::rig::TARGET_CORE`], QEMU to core [`super::rig::INITIATOR_CORE`].
//!
//! Systems, each with its defaults: aoe-xdp from a configuration that sets only the interface,
//! the worker core and the state and control paths (so `durability = "sync"`: every write is
//! acknowledged once it is durable, `idle = "poll"` with a 50 µs spin, buffer count 64), Debian's `vblade 1 1 IF
//! FILE` (buffered writes, buffer count 16), and, to show what the durability costs, aoe-xdp
//! with `durability = "writeback"`. The table shows the median round of each and the ratio
//! aoe-xdp ÷ vblade.
//!
//! What bounds the figures: the guest is emulated (TCG), so its driver and virtio-net cost
//! far more per frame than on hardware; the rates compare the targets under one slow
//! initiator, not what either could serve.
//!
//! Everything created (namespaces with their taps and bridges, processes, the scratch
//! directory) is removed at the end, also on failure; QEMU and the targets are stopped by
//! their own pids. Logs (console, QEMU, target) stay in `target/bench/kernel-initiator/`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::rig::{INITIATOR_CORE, MTU, TARGET_CORE};
use crate::deps;
use crate::guest::{self, Guest, GuestSpec, Initramfs, Kernel};
use crate::netns::{veth_pair, Daemon, Netns};
use crate::util::{cargo, run, target_dir, ScratchDir};

/// Size of the backing file and of each `dd`.
const DISK_MIB: u32 = 64;
/// Write-then-read rounds per system; the table shows the median.
const ROUNDS: usize = 3;
/// QEMU is killed after this long whatever happens (a round takes well under a minute).
const GUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// A system under test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum System {
    /// aoe-xdp with its defaults (`durability = "sync"`).
    Xdp,
    /// Debian's vblade with its defaults.
    Vblade,
    /// aoe-xdp with `durability = "writeback"` (acknowledges writes from the page cache, as
    /// vblade does).
    XdpWriteback,
}

impl System {
    const ALL: [System; 3] = [System::Xdp, System::Vblade, System::XdpWriteback];

    fn label(self) -> &'static str {
        match self {
            System::Xdp => "aoe-xdp (defaults: sync)",
            System::Vblade => "vblade (defaults)",
            System::XdpWriteback => "aoe-xdp (writeback)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            System::Xdp => "xdp",
            System::Vblade => "vblade",
            System::XdpWriteback => "xdp-writeback",
        }
    }
}

/// One round's rates, in MB/s (10^6 bytes).
#[derive(Clone, Copy, Debug)]
struct Round {
    write: f64,
    read: f64,
}

/// Runs the measurement and prints the table.
pub fn bench() -> Result<()> {
    deps::ensure_packages()?;
    run(cargo().args(["build", "--release", "--bins"]))?;
    let aoe_xdp = target_dir().join("release/aoe-xdp");
    let kernel = guest::fetch_kernel(&target_dir().join("kernel-initiator"))
        .context("getting Debian's kernel with the aoe module")?;
    let out = target_dir().join("bench/kernel-initiator");
    fs::create_dir_all(&out)?;
    let scratch = ScratchDir(PathBuf::from(format!(
        "/var/tmp/aoe-kbench-{}",
        std::process::id()
    )));
    fs::create_dir_all(&scratch.0)?;
    let image = scratch.0.join("initramfs.cpio");
    let mut initramfs = Initramfs::new(&kernel)?;
    initramfs.init(&guest::init_script(&guest_body()));
    initramfs.write(&image)?;
    println!(
        "kernel initiator: Linux {} ({}) in QEMU TCG, 1 vCPU on core {INITIATOR_CORE}; \
         targets on core {TARGET_CORE}; dd bs=1M of {DISK_MIB} MiB, O_DIRECT, {ROUNDS} rounds",
        kernel.release, kernel.package
    );
    let mut rows = Vec::new();
    for system in System::ALL {
        let rounds = measure(system, &kernel, &aoe_xdp, &image, &scratch.0, &out)
            .with_context(|| format!("measuring {}", system.label()))?;
        for (index, round) in rounds.iter().enumerate() {
            println!(
                "  {:<26} round {}: write {:6.2} MB/s, read {:6.2} MB/s",
                system.label(),
                index + 1,
                round.write,
                round.read
            );
        }
        rows.push((system, median(&rounds)));
    }
    println!("\n{}", table(&rows));
    println!("logs in {}", out.display());
    Ok(())
}

/// The guest's part: [`ROUNDS`] times, write the device with `dd` and `sync`, drop the
/// caches, read it back; `@@ round N T0 T1 T2 T3` (seconds since boot) after each.
fn guest_body() -> String {
    format!(
        r#"
wait_dev e1.1
say "size e1.1 $(cat '/sys/block/etherd!e1.1/size')"
r=0
while [ $r -lt {ROUNDS} ]; do
    r=$((r + 1))
    t0=$(now)
    dd if=/dev/zero of=/dev/etherd/e1.1 bs=1048576 count={DISK_MIB} oflag=direct 2>/tmp/dd.log || fail "dd write: $(cat /tmp/dd.log)"
    sync
    t1=$(now)
    echo 3 > /proc/sys/vm/drop_caches
    t2=$(now)
    dd if=/dev/etherd/e1.1 of=/dev/null bs=1048576 count={DISK_MIB} iflag=direct 2>/tmp/dd.log || fail "dd read: $(cat /tmp/dd.log)"
    t3=$(now)
    say "round $r $t0 $t1 $t2 $t3"
done
"#
    )
}

/// Boots the guest against `system` in fresh namespaces and returns its rounds.
fn measure(
    system: System,
    kernel: &Kernel,
    aoe_xdp: &Path,
    image: &Path,
    scratch: &Path,
    out: &Path,
) -> Result<Vec<Round>> {
    let key = system.key();
    let logs = out.join(key);
    fs::create_dir_all(&logs)?;
    let id = std::process::id();
    // Declared before the processes that run in them, so they are deleted after those stop.
    let target_ns = Netns::new(format!("aoekbench-{id}-{key}-t"))?;
    let guest_ns = Netns::new(format!("aoekbench-{id}-{key}-g"))?;
    guest::isolate(target_ns.name())?;
    guest::isolate(guest_ns.name())?;
    veth_pair(&target_ns, "vt", &guest_ns, "vg", MTU)?;
    guest::bridge_tap(guest_ns.name(), "vg", "br0", "tap0")?;

    // Written out and synced: the guest's writes overwrite allocated blocks in every round
    // (into a sparse file, the first round of aoe-xdp ran at a quarter of the later ones).
    let disk = scratch.join(format!("{key}.img"));
    let mut file = fs::File::create(&disk)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..DISK_MIB {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    drop(file);
    let target_log = logs.join("target.log");
    let mut target = match system {
        System::Xdp | System::XdpWriteback => {
            let config = scratch.join(format!("{key}.toml"));
            let durability = if system == System::XdpWriteback {
                "durability = \"writeback\"\n"
            } else {
                ""
            };
            fs::write(
                &config,
                format!(
                    "[target]\ninterfaces = [\"vt\"]\nworker-cores = [{TARGET_CORE}]\n\
                     state-directory = \"{dir}/state-{key}\"\n\
                     control-socket = \"{dir}/ctl-{key}.sock\"\n\n\
                     [[device]]\npath = \"{disk}\"\nshelf = 1\nslot = 1\n{durability}",
                    dir = scratch.display(),
                    disk = disk.display(),
                ),
            )?;
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, aoe_xdp);
            cmd.arg("--config").arg(&config);
            let mut daemon = Daemon::spawn("aoe-xdp", cmd, &target_log)?;
            daemon.wait_for_log("serving", Duration::from_secs(15))?;
            daemon
        }
        System::Vblade => {
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, "vblade");
            cmd.args(["1", "1", "vt"]).arg(&disk);
            Daemon::spawn("vblade", cmd, &target_log)?
        }
    };

    let mut vm = Guest::boot(
        kernel,
        &GuestSpec {
            netns: guest_ns.name(),
            tap: Some("tap0"),
            host_root: false,
            cpus: 1,
            append: "",
            initramfs: image,
            log_dir: &logs,
            memory_mib: 256,
            core: Some(INITIATOR_CORE),
            hard_timeout: GUEST_TIMEOUT,
        },
    )?;
    let with_log = |error: anyhow::Error, target: &Daemon| {
        error.context(format!("target log:\n{}", target.log_text()))
    };
    vm.wait_for("end", GUEST_TIMEOUT)
        .map_err(|e| with_log(e, &target))?;
    let status = vm.wait_exit(Duration::from_secs(20))?;
    if !status.success() {
        bail!("QEMU exited with {status}\n{}", vm.tail(40));
    }
    let results = guest::results(&vm.console());
    drop(vm);
    let stopped = target.stop()?;
    if system != System::Vblade && !stopped.success() {
        bail!(
            "aoe-xdp exited with {stopped} at SIGTERM:\n{}",
            target.log_text()
        );
    }
    let size = results
        .iter()
        .find(|(k, _)| k == "size")
        .map(|(_, v)| v.as_str());
    let sectors = u64::from(DISK_MIB) << 11;
    if size != Some(&format!("e1.1 {sectors}")) {
        bail!("the guest saw e1.1 as {size:?}, expected {sectors} sectors");
    }
    let rounds: Vec<Round> = results
        .iter()
        .filter(|(k, _)| k == "round")
        .map(|(_, v)| parse_round(v))
        .collect::<Result<_>>()?;
    if rounds.len() != ROUNDS {
        bail!("the guest reported {} rounds of {ROUNDS}", rounds.len());
    }
    Ok(rounds)
}

/// `N T0 T1 T2 T3` (seconds since boot: write from T0 to T1, read from T2 to T3) → rates.
fn parse_round(value: &str) -> Result<Round> {
    let times: Vec<f64> = value
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("unreadable round {value:?}"))?;
    let &[t0, t1, t2, t3] = times.as_slice() else {
        bail!("unreadable round {value:?}");
    };
    if t1 < t0 || t3 < t2 {
        bail!("the guest's clock went backwards in round {value:?}");
    }
    let bytes = f64::from(DISK_MIB) * f64::from(1u32 << 20);
    // /proc/uptime counts in 10 ms: a zero interval is one tick.
    let rate = |seconds: f64| bytes / seconds.max(0.01) / 1e6;
    Ok(Round {
        write: rate(t1 - t0),
        read: rate(t3 - t2),
    })
}

/// Per direction, the median of the rounds.
fn median(rounds: &[Round]) -> Round {
    let pick = |value: fn(&Round) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(value).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Round {
        write: pick(|r| r.write),
        read: pick(|r| r.read),
    }
}

/// The table: one row per system, then aoe-xdp ÷ vblade for each aoe-xdp system.
fn table(rows: &[(System, Round)]) -> String {
    let mut text = format!(
        "{:<32} {:>12} {:>12}\n",
        "sequential, Linux aoe initiator", "write MB/s", "read MB/s"
    );
    for (system, round) in rows {
        text.push_str(&format!(
            "{:<32} {:>12.2} {:>12.2}\n",
            system.label(),
            round.write,
            round.read
        ));
    }
    let vblade = rows.iter().find(|(s, _)| *s == System::Vblade).map(|r| r.1);
    for (system, round) in rows.iter().filter(|(s, _)| *s != System::Vblade) {
        if let Some(vblade) = vblade {
            text.push_str(&format!(
                "{:<32} {:>12.2} {:>12.2}\n",
                format!("{} ÷ vblade", system.label()),
                round.write / vblade.write,
                round.read / vblade.read
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_rates_from_uptime_stamps() {
        assert!(parse_round("2 10.00 12.00 12.01 11.51").is_err());
        let round = parse_round("1 10.00 12.00 12.50 13.50").unwrap();
        let bytes = f64::from(DISK_MIB) * 1048576.0;
        assert!((round.write - bytes / 2.0 / 1e6).abs() < 1e-9);
        assert!((round.read - bytes / 1e6).abs() < 1e-9);
        assert!(parse_round("1 10.00 x 12.50 13.50").is_err());
        assert!(parse_round("1 10.00 12.50").is_err());
    }

    #[test]
    fn the_median_is_taken_per_direction() {
        let rounds = [
            Round {
                write: 3.0,
                read: 10.0,
            },
            Round {
                write: 1.0,
                read: 30.0,
            },
            Round {
                write: 2.0,
                read: 20.0,
            },
        ];
        let m = median(&rounds);
        assert_eq!((m.write, m.read), (2.0, 20.0));
    }
}
