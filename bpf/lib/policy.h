/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Policy maps, connection tracking and events. */
#pragma once
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>

/* linux/icmp.h pulls in libc headers; the little we need: */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		__be32 gateway;
	} un;
};


/* Sizes rather than BTF types: in bpf_host.o the key/value structs would only
 * be BTF forward declarations, which the loader cannot size. */
struct policy_map {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(key_size, sizeof(struct policy_key));
	__uint(value_size, sizeof(struct policy_entry));
	__uint(max_entries, POLICY_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct policy_map);
} seta_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024); /* ~5400 drops with their bytes, ~18000 other events */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_events SEC(".maps");

/* Events the ring buffer had no room for, per CPU: nothing is lost silently
 * (the agent reports them as lost events). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_events_lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, CONFIG_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_config SEC(".maps");

/* One seta_config slot (0 when unset). */
static __always_inline __u32 config_u32(__u32 slot)
{
	__u32 *v = bpf_map_lookup_elem(&seta_config, &slot);

	return v ? *v : 0;
}

/* seta_config's datapath options (CONFIG_DATAPATH_OPTS bits) */
static __always_inline __u32 datapath_opts(void)
{
	return config_u32(CONFIG_DATAPATH_OPTS);
}

/* pod IP -> its per-IP identity, for Kubernetes ipBlock rules over pod IPs */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u32);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_ipblock SEC(".maps");

enum ct_status { CT_NEW = 0, CT_ESTABLISHED = 1, CT_REPLY = 2, CT_RELATED = 3 };

/* What the datapath knows about a packet's L3/L4. */
struct flow {
	struct ct_key key;     /* as seen in this packet's direction */
	__be16 policy_port;    /* dport, or the ICMP type */
	__u8 tcp_flags;        /* TCP: FIN=1 SYN=2 RST=4 ACK=16 */
	__u8 icmp_error;       /* ICMP dest-unreach / time-exceeded / param-problem */
	__u8 report;           /* its connection has not been reported this interval */
	__u8 later_frag;       /* a fragment after the first: no L4 header (ports from the first) */
	struct ct_key inner;   /* for ICMP errors: the quoted packet's tuple */
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag4_key);
	__type(value, struct frag4_ports);
	__uint(max_entries, FRAG4_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_ipv4_frag SEC(".maps");

#define IP_FRAG_OFFSET 0x1fff
#define IP_FRAG_MF 0x2000

/* A fragment of a TCP, UDP or SCTP datagram (Cilium's fragment tracking),
 * or of an ICMP echo or echo reply (a ping larger than the MTU; recorded as
 * {identifier, type}): the first records its ports, a later one (no L4
 * header) takes them from there, or is dropped when the first was not seen
 * (reason 175). One subprogram for every program's parse. */
static __noinline __attribute__((unused)) int parse_frag4(struct __sk_buff *ctx, struct flow *f, __u32 frag_off, __u32 id,
							  __u32 off)
{
	struct frag4_key k = {.daddr = f->key.daddr, .saddr = f->key.saddr, .id = (__be16)id, .proto = f->key.proto};
	struct frag4_ports p, *first;
	__u8 fl;

	if (frag_off & bpf_htons(IP_FRAG_OFFSET)) {
		first = bpf_map_lookup_elem(&seta_ipv4_frag, &k);
		f->later_frag = 1;
		/* ICMP other than echoes is not recorded: no ports, as before */
		if (!first)
			return f->key.proto == IPPROTO_ICMP ? 0 : -DROP_FRAG_NOT_FOUND;
		f->key.sport = first->sport;
		f->key.dport = f->key.proto == IPPROTO_ICMP ? first->sport : first->dport;
		f->policy_port = first->dport;
		return 0;
	}
	if (f->key.proto == IPPROTO_ICMP) {
		struct icmphdr ih;

		if (bpf_skb_load_bytes(ctx, off, &ih, sizeof(ih)) < 0)
			return -DROP_INVALID;
		f->policy_port = bpf_htons(ih.type);
		if (ih.type != ICMP_ECHO && ih.type != ICMP_ECHOREPLY)
			return 0;
		f->key.sport = ih.un.echo.id;
		f->key.dport = ih.un.echo.id;
		p.sport = ih.un.echo.id;
		p.dport = f->policy_port;
		bpf_map_update_elem(&seta_ipv4_frag, &k, &p, BPF_ANY);
		return 0;
	}
	if (bpf_skb_load_bytes(ctx, off, &p, sizeof(p)) < 0)
		return -DROP_INVALID;
	f->key.sport = p.sport;
	f->key.dport = p.dport;
	f->policy_port = p.dport;
	if (f->key.proto == IPPROTO_TCP && bpf_skb_load_bytes(ctx, off + 13, &fl, 1) == 0)
		f->tcp_flags = fl;
	/* no entry (the map full of live datagrams): this packet goes on, its
	 * later fragments are dropped */
	bpf_map_update_elem(&seta_ipv4_frag, &k, &p, BPF_ANY);
	return 0;
}

static __always_inline int parse_l4(struct __sk_buff *ctx, const struct iphdr *ip, struct flow *f)
{
	__u32 off = ETH_HLEN + ip->ihl * 4;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	f->key.saddr = ip->saddr;
	f->key.daddr = ip->daddr;
	f->key.proto = ip->protocol;
	if (ip->frag_off & bpf_htons(IP_FRAG_OFFSET | IP_FRAG_MF)) {
		if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP || ip->protocol == IPPROTO_SCTP ||
		    ip->protocol == IPPROTO_ICMP)
			return parse_frag4(ctx, f, ip->frag_off, ip->id, off);
		/* other protocols' later fragments: no L4 header, no ports */
		if (ip->frag_off & bpf_htons(IP_FRAG_OFFSET)) {
			f->later_frag = 1;
			return 0;
		}
	}
	/* fast path: no IP options, header in the linear data */
	if (ip->ihl == 5 && (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)) {
		__u8 *l4 = data + ETH_HLEN + sizeof(struct iphdr);

		if ((void *)(l4 + 14) <= data_end) {
			f->key.sport = *(__be16 *)l4;
			f->key.dport = *(__be16 *)(l4 + 2);
			if (ip->protocol == IPPROTO_TCP)
				f->tcp_flags = l4[13];
			f->policy_port = f->key.dport;
			return 0;
		}
		if (ip->protocol == IPPROTO_UDP && (void *)(l4 + 4) <= data_end) {
			f->key.sport = *(__be16 *)l4;
			f->key.dport = *(__be16 *)(l4 + 2);
			f->policy_port = f->key.dport;
			return 0;
		}
	}
	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr th;

		if (bpf_skb_load_bytes(ctx, off, &th, sizeof(th)) < 0)
			return -DROP_INVALID;
		f->key.sport = th.source;
		f->key.dport = th.dest;
		f->tcp_flags = ((__u8 *)&th)[13];
		break;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__be16 ports[2];

		if (bpf_skb_load_bytes(ctx, off, ports, sizeof(ports)) < 0)
			return -DROP_INVALID;
		f->key.sport = ports[0];
		f->key.dport = ports[1];
		break;
	}
	case IPPROTO_ICMP: {
		struct icmphdr ih;

		if (bpf_skb_load_bytes(ctx, off, &ih, sizeof(ih)) < 0)
			return -DROP_INVALID;
		f->policy_port = bpf_htons(ih.type);
		if (ih.type == ICMP_ECHO || ih.type == ICMP_ECHOREPLY) {
			f->key.sport = ih.un.echo.id;
			f->key.dport = ih.un.echo.id;
		} else if (ih.type == ICMP_DEST_UNREACH || ih.type == ICMP_TIME_EXCEEDED || ih.type == ICMP_PARAMETERPROB) {
			struct iphdr in;
			__be16 ports[2] = {};

			if (bpf_skb_load_bytes(ctx, off + sizeof(ih), &in, sizeof(in)) < 0)
				return 0;
			f->icmp_error = 1;
			f->inner.saddr = in.saddr;
			f->inner.daddr = in.daddr;
			f->inner.proto = in.protocol;
			if (bpf_skb_load_bytes(ctx, off + sizeof(ih) + in.ihl * 4, ports, sizeof(ports)) == 0) {
				f->inner.sport = ports[0];
				f->inner.dport = ports[1];
			}
		}
		return 0;
	}
	default:
		break;
	}
	f->policy_port = f->key.dport;
	return 0;
}

static __always_inline void ct_reverse(const struct ct_key *k, struct ct_key *r)
{
	r->saddr = k->daddr;
	r->daddr = k->saddr;
	r->sport = k->dport;
	r->dport = k->sport;
	r->proto = k->proto;
}

#define NSEC_PER_SEC 1000000000ULL

static __always_inline void ct_refresh(struct ct_entry *e, const struct flow *f, int reply, __u32 len)
{
	__u64 lifetime = CT_LIFETIME_NONTCP;

	e->packets++;
	e->bytes += len;
	if (reply)
		e->seen_reply = 1;
	if (f->key.proto == IPPROTO_TCP) {
		if (f->tcp_flags & TCP_RST) {
			e->tx_closing = 1;
			e->rx_closing = 1;
		} else if (f->tcp_flags & TCP_FIN) {
			if (reply)
				e->rx_closing = 1;
			else
				e->tx_closing = 1;
		}
		if (e->tx_closing && e->rx_closing)
			lifetime = CT_CLOSE_TIMEOUT;
		else if (!e->seen_reply)
			lifetime = CT_SYN_TIMEOUT;
		else
			lifetime = CT_LIFETIME_TCP;
	}
	/* the coarse clock is cheap and second-level precision is plenty */
	e->expires = bpf_ktime_get_coarse_ns() + lifetime * NSEC_PER_SEC;
}

/* The trace aggregation interval this moment is in: ~4.3 s (ns >> 32). */
static __always_inline __u8 report_epoch(void)
{
	return (__u8)(bpf_ktime_get_coarse_ns() >> 32);
}

/* An established connection is reported once per interval (medium). */
static __always_inline void ct_report_due(struct ct_entry *e, struct flow *f)
{
	__u8 now = report_epoch();

	if (e->last_report != now) {
		e->last_report = now;
		f->report = 1;
	}
}

/* Established / reply / related / new, refreshing the entry it found. */
static __always_inline enum ct_status ct_lookup(struct flow *f, __u32 len)
{
	struct ct_key rev = {};
	struct ct_entry *e;

	e = bpf_map_lookup_elem(&seta_ct4, &f->key);
	if (e) {
		ct_refresh(e, f, 0, len);
		ct_report_due(e, f);
		return CT_ESTABLISHED;
	}
	ct_reverse(&f->key, &rev);
	e = bpf_map_lookup_elem(&seta_ct4, &rev);
	if (e) {
		ct_refresh(e, f, 1, len);
		ct_report_due(e, f);
		return CT_REPLY;
	}
	if (f->icmp_error) {
		if (bpf_map_lookup_elem(&seta_ct4, &f->inner))
			return CT_RELATED;
		ct_reverse(&f->inner, &rev);
		if (bpf_map_lookup_elem(&seta_ct4, &rev))
			return CT_RELATED;
	}
	return CT_NEW;
}

static __always_inline int ct_create(const struct flow *f, __u32 src_sec_id, __u32 len)
{
	struct ct_entry e = {.src_sec_id = src_sec_id, .last_report = report_epoch()};

	ct_refresh(&e, f, 0, len);
	if (bpf_map_update_elem(&seta_ct4, &f->key, &e, BPF_ANY) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	return 0;
}

/* Which kind of entry decided (Cilium's match types): a peer's own entry
 * (l3) or the any-peer one, by how much of protocol and port it names. */
static __always_inline __u8 match_type(const struct policy_entry *e, int l3)
{
	if (e->l4_prefix > 8)
		return l3 ? POLICY_MATCH_L3_L4 : POLICY_MATCH_L4_ONLY;
	if (e->l4_prefix == 8)
		return l3 ? POLICY_MATCH_L3_PROTO : POLICY_MATCH_PROTO_ONLY;
	return l3 ? POLICY_MATCH_L3_ONLY : POLICY_MATCH_ALL;
}

/* The deciding entry's cookie (low 32 bits) and match type (above), in one
 * out value: a separate one grew from_overlay's stack past the verifier's
 * limit. */
#define VERDICT_COOKIE(v) ((__u32)(v))
#define VERDICT_MATCH(v) ((__u8)((v) >> 32))

/* LPM lookups for the remote identity and for "any identity"; a deny in
 * either wins, then an allow in either; nothing is DROP_POLICY. */
static __always_inline int policy_check(void *pmap, __u32 remote, __u8 egress, const struct flow *f, __u64 *info)
{
	struct policy_key k = {
		.prefixlen = POLICY_FULL_PREFIX,
		.sec_label = remote,
		.egress = egress,
		.protocol = f->key.proto,
		.dport = f->policy_port,
	};
	struct policy_entry *l3, *l4, *e;
	int is_l3;

	l3 = bpf_map_lookup_elem(pmap, &k);
	k.sec_label = 0;
	l4 = bpf_map_lookup_elem(pmap, &k);
	/* a deny wins, then the peer's own entry */
	if (l3 && l3->deny)
		e = l3;
	else if (l4 && l4->deny)
		e = l4;
	else if (l3)
		e = l3;
	else
		e = l4;
	if (!e) {
		*info = POLICY_MATCH_NONE;
		return -DROP_POLICY;
	}
	is_l3 = e == l3;
	*info = e->cookie | ((__u64)match_type(e, is_l3) << 32);
	return e->deny ? -DROP_POLICY_DENY : 0;
}

/* policy_check, then — only while a Kubernetes ipBlock selects pod IPs — a
 * second chance for the peer's per-IP identity when nothing matched. */
static __always_inline int policy_check_peer(void *pmap, __u32 remote, __be32 peer_ip, __u8 egress, const struct flow *f,
					     __u64 *info)
{
	int ret = policy_check(pmap, remote, egress, f, info);
	__u32 idx = CONFIG_FLAGS, *flags, *ipid;
	__u64 i2 = 0;

	if (ret != -DROP_POLICY)
		return ret;
	flags = bpf_map_lookup_elem(&seta_config, &idx);
	if (!flags || !(*flags & CONFIG_F_IPBLOCK))
		return ret;
	ipid = bpf_map_lookup_elem(&seta_ipblock, &peer_ip);
	if (ipid && policy_check(pmap, *ipid, egress, f, &i2) == 0) {
		*info = i2;
		return 0;
	}
	return ret;
}

/* An event the ring buffer had no room for: counted (per CPU). */
static __always_inline void event_lost(void)
{
	__u32 k = 0;
	__u64 *lost = bpf_map_lookup_elem(&seta_events_lost, &k);

	if (lost)
		*lost += 1;
}

/* Into the ring buffer, or counted lost. */
static __always_inline void event_output(void *ev, __u64 size)
{
	if (bpf_ringbuf_output(&seta_events, ev, size, 0) < 0)
		event_lost();
}

/* A datapath debug message (Cilium's cilium_dbg3), only with OPT_DEBUG. A
 * function of its own (not inlined): the programs' stacks do not grow, and
 * with debugging off a message costs a call and a config read. `what` is
 * the DBG_* type << 16 | the endpoint id. */
static __noinline __attribute__((unused)) int dbg3(struct __sk_buff *ctx, __u32 what, __u32 arg1, __u32 arg2, __u32 arg3)
{
	struct seta_debug_event *e;

	if (!ctx || !(datapath_opts() & OPT_DEBUG))
		return 0;
	e = bpf_ringbuf_reserve(&seta_events, sizeof(*e), 0);
	if (!e) {
		event_lost();
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = EVENT_DEBUG;
	e->subtype = (__u8)(what >> 16);
	e->source = (__u16)what;
	e->hash = bpf_get_hash_recalc(ctx);
	e->arg1 = arg1;
	e->arg2 = arg2;
	e->arg3 = arg3;
	e->cpu = bpf_get_smp_processor_id();
	e->ifindex = ctx->ifindex;
	e->ts = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, 0);
	return 0;
}
#define cilium_dbg3(ctx, type, source, a1, a2, a3) dbg3(ctx, ((__u32)(type) << 16) | (__u16)(source), a1, a2, a3)
#define cilium_dbg(ctx, type, source, a1, a2) dbg3(ctx, ((__u32)(type) << 16) | (__u16)(source), a1, a2, 0)

/* The CT lookup of `f` and its outcome, as Cilium's debug messages (dir: 0
 * egress, 1 ingress, also as the tuple's flags); one call for the three, so
 * the callers' stacks do not grow. */
static __noinline __attribute__((unused)) int dbg_ct_lookup(struct __sk_buff *ctx, __u32 source, const struct flow *f,
							      __u32 dir, __u32 st)
{
	if (!ctx || !f || !(datapath_opts() & OPT_DEBUG))
		return 0;
	cilium_dbg3(ctx, DBG_CT_LOOKUP4_1, source, f->key.saddr, f->key.daddr,
		    ((__u32)bpf_ntohs(f->key.dport) << 16) | bpf_ntohs(f->key.sport));
	cilium_dbg(ctx, DBG_CT_LOOKUP4_2, source, ((__u32)f->key.proto << 8) | dir, dir);
	cilium_dbg(ctx, DBG_CT_VERDICT, source, st, 0);
	return 0;
}

static __always_inline void emit_event(__u8 type, __u8 subtype, __u16 source, __u32 ifindex, __u32 src_label,
				       __u32 dst_label, int verdict, __u32 cookie, const struct flow *f, __u8 dir)
{
	__u32 off = type == EVENT_DROP ? OPT_NO_DROP_EVENTS : type == EVENT_TRACE ? OPT_NO_TRACE_EVENTS : OPT_NO_VERDICT_EVENTS;
	struct seta_event ev = {
		.type = type,
		.subtype = subtype,
		.source = source,
		.ifindex = ifindex,
		.src_label = src_label,
		.dst_label = dst_label,
		.verdict = verdict,
		.cookie = cookie,
		.dir = dir,
		.ts = bpf_ktime_get_ns(),
	};

	if (datapath_opts() & off)
		return;
	ev.cpu = (__u8)bpf_get_smp_processor_id();
	if (f) {
		ev.saddr = f->key.saddr;
		ev.daddr = f->key.daddr;
		ev.sport = f->key.sport;
		ev.dport = f->key.dport;
		ev.proto = f->key.proto;
		ev.flags = f->tcp_flags;
	}
	event_output(&ev, sizeof(ev));
}

/* A drop event with the packet's first bytes (up to DROP_PAYLOAD_LEN), built
 * in the ring buffer itself. */
static __always_inline void drop_record(struct __sk_buff *ctx, __u32 reason, __u32 src_id, __u32 dst_id,
					const struct flow *f, __u32 dir)
{
	struct seta_drop_record *r;
	__u32 n = ctx->len;

	r = bpf_ringbuf_reserve(&seta_events, sizeof(*r), 0);
	if (!r) {
		event_lost();
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->ev.type = EVENT_DROP;
	r->ev.subtype = (__u8)reason;
	r->ev.ifindex = ctx->ifindex;
	r->ev.src_label = src_id;
	r->ev.dst_label = dst_id;
	r->ev.verdict = -(int)reason;
	r->ev.dir = (__u8)dir;
	r->ev.saddr = f->key.saddr;
	r->ev.daddr = f->key.daddr;
	r->ev.sport = f->key.sport;
	r->ev.dport = f->key.dport;
	r->ev.proto = f->key.proto;
	r->ev.flags = f->tcp_flags;
	r->ev.ts = bpf_ktime_get_ns();
	r->p.orig_len = n;
	if (n > DROP_PAYLOAD_LEN)
		n = DROP_PAYLOAD_LEN;
	if (n > 0 && bpf_skb_load_bytes(ctx, 0, r->p.data, n) == 0)
		r->p.cap_len = n;
	/* last: nothing else lives across this call (skb_notify's frame is
	 * what from_overlay's stack can still afford) */
	r->ev.cpu = (__u8)bpf_get_smp_processor_id();
	bpf_ringbuf_submit(r, 0);
}

/* An event about the packet in `ctx` as it is: its addresses, ports and TCP
 * flags as far as they can be read, and both sides' identities from the
 * ipcache. A drop (Cilium's drop notification: every drop, not only a
 * policy's, with its reason, direction and interface; a policy drop also has
 * its policy-verdict event, as in Cilium) or a trace at a from-* observation
 * point, where nothing was parsed yet. One subprogram shared by every site. */
static __noinline __attribute__((unused)) int skb_notify(struct __sk_buff *ctx, __u32 type, __u32 code, __u32 dir)
{
	struct flow f = {};
	struct iphdr ip;
	__u32 src_id = 0, dst_id = 0, l4;
	__be16 ports[2];
	__u8 fl;

	if (bpf_skb_load_bytes(ctx, ETH_HLEN, &ip, sizeof(ip)) == 0 && ip.version == 4) {
		f.key.saddr = ip.saddr;
		f.key.daddr = ip.daddr;
		f.key.proto = ip.protocol;
		l4 = ETH_HLEN + ((__u32)ip.ihl << 2);
		if ((ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP || ip.protocol == IPPROTO_SCTP) &&
		    !(ip.frag_off & bpf_htons(IP_FRAG_OFFSET)) && bpf_skb_load_bytes(ctx, l4, ports, sizeof(ports)) == 0) {
			f.key.sport = ports[0];
			f.key.dport = ports[1];
		}
		if (ip.protocol == IPPROTO_TCP && !(ip.frag_off & bpf_htons(IP_FRAG_OFFSET)) &&
		    bpf_skb_load_bytes(ctx, l4 + 13, &fl, 1) == 0)
			f.tcp_flags = fl;
		src_id = ipcache_identity(ip.saddr);
		dst_id = ipcache_identity(ip.daddr);
	}
	if (type == EVENT_DROP) {
		drop_record(ctx, code, src_id, dst_id, &f, dir);
		return 0;
	}
	emit_event((__u8)type, (__u8)code, 0, ctx->ifindex, src_id, dst_id, 0, 0, &f, (__u8)dir);
	return 0;
}

static __always_inline __attribute__((unused)) int drop_notify(struct __sk_buff *ctx, __u32 reason, __u32 dir)
{
	if (datapath_opts() & OPT_NO_DROP_EVENTS)
		return 0;
	return skb_notify(ctx, EVENT_DROP, reason, dir);
}

/* Whether a trace at observation point `obs` is reported, as Cilium's
 * emit_trace_notify under --monitor-aggregation: none: every packet at every
 * point; above none, the from-* points are not reported, and the to-* points
 * report new connections and TCP SYN/FIN/RST, then every packet (low) but
 * TCP's pure ACKs, an established connection once per ~4.3 s interval
 * (medium, the default), nothing more (maximum). */
static __always_inline int trace_wanted(__u8 obs, const struct flow *f, int st)
{
	__u32 level = (datapath_opts() >> OPT_MONITOR_AGG_SHIFT) & 3;

	if (level == MONITOR_AGG_NONE)
		return 1;
	if (obs >= TRACE_FROM_LXC && obs <= TRACE_FROM_NETWORK)
		return 0;
	if (!f)
		return 0;
	if (st == CT_NEW || (f->tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST)))
		return 1;
	switch (level) {
	case MONITOR_AGG_LOW:
		return !(f->key.proto == IPPROTO_TCP && f->tcp_flags == TCP_ACK);
	case MONITOR_AGG_MEDIUM:
		return f->report;
	default:
		return 0;
	}
}

/* A trace at `obs` of a packet whose flow and CT state are known. */
static __always_inline void trace_point(__u8 obs, __u16 source, __u32 ifindex, __u32 src_id, __u32 dst_id,
					const struct flow *f, int st, __u8 dir)
{
	if (trace_wanted(obs, f, st))
		emit_event(EVENT_TRACE, obs, source, ifindex, src_id, dst_id, 0, (__u32)st, f, dir);
}

/* A trace of a packet that was not parsed (a from-* point, or the node's own
 * traffic into the tunnel): only reported without aggregation
 * (--monitor-aggregation none). */
static __always_inline void trace_unparsed(struct __sk_buff *ctx, __u8 obs, __u32 dir)
{
	__u32 opts = datapath_opts();

	if (((opts >> OPT_MONITOR_AGG_SHIFT) & 3) == MONITOR_AGG_NONE && !(opts & OPT_NO_TRACE_EVENTS))
		skb_notify(ctx, EVENT_TRACE, obs, dir);
}

/* A delivery to a pod: observation point to-endpoint. */
static __always_inline void trace_to_lxc(const struct endpoint_info *ep, __u32 src_id, const struct flow *f, int st)
{
	trace_point(TRACE_TO_LXC, ep->lxc_id, ep->ifindex, src_id, ep->sec_id, f, st, METRIC_INGRESS);
}

/* Ingress policy of a local endpoint, from any sender program. Emits the
 * policy-verdict event; returns 0 or -reason. */
static __always_inline int ingress_policy(const struct endpoint_info *ep, __u32 src_id, const struct flow *f, __u32 ifindex)
{
	__u32 ep_id = ep->lxc_id;
	void *pmap = bpf_map_lookup_elem(&seta_policy, &ep_id);
	__u64 info = 0;
	int ret;

	if (!pmap)
		return -DROP_EP_NOT_READY;
	ret = policy_check_peer(pmap, src_id, f->key.saddr, 0, f, &info);
	if (VERDICT_COOKIE(info) != POLICY_COOKIE_NOT_ENFORCED)
		emit_event(EVENT_POLICY_VERDICT, VERDICT_MATCH(info), ep->lxc_id, ifindex, src_id, ep->sec_id, ret,
			   VERDICT_COOKIE(info), f, METRIC_INGRESS);
	return ret;
}
