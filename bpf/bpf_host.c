// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Node-side programs.
 *   from_host: tcx egress of seta_host. The node routes the pod CIDR (and, in
 *   tunnel mode, other nodes' pod CIDRs) to seta_host; this program applies a
 *   local destination's ingress policy to new connections and delivers each
 *   packet to its endpoint's veth, or encapsulates it towards another node.
 *   from_overlay: tcx ingress of seta_vxlan. The source identity is the VNI;
 *   local endpoints get their ingress policy, the node gets the rest.
 *   from_netdev: tcx ingress of the node's device; delivers to local pods,
 *   serves NodePort/ExternalIP/LoadBalancer frontends (nodeport.h). */
#include "lib/common.h"
#include "lib/policy.h"
#include "lib/tunnel.h"
#include "lib/lb.h"
#include "lib/nodeport.h"

SEC("classifier")
int from_host(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct endpoint_info *ep;
	int ret;

	if ((void *)(eth + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	trace_unparsed(ctx, TRACE_FROM_HOST, METRIC_EGRESS);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);

	ep = lookup_ip4_endpoint(ip->daddr);
	if (!ep) {
		/* tunnel mode: the node talking to another node's pod */
		struct remote_endpoint_info *info = ipcache_lookup(ip->daddr);

		if (info && info->tunnel_endpoint) {
			trace_unparsed(ctx, TRACE_TO_OVERLAY, METRIC_EGRESS);
			ret = encap_and_redirect(ctx, info->tunnel_endpoint, REMOTE_NODE_ID);
			if (ret < 0)
				return send_drop(ctx, -ret, METRIC_EGRESS);
			update_metrics(ctx->len, METRIC_EGRESS, REASON_FORWARDED);
			return ret;
		}
		return TC_ACT_OK;
	}
	if (ep->flags & ENDPOINT_F_HOST)
		return TC_ACT_OK;
	/* The node's own addresses are in the ipcache as host (1). */
	ret = ingress_admit(ctx, ip, ep, ipcache_identity(ip->saddr));
	if (ret)
		return ret;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);
	/* The stack already routed (and decremented TTL); only set L2. */
	__builtin_memcpy(eth->h_dest, ep->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ep->node_mac, ETH_ALEN);
	update_metrics(ctx->len, METRIC_INGRESS, REASON_FORWARDED);
	return bpf_redirect(ep->ifindex, 0);
}

SEC("classifier")
int from_overlay(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct bpf_tunnel_key key = {};
	struct endpoint_info *ep;
	__u32 src_id;

	if ((void *)(eth + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return send_drop(ctx, DROP_UNSUPPORTED_L3, METRIC_INGRESS);
	trace_unparsed(ctx, TRACE_FROM_OVERLAY, METRIC_INGRESS);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);
	if (bpf_skb_get_tunnel_key(ctx, &key, sizeof(key), 0) < 0)
		return send_drop(ctx, DROP_NO_TUNNEL_KEY, METRIC_INGRESS);
	src_id = key.tunnel_id;
	cilium_dbg(ctx, DBG_DECAP, 0, src_id, 0);
	/* The inner frame was addressed to the sender's device: it is ours now. */
	bpf_skb_change_type(ctx, 0 /* PACKET_HOST */);
	/* an ICMP error about a connection SNATed here (a NodePort's backend
	 * on the sender's node): the client's (pointers taken again) */
	if (ip->protocol == IPPROTO_ICMP) {
		int ret = nat_icmp_error(ctx, 0);

		if (ret >= 0)
			return ret;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		ip = data + ETH_HLEN;
		if ((void *)(ip + 1) > data_end)
			return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);
	}

	ep = lookup_ip4_endpoint(ip->daddr);
	if (!ep || (ep->flags & ENDPOINT_F_HOST)) {
		/* a reply through this node's SNAT, a NodePort of this node from
		 * another node's pod, else for the node itself (its router IP
		 * or underlay addresses) */
		int ret = nodeport_ingress(ctx, src_id);

		if (ret >= 0)
			return ret;
		trace_unparsed(ctx, TRACE_TO_STACK, METRIC_INGRESS);
		update_metrics(ctx->len, METRIC_INGRESS, REASON_FORWARDED);
		return TC_ACT_OK;
	}
	return to_local_endpoint(ctx, ip, ep, src_id);
}

/* tcx ingress of the node's own network device(s): packets routed to a local
 * pod from other nodes (native routing) or the outside world are delivered
 * here, without the node's forwarding path: the source identity comes from
 * the ipcache, then the pod's ingress policy, then bpf_redirect_peer.
 * Everything else (the node's own traffic, VXLAN) goes on to the stack. */
SEC("classifier")
int from_netdev(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct endpoint_info *ep;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	trace_unparsed(ctx, TRACE_FROM_NETWORK, METRIC_INGRESS);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	/* an ICMP error about a connection SNATed here (masqueraded, or a
	 * NodePort's): the client's; about a NodePort's reply: the
	 * backend's (the call may write the packet: its pointers are taken
	 * again either way) */
	if (ip->protocol == IPPROTO_ICMP) {
		int ret = nat_icmp_error(ctx, 1);

		if (ret >= 0)
			return ret;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		ip = data + ETH_HLEN;
		if ((void *)(ip + 1) > data_end)
			return TC_ACT_OK;
	}
	ep = lookup_ip4_endpoint(ip->daddr);
	if (!ep || (ep->flags & ENDPOINT_F_HOST)) {
		/* a reply through this node's SNAT, or a service frontend
		 * reached from outside */
		int ret = nodeport_ingress(ctx, ipcache_identity(ip->saddr));

		return ret >= 0 ? ret : TC_ACT_OK;
	}
	/* DSR: the service this connection came in through, for the replies */
	if (ip->ihl == 5 + DSR_IPV4_OPT_LEN / 4) {
		struct flow f = {};

		if (parse_l4(ctx, ip, &f) == 0)
			dsr_learn4(ctx, &f);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		ip = data + ETH_HLEN;
		if ((void *)(ip + 1) > data_end)
			return TC_ACT_OK;
	}
	return to_local_endpoint(ctx, ip, ep, ipcache_identity(ip->saddr));
}

char __license[] SEC("license") = "Dual BSD/GPL";
