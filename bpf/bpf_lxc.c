// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Endpoint program: one program for every endpoint, verified once and pinned.
 *   from_container: cls_bpf (clsact ingress) of the host-side veth (packets
 *   leaving the pod). An attach is a filter pointing at the loaded program:
 *   no verification and no RCU grace period per endpoint.
 * The endpoint is the seta_lxc entry of the packet's source address, which
 * must sit on the device the packet came from (a pod may only send with its
 * own address). Delivery into the pod is done by the sender: from_container
 * of another pod (bpf_redirect_peer) or from_host on seta_host. */
#include "lib/common.h"
#include "lib/arp.h"
#include "lib/policy.h"
#include "lib/tunnel.h"
#include "lib/fib.h"
#include "lib/lb.h"
#include "lib/nodeport.h"

/* Template of an endpoint's policy map: the loader creates one per endpoint
 * (pinned seta_pol_NNNNN) from this definition and registers it in
 * seta_policy, where from_container finds it by endpoint id. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, POLICY_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} seta_pol_ep SEC(".maps");

/* The endpoint that owns `ip` on the device the packet came in on. */
static __always_inline const struct endpoint_info *self_endpoint(const struct __sk_buff *ctx, __be32 ip)
{
	const struct endpoint_info *me = lookup_ip4_endpoint(ip);

	if (!me || (me->flags & ENDPOINT_F_HOST) || me->ifindex != ctx->ifindex)
		return NULL;
	return me;
}

static __always_inline int handle_ipv4_from_lxc(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	const struct endpoint_info *me;
	const struct lxc_self *fast;
	struct endpoint_info *ep;
	struct remote_endpoint_info *info = NULL;
	struct flow f = {};
	__u32 remote, len = ctx->len, ep_id, sec_id, ifindex = ctx->ifindex, slot, l4_off;
	enum ct_status st;
	void *pmap;
	__be32 ip_saddr, vip;
	__be16 vport;
	int hairpin = 0;
	__u64 verdict = 0;
	int ret;

	if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->version != 4)
		return send_drop(ctx, DROP_INVALID, METRIC_EGRESS);
	/* A pod may only send with its own address: the endpoint of this device
	 * (its seta_lxc_self slot, else its seta_lxc entry) must own saddr. */
	slot = ifindex & (LXC_SELF_SLOTS - 1);
	fast = bpf_map_lookup_elem(&seta_lxc_self, &slot);
	if (fast && fast->ifindex == ifindex && ifindex) {
		if (fast->ipv4 != ip->saddr)
			return send_drop(ctx, DROP_INVALID_SOURCE_IP, METRIC_EGRESS);
		ep_id = fast->lxc_id;
		sec_id = fast->sec_id;
	} else {
		me = self_endpoint(ctx, ip->saddr);
		if (!me)
			return send_drop(ctx, DROP_INVALID_SOURCE_IP, METRIC_EGRESS);
		ep_id = me->lxc_id;
		sec_id = me->sec_id;
	}
	l4_off = ETH_HLEN + ((__u32)ip->ihl << 2);
	ip_saddr = ip->saddr;
	ret = parse_l4(ctx, ip, &f);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);
	/* a service frontend: to one of its backends (policy, routing and
	 * conntrack below see the backend) */
	vip = f.key.daddr;
	vport = f.key.dport;
	ret = lb4_xlate_fwd(ctx, l4_off, &f, 0);
	if (ret > 0) {
		cilium_dbg(ctx, DBG_LB4_LOOKUP_FRONTEND, ep_id, vip, vport);
		cilium_dbg(ctx, DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS, ep_id, f.key.daddr, f.key.dport);
	}
	/* the refusal answers a datagram's first fragment, not the others */
	if (ret == -DROP_NO_SERVICE && !f.later_frag)
		return lb4_reject(ctx);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);
	/* hairpin: the pod is its own backend; it sees the connection come
	 * from the loopback address (else it would drop a packet from itself) */
	if (ret == 1 && f.key.daddr == f.key.saddr) {
		ret = lb4_rewrite(ctx, l4_off, &f, 0, f.key.saddr, LB_LOOPBACK_ADDR, f.key.sport, f.key.sport);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		f.key.saddr = LB_LOOPBACK_ADDR;
		hairpin = 1;
		/* the replies' way back, keyed by what the pod will answer */
		ret = lb4_hairpin_rev(&f, ip_saddr);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
	}

	/* the pod's ICMP error about a reply from a frontend: to its backend */
	if (f.icmp_error) {
		ret = lb4_fwd_icmp_error(ctx, &f.inner);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		if (ret > 0)
			f.key.daddr = f.inner.saddr;
	}
	ep = lookup_ip4_endpoint(f.key.daddr);
	if (ep && (ep->flags & ENDPOINT_F_HOST))
		ep = NULL;
	if (!ep) {
		info = ipcache_lookup(f.key.daddr);
		if (info)
			cilium_dbg(ctx, DBG_IP_ID_MAP_SUCCEED4, ep_id, f.key.daddr, info->sec_identity);
		else
			cilium_dbg(ctx, DBG_IP_ID_MAP_FAILED4, ep_id, f.key.daddr, 0);
	}

	st = ct_lookup(&f, len);
	dbg_ct_lookup(ctx, ep_id, &f, 0, st);
	/* a backend's ICMP error about its client's connection through a
	 * service (translated on this node, or a NodePort's by DSR): about
	 * the frontend again (the packet's pointers are not used past here:
	 * the rest takes them again) */
	if (st == CT_RELATED) {
		ret = lb4_rev_icmp_error(ctx);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
	}
	if (st == CT_REPLY) {
		/* a backend answering a client of this node through a service */
		ret = lb4_xlate_rev(ctx, l4_off, &f);
		/* a backend answering a client that came through another
		 * node's NodePort by DSR: straight back, from the service */
		if (ret == 0)
			ret = dsr_reply4(ctx, l4_off, &f);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		/* a hairpin reply: back to the pod itself */
		if (ret == 1 && f.key.daddr == LB_LOOPBACK_ADDR) {
			__be32 self = ip_saddr;

			ret = lb4_rewrite(ctx, l4_off, &f, 1, LB_LOOPBACK_ADDR, self, f.key.dport, f.key.dport);
			if (ret < 0)
				return send_drop(ctx, -ret, METRIC_EGRESS);
			f.key.daddr = self;
			ep = lookup_ip4_endpoint(self);
			info = NULL;
		}
	}
	if (st == CT_NEW) {
		/* the remote identity only matters for new connections */
		remote = ep ? ep->sec_id : (info ? info->sec_identity : WORLD_ID);
		/* egress policy of this endpoint (no map yet: not ready) */
		pmap = bpf_map_lookup_elem(&seta_policy, &ep_id);
		if (!pmap)
			return send_drop(ctx, DROP_EP_NOT_READY, METRIC_EGRESS);
		ret = policy_check_peer(pmap, remote, f.key.daddr, 1, &f, &verdict);
		/* a verdict only where policy is enforced, as Cilium */
		if (VERDICT_COOKIE(verdict) != POLICY_COOKIE_NOT_ENFORCED)
			emit_event(EVENT_POLICY_VERDICT, VERDICT_MATCH(verdict), ep_id, ifindex, sec_id, remote, ret,
				   VERDICT_COOKIE(verdict), &f, METRIC_EGRESS);
		if (ret < 0) {
			cilium_dbg(ctx, DBG_POLICY_DENIED, ep_id, sec_id, remote);
			return send_drop(ctx, -ret, METRIC_EGRESS);
		}
		/* ingress policy of a local destination (not for a pod reaching
		 * itself through a service, as Cilium's loopback) */
		if (ep && !hairpin) {
			ret = ingress_policy(ep, sec_id, &f, ep->ifindex);
			if (ret < 0)
				return send_drop(ctx, -ret, METRIC_INGRESS);
		}
		ret = ct_create(&f, sec_id, len);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		cilium_dbg3(ctx, DBG_CT_CREATED4, ep_id, 0, sec_id, 0);
	}

	if (ep) {
		/* Same-node endpoint: route it ourselves and hand the packet
		 * straight to the peer device inside the destination netns. */
		trace_to_lxc(ep, sec_id, &f, st);
		cilium_dbg(ctx, DBG_LOCAL_DELIVERY, ep_id, ep->lxc_id, sec_id);
		ret = l3_local_delivery(ctx, ep);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		update_metrics(len, METRIC_EGRESS, REASON_FORWARDED);
		update_metrics(len, METRIC_INGRESS, REASON_FORWARDED);
		return bpf_redirect_peer(ep->ifindex, 0);
	}
	/* Another node's pod or address in tunnel mode: encapsulate, with our
	 * identity in the VNI. */
	if (info && info->tunnel_endpoint) {
		trace_point(TRACE_TO_OVERLAY, ep_id, ifindex, sec_id, info->sec_identity, &f, st, METRIC_EGRESS);
		cilium_dbg(ctx, DBG_ENCAP, ep_id, info->tunnel_endpoint, sec_id);
		ret = encap_and_redirect(ctx, info->tunnel_endpoint, sec_id);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		update_metrics(len, METRIC_EGRESS, REASON_FORWARDED);
		return ret;
	}
	/* The node itself: its stack. */
	if (info && info->sec_identity == HOST_ID) {
		trace_point(TRACE_TO_STACK, ep_id, ifindex, sec_id, HOST_ID, &f, st, METRIC_EGRESS);
		update_metrics(len, METRIC_EGRESS, REASON_FORWARDED);
		return TC_ACT_OK;
	}
	/* Beyond this node (native routing, other nodes, the world): route it
	 * here and hand it to the egress device; the node itself and whatever
	 * the FIB does not forward go up the stack. */
	/* (a reply keeps its addresses: the connection came from outside) */
	ret = st == CT_REPLY ? 0 : masquerade4(ctx, l4_off, &f, info ? info->sec_identity : WORLD_ID);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);
	ret = fib_redirect_v4(ctx);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);
	/* straight out of a device (to-network), or up the stack */
	trace_point(ret == TC_ACT_REDIRECT ? TRACE_TO_NETWORK : TRACE_TO_STACK, ep_id, ifindex, sec_id,
		    info ? info->sec_identity : WORLD_ID, &f, st, METRIC_EGRESS);
	update_metrics(len, METRIC_EGRESS, REASON_FORWARDED);
	return ret;
}

SEC("classifier")
int from_container(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_EGRESS);
	trace_unparsed(ctx, TRACE_FROM_LXC, METRIC_EGRESS);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_EGRESS);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return handle_ipv4_from_lxc(ctx);
	case bpf_htons(ETH_P_ARP): {
		/* answered with the host-side veth's MAC, for the sender's own address only */
		struct arp_eth *body = (void *)(eth + 1) + sizeof(struct arphdr);
		const struct endpoint_info *me;
		__u8 mac[ETH_ALEN];
		int ret;

		if ((void *)(body + 1) > data_end)
			return send_drop(ctx, DROP_INVALID, METRIC_EGRESS);
		me = self_endpoint(ctx, body->sip);
		if (!me)
			return send_drop(ctx, DROP_INVALID_SOURCE_IP, METRIC_EGRESS);
		__builtin_memcpy(mac, me->node_mac, ETH_ALEN);
		ret = arp_respond(ctx, mac);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		update_metrics(ctx->len, METRIC_EGRESS, REASON_FORWARDED);
		return bpf_redirect(ctx->ifindex, 0);
	}
	default:
		return send_drop(ctx, DROP_UNSUPPORTED_L3, METRIC_EGRESS);
	}
}

char __license[] SEC("license") = "Dual BSD/GPL";
