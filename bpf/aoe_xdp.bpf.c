// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * aoe_xdp: steer AoE requests into AF_XDP sockets, let everything else pass.
 *
 * A frame is redirected to the socket bound to its RX queue when it is
 *   - ethertype 0x88A2, directly or behind exactly one 802.1Q tag (0x8100),
 *   - at least a full AoE common header long,
 *   - AoE version 1,
 *   - a request (response flag 0x08 clear), and
 *   - addressed to this interface's MAC or to the broadcast address (unless
 *     aoe_config says accept_any_destination).
 * Everything else returns XDP_PASS to the kernel stack, so ARP, IP, LLDP and
 * responses from other AoE targets on the same wire keep working. When no
 * socket is registered for the queue, bpf_redirect_map falls back to
 * XDP_PASS as well. Each outcome is counted in the per-CPU map aoe_counters,
 * in the entry of the frame's RX queue.
 *
 * Destination: a port that sees frames for other hosts (a bridge port, a hub,
 * a promiscuous or mirror port, a hypervisor's tap, a macvlan's lower device)
 * must not execute another target's requests: two targets exporting the same
 * shelf.slot on one segment would both write. Only the interface's own MAC and
 * ff:ff:ff:ff:ff:ff are ours. The AoE r11 specification defines no use of
 * multicast, and initiators send requests to a target's unicast address, or
 * broadcast Query Config to find targets (Linux aoecmd_cfg); a multicast
 * request would reach every target listening to that group at once, as a
 * foreign unicast one reaches every port that sees it. So multicast counts as
 * foreign too. Such requests get XDP_PASS, not XDP_DROP: whatever else on
 * this host may legitimately own them (a bridge forwarding to a VM, a macvlan
 * or VLAN device on top of this one, a capture on a mirror port) still gets
 * them, and the kernel itself then drops them (they are PACKET_OTHERHOST to
 * it, and nothing in it serves AoE requests: the Linux aoe driver takes only
 * responses). The MAC is the one the loader was given when it attached the
 * program: the interface's address at start-up, which the replies carry.
 *
 * The program is frags-aware (section "xdp.frags", loaded with
 * BPF_F_XDP_HAS_FRAGS): it reads only the headers, which are always in the
 * first buffer, so multi-buffer (jumbo) frames are steered like any other and
 * the kernel accepts the program on interfaces with an MTU above one page.
 *
 * Build with `cargo xtask build-bpf`; the object is committed next to this
 * file and embedded into the binary.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "aoe_shared.h"

#define ETH_HEADER_LEN 14
#define VLAN_TAG_LEN 4

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, AOE_XSKS_MAP_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AOE_XSKS_MAP_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, struct aoe_xdp_counters);
} aoe_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct aoe_xdp_config);
} aoe_config SEC(".maps");

/* True if the frame's destination (its first six bytes) is `mac` or broadcast. */
static __always_inline int dst_is_ours(const __u8 *dst, const __u8 *mac)
{
	__u8 differs = 0;
	__u8 all_ones = 0xff;
	int i;

#pragma unroll
	for (i = 0; i < 6; i++) {
		differs |= dst[i] ^ mac[i];
		all_ones &= dst[i];
	}
	return differs == 0 || all_ones == 0xff;
}

SEC("xdp.frags")
int aoe_xdp(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
	__u32 queue = ctx->rx_queue_index;
	__u32 zero = 0;
	struct aoe_xdp_counters *counters;
	const struct aoe_xdp_config *config;
	__u32 offset = ETH_HEADER_LEN;
	__u16 ethertype;
	__u8 ver_flags;
	long action;

	config = bpf_map_lookup_elem(&aoe_config, &zero);
	if (!config)
		return XDP_PASS; /* cannot happen for an array map; keeps the verifier happy */
	/*
	 * A queue beyond the map has no entry here nor in xsks_map (same size):
	 * no socket can serve it, so its frames pass, uncounted.
	 */
	counters = bpf_map_lookup_elem(&aoe_counters, &queue);
	if (!counters)
		return XDP_PASS;

	if (data + ETH_HEADER_LEN > data_end) {
		counters->passed_non_aoe++;
		return XDP_PASS;
	}
	ethertype = bpf_ntohs(*(const __be16 *)(data + 12));

	if (ethertype == AOE_ETH_P_8021Q) {
		if (data + ETH_HEADER_LEN + VLAN_TAG_LEN > data_end) {
			counters->passed_non_aoe++;
			return XDP_PASS;
		}
		ethertype = bpf_ntohs(*(const __be16 *)(data + 16));
		offset += VLAN_TAG_LEN;
	}

	if (ethertype != AOE_ETH_P_AOE) {
		counters->passed_non_aoe++;
		return XDP_PASS;
	}

	if (data + offset + AOE_COMMON_HEADER_LEN > data_end) {
		counters->passed_malformed++;
		return XDP_PASS;
	}
	ver_flags = data[offset];

	if ((ver_flags >> 4) != AOE_VERSION) {
		counters->passed_malformed++;
		return XDP_PASS;
	}
	if (ver_flags & AOE_FLAG_RESPONSE) {
		counters->passed_response++;
		return XDP_PASS;
	}
	/* Another host's request (see the top of this file): not ours to execute. */
	if (!config->accept_any_destination && !dst_is_ours(data, config->mac)) {
		counters->passed_foreign_dst++;
		return XDP_PASS;
	}

	action = bpf_redirect_map(&xsks_map, queue, XDP_PASS);
	if (action == XDP_REDIRECT)
		counters->redirected++;
	else
		counters->passed_no_xsk++;
	return (int)action;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
