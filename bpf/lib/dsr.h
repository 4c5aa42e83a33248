/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* NodePort DSR (Cilium's --bpf-lb-mode dsr|hybrid, dispatch "opt", native
 * routing): the node a client reached forwards the request to a remote
 * backend without SNAT, the service's address and port in an IPv4 option
 * of the first packet (a TCP SYN; every UDP datagram). The backend's node
 * remembers them for the connection, and the backend's replies leave that
 * node straight to the client, from the service address. */
#pragma once
#include "common.h"
#include "policy.h"
#include "lb.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct lb4_reverse_nat);
	__uint(max_entries, LB_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lb4_dsr SEC(".maps");

#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* Does this packet of a connection to a remote backend go by DSR, and
 * carry the option? 0: SNAT it; 1: DSR without option; 2: DSR with it.
 * `svc_dsr`: the frontend's own mode (LB_F2_FWD_MODE_DSR), which decides
 * for both protocols under OPT_LB_DSR_BY_SERVICE (Cilium's annotation mode). */
static __always_inline int dsr_wanted(const struct flow *f, int svc_dsr)
{
	__u32 opts = datapath_opts();
	__u32 tcp = OPT_LB_DSR_TCP, udp = OPT_LB_DSR_UDP;

	if (opts & OPT_LB_DSR_BY_SERVICE) {
		if (!svc_dsr)
			return 0;
		opts |= tcp | udp;
	}
	if (f->key.proto == IPPROTO_TCP && (opts & tcp))
		return (f->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN ? 2 : 1;
	if (f->key.proto == IPPROTO_UDP && (opts & udp))
		return 2;
	return 0;
}

/* Insert the DSR option (service address and port) after the IPv4 header
 * (which must have none) and fix the header's length and checksum. */
static __always_inline int dsr_set_opt4(struct __sk_buff *ctx, __be32 svc_addr, __be16 svc_port)
{
	struct dsr_opt_v4 opt = {.type = DSR_IPV4_OPT_TYPE, .len = DSR_IPV4_OPT_LEN, .port = svc_port, .addr = svc_addr};
	struct {
		struct iphdr ip;
		struct dsr_opt_v4 opt;
	} h;
	__s64 sum;

	if (bpf_skb_load_bytes(ctx, ETH_HLEN, &h.ip, sizeof(h.ip)) < 0)
		return -DROP_INVALID;
	if (h.ip.ihl != 5)
		return -DROP_INVALID;
	if (bpf_skb_adjust_room(ctx, sizeof(opt), BPF_ADJ_ROOM_NET, 0) < 0)
		return -DROP_INVALID;
	h.ip.ihl = 5 + sizeof(opt) / 4;
	h.ip.tot_len = bpf_htons(bpf_ntohs(h.ip.tot_len) + sizeof(opt));
	h.ip.check = 0;
	h.opt = opt;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h, sizeof(h), 0);
	if (sum < 0)
		return -DROP_CSUM_L3;
	h.ip.check = lb4_csum_fold(sum);
	if (bpf_skb_store_bytes(ctx, ETH_HLEN, &h, sizeof(h), 0) < 0)
		return -DROP_WRITE_ERROR;
	return 0;
}

/* On the backend's node: a packet with the DSR option, for a local pod
 * (parsed in `f`): its connection's replies will come from the service. */
static __always_inline void dsr_learn4(struct __sk_buff *ctx, const struct flow *f)
{
	struct dsr_opt_v4 opt;
	struct lb4_reverse_nat v = {};
	struct ct_key k = {};

	if (bpf_skb_load_bytes(ctx, ETH_HLEN + sizeof(struct iphdr), &opt, sizeof(opt)) < 0)
		return;
	if (opt.type != DSR_IPV4_OPT_TYPE || opt.len != DSR_IPV4_OPT_LEN)
		return;
	ct_reverse(&f->key, &k);
	v.address = opt.addr;
	v.port = opt.port;
	bpf_map_update_elem(&seta_lb4_dsr, &k, &v, BPF_ANY);
}

/* A backend's reply (CT_REPLY, backend -> client) of a DSR connection: it
 * leaves from the service's address. 0: not one; 1: done; < 0: a drop. */
static __always_inline int dsr_reply4(struct __sk_buff *ctx, __u32 l4_off, struct flow *f)
{
	struct lb4_reverse_nat *d;
	struct ct_key k = f->key;

	if (f->key.proto != IPPROTO_TCP && f->key.proto != IPPROTO_UDP)
		return 0;
	k.pad[0] = k.pad[1] = k.pad[2] = 0;
	d = bpf_map_lookup_elem(&seta_lb4_dsr, &k);
	if (!d)
		return 0;
	return lb4_rewrite_src(ctx, l4_off, f, d->address, d->port);
}

/* An ICMP error about a connection through a service, on its way to the
 * client: the quoted packet (client -> backend) is about the frontend
 * again, and so is the error's source when the backend sent it, as
 * conntrack NAT does for kube-proxy, so the client's socket gets the error
 * (UDP: ECONNREFUSED at once; TCP: path MTU). The connection was
 * translated on this node (its reverse entry in seta_lb4_conn), or is a
 * NodePort's by DSR with its backend here (seta_lb4_dsr, keyed by the
 * reply; the quoted request may carry the DSR option). A subprogram, so
 * its stack is not the caller's. 1: rewritten; 0: not such a packet
 * (untouched); negative: a drop reason. */
static __noinline __attribute__((unused)) int lb4_rev_icmp_error(struct __sk_buff *ctx)
{
	struct ct_key q = {}, k = {};
	struct lb4_reverse_nat *d;
	struct lb4_conn *c;
	__be32 to_addr;
	__be16 to_port;
	int ret, hlen;

	hlen = icmp_err_quoted(ctx, &q);
	if (hlen < 0)
		return 0;
	k = q;
	k.pad[0] = LB_CONN_REV;
	c = bpf_map_lookup_elem(&seta_lb4_conn, &k);
	if (c) {
		to_addr = c->address;
		to_port = c->port;
	} else {
		/* DSR: keyed by the reply, backend -> client */
		ct_reverse(&q, &k);
		k.pad[0] = 0;
		d = bpf_map_lookup_elem(&seta_lb4_dsr, &k);
		if (!d)
			return 0;
		to_addr = d->address;
		to_port = d->port;
	}
	ret = icmp_err_rewrite(ctx, hlen, 0, 1, q.daddr, to_addr, q.dport, to_port);
	return ret < 0 ? ret : 1;
}

/* An ICMP error quoting a reply from a frontend (frontend -> client): the
 * quoted tuple in `q`, its header's length in `hlen`, and the client's
 * connection through the service (its forward entry in seta_lb4_conn:
 * client -> frontend, to the backend), or NULL. */
static __always_inline struct lb4_conn *lb4_quoted_reply_conn(struct __sk_buff *ctx, struct ct_key *q, int *hlen)
{
	struct ct_key k = {};

	*hlen = icmp_err_quoted(ctx, q);
	if (*hlen < 0)
		return NULL;
	ct_reverse(q, &k);
	k.pad[0] = LB_CONN_FWD;
	return bpf_map_lookup_elem(&seta_lb4_conn, &k);
}

/* The other way: a pod's ICMP error about a reply it got from a frontend
 * (its port closed meanwhile, or fragmentation needed on its side), sent
 * to the frontend, goes to the backend that sent the reply, about the reply
 * as the backend sent it, as conntrack NAT does for kube-proxy. The pod's
 * connection was translated on this node by packet (its forward entry in
 * seta_lb4_conn). `quoted`: the error's quoted tuple (the flow's inner
 * key), whose source becomes the backend. A subprogram. 1: rewritten (the
 * outer destination is the backend too); 0: not such a packet (untouched);
 * negative: a drop reason. */
static __noinline __attribute__((unused)) int lb4_fwd_icmp_error(struct __sk_buff *ctx, struct ct_key *quoted)
{
	struct ct_key q = {};
	struct lb4_conn *c;
	int ret, hlen;

	c = lb4_quoted_reply_conn(ctx, &q, &hlen);
	if (!c)
		return 0;
	ret = icmp_err_rewrite(ctx, hlen, 1, 1, q.saddr, c->address, q.sport, c->port);
	if (ret < 0)
		return ret;
	quoted->saddr = c->address;
	quoted->sport = c->port;
	return 1;
}
