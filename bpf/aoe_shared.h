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

/* Entries in `xsks_map`: one per RX queue, indexed by queue id. */
#define AOE_XSKS_MAP_MAX_ENTRIES 256

/*
 * The value type of the single-entry per-CPU array `aoe_counters`.
 * Every frame the program sees increments exactly one field.
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
};

#endif /* AOE_SHARED_H */
