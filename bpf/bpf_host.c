// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Node-side programs.
 *   from_host: tcx egress of seta_host. The node routes the pod CIDR to
 *   seta_host; this program applies the destination's ingress policy to new
 *   connections and delivers each packet to its endpoint's veth. */
#include "lib/common.h"
#include "lib/policy.h"

SEC("classifier")
int from_host(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct endpoint_info *ep;
	struct flow f = {};
	__u32 src_id;
	int ret;

	if ((void *)(eth + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if ((void *)(ip + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);

	ep = lookup_ip4_endpoint(ip->daddr);
	if (!ep || (ep->flags & ENDPOINT_F_HOST))
		return TC_ACT_OK;
	ret = parse_l4(ctx, ip, &f);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_INGRESS);
	/* The node's own addresses are in the ipcache as host (1). */
	src_id = ipcache_identity(f.key.saddr);
	if (ct_lookup(&f, ctx->len) == CT_NEW) {
		ret = ingress_policy(ep, src_id, &f, ep->ifindex);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_INGRESS);
		ret = ct_create(&f, src_id, ctx->len);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_INGRESS);
	}
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

char __license[] SEC("license") = "Dual BSD/GPL";
