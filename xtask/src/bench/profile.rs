//! Where a target's CPU time goes during a point: `perf record -g` on its process (cpu-clock
//! samples, so it works on VMs without hardware counters), each sample sorted by its call
//! stack into a few kinds of work.
//!
//! The kind that matters most on this set-up is [`Profile::rx_softirq`]. On a veth pair a send
//! delivers the frame to the peer inside the sender's system call: the receive softirq
//! (`net_rx_action`: the peer's receive path, for the initiator `tpacket_rcv` copying the reply
//! into its ring) runs in the target's context and is charged to the target's CPU. Between two
//! machines it would run on the initiator's. It costs every system about the same per reply,
//! so it compresses every CPU ratio towards 1; [`Profile::rx_softirq`] lets the report show the
//! CPU per request without it, beside the figure with it.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::netns::Daemon;

/// Samples per second (a prime, so sampling does not beat with periodic work).
const FREQUENCY: &str = "997";
/// Functions listed per profile.
const TOP: usize = 8;

/// Shares (0..=1) of a process's samples by kind of work, and its busiest functions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Samples taken.
    pub samples: u64,
    /// In the receive softirq (`net_rx_action` on the stack): on veth, the peer's receive
    /// path, run in the target's send call. The completion of the target's own send (the
    /// sent frame's destructor, run there too) is counted as a system call instead.
    pub rx_softirq: f64,
    /// In a system call or fault that moves file data (`preadv2`, `pwrite64`, `io_uring_enter`,
    /// `fdatasync`, page faults).
    pub file_io: f64,
    /// In any other system call (socket sends and receives, `poll`).
    pub other_syscalls: f64,
    /// In the kernel outside a system call (interrupts, scheduling).
    pub other_kernel: f64,
    /// In user space.
    pub user: f64,
    /// The functions most samples were taken in, with their shares.
    pub top: Vec<(String, f64)>,
}

impl Profile {
    /// Microseconds per request outside the receive softirq.
    pub fn without_rx_softirq(&self, us_per_request: f64) -> f64 {
        us_per_request * (1.0 - self.rx_softirq)
    }
}

/// The kinds of work a sample is sorted into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    RxSoftirq,
    FileIo,
    OtherSyscalls,
    OtherKernel,
    User,
}

/// Kernel functions on the stack of a system call or fault that moves file data.
/// (System call wrappers and their helpers, as inlining may hide either; the page-cache
/// functions catch a file read or write through any other call.)
const FILE_IO: &[&str] = &[
    "__x64_sys_pread64",
    "__x64_sys_pwrite64",
    "__x64_sys_preadv",
    "__x64_sys_pwritev",
    "__x64_sys_preadv2",
    "__x64_sys_pwritev2",
    "__x64_sys_io_uring_enter",
    "__x64_sys_fdatasync",
    "__x64_sys_fsync",
    "do_preadv",
    "do_pwritev",
    "ksys_pread64",
    "ksys_pwrite64",
    "vfs_fsync_range",
    "filemap_read",
    "generic_perform_write",
    "exc_page_fault",
];

/// Destructors of a sent frame: run when the peer has consumed it, they complete the send.
const SEND_COMPLETION: &[&str] = &["xsk_destruct_skb", "sock_wfree", "tpacket_destruct_skb"];

/// One frame of a call stack: its function and whether it is in the kernel.
struct Frame<'a> {
    symbol: &'a str,
    kernel: bool,
}

/// The kind of one sample, from its stack (innermost frame first); the first rule that
/// matches wins.
fn classify(stack: &[Frame]) -> Kind {
    let has = |name: &str| stack.iter().any(|f| f.symbol == name);
    // Freeing the target's own sent frame after the peer took it completes the target's
    // send (an AF_XDP socket's completion ring): target work, even inside the softirq.
    let own_send_completion = SEND_COMPLETION.iter().any(|name| has(name));
    if has("net_rx_action") && !own_send_completion {
        Kind::RxSoftirq
    } else if FILE_IO.iter().any(|name| has(name)) {
        Kind::FileIo
    } else if has("do_syscall_64") || own_send_completion {
        Kind::OtherSyscalls
    } else if stack.first().is_some_and(|f| f.kernel) {
        Kind::OtherKernel
    } else {
        Kind::User
    }
}

/// Parses `perf script -F comm,ip,sym,dso` output (a header line per sample, then one
/// indented line per frame, a blank line between samples) into a [`Profile`].
pub fn parse(script: &str) -> Profile {
    let mut counts: HashMap<Kind, u64> = HashMap::new();
    let mut leaves: HashMap<String, u64> = HashMap::new();
    let mut samples = 0u64;
    let mut stack: Vec<Frame> = Vec::new();
    let mut finish = |stack: &mut Vec<Frame>| {
        if stack.is_empty() {
            return;
        }
        samples += 1;
        *counts.entry(classify(stack)).or_default() += 1;
        let leaf = stack[0].symbol;
        *leaves.entry(leaf.to_owned()).or_default() += 1;
        stack.clear();
    };
    for line in script.lines() {
        if line.trim().is_empty() {
            finish(&mut stack);
        } else if line.starts_with(char::is_whitespace) {
            // "\tffffffff8123 symbol+0x13 (dso)": address, symbol (with offset), dso.
            let mut fields = line.split_whitespace();
            let _address = fields.next();
            let Some(symbol) = fields.next() else {
                continue;
            };
            let symbol = symbol.split("+0x").next().unwrap_or(symbol);
            let dso = line.rsplit('(').next().unwrap_or("");
            stack.push(Frame {
                symbol,
                kernel: dso.starts_with("[kernel") || dso.contains("kernel.kallsyms"),
            });
        } else {
            // A new sample's header: finish the last one if no blank line came between.
            finish(&mut stack);
        }
    }
    finish(&mut stack);
    let share = |kind| {
        if samples == 0 {
            0.0
        } else {
            counts.get(&kind).copied().unwrap_or(0) as f64 / samples as f64
        }
    };
    let mut top: Vec<(String, u64)> = leaves.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Profile {
        samples,
        rx_softirq: share(Kind::RxSoftirq),
        file_io: share(Kind::FileIo),
        other_syscalls: share(Kind::OtherSyscalls),
        other_kernel: share(Kind::OtherKernel),
        user: share(Kind::User),
        top: top
            .into_iter()
            .take(TOP)
            .map(|(symbol, n)| (symbol, n as f64 / samples.max(1) as f64))
            .collect(),
    }
}

/// True when `perf record -g` works here (the tool is installed and sampling is allowed).
pub fn supported(scratch: &Path) -> bool {
    let data = scratch.join("perf-probe.data");
    let ok = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            FREQUENCY,
            "-g",
            "-o",
        ])
        .arg(&data)
        .args(["--", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let _ = std::fs::remove_file(&data);
    ok
}

/// `perf record` attached to a process for `seconds`.
pub struct Recording {
    daemon: Daemon,
    data: std::path::PathBuf,
}

/// Starts sampling every thread of `pid` for `seconds`, perf itself running on `core` (not
/// the target's).
pub fn start(scratch: &Path, pid: u32, seconds: f64, core: u32) -> Result<Recording> {
    let data = scratch.join("perf-record.data");
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &core.to_string(), "perf"])
        .args(["record", "-q", "-e", "cpu-clock", "-F", FREQUENCY, "-g"])
        .args(["-p", &pid.to_string(), "-o"])
        .arg(&data)
        .args(["--", "sleep", &format!("{:.2}", seconds.max(0.3))]);
    let daemon = Daemon::spawn("perf record", cmd, &scratch.join("perf-record.log"))?;
    Ok(Recording { daemon, data })
}

/// Waits for the recording to end and sorts its samples; `None` when perf failed.
pub fn finish(mut recording: Recording) -> Option<Profile> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match recording.daemon.exited() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return None,
        }
    }
    let script = Command::new("perf")
        .args(["script", "-F", "comm,ip,sym,dso", "-i"])
        .arg(&recording.data)
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&recording.data);
    let profile = parse(&String::from_utf8_lossy(&script.stdout));
    (profile.samples > 0).then_some(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three samples as `perf script -F comm,ip,sym,dso` prints them: the target's send whose
    /// softirq delivers to the peer, a `preadv2`, and user-space work.
    const SCRIPT: &str = "\
aoe-xdp 
\tffffffff81a0 __pi_memcpy+0x13 ([kernel.kallsyms])
\tffffffff81a1 tpacket_rcv+0x200 ([kernel.kallsyms])
\tffffffff81a2 net_rx_action+0x90 ([kernel.kallsyms])
\tffffffff81a3 __sys_sendto+0x10 ([kernel.kallsyms])
\tffffffff81a4 do_syscall_64+0x50 ([kernel.kallsyms])
\t      1234 __libc_sendto+0x1 (/usr/lib/x86_64-linux-gnu/libc.so.6)

aoe-xdp 
\tffffffff81b0 _copy_to_iter+0x13 ([kernel.kallsyms])
\tffffffff81b1 filemap_read+0x200 ([kernel.kallsyms])
\tffffffff81b2 do_preadv+0x90 ([kernel.kallsyms])
\tffffffff81b4 do_syscall_64+0x50 ([kernel.kallsyms])
\t      5678 preadv2+0x1 (/usr/lib/x86_64-linux-gnu/libc.so.6)

aoe-xdp 
\t      9abc aoe_xdp::dataplane::worker::run+0x44 (/usr/local/bin/aoe-xdp)
\t      9abd main+0x10 (/usr/local/bin/aoe-xdp)

aoe-xdp 
\t      9abc aoe_xdp::dataplane::worker::run+0x48 (/usr/local/bin/aoe-xdp)
";

    #[test]
    fn samples_are_sorted_by_what_their_stack_is_doing() {
        let profile = parse(SCRIPT);
        assert_eq!(profile.samples, 4);
        assert_eq!(profile.rx_softirq, 0.25);
        assert_eq!(profile.file_io, 0.25);
        assert_eq!(profile.user, 0.5);
        assert_eq!(profile.other_syscalls, 0.0);
        assert_eq!(profile.other_kernel, 0.0);
        assert_eq!(
            profile.top[0],
            ("aoe_xdp::dataplane::worker::run".to_owned(), 0.5)
        );
        assert_eq!(profile.top.len(), 3);
        assert!((profile.without_rx_softirq(4.0) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_system_call_outside_file_io_and_a_kernel_leaf_outside_any_call_are_told_apart() {
        let script = "\
x 
\tffffffff8100 xsk_sendmsg+0x1 ([kernel.kallsyms])
\tffffffff8101 do_syscall_64+0x1 ([kernel.kallsyms])

x 
\tffffffff8200 asm_sysvec_apic_timer_interrupt+0x1 ([kernel.kallsyms])
\t      1000 spin+0x1 (/bin/x)
";
        let profile = parse(script);
        assert_eq!(profile.samples, 2);
        assert_eq!(profile.other_syscalls, 0.5);
        assert_eq!(profile.other_kernel, 0.5);
    }

    #[test]
    fn the_completion_of_the_targets_own_send_is_not_the_peers_receive() {
        let script = "\
x 
\tffffffff8100 xsk_destruct_skb+0x1 ([kernel.kallsyms])
\tffffffff8101 skb_release_head_state+0x1 ([kernel.kallsyms])
\tffffffff8102 tpacket_rcv+0x1 ([kernel.kallsyms])
\tffffffff8103 net_rx_action+0x1 ([kernel.kallsyms])
\tffffffff8104 do_syscall_64+0x1 ([kernel.kallsyms])
";
        let profile = parse(script);
        assert_eq!(profile.rx_softirq, 0.0);
        assert_eq!(profile.other_syscalls, 1.0);
    }

    #[test]
    fn no_samples_is_an_empty_profile() {
        let profile = parse("");
        assert_eq!(profile.samples, 0);
        assert_eq!(profile.rx_softirq, 0.0);
        assert!(profile.top.is_empty());
    }
}
