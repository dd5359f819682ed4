// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * aoe_xdp: steer AoE requests into AF_XDP sockets, let everything else pass.
 *
 * A frame is redirected to the socket bound to its RX queue when it is
 *   - ethertype 0x88A2, directly or behind exactly one 802.1Q tag (0x8100),
 *   - at least a full AoE common header long,
 *   - AoE version 1, and
 *   - a request (response flag 0x08 clear).
 * Everything else returns XDP_PASS to the kernel stack, so ARP, IP, LLDP and
 * responses from other AoE targets on the same wire keep working. When no
 * socket is registered for the queue, bpf_redirect_map falls back to
 * XDP_PASS as well. Each outcome is counted in the per-CPU map aoe_counters.
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
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct aoe_xdp_counters);
} aoe_counters SEC(".maps");

SEC("xdp.frags")
int aoe_xdp(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *data_end = (const __u8 *)(long)ctx->data_end;
	__u32 key = 0;
	struct aoe_xdp_counters *counters;
	__u32 offset = ETH_HEADER_LEN;
	__u16 ethertype;
	__u8 ver_flags;
	long action;

	counters = bpf_map_lookup_elem(&aoe_counters, &key);
	if (!counters)
		return XDP_PASS; /* cannot happen for an array map; keeps the verifier happy */

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

	action = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
	if (action == XDP_REDIRECT)
		counters->redirected++;
	else
		counters->passed_no_xsk++;
	return (int)action;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
