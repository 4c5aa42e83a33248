/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Socket-LB (Cilium's bpf_sock.c): cgroup v2 hooks that translate a
 * service frontend into one of its backends once, when a socket connects
 * (TCP, connected UDP) or sends (unconnected UDP), so its packets carry the
 * backend's address from the start and need no per-packet DNAT. recvmsg4
 * and getpeername4 show the frontend again. Only sockets of the node's own
 * network namespace and of its pods (seta_sock_netns) are translated; the
 * programs attach at the node's cgroup (--cgroup-root), never above it.
 * 127.0.0.1 reaches the node's NodePorts and hostPorts through their
 * 0.0.0.0 surrogate entries (Cilium's wildcard lookup), another node's
 * address its NodePorts (translated here, at the socket), and post_bind4
 * keeps the node's own processes off the addresses and ports of NodePort,
 * ExternalIP and LoadBalancer frontends (Cilium's bind protection).
 * An ExternalIP that is not the node's own is left alone (CVE-2020-8554). */
#include <linux/in.h>
#define AF_INET 2
#include "lib/common.h"
#include "lib/policy.h"
#include "lib/lb.h"

#define SYS_REJECT 0
#define SYS_PROCEED 1
#define ECONNREFUSED 111
#define EHOSTUNREACH 113

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sock_revnat_key);
	__type(value, struct sock_revnat_entry);
	__uint(max_entries, LB_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lb4_reverse_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u8);
	__uint(max_entries, SOCK_NETNS_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_sock_netns SEC(".maps");

/* A translation point of this socket (Cilium's trace_sock_notify): `seta
 * monitor -t trace-sock`, Hubble's pre-/post-xlate-fwd/rev flows. */
static __always_inline void trace_sock(struct bpf_sock_addr *ctx, __u8 point, __be32 addr, __be16 port, __u8 proto)
{
	struct seta_sock_event ev = {
		.type = EVENT_TRACE_SOCK,
		.subtype = point,
		.proto = proto,
		.daddr = addr,
		.dport = port,
	};

	if (datapath_opts() & (OPT_NO_TRACE_EVENTS | OPT_NO_SOCK_TRACE))
		return;
	ev.sock_cookie = bpf_get_socket_cookie(ctx);
	ev.cgroup_id = bpf_get_current_cgroup_id();
	ev.netns_cookie = bpf_get_netns_cookie(ctx);
	ev.ts = bpf_ktime_get_ns();
	event_output(&ev, sizeof(ev));
}

static __always_inline int is_loopback4(__be32 a)
{
	return (bpf_ntohl(a) >> 24) == 127;
}

/* Which surrogate (0.0.0.0) entries an address that is no frontend of its
 * own may use (Cilium's sock4_wildcard_lookup_full): 127.0.0.1 and the
 * node's own addresses (ipcache host) its NodePorts and hostPorts, another
 * node's address (ipcache remote-node) its NodePorts only, which every
 * node serves alike: the socket goes to a backend at once, not through
 * that node. 0: none. */
static __always_inline __u8 sock4_wildcard_flags(__be32 addr)
{
	struct remote_endpoint_info *info;

	if (is_loopback4(addr))
		return LB_F_NODEPORT | LB_F_HOSTPORT;
	info = ipcache_lookup(addr);
	if (!info)
		return 0;
	if (info->sec_identity == HOST_ID)
		return LB_F_NODEPORT | LB_F_HOSTPORT;
	if (info->sec_identity == REMOTE_NODE_ID)
		return LB_F_NODEPORT;
	return 0;
}

/* A frontend, or for an address of a node its NodePort or hostPort
 * surrogate at 0.0.0.0; k->address is then the key the slots are under. */
static __always_inline struct lb4_service *sock4_lookup(struct lb4_key *k)
{
	struct lb4_service *svc = bpf_map_lookup_elem(&seta_lb4_svc, k);
	__u8 wild;

	if (!svc) {
		wild = sock4_wildcard_flags(k->address);
		if (!wild)
			return NULL;
		k->address = 0;
		svc = bpf_map_lookup_elem(&seta_lb4_svc, k);
		if (svc && !(svc->flags & wild))
			return NULL;
	}
	/* sockets are the cluster's own clients */
	return svc ? lb4_internal_scope(k, svc) : NULL;
}

/* The frontend's backend for this socket: the affinity one (keyed by the
 * namespace, as Cilium's socket-LB does) or a random slot. */
static __always_inline struct lb4_backend *sock4_select(struct lb4_key *k, const struct lb4_service *svc, __u64 netns, __u32 *id)
{
	struct lb4_affinity_key ak = {.client_id = netns, .rev_nat_id = svc->rev_nat_index, .netns_cookie = 1};
	struct lb_affinity_val av = {}, *a;
	struct lb4_backend *be = NULL;
	__u64 now = bpf_ktime_get_coarse_ns();

	if (svc->flags & LB_F_AFFINITY) {
		a = bpf_map_lookup_elem(&seta_lb4_affinity, &ak);
		if (a && now - a->last_used <= (__u64)(svc->backend_id & 0xffffff) * NSEC_PER_SEC) {
			*id = a->backend_id;
			be = bpf_map_lookup_elem(&seta_lb4_be, id);
			if (be && be->flags != 0) /* no longer active */
				be = NULL;
		}
	}
	if (!be)
		be = lb4_slot_backend(k, (bpf_get_prandom_u32() % svc->count) + 1, id);
	if (be && (svc->flags & LB_F_AFFINITY)) {
		av.last_used = now;
		av.backend_id = *id;
		bpf_map_update_elem(&seta_lb4_affinity, &ak, &av, BPF_ANY);
	}
	return be;
}

/* connect4 / sendmsg4: a frontend becomes a backend. A frontend without
 * backends is left alone: the per-packet path answers it (reject or drop)
 * and counts it, as without socket-LB; but one reached through a
 * surrogate (another node's NodePort, the node's loopback or router
 * address) no packet path would answer, so the socket is refused at once
 * (Cilium's -EHOSTUNREACH at connect): ECONNREFUSED as a reject would
 * give, EHOSTUNREACH with --service-no-backend-response drop; reason 158
 * is counted. Returns 0 or the negative errno to refuse with. */
static __always_inline int sock4_xlate_fwd(struct bpf_sock_addr *ctx, int udp_only)
{
	struct lb4_key k = {};
	struct sock_revnat_key rk = {};
	struct sock_revnat_entry rv = {};
	struct lb4_service *svc;
	struct lb4_backend *be;
	__u8 proto = ctx->protocol, *kind;
	__be32 orig;
	__u64 netns;
	__u32 id = 0;

	if (ctx->user_family != AF_INET)
		return 0;
	if (proto != IPPROTO_UDP && (udp_only || proto != IPPROTO_TCP))
		return 0;
	orig = ctx->user_ip4;
	k.address = orig;
	k.dport = (__be16)ctx->user_port;
	k.proto = proto;
	svc = sock4_lookup(&k);
	if (!svc)
		return 0;
	/* CVE-2020-8554 (Cilium's sock4_skip_xlate): an ExternalIP that is
	 * none of the node's addresses is not taken over for the node's and
	 * its pods' own connections; they reach the address itself */
	if (svc->flags2 & LB_F2_EXTERNAL_IP_FOREIGN)
		return 0;
	netns = bpf_get_netns_cookie(ctx);
	kind = bpf_map_lookup_elem(&seta_sock_netns, &netns);
	if (!kind)
		return 0;
	/* 127.0.0.1 is the node's own (its NodePorts, hostPorts): a pod's
	 * loopback is its own */
	if (is_loopback4(orig) && *kind != SOCK_NETNS_HOST)
		return 0;
	if (svc->count == 0) {
		if (k.address != 0)
			return 0;
		update_metrics(0, METRIC_SERVICE, DROP_NO_SERVICE);
		return (datapath_opts() & OPT_LB_NO_BACKEND_DROP) ? -EHOSTUNREACH : -ECONNREFUSED;
	}
	trace_sock(ctx, XLATE_PRE_DIRECTION_FWD, orig, k.dport, proto);
	be = sock4_select(&k, svc, netns, &id);
	if (!be)
		return 0;
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.address = be->address;
	rk.port = be->port;
	rv.address = orig;
	rv.port = k.dport;
	rv.rev_nat_index = svc->rev_nat_index;
	if (bpf_map_update_elem(&seta_lb4_reverse_sk, &rk, &rv, BPF_ANY) < 0) {
		update_metrics(0, METRIC_SERVICE, DROP_CT_MAP_INSERTION_FAILED);
		return 0;
	}
	ctx->user_ip4 = be->address;
	ctx->user_port = (__u32)be->port;
	trace_sock(ctx, XLATE_POST_DIRECTION_FWD, be->address, be->port, proto);
	return 0;
}

/* recvmsg4 / getpeername4: a backend this socket was sent to shows as the
 * frontend, while that frontend still exists. */
static __always_inline void sock4_xlate_rev(struct bpf_sock_addr *ctx)
{
	struct sock_revnat_key rk = {};
	struct sock_revnat_entry *rv;
	struct lb4_key k = {};
	struct lb4_service *svc;

	if (ctx->user_family != AF_INET)
		return;
	rk.cookie = bpf_get_socket_cookie(ctx);
	rk.address = ctx->user_ip4;
	rk.port = (__be16)ctx->user_port;
	rv = bpf_map_lookup_elem(&seta_lb4_reverse_sk, &rk);
	if (!rv)
		return;
	k.address = rv->address;
	k.dport = rv->port;
	k.proto = ctx->protocol;
	svc = sock4_lookup(&k);
	if (!svc || svc->rev_nat_index != rv->rev_nat_index) {
		bpf_map_delete_elem(&seta_lb4_reverse_sk, &rk);
		return;
	}
	trace_sock(ctx, XLATE_PRE_DIRECTION_REV, rk.address, rk.port, (__u8)ctx->protocol);
	ctx->user_ip4 = rv->address;
	ctx->user_port = (__u32)rv->port;
	trace_sock(ctx, XLATE_POST_DIRECTION_REV, rv->address, rv->port, (__u8)ctx->protocol);
}

/* connect4 / sendmsg4: proceed, or refuse the call with err */
static __always_inline int sock4_verdict(int err)
{
	if (!err)
		return SYS_PROCEED;
	bpf_set_retval(err);
	return SYS_REJECT;
}

SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	return sock4_verdict(sock4_xlate_fwd(ctx, 0));
}

SEC("cgroup/sendmsg4")
int sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock4_verdict(sock4_xlate_fwd(ctx, 1));
}

SEC("cgroup/recvmsg4")
int sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	sock4_xlate_rev(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int sock4_getpeername(struct bpf_sock_addr *ctx)
{
	sock4_xlate_rev(ctx);
	return SYS_PROCEED;
}

/* Bind protection (Cilium's post_bind4): in the node's own namespace, a
 * bind to the address and port of a NodePort, ExternalIP or LoadBalancer
 * frontend (0.0.0.0 and 127.0.0.1 meet the NodePort's surrogate) fails
 * with EPERM, so no local process takes over the service's traffic. */
SEC("cgroup/post_bind4")
int sock4_post_bind(struct bpf_sock *ctx)
{
	struct lb4_key k = {};
	struct lb4_service *svc;
	__u64 netns;
	__u8 *kind;

	if (ctx->family != AF_INET || (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP))
		return SYS_PROCEED;
	netns = bpf_get_netns_cookie(ctx);
	kind = bpf_map_lookup_elem(&seta_sock_netns, &netns);
	if (!kind || *kind != SOCK_NETNS_HOST)
		return SYS_PROCEED;
	k.address = ctx->src_ip4;
	k.dport = bpf_htons((__u16)ctx->src_port);
	k.proto = (__u8)ctx->protocol;
	svc = sock4_lookup(&k);
	if (svc && (svc->flags & (LB_F_NODEPORT | LB_F_EXTERNAL_IP | LB_F_LOADBALANCER)))
		return SYS_REJECT;
	return SYS_PROCEED;
}

char _license[] SEC("license") = "Dual BSD/GPL";
