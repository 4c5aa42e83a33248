// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Endpoint program, loaded once per endpoint with per-endpoint constants set at
 * load time (no compiler at run time).
 *   from_container: tcx ingress of the host-side veth (packets leaving the pod).
 * Delivery into the pod is done by the sender: from_container of another pod
 * (bpf_redirect_peer) or from_host on seta_host (bpf_redirect). One TCX link
 * per endpoint: each attach costs an RCU grace period under the RTNL lock. */
#include "lib/common.h"
#include "lib/arp.h"
#include "lib/policy.h"
#include "lib/tunnel.h"
#include "lib/fib.h"

/* This endpoint's own policy map; the loader pins it as seta_pol_NNNNN and the
 * agent registers it in seta_policy before the program is attached. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(key_size, sizeof(struct policy_key));
	__uint(value_size, sizeof(struct policy_entry));
	__uint(max_entries, POLICY_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} seta_pol_ep SEC(".maps");

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
	struct remote_endpoint_info *info = NULL;
	struct flow f = {};
	__u32 remote, cookie = 0, len = ctx->len;
	int ret;

	if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->version != 4)
		return send_drop(ctx, DROP_INVALID, METRIC_EGRESS);
	/* A pod may only send with its own address. */
	if (ip->saddr != EP_IPV4)
		return send_drop(ctx, DROP_INVALID_SOURCE_IP, METRIC_EGRESS);
	ret = parse_l4(ctx, ip, &f);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);

	ep = lookup_ip4_endpoint(f.key.daddr);
	if (ep && (ep->flags & ENDPOINT_F_HOST))
		ep = NULL;
	if (!ep)
		info = ipcache_lookup(f.key.daddr);

	if (ct_lookup(&f, len) == CT_NEW) {
		/* the remote identity only matters for new connections */
		remote = ep ? ep->sec_id : (info ? info->sec_identity : WORLD_ID);
		/* egress policy of this endpoint */
		ret = policy_check_peer(&seta_pol_ep, remote, f.key.daddr, 1, &f, &cookie);
		emit_event(EVENT_POLICY_VERDICT, 0, EP_ID, EP_IFINDEX, EP_SECID, remote, ret, cookie, &f, METRIC_EGRESS);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		/* ingress policy of a local destination */
		if (ep) {
			ret = ingress_policy(ep, EP_SECID, &f, ep->ifindex);
			if (ret < 0)
				return send_drop(ctx, -ret, METRIC_INGRESS);
		}
		ret = ct_create(&f, EP_SECID, len);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
	}

	if (ep) {
		/* Same-node endpoint: route it ourselves and hand the packet
		 * straight to the peer device inside the destination netns. */
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
		ret = encap_and_redirect(ctx, info->tunnel_endpoint, EP_SECID);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		update_metrics(len, METRIC_EGRESS, REASON_FORWARDED);
		return ret;
	}
	/* The node itself: its stack. */
	if (info && info->sec_identity == HOST_ID) {
		update_metrics(len, METRIC_EGRESS, REASON_FORWARDED);
		return TC_ACT_OK;
	}
	/* Beyond this node (native routing, other nodes, the world): route it
	 * here and hand it to the egress device; the node itself and whatever
	 * the FIB does not forward go up the stack. */
	ret = fib_redirect_v4(ctx);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);
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
