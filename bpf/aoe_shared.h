/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Definitions shared between the XDP program (aoe_xdp.bpf.c) and user space.
 *
 * Mirrored in src/xdp/abi.rs. Any change here must be made there too; the
 * Rust side checks the struct size and field offsets at compile time, and
 * `cargo xtask build-bpf --check` fails when the committed object is stale.
 */
#ifndef AOE_SHARED_H
#define AOE_SHARED_H

#include <linux/types.h>

/* Ethertypes the program looks at. */
#define AOE_ETH_P_AOE 0x88A2
#define AOE_ETH_P_8021Q 0x8100

/* Byte 0 of the AoE header: version in the high nibble, flags in the low. */
#define AOE_VERSION 1
#define AOE_FLAG_RESPONSE 0x08

/* Length of the AoE common header (ver/flags .. tag); shorter frames pass. */
#define AOE_COMMON_HEADER_LEN 10

/*
 * Entries in `xsks_map` and in `aoe_counters`: one per RX queue, indexed by
 * queue id.
 */
#define AOE_XSKS_MAP_MAX_ENTRIES 256

/*
 * The value type of the single-entry array `aoe_config`: what the loader tells
 * the program about the interface it is attached to. The loader writes it
 * before it attaches the program (one object is loaded per interface), so the
 * program never runs with an unwritten entry.
 */
struct aoe_xdp_config {
	/*
	 * The interface's own MAC address: requests to it, or to the broadcast
	 * address, are redirected; requests to any other destination pass.
	 */
	__u8 mac[6];
	/* Non-zero: redirect requests whatever their destination. */
	__u8 accept_any_destination;
	__u8 reserved;
};

/*
 * The value type of the per-CPU array `aoe_counters`, one entry per RX queue.
 * Every frame the program sees on a queue below AOE_XSKS_MAP_MAX_ENTRIES
 * increments exactly one field of its queue's entry.
 */
struct aoe_xdp_counters {
	/* AoE request redirected to the AF_XDP socket of its RX queue. */
	__u64 redirected;
	/* Not AoE (other ethertype, or more than one VLAN tag): XDP_PASS. */
	__u64 passed_non_aoe;
	/* AoE with the response flag set (from another target): XDP_PASS. */
	__u64 passed_response;
	/* AoE but truncated header or version != 1: XDP_PASS. */
	__u64 passed_malformed;
	/* AoE request, but no socket in xsks_map for the RX queue: XDP_PASS. */
	__u64 passed_no_xsk;
	/*
	 * AoE request to another host's MAC (or a multicast group): XDP_PASS
	 * (the kernel drops it as PACKET_OTHERHOST, or hands it to a bridge).
	 */
	__u64 passed_foreign_dst;
};

#endif /* AOE_SHARED_H */
