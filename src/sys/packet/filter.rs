//! The classic BPF filter (`SO_ATTACH_FILTER`) that lets only AoE requests into the ring, and
//! an interpreter that tests what it accepts.

use std::io;
use std::os::fd::BorrowedFd;

use super::{ETH_P_8021Q, ETH_P_AOE, VLAN_TAG_LEN};
use crate::sys::syscall::set_option;
use crate::wire::{AOE_HEADER_LEN, ETHERNET_HEADER_LEN};

/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the ancillary "offset" that loads `skb->pkt_type`. The
/// negative offset is what the kernel expects, reinterpreted as the instruction's `u32` k.
pub(super) const SKF_PKTTYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;

/// Number of instructions in [`aoe_request_filter`].
pub const FILTER_LEN: usize = 18;

/// The classic BPF socket filter: accept (whole frame) exactly what the XDP program redirects —
/// ethertype 0x88A2 directly or behind one 802.1Q tag still in the frame, at least a full AoE
/// common header, AoE version 1, response flag clear — and drop everything else, including
/// frames this host sends (`PACKET_OUTGOING`). A tag the kernel already removed is invisible
/// here (the frame looks untagged), which is what we want.
pub fn aoe_request_filter() -> [libc::sock_filter; FILTER_LEN] {
    const ACCEPT: u8 = 16;
    const DROP: u8 = 17;
    const CHECK: u8 = 14;
    const TAGGED: u8 = 8;
    let ld = libc::BPF_LD | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let len = libc::BPF_LD | libc::BPF_W | libc::BPF_LEN;
    let untagged_min = u32::try_from(ETHERNET_HEADER_LEN + AOE_HEADER_LEN).expect("24");
    let tagged_min = untagged_min + u32::try_from(VLAN_TAG_LEN).expect("4");
    // Jump offsets count instructions after the jump: target - (position + 1).
    let to = |target: u8, position: u8| target - position - 1;
    [
        // 0: ancillary load of skb->pkt_type; our own transmissions are not requests for us.
        stmt(ld | libc::BPF_W, SKF_PKTTYPE),
        jump(jeq, u32::from(libc::PACKET_OUTGOING), to(DROP, 1), 0),
        // 2: ethertype.
        stmt(ld | libc::BPF_H, 12),
        jump(jeq, u32::from(ETH_P_AOE), 0, to(TAGGED, 3)),
        // 4: untagged AoE: long enough for the common header, then ver/flags at 14.
        stmt(len, 0),
        jump(jge, untagged_min, 0, to(DROP, 5)),
        stmt(ld | libc::BPF_B, 14),
        stmt(libc::BPF_JMP | libc::BPF_JA, u32::from(to(CHECK, 7))),
        // 8 (TAGGED): one 802.1Q tag, AoE behind it, ver/flags at 18.
        jump(jeq, u32::from(ETH_P_8021Q), 0, to(DROP, 8)),
        stmt(len, 0),
        jump(jge, tagged_min, 0, to(DROP, 10)),
        stmt(ld | libc::BPF_H, 16),
        jump(jeq, u32::from(ETH_P_AOE), 0, to(DROP, 12)),
        stmt(ld | libc::BPF_B, 18),
        // 14 (CHECK): version 1 (high nibble) and response flag 0x08 clear, in one compare.
        stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0xF8),
        jump(jeq, 0x10, to(ACCEPT, 15), to(DROP, 15)),
        // 16 (ACCEPT): keep the whole frame.
        stmt(libc::BPF_RET | libc::BPF_K, u32::MAX),
        // 17 (DROP).
        stmt(libc::BPF_RET | libc::BPF_K, 0),
    ]
}

pub(super) fn stmt(code: u32, k: u32) -> libc::sock_filter {
    jump(code, k, 0, 0)
}

pub(super) fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: u16::try_from(code).expect("BPF opcodes fit 16 bits"),
        jt,
        jf,
        k,
    }
}

pub(super) fn attach_filter(fd: BorrowedFd<'_>, filter: &[libc::sock_filter]) -> io::Result<()> {
    let program = libc::sock_fprog {
        len: u16::try_from(filter.len()).expect("short program"),
        // The kernel copies the program in setsockopt and never writes through this pointer.
        filter: filter.as_ptr().cast_mut(),
    };
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &program)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input to the filter interpreter: the bytes the filter sees and the socket metadata.
    struct Skb<'a> {
        data: &'a [u8],
        pkt_type: u8,
    }

    /// A classic BPF interpreter for the instructions `aoe_request_filter` uses (the kernel
    /// semantics: an out-of-bounds load ends the program with 0).
    fn run(program: &[libc::sock_filter], skb: &Skb<'_>) -> u32 {
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        let load = |offset: u32, size: usize| -> Option<u32> {
            if offset == SKF_PKTTYPE {
                return Some(u32::from(skb.pkt_type));
            }
            let start = offset as usize;
            let bytes = skb.data.get(start..start + size)?;
            Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
        };
        loop {
            let insn = program[pc];
            let code = u32::from(insn.code);
            pc += 1;
            let next = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
            match code {
                c if c == libc::BPF_LD | libc::BPF_ABS | libc::BPF_W => {
                    let Some(value) = load(insn.k, 4) else {
                        return 0;
                    };
                    acc = value;
                }
                c if c == libc::BPF_LD | libc::BPF_ABS | libc::BPF_H => {
                    let Some(value) = load(insn.k, 2) else {
                        return 0;
                    };
                    acc = value;
                }
                c if c == libc::BPF_LD | libc::BPF_ABS | libc::BPF_B => {
                    let Some(value) = load(insn.k, 1) else {
                        return 0;
                    };
                    acc = value;
                }
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_LEN => {
                    acc = u32::try_from(skb.data.len()).unwrap();
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= insn.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += insn.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += next(acc == insn.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += next(acc >= insn.k),
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
            }
            assert!(pc < program.len(), "jump past the end");
        }
    }

    fn frame(tag: Option<u16>, ethertype: u16, ver_flags: u8, len: usize) -> Vec<u8> {
        let mut frame = vec![0xFFu8; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        if let Some(vid) = tag {
            frame.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            frame.extend_from_slice(&vid.to_be_bytes());
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.push(ver_flags);
        frame.resize(len.max(frame.len()), 0);
        frame
    }

    fn accepts(data: &[u8], pkt_type: u8) -> bool {
        let verdict = run(&aoe_request_filter(), &Skb { data, pkt_type });
        assert!(verdict == 0 || verdict == u32::MAX, "verdict {verdict:#x}");
        verdict != 0
    }
    #[test]
    fn test_filter_accepts_requests() {
        assert!(accepts(
            &frame(None, ETH_P_AOE, 0x10, 60),
            libc::PACKET_HOST
        ));
        assert!(accepts(
            &frame(None, ETH_P_AOE, 0x10, 24),
            libc::PACKET_BROADCAST
        ));
        // The error flag does not matter for a request (only R and the version do).
        assert!(accepts(
            &frame(None, ETH_P_AOE, 0x14, 60),
            libc::PACKET_HOST
        ));
        assert!(accepts(
            &frame(Some(42), ETH_P_AOE, 0x10, 64),
            libc::PACKET_HOST
        ));
        assert!(accepts(
            &frame(Some(42), ETH_P_AOE, 0x10, 28),
            libc::PACKET_OTHERHOST
        ));
        // Another host's request passes too: `rx_burst` refuses it by its destination MAC and
        // counts it, which a filter could not.
        let mut foreign = frame(None, ETH_P_AOE, 0x10, 60);
        foreign[..6].copy_from_slice(&[0x02, 0xAE, 0, 0, 0, 1]);
        assert!(accepts(&foreign, libc::PACKET_OTHERHOST));
    }
    #[test]
    fn test_filter_drops_responses_and_others() {
        let cases = [
            (frame(None, ETH_P_AOE, 0x18, 60), "response"),
            (frame(None, ETH_P_AOE, 0x1C, 60), "error response"),
            (frame(None, ETH_P_AOE, 0x20, 60), "version 2"),
            (frame(None, ETH_P_AOE, 0x00, 60), "version 0"),
            (
                frame(None, ETH_P_AOE, 0x10, 23),
                "shorter than the AoE header",
            ),
            (frame(None, 0x0800, 0x45, 60), "IPv4"),
            (frame(None, 0x88B5, 0x10, 60), "other ethertype"),
            (frame(Some(42), ETH_P_AOE, 0x18, 64), "tagged response"),
            (frame(Some(42), 0x0800, 0x45, 64), "tagged IPv4"),
            (frame(Some(42), ETH_P_AOE, 0x10, 27), "tagged, too short"),
            (frame(None, ETH_P_AOE, 0x10, 13)[..13].to_vec(), "runt"),
            (Vec::new(), "empty"),
        ];
        for (data, what) in &cases {
            assert!(!accepts(data, libc::PACKET_HOST), "{what} accepted");
        }
        // Two tags (802.1ad outside 802.1Q): not looked into, as in the XDP program.
        let mut qinq = frame(Some(7), ETH_P_8021Q, 0, 68);
        qinq[12..14].copy_from_slice(&0x88A8u16.to_be_bytes());
        assert!(!accepts(&qinq, libc::PACKET_HOST), "QinQ accepted");
    }
    #[test]
    fn test_filter_drops_outgoing() {
        let request = frame(None, ETH_P_AOE, 0x10, 60);
        assert!(!accepts(&request, libc::PACKET_OUTGOING));
    }
    #[test]
    fn test_filter_jumps_stay_in_program() {
        let program = aoe_request_filter();
        for (position, insn) in program.iter().enumerate() {
            let code = u32::from(insn.code);
            if code & 0x07 == libc::BPF_JMP {
                let base = position + 1;
                let targets = if code == libc::BPF_JMP | libc::BPF_JA {
                    vec![base + insn.k as usize]
                } else {
                    vec![base + usize::from(insn.jt), base + usize::from(insn.jf)]
                };
                for target in targets {
                    assert!(target < program.len(), "insn {position} jumps to {target}");
                }
            }
        }
        let last = program[FILTER_LEN - 1];
        assert_eq!(u32::from(last.code), libc::BPF_RET | libc::BPF_K);
    }
}
