/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Delivery to a local pod from the node side (tunnel, node device, the
 * NAT engine's replies): conntrack, the pod's ingress policy for new
 * connections, the routed hop's L2/TTL rewrite, then into the pod's netns. */
#pragma once
#include "common.h"
#include "policy.h"
#include "lb.h"
#include "dsr.h"

/* Conntrack, and for a new connection the local pod's ingress policy against
 * `src_id`: 0 when the packet may pass, else TC_ACT_SHOT (counted). */
static __always_inline int ingress_admit(struct __sk_buff *ctx, struct iphdr *ip, const struct endpoint_info *ep, __u32 src_id)
{
	__u32 l4_off = ETH_HLEN + ((__u32)ip->ihl << 2);
	enum ct_status st;
	struct flow f = {};
	int ret;

	ret = parse_l4(ctx, ip, &f);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_INGRESS);
	st = ct_lookup(&f, ctx->len);
	dbg_ct_lookup(ctx, ep->lxc_id, &f, 1, st);
	if (st == CT_REPLY) {
		/* a backend on another node answering a client of this node
		 * through a service: the frontend is the source again */
		ret = lb4_xlate_rev(ctx, l4_off, &f);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_INGRESS);
	}
	/* an ICMP error about a connection to a service, from its backend:
	 * about the frontend again */
	if (st == CT_RELATED) {
		ret = lb4_rev_icmp_error(ctx);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_INGRESS);
	}
	if (st == CT_NEW) {
		ret = ingress_policy(ep, src_id, &f, ep->ifindex);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_INGRESS);
		ret = ct_create(&f, src_id, ctx->len);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_INGRESS);
	}
	trace_to_lxc(ep, src_id, &f, st);
	cilium_dbg(ctx, DBG_LOCAL_DELIVERY, ep->lxc_id, ep->lxc_id, src_id);
	return 0;
}

/* A packet that entered this node (from the tunnel or the node's device) for
 * a local pod: admission, the routed hop's L2/TTL rewrite, then into the
 * pod's netns. */
static __always_inline int to_local_endpoint(struct __sk_buff *ctx, struct iphdr *ip, const struct endpoint_info *ep, __u32 src_id)
{
	int ret = ingress_admit(ctx, ip, ep, src_id);

	if (ret)
		return ret;
	ret = l3_local_delivery(ctx, ep);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_INGRESS);
	update_metrics(ctx->len, METRIC_INGRESS, REASON_FORWARDED);
	return bpf_redirect_peer(ep->ifindex, 0);
}

/* to_local_endpoint after the packet was rewritten (LB, NAT): its IP
 * header is found again first. */
static __always_inline int to_local_endpoint_rewritten(struct __sk_buff *ctx, const struct endpoint_info *ep, __u32 src_id)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;

	if ((void *)(ip + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);
	return to_local_endpoint(ctx, ip, ep, src_id);
}

