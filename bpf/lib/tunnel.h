/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Tunnel mode: packets to another node's pods (and the node itself) leave
 * through the flow-based VXLAN device seta_vxlan. The tunnel key carries the
 * remote node's underlay address and, as VNI, the source security identity;
 * the receiving node's from_overlay applies ingress policy to that identity. */
#pragma once
#include "common.h"
#include "policy.h"

/* Encapsulate towards `remote` (network order) with `sec_id` as VNI and hand
 * the packet to seta_vxlan. Returns a TC verdict or a negative drop reason. */
static __always_inline int encap_and_redirect(struct __sk_buff *ctx, __be32 remote, __u32 sec_id)
{
	struct bpf_tunnel_key key = {};
	__u32 idx = CONFIG_VXLAN_IFINDEX;
	__u32 *ifindex = bpf_map_lookup_elem(&seta_config, &idx);

	if (!ifindex || !*ifindex)
		return -DROP_NO_TUNNEL_ENDPOINT;
	key.remote_ipv4 = bpf_ntohl(remote);
	key.tunnel_id = sec_id & 0xffffff;
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(ctx, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return -DROP_WRITE_ERROR;
	return bpf_redirect(*ifindex, 0);
}
