/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Services from outside the cluster (NodePort, ExternalIP, LoadBalancer),
 * in from_netdev, as Cilium's SNAT mode: the frontend is translated to a
 * backend; a backend on this node gets the packet with the client's address
 * (its reply is translated back in from_container), a backend on another
 * node gets it from this node's address and a port of the NAT engine, so its
 * reply comes back here, where both translations are undone. */
#pragma once
#include "common.h"
#include "policy.h"
#include "tunnel.h"
#include "fib.h"
#include "lb.h"
#include "deliver.h"
#include "dsr.h"

#define LB_F_NORTH_SOUTH (LB_F_NODEPORT | LB_F_EXTERNAL_IP | LB_F_LOADBALANCER | LB_F_HOSTPORT | LB_F_ROUTABLE)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct nat4_entry);
	__uint(max_entries, NAT_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_snat_v4_external SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipmasq_key);
	__type(value, __u8);
	__uint(max_entries, IPMASQ_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_ipmasq_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, MASQ_DEV_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_masq_dev_v4 SEC(".maps");

static __always_inline __be32 node_ip4(void)
{
	__u32 slot = CONFIG_NODE_IP;
	__u32 *ip = bpf_map_lookup_elem(&seta_config, &slot);

	return ip ? *ip : 0;
}

/* The first port BPF SNAT gives: above the NodePort range. */
static __always_inline __u32 nat_port_min(void)
{
	__u32 m = datapath_opts() >> OPT_NAT_PORT_MIN_SHIFT;

	return m ? m : NAT_PORT_MIN;
}

/* The address a new masqueraded connection from `saddr` to `daddr` leaves
 * from: that of the native device the FIB sends it out of (Cilium
 * masquerades on each native device to that device's address), else `nip`,
 * the node's. A subprogram: its lookup's stack is not the caller's. */
static __noinline __attribute__((unused)) __be32 masq_dev_addr4(struct __sk_buff *ctx, __be32 saddr, __be32 daddr, __be32 nip)
{
	struct bpf_fib_lookup p = {};
	__be32 *addr;
	__u32 ifindex;

	p.family = AF_INET;
	p.ipv4_src = saddr;
	p.ipv4_dst = daddr;
	p.ifindex = ctx->ingress_ifindex;
	if (bpf_fib_lookup(ctx, &p, sizeof(p), BPF_FIB_LOOKUP_SKIP_NEIGH) != BPF_FIB_LKUP_RET_SUCCESS)
		return nip;
	ifindex = p.ifindex;
	addr = bpf_map_lookup_elem(&seta_masq_dev_v4, &ifindex);
	return addr && *addr ? *addr : nip;
}

/* Source NAT of a translated connection (client -> backend) to the node's
 * address (`by_device`: BPF masquerade, to the egress device's,
 * masq_dev_addr4, when the connection is new): the connection's port if it
 * has one, else the client's port when free, else a random one above the
 * NodePort range (32768..65535 by default), 32 tries (Cilium's retries). 0
 * or a negative drop reason. */
static __always_inline int snat4_fwd(struct __sk_buff *ctx, __u32 l4_off, struct flow *f, int by_device)
{
	struct nat4_entry out = {}, in = {}, *e;
	struct ct_key ok = f->key, ik = {};
	__be32 nip = node_ip4();
	__u32 pmin;
	__u16 port;
	int i;

	if (!nip)
		return -DROP_NAT_NO_MAPPING;
	ok.pad[0] = NAT_DIR_OUT;
	e = bpf_map_lookup_elem(&seta_snat_v4_external, &ok);
	if (e) {
		out = *e;
	} else {
		if (by_device)
			nip = masq_dev_addr4(ctx, f->key.saddr, f->key.daddr, nip);
		ik.saddr = f->key.daddr;
		ik.daddr = nip;
		ik.sport = f->key.dport;
		ik.proto = f->key.proto;
		ik.pad[0] = NAT_DIR_IN;
		in.created = bpf_ktime_get_coarse_ns();
		in.to_addr = f->key.saddr;
		in.to_port = f->key.sport;
		port = bpf_ntohs(f->key.sport);
		pmin = nat_port_min();
		for (i = 0; i <= NAT_COLLISION_RETRIES; i++) {
			if (i > 0 || port < pmin)
				port = pmin + (bpf_get_prandom_u32() % (65536 - pmin));
			ik.dport = bpf_htons(port);
			/* an echo reply carries the new identifier as both */
			if (f->key.proto == IPPROTO_ICMP)
				ik.sport = ik.dport;
			if (bpf_map_update_elem(&seta_snat_v4_external, &ik, &in, BPF_NOEXIST) == 0)
				break;
		}
		if (i > NAT_COLLISION_RETRIES)
			return -DROP_NAT_NO_MAPPING;
		out.created = in.created;
		out.to_addr = nip;
		out.to_port = ik.dport;
		if (bpf_map_update_elem(&seta_snat_v4_external, &ok, &out, BPF_ANY) < 0) {
			bpf_map_delete_elem(&seta_snat_v4_external, &ik);
			return -DROP_NAT_NO_MAPPING;
		}
	}
	return lb4_rewrite(ctx, l4_off, f, 0, f->key.saddr, out.to_addr, f->key.sport, out.to_port);
}

/* BPF masquerade: a pod's TCP/UDP/SCTP connection or ICMP echo (ping) to the
 * world (no cluster identity: world or a CIDR identity) leaves from the
 * node's address, a port (an echo identifier) of the NAT engine; the reply comes back through nodeport_ingress.
 * Destinations in seta_ipmasq_v4 (the native routing CIDR, the
 * ip-masq-agent's ranges) keep the pod's address.
 * 0 (translated or not to be) or a negative drop reason. */
static __always_inline int masquerade4(struct __sk_buff *ctx, __u32 l4_off, struct flow *f, __u32 dst_id)
{
	if (!l4_ports(f->key.proto) &&
	    !(f->key.proto == IPPROTO_ICMP && f->policy_port == bpf_htons(ICMP_ECHO)))
		return 0;
	if (dst_id != WORLD_ID && (dst_id >> 24) != 1 /* CIDR identities */)
		return 0;
	if (!(datapath_opts() & OPT_MASQUERADE) || !node_ip4())
		return 0;
	{
		struct ipmasq_key k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, &f->key.daddr, 4);
		if (bpf_map_lookup_elem(&seta_ipmasq_v4, &k))
			return 0;
	}
	return snat4_fwd(ctx, l4_off, f, 1);
}

/* Hand a packet to another node: encapsulated in tunnel mode (from the
 * node: remote-node identity), else routed by the FIB. */
static __always_inline int nodeport_forward(struct __sk_buff *ctx, __be32 daddr)
{
	struct remote_endpoint_info *info = ipcache_lookup(daddr);

	if (info && info->tunnel_endpoint)
		return encap_and_redirect(ctx, info->tunnel_endpoint, REMOTE_NODE_ID);
	return fib_redirect_v4(ctx);
}

/* A reply of a connection SNATed here (backend -> node:port), parsed in
 * `f`: back to the client, from the frontend (a masqueraded pod's reply:
 * into the pod). -1: not ours (the caller goes on); else a TC verdict. */
static __always_inline int nodeport_rev(struct __sk_buff *ctx, __u32 l4_off, struct flow *f)
{
	struct endpoint_info *ep;
	struct nat4_entry *e;
	__u8 pad = f->key.pad[0];
	__be32 to_addr;
	__be16 to_port;
	int ret;

	/* the reply's own key, marked inbound (no copy: the stack is tight) */
	f->key.pad[0] = NAT_DIR_IN;
	e = bpf_map_lookup_elem(&seta_snat_v4_external, &f->key);
	f->key.pad[0] = pad;
	if (!e)
		return -1;
	to_addr = e->to_addr;
	to_port = e->to_port;
	ret = lb4_rewrite(ctx, l4_off, f, 1, f->key.daddr, to_addr, f->key.dport, to_port);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_INGRESS);
	f->key.daddr = to_addr;
	f->key.dport = to_port;
	if (f->key.proto == IPPROTO_ICMP)
		f->key.sport = to_port;
	/* backend -> client: the frontend is the source again */
	ret = lb4_xlate_rev(ctx, l4_off, f);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_INGRESS);
	ep = lookup_ip4_endpoint(to_addr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return to_local_endpoint_rewritten(ctx, ep, ipcache_identity(f->key.saddr));
	ret = fib_redirect_v4(ctx);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);
	update_metrics(ctx->len, METRIC_EGRESS, REASON_FORWARDED);
	return ret;
}

/* A packet for a NodePort, ExternalIP, LoadBalancer or hostPort frontend of
 * this node (from outside, or a pod of another node), parsed in `f`, from a
 * sender of identity `src_id`: to a backend here (the client's address
 * kept), or SNATed to another node's. -1: no such frontend; else a verdict. */
static __always_inline int nodeport_lb4(struct __sk_buff *ctx, __u32 l4_off, struct flow *f, __u32 src_id)
{
	struct endpoint_info *ep;
	__be32 svc_addr = f->key.daddr;
	__be16 svc_port = f->key.dport;
	int ret, dsr;

	ret = lb4_xlate_fwd(ctx, l4_off, f, LB_F_NORTH_SOUTH);
	if (ret == 0)
		return -1;
	/* the refusal answers a datagram's first fragment, not the others */
	if (ret == -DROP_NO_SERVICE && !f->later_frag)
		return lb4_reject(ctx);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_INGRESS);
	ep = lookup_ip4_endpoint(f->key.daddr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return to_local_endpoint_rewritten(ctx, ep, src_id);
	/* a backend on another node: DSR (the client's address kept, the
	 * service in an option of the first packet), else SNAT */
	dsr = dsr_wanted(f, ret == 2);
	if (dsr == 2)
		ret = dsr_set_opt4(ctx, svc_addr, svc_port);
	else if (dsr == 0)
		ret = snat4_fwd(ctx, l4_off, f, 0);
	else
		ret = 0;
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);
	ret = nodeport_forward(ctx, f->key.daddr);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);
	update_metrics(ctx->len, METRIC_EGRESS, REASON_FORWARDED);
	return ret;
}

/* An ICMP error (destination unreachable, among them "fragmentation
 * needed", or time exceeded) about a connection this node's NAT engine
 * translated, sent to the node's address: a masqueraded pod's connection,
 * or a NodePort's SNATed to a backend on another node. The outer
 * destination and the quoted packet's source address and port are the
 * client's again (Cilium's reverse SNAT of ICMP errors), with the outer,
 * quoted and ICMP checksums (for a service, nat_icmp_error then makes the
 * frontend the quoted destination and the error's source); the
 * caller then delivers it to a local pod as any other packet (conntrack
 * finds it related), or the stack routes it to the client. A subprogram,
 * so its stack is not the caller's. 1: rewritten for a local pod; 2:
 * rewritten for another client (nat_icmp_error goes on); 0: not such a
 * packet (untouched). */
static __noinline __attribute__((unused)) int nat_rev_icmp_error(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct ct_key q = {}, k = {};
	struct endpoint_info *ep;
	struct nat4_entry *e;
	__be32 node, to_addr;
	__be16 to_port;
	int hlen;

	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_ICMP)
		return 0;
	node = ip->daddr;
	hlen = icmp_err_quoted(ctx, &q);
	if (hlen < 0 || q.saddr != node)
		return 0;
	/* the reply direction's key of the quoted connection */
	ct_reverse(&q, &k);
	k.pad[0] = NAT_DIR_IN;
	e = bpf_map_lookup_elem(&seta_snat_v4_external, &k);
	if (!e)
		return 0;
	to_addr = e->to_addr;
	to_port = e->to_port;
	if (icmp_err_rewrite(ctx, hlen, 1, 1, node, to_addr, q.sport, to_port) < 0)
		return 0;
	ep = lookup_ip4_endpoint(to_addr);
	return ep && !(ep->flags & ENDPOINT_F_HOST) ? 1 : 2;
}

/* An ICMP error about a NodePort connection's reply (frontend -> client),
 * sent to the frontend by the client's side (the client's port closed, a
 * router's "fragmentation needed" on the way back): about the packet as
 * the backend sent it (backend -> client, or -> this node's NAT port when
 * SNATed) and for the backend, as conntrack NAT does for kube-proxy. A
 * subprogram, so its stack is not the caller's. 1: rewritten (the outer
 * destination is the backend now); 0: not such a packet (untouched). */
static __noinline __attribute__((unused)) int nodeport_fwd_icmp_error(struct __sk_buff *ctx)
{
	struct ct_key q = {}, k = {};
	struct nat4_entry *e;
	struct lb4_conn *c;
	__be32 be_addr;
	__be16 be_port;
	int hlen;

	/* the quoted reply is frontend -> client: the client's own entry */
	c = lb4_quoted_reply_conn(ctx, &q, &hlen);
	if (!c)
		return 0;
	ct_reverse(&q, &k);
	be_addr = c->address;
	be_port = c->port;
	/* SNATed here: the backend sent to this node's NAT port (the error's
	 * source, the client or a router, stays) */
	k.daddr = be_addr;
	k.dport = be_port;
	k.pad[0] = NAT_DIR_OUT;
	e = bpf_map_lookup_elem(&seta_snat_v4_external, &k);
	if (e && icmp_err_rewrite(ctx, hlen, 0, 0, q.daddr, e->to_addr, q.dport, e->to_port) < 0)
		return 0;
	/* from the backend, to it */
	if (icmp_err_rewrite(ctx, hlen, 1, 1, q.saddr, be_addr, q.sport, be_port) < 0)
		return 0;
	return 1;
}

/* An ICMP packet that came into this node: an error about a connection
 * its NAT engine translated, or (with `to_backends`, from outside) about a
 * NodePort's reply. Masqueraded or SNATed for a NodePort, it becomes the
 * client's (nat_rev_icmp_error); for a client that is no local pod (a
 * NodePort's from outside or another node) the service's side too
 * (lb4_rev_icmp_error; a local pod's error gets it in ingress_admit), and
 * it is routed to the client here, as its source may be the node's own
 * address now (the stack would drop it as a martian). About a NodePort's
 * reply, it goes to the backend (nodeport_fwd_icmp_error): into the local
 * pod, or to its node. The subprograms are called one after the other and
 * not one in another: the stack of a call chain is bounded. -1: none of
 * these (the caller goes on; the packet's pointers are to be taken again);
 * else a TC verdict. */
static __always_inline int nat_icmp_error(struct __sk_buff *ctx, int to_backends)
{
	void *data, *data_end;
	struct endpoint_info *ep;
	struct iphdr *ip;
	int ret;

	ret = nat_rev_icmp_error(ctx);
	if (ret == 2) {
		lb4_rev_icmp_error(ctx);
		ret = fib_redirect_v4(ctx);
		if (ret < 0)
			return send_drop(ctx, -ret, METRIC_EGRESS);
		update_metrics(ctx->len, METRIC_EGRESS, REASON_FORWARDED);
		return ret;
	}
	if (ret == 1 || !to_backends || nodeport_fwd_icmp_error(ctx) != 1)
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return send_drop(ctx, DROP_INVALID, METRIC_INGRESS);
	ep = lookup_ip4_endpoint(ip->daddr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return to_local_endpoint(ctx, ip, ep, ipcache_identity(ip->saddr));
	ret = nodeport_forward(ctx, ip->daddr);
	if (ret < 0)
		return send_drop(ctx, -ret, METRIC_EGRESS);
	update_metrics(ctx->len, METRIC_EGRESS, REASON_FORWARDED);
	return ret;
}

/* A TCP/UDP packet (or ICMP echo reply) for one of this node's own
 * addresses (from the node's device or the tunnel): parsed once, then a
 * reply of this node's NAT engine, else a north-south service frontend. -1: neither (the caller
 * goes on); else a TC verdict. */
static __always_inline int nodeport_ingress(struct __sk_buff *ctx, __u32 src_id)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct flow f = {};
	__u32 l4_off;
	int ret;

	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return -1;
	if (!l4_ports(ip->protocol) && ip->protocol != IPPROTO_ICMP)
		return -1;
	l4_off = ETH_HLEN + ((__u32)ip->ihl << 2);
	if (parse_l4(ctx, ip, &f) < 0)
		return -1;
	/* ICMP: only the echo replies of masqueraded pings are the NAT's */
	if (f.key.proto == IPPROTO_ICMP && f.policy_port != bpf_htons(ICMP_ECHOREPLY))
		return -1;
	ret = nodeport_rev(ctx, l4_off, &f);
	if (ret >= 0 || f.key.proto == IPPROTO_ICMP)
		return ret;
	return nodeport_lb4(ctx, l4_off, &f, src_id);
}
