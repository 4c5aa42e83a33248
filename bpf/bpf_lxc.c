// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Endpoint program, loaded once per endpoint with per-endpoint constants set at
 * load time (no compiler at run time).
 *   from_container: tcx ingress of the host-side veth (packets leaving the pod).
 * Delivery into the pod is done by the sender: from_container of another pod
 * (bpf_redirect_peer) or from_host on seta_host (bpf_redirect). One TCX link
 * per endpoint: each attach costs an RCU grace period under the RTNL lock. */
#include "lib/common.h"
#include "lib/arp.h"

/* Per-endpoint configuration, rewritten by the loader (.rodata). */
volatile const __u32 EP_ID = 0;
volatile const __u32 EP_IFINDEX = 0;   /* host-side lxc ifindex */
volatile const __be32 EP_IPV4 = 0;   /* the endpoint's own address */
volatile const __u32 EP_SECID = 0;
volatile const __u64 EP_NODE_MAC = 0;  /* lxc MAC, low 6 bytes in wire order */

static __always_inline int handle_ipv4_from_lxc(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct endpoint_info *ep;
	int ret;

	if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->version != 4)
		return send_drop(ctx, DROP_INVALID, METRIC_EGRESS);
	/* A pod may only send with its own address. */
	if (ip->saddr != EP_IPV4)
		return send_drop(ctx, DROP_INVALID_SOURCE_IP, METRIC_EGRESS);

	ep = lookup_ip4_endpoint(ip->daddr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST)) {
		/* Same-node endpoint: route it ourselves and hand the packet
		 * straight to the peer device inside the destination netns. */
		ret = l3_local_delivery(ctx, ep);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		update_metrics(ctx->len, METRIC_EGRESS, REASON_FORWARDED);
		update_metrics(ctx->len, METRIC_INGRESS, REASON_FORWARDED);
		return bpf_redirect_peer(ep->ifindex, 0);
	}
	/* Everything else (the node, other destinations) goes up the stack. */
	update_metrics(ctx->len, METRIC_EGRESS, REASON_FORWARDED);
	return TC_ACT_OK;
}

SEC("classifier")
int from_container(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_EGRESS);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return handle_ipv4_from_lxc(ctx);
	case bpf_htons(ETH_P_ARP): {
		__u64 mac = EP_NODE_MAC;
		int ret = arp_respond(ctx, (const __u8 *)&mac);

		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		update_metrics(ctx->len, METRIC_EGRESS, REASON_FORWARDED);
		return bpf_redirect(EP_IFINDEX, 0);
	}
	default:
		return send_drop(ctx, DROP_UNSUPPORTED_L3, METRIC_EGRESS);
	}
}

char __license[] SEC("license") = "Dual BSD/GPL";
