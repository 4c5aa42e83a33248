/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Services, per packet: a pod's packet to a service frontend goes to one of
 * its backends (DNAT), the same one for the whole connection; the replies
 * get the frontend back as their source (reverse NAT) where they are
 * delivered to the client. Maps and layouts after Cilium's lb4 maps. */
#pragma once
#include "common.h"
#include "policy.h"
#include "sctp.h"

#define ICMP_PORT_UNREACH 3

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
	__uint(max_entries, LB_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lb4_svc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb4_backend);
	__uint(max_entries, LB_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lb4_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct lb4_reverse_nat);
	__uint(max_entries, LB_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lb4_rnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct lb4_conn);
	__uint(max_entries, LB_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lb4_conn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_affinity_key);
	__type(value, struct lb_affinity_val);
	__uint(max_entries, LB_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lb4_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lb4_src_range_key);
	__type(value, __u8);
	__uint(max_entries, LB_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lb4_source_range SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_maglev_key);
	__type(value, struct lb4_maglev_chunk);
	__uint(max_entries, LB_MAGLEV_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lb4_maglev SEC(".maps");


/* Bob Jenkins' lookup3 final mix over three words (the kernel's jhash_3words). */
static __always_inline __u32 rol32(__u32 w, __u32 s)
{
	return (w << s) | (w >> (32 - s));
}

static __always_inline __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += 0xdeadbeef + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	return c;
}

/* Maglev (a service whose master entry says LB_ALG_MAGLEV): the flow's hash
 * picks one of the table's M slots, so every node sends the same flow to
 * the same backend. With session affinity only the client's address is
 * hashed, as Cilium does. */
static __always_inline struct lb4_backend *lb4_maglev_backend(const struct lb4_service *svc, const struct ct_key *t, __u32 *id)
{
	struct lb4_maglev_key mk = {.rev_nat_id = svc->rev_nat_index};
	__u32 m = config_u32(CONFIG_LB_MAGLEV_M), seed = config_u32(CONFIG_LB_HASH_SEED), h, slot;
	struct lb4_maglev_chunk *c;

	if (!m)
		return NULL;
	if (svc->flags & LB_F_AFFINITY)
		h = jhash_3words(t->saddr, 0, 0, seed);
	else
		h = jhash_3words(t->saddr, t->daddr, ((__u32)t->sport << 16) | t->dport, seed ^ t->proto);
	slot = h % m;
	mk.chunk = slot / LB_MAGLEV_CHUNK;
	c = bpf_map_lookup_elem(&seta_lb4_maglev, &mk);
	if (!c)
		return NULL;
	*id = c->backend_ids[slot & (LB_MAGLEV_CHUNK - 1)];
	return bpf_map_lookup_elem(&seta_lb4_be, id);
}

/* Rewrite the destination (dst) or source address and port of the packet
 * `f` was parsed from, fixing the IP and TCP/UDP/SCTP checksums. A fragment
 * after the first has no L4 header: only its address changes (its ports and
 * the datagram's checksum are in the first). */
static __always_inline int lb4_rewrite(struct __sk_buff *ctx, __u32 l4_off, const struct flow *f, int dst,
				       __be32 old_addr, __be32 new_addr, __be16 old_port, __be16 new_port)
{
	__u8 proto = f->key.proto;
	__u32 addr_off = ETH_HLEN + (dst ? __builtin_offsetof(struct iphdr, daddr) : __builtin_offsetof(struct iphdr, saddr));
	/* TCP, UDP and SCTP: source port, then destination port; an ICMP
	 * echo's identifier stands for both (its checksum has no pseudo-header) */
	__u32 port_off = l4_off + (proto == IPPROTO_ICMP ? 4 : dst ? 2 : 0);
	__u32 csum_off = l4_off + (proto == IPPROTO_TCP ? 16 : proto == IPPROTO_ICMP ? 2 : 6);
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (f->later_frag) {
		/* the address only */
	} else if (proto == IPPROTO_SCTP) {
		if (old_port != new_port && sctp_port_csum(ctx, l4_off, port_off, old_port, new_port) < 0)
			return -DROP_CSUM_L4;
	} else {
		if (proto != IPPROTO_ICMP &&
		    bpf_l4_csum_replace(ctx, csum_off, old_addr, new_addr, mangled | BPF_F_PSEUDO_HDR | 4) < 0)
			return -DROP_CSUM_L4;
		if (old_port != new_port && bpf_l4_csum_replace(ctx, csum_off, old_port, new_port, mangled | 2) < 0)
			return -DROP_CSUM_L4;
	}
	if (bpf_l3_csum_replace(ctx, ETH_HLEN + __builtin_offsetof(struct iphdr, check), old_addr, new_addr, 4) < 0)
		return -DROP_CSUM_L3;
	if (bpf_skb_store_bytes(ctx, addr_off, &new_addr, 4, 0) < 0)
		return -DROP_WRITE_ERROR;
	if (!f->later_frag && bpf_skb_store_bytes(ctx, port_off, &new_port, 2, 0) < 0)
		return -DROP_WRITE_ERROR;
	return 0;
}

/* The backend of slot `slot` of a service, if it still exists. */
static __always_inline struct lb4_backend *lb4_slot_backend(struct lb4_key *k, __u16 slot, __u32 *id)
{
	struct lb4_service *s;

	k->backend_slot = slot;
	s = bpf_map_lookup_elem(&seta_lb4_svc, k);
	if (!s)
		return NULL;
	*id = s->backend_id;
	return bpf_map_lookup_elem(&seta_lb4_be, id);
}

/* The entry that serves the cluster's own clients (pods, the node's
 * sockets): a frontend with two scopes switches to its scope-1 twin
 * (Cilium's scope switch: internalTrafficPolicy's backends). */
static __always_inline struct lb4_service *lb4_internal_scope(struct lb4_key *k, struct lb4_service *svc)
{
	if (!(svc->flags2 & LB_F2_TWO_SCOPES))
		return svc;
	k->scope = 1;
	return bpf_map_lookup_elem(&seta_lb4_svc, k);
}

/* A packet to a service frontend: the connection's backend (kept while it
 * exists, else chosen at random among the slots), then DNAT. `need`: the
 * frontend kinds that count here (LB_F_*; 0 = any, as for pods; from outside
 * only NodePort, ExternalIP and LoadBalancer frontends do).
 * 0: not a service; 1: translated (f follows), 2: the same for a frontend
 * that forwards by DSR (LB_F2_FWD_MODE_DSR); < 0: a drop reason. */
static __always_inline int lb4_xlate_fwd(struct __sk_buff *ctx, __u32 l4_off, struct flow *f, __u8 need)
{
	struct lb4_key k = {.address = f->key.daddr, .dport = f->key.dport, .proto = f->key.proto};
	struct lb4_conn conn = {}, *c;
	struct lb4_service *svc;
	struct lb4_backend *be = NULL;
	struct ct_key ck;
	__be32 vip = f->key.daddr;
	__be16 vport = f->key.dport;
	__u32 id = 0;
	int ret, done;

	if (!l4_ports(f->key.proto))
		return 0;
	svc = bpf_map_lookup_elem(&seta_lb4_svc, &k);
	if (!svc || (need && !(svc->flags & need)))
		return 0;
	/* a pod's packet is the cluster's own client */
	if (!need) {
		svc = lb4_internal_scope(&k, svc);
		if (!svc)
			return 0;
	}
	/* a pod's packet to an ExternalIP that is none of the node's
	 * addresses goes to that address, as the pod's socket did
	 * (CVE-2020-8554 mitigation with socket-LB) */
	if (!need && (svc->flags2 & LB_F2_EXTERNAL_IP_FOREIGN) && (datapath_opts() & OPT_EXTERNAL_IP_MITIGATION))
		return 0;
	/* loadBalancerSourceRanges hold for clients from outside only: an
	 * allow list, or with src-ranges-policy deny a deny list */
	if (need && (svc->flags & LB_F_SOURCE_RANGE)) {
		struct lb4_src_range_key sk = {.prefixlen = 64, .rev_nat_id = svc->rev_nat_index, .addr = f->key.saddr};
		int listed = bpf_map_lookup_elem(&seta_lb4_source_range, &sk) != NULL;

		if (listed == !!(svc->flags2 & LB_F2_SOURCE_RANGE_DENY))
			return -DROP_NOT_IN_SRC_RANGE;
	}
	/* the value for "translated": 2 when the frontend forwards by DSR */
	done = (svc->flags2 & LB_F2_FWD_MODE_DSR) ? 2 : 1;
	conn.rev_nat_index = svc->rev_nat_index;
	ck = f->key;
	ck.pad[0] = LB_CONN_FWD;
	c = bpf_map_lookup_elem(&seta_lb4_conn, &ck);
	if (c) {
		id = c->backend_id;
		be = bpf_map_lookup_elem(&seta_lb4_be, &id);
		/* a replaced backend with the same id is another backend */
		if (be && (be->address != c->address || be->port != c->port))
			be = NULL;
	}
	if (!be) {
		struct lb4_affinity_key ak = {.client_id = f->key.saddr, .rev_nat_id = svc->rev_nat_index};
		struct lb_affinity_val av = {}, *a = NULL;
		__u64 now = bpf_ktime_get_coarse_ns();

		if (svc->count == 0)
			return -DROP_NO_SERVICE;
		/* sessionAffinity ClientIP: this client's backend while it is
		 * still in the slots' backends, refreshed by every connection */
		if (svc->flags & LB_F_AFFINITY) {
			a = bpf_map_lookup_elem(&seta_lb4_affinity, &ak);
			if (a && now - a->last_used <= (__u64)(svc->backend_id & 0xffffff) * NSEC_PER_SEC) {
				id = a->backend_id;
				be = bpf_map_lookup_elem(&seta_lb4_be, &id);
				if (be && be->flags != 0) /* no longer active */
					be = NULL;
			}
		}
		if (!be && (svc->backend_id >> 24) == LB_ALG_MAGLEV)
			be = lb4_maglev_backend(svc, &f->key, &id);
		if (!be)
			be = lb4_slot_backend(&k, (bpf_get_prandom_u32() % svc->count) + 1, &id);
		if (!be)
			return -DROP_NO_SERVICE;
		if (svc->flags & LB_F_AFFINITY) {
			av.last_used = now;
			av.backend_id = id;
			bpf_map_update_elem(&seta_lb4_affinity, &ak, &av, BPF_ANY);
		}
	}
	conn.address = be->address;
	conn.port = be->port;
	conn.backend_id = id;
	if (!c || c->backend_id != id)
		bpf_map_update_elem(&seta_lb4_conn, &ck, &conn, BPF_ANY);
	ret = lb4_rewrite(ctx, l4_off, f, 1, vip, conn.address, vport, conn.port);
	if (ret < 0)
		return ret;
	f->key.daddr = conn.address;
	f->key.dport = conn.port;
	f->policy_port = conn.port; /* policy applies to the backend, as Cilium's */
	/* the replies' way back to the frontend, written when it is not
	 * there as it must be (a hash update on every packet of a stream
	 * costs more than the rest of the translation) */
	ck = f->key;
	ck.pad[0] = LB_CONN_REV;
	conn.address = vip;
	conn.port = vport;
	c = bpf_map_lookup_elem(&seta_lb4_conn, &ck);
	if (c && c->address == conn.address && c->port == conn.port && c->rev_nat_index == conn.rev_nat_index &&
	    c->backend_id == conn.backend_id)
		return done;
	if (bpf_map_update_elem(&seta_lb4_conn, &ck, &conn, BPF_ANY) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	return done;
}

/* After the hairpin SNAT (f's source is the loopback address now): the
 * replies' way back to the frontend, keyed by the SNATed tuple, copied from
 * the one lb4_xlate_fwd wrote for the pod's own address `client`. */
static __always_inline int lb4_hairpin_rev(const struct flow *f, __be32 client)
{
	struct ct_key ck = f->key;
	struct lb4_conn v, *c;

	ck.saddr = client;
	ck.pad[0] = LB_CONN_REV;
	c = bpf_map_lookup_elem(&seta_lb4_conn, &ck);
	if (!c)
		return -DROP_NO_SERVICE;
	v = *c;
	ck.saddr = f->key.saddr;
	if (bpf_map_update_elem(&seta_lb4_conn, &ck, &v, BPF_ANY) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	return 0;
}

/* A reply's source becomes addr:port (f follows). 1 or a drop reason. */
static __always_inline int lb4_rewrite_src(struct __sk_buff *ctx, __u32 l4_off, struct flow *f, __be32 addr, __be16 port)
{
	int ret = lb4_rewrite(ctx, l4_off, f, 0, f->key.saddr, addr, f->key.sport, port);

	if (ret < 0)
		return ret;
	f->key.saddr = addr;
	f->key.sport = port;
	return 1;
}

/* A reply of a translated connection (CT_REPLY): the frontend becomes its
 * source again. 0: not translated; 1: done (f follows); < 0: drop reason. */
static __always_inline int lb4_xlate_rev(struct __sk_buff *ctx, __u32 l4_off, struct flow *f)
{
	struct ct_key ck = {};
	struct lb4_conn *c;

	if (!l4_ports(f->key.proto))
		return 0;
	ct_reverse(&f->key, &ck);
	ck.pad[0] = LB_CONN_REV;
	c = bpf_map_lookup_elem(&seta_lb4_conn, &ck);
	if (!c)
		return 0;
	return lb4_rewrite_src(ctx, l4_off, f, c->address, c->port);
}

/* Inside an ICMP error (outer header without options), one end of the
 * quoted packet (its IP header `q_hlen` bytes long) goes from
 * old_addr:old_port to new_addr:new_port: its source when `quoted_src`,
 * else its destination; with `outer`, also the outer address that stood
 * for it (the destination when quoted_src, else the source) when that is
 * old_addr. The quoted header's, the outer header's and the ICMP checksums
 * follow (the quoted L4 checksum is left, as receivers ignore it). 0, or a
 * negative drop reason. */
static __always_inline int icmp_err_rewrite(struct __sk_buff *ctx, __u32 q_hlen, int quoted_src, int outer,
					    __be32 old_addr, __be32 new_addr, __be16 old_port, __be16 new_port)
{
	__u32 l4_off = ETH_HLEN + sizeof(struct iphdr);
	__u32 csum_off = l4_off + __builtin_offsetof(struct icmphdr, checksum);
	__u32 in_off = l4_off + sizeof(struct icmphdr);
	__u32 q_addr = in_off + (quoted_src ? __builtin_offsetof(struct iphdr, saddr) : __builtin_offsetof(struct iphdr, daddr));
	__u32 q_port = in_off + q_hlen + (quoted_src ? 0 : 2);
	__u32 o_addr = ETH_HLEN + (quoted_src ? __builtin_offsetof(struct iphdr, daddr) : __builtin_offsetof(struct iphdr, saddr));
	__u32 q_check = in_off + __builtin_offsetof(struct iphdr, check);
	__be16 old_check, new_check;
	__be32 outer_addr;

	if (bpf_skb_load_bytes(ctx, q_check, &old_check, 2) < 0 || bpf_skb_load_bytes(ctx, o_addr, &outer_addr, 4) < 0)
		return -DROP_INVALID;
	if (old_port != new_port && (bpf_l4_csum_replace(ctx, csum_off, old_port, new_port, 2) < 0 ||
				     bpf_skb_store_bytes(ctx, q_port, &new_port, 2, 0) < 0))
		return -DROP_WRITE_ERROR;
	if (bpf_l3_csum_replace(ctx, q_check, old_addr, new_addr, 4) < 0 ||
	    bpf_skb_load_bytes(ctx, q_check, &new_check, 2) < 0 ||
	    bpf_l4_csum_replace(ctx, csum_off, old_addr, new_addr, 4) < 0 ||
	    bpf_l4_csum_replace(ctx, csum_off, old_check, new_check, 2) < 0 ||
	    bpf_skb_store_bytes(ctx, q_addr, &new_addr, 4, 0) < 0)
		return -DROP_WRITE_ERROR;
	if (!outer || outer_addr != old_addr)
		return 0;
	if (bpf_l3_csum_replace(ctx, ETH_HLEN + __builtin_offsetof(struct iphdr, check), old_addr, new_addr, 4) < 0 ||
	    bpf_skb_store_bytes(ctx, o_addr, &new_addr, 4, 0) < 0)
		return -DROP_WRITE_ERROR;
	return 0;
}

/* The TCP/UDP/SCTP packet an ICMP error (destination unreachable, time
 * exceeded) quotes, its outer header without options: the quoted tuple in
 * `q` (as that packet went). The quoted header may have options (a DSR
 * request's, quoted by its backend). Its length, or -1: not such a packet. */
static __always_inline int icmp_err_quoted(struct __sk_buff *ctx, struct ct_key *q)
{
	__u32 l4_off = ETH_HLEN + sizeof(struct iphdr);
	struct icmphdr ih;
	struct iphdr in;
	__be16 ports[2];
	__u8 ver_ihl;

	if (bpf_skb_load_bytes(ctx, ETH_HLEN, &ver_ihl, 1) < 0 || ver_ihl != 0x45 ||
	    bpf_skb_load_bytes(ctx, l4_off, &ih, sizeof(ih)) < 0 ||
	    (ih.type != ICMP_DEST_UNREACH && ih.type != ICMP_TIME_EXCEEDED))
		return -1;
	if (bpf_skb_load_bytes(ctx, l4_off + sizeof(ih), &in, sizeof(in)) < 0 || in.ihl < 5 ||
	    !l4_ports(in.protocol))
		return -1;
	if (bpf_skb_load_bytes(ctx, l4_off + sizeof(ih) + in.ihl * 4, ports, sizeof(ports)) < 0)
		return -1;
	q->saddr = in.saddr;
	q->daddr = in.daddr;
	q->sport = ports[0];
	q->dport = ports[1];
	q->proto = in.protocol;
	return in.ihl * 4;
}

/* The one's-complement sum folded to 16 bits and inverted. */
static __always_inline __sum16 lb4_csum_fold(__s64 csum)
{
	__u32 s = (__u32)csum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__sum16)~s;
}

/* A frontend without backends, with reject configured (the default): an
 * ICMP port unreachable from the frontend back into the pod, quoting the
 * packet's IP header and 8 bytes (TCP connect fails at once with
 * ECONNREFUSED, UDP gets the error). Reason 158 is counted either way. */
static __always_inline int lb4_reject(struct __sk_buff *ctx)
{
	struct {
		struct icmphdr icmp;
		__u8 quote[28];
	} ic = {};
	struct iphdr nip = {};
	struct ethhdr eth, neth;
	__u32 total = ETH_HLEN + sizeof(nip) + sizeof(ic);
	struct iphdr ip;
	__s64 sum;

	update_metrics(ctx->len, METRIC_EGRESS, DROP_NO_SERVICE);
	drop_notify(ctx, DROP_NO_SERVICE, METRIC_EGRESS);
	if (datapath_opts() & OPT_LB_NO_BACKEND_DROP)
		return TC_ACT_SHOT;
	if (bpf_skb_load_bytes(ctx, 0, &eth, sizeof(eth)) < 0 || bpf_skb_load_bytes(ctx, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return TC_ACT_SHOT;
	/* the quoted header is the original one: no options (else: drop) */
	if (ip.ihl != 5 || bpf_skb_load_bytes(ctx, ETH_HLEN, ic.quote, sizeof(ic.quote)) < 0)
		return TC_ACT_SHOT;
	__builtin_memcpy(neth.h_dest, eth.h_source, ETH_ALEN);
	__builtin_memcpy(neth.h_source, eth.h_dest, ETH_ALEN);
	neth.h_proto = bpf_htons(ETH_P_IP);
	nip.version = 4;
	nip.ihl = 5;
	nip.tot_len = bpf_htons(sizeof(nip) + sizeof(ic));
	nip.ttl = 64;
	nip.protocol = IPPROTO_ICMP;
	nip.saddr = ip.daddr;
	nip.daddr = ip.saddr;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&nip, sizeof(nip), 0);
	if (sum < 0)
		return TC_ACT_SHOT;
	nip.check = lb4_csum_fold(sum);
	ic.icmp.type = ICMP_DEST_UNREACH;
	ic.icmp.code = ICMP_PORT_UNREACH;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ic, sizeof(ic), 0);
	if (sum < 0)
		return TC_ACT_SHOT;
	ic.icmp.checksum = lb4_csum_fold(sum);
	if (bpf_skb_change_tail(ctx, total, 0) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(ctx, 0, &neth, sizeof(neth), 0) < 0 ||
	    bpf_skb_store_bytes(ctx, ETH_HLEN, &nip, sizeof(nip), 0) < 0 ||
	    bpf_skb_store_bytes(ctx, ETH_HLEN + sizeof(nip), &ic, sizeof(ic), 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(ctx->ifindex, 0);
}
