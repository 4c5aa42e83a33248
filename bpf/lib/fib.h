/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* BPF host routing: a pod's packet for a destination beyond this node (native
 * routing to another node's pods, other nodes' addresses, the outside world)
 * is routed here with a FIB lookup and handed straight to the egress device
 * (bpf_redirect_neigh resolves the next hop's MAC), instead of climbing the
 * node's IP stack and its forwarding path. Anything the FIB does not forward
 * (local addresses, errors, MTU) falls back to the stack. */
#pragma once
#include "common.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* Returns a TC verdict: a redirect, TC_ACT_OK (let the stack do it), or a
 * negative drop reason. */
static __always_inline int fib_redirect_v4(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct bpf_fib_lookup p = {};
	struct bpf_redir_neigh nh = {};
	int ret;

	if ((void *)(ip + 1) > data_end)
		return -DROP_INVALID;
	p.family = AF_INET;
	p.tos = ip->tos;
	p.l4_protocol = ip->protocol;
	/* no tot_len: the kernel then checks the skb against the egress
	 * device's MTU as a GSO packet (its segments), where a tot_len is
	 * compared as it is: a GRO-merged packet would "need
	 * fragmentation" and fall back to the stack, which drops what BPF
	 * already SNATed to this node's address (IP_LOCAL_SOURCE) */
	p.ipv4_src = ip->saddr;
	p.ipv4_dst = ip->daddr;
	p.ifindex = ctx->ingress_ifindex;
	ret = bpf_fib_lookup(ctx, &p, sizeof(p), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS)
		return TC_ACT_OK;
	if (ip->ttl <= 1)
		return -DROP_TTL_EXCEEDED;
	{
		__be16 old = *(__be16 *)&ip->ttl;

		ip->ttl--;
		__be16 new = *(__be16 *)&ip->ttl;

		if (bpf_l3_csum_replace(ctx, ETH_HLEN + __builtin_offsetof(struct iphdr, check), old, new, 2) < 0)
			return -DROP_WRITE_ERROR;
	}
	nh.nh_family = AF_INET;
	nh.ipv4_nh = p.ipv4_dst; /* the gateway, or the destination if on-link */
	return bpf_redirect_neigh(p.ifindex, &nh, sizeof(nh), 0);
}
