// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Node-side programs.
 *   from_host: tc egress of seta_host. The node routes the pod CIDR to
 *   seta_host; this program delivers each packet to its endpoint's veth. */
#include "lib/common.h"

SEC("classifier")
int from_host(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct endpoint_info *ep;

	if ((void *)(eth + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if ((void *)(ip + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);

	ep = lookup_ip4_endpoint(ip->daddr);
	if (!ep || (ep->flags & ENDPOINT_F_HOST))
		return TC_ACT_OK;
	/* The stack already routed (and decremented TTL); only set L2. */
	__builtin_memcpy(eth->h_dest, ep->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ep->node_mac, ETH_ALEN);
	update_metrics(ctx->len, METRIC_INGRESS, REASON_FORWARDED);
	return bpf_redirect(ep->ifindex, 0);
}

char __license[] SEC("license") = "Dual BSD/GPL";
