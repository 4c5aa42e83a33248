/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Structures shared between the C datapath and Rust (crates/abi mirrors them).
 * Every struct carries _Static_assert on size and offsets; the Rust side has the
 * same asserts. Bump SETA_ABI_VERSION whenever a layout changes: pins live under
 * /sys/fs/bpf/seta/<node>/v<ABI>/ so an incompatible map is never reused. */
#pragma once
#include <linux/types.h>

#define SETA_ABI_VERSION 1

#define ENDPOINT_KEY_IPV4 1

/* seta_lxc: local endpoint map, pod IPv4 -> endpoint */
struct endpoint_key {
	__be32 ip4;
	__u8 family;
	__u8 pad;
	__u16 cluster_id;
};
_Static_assert(sizeof(struct endpoint_key) == 8, "endpoint_key size");
_Static_assert(__builtin_offsetof(struct endpoint_key, family) == 4, "endpoint_key.family");

#define ENDPOINT_F_HOST 1

struct endpoint_info {
	__u32 ifindex;        /* host-side veth (lxc*) */
	__u16 unused;
	__u16 lxc_id;         /* endpoint id */
	__u32 flags;          /* ENDPOINT_F_* */
	__u8 mac[6];          /* pod-side MAC (the container's interface) */
	__u8 node_mac[6];     /* host-side MAC (lxc*) */
	__u32 sec_id;         /* security identity */
	__u32 parent_ifindex;
	__u32 pad[2];
};
_Static_assert(sizeof(struct endpoint_info) == 40, "endpoint_info size");
_Static_assert(__builtin_offsetof(struct endpoint_info, mac) == 12, "endpoint_info.mac");
_Static_assert(__builtin_offsetof(struct endpoint_info, node_mac) == 18, "endpoint_info.node_mac");
_Static_assert(__builtin_offsetof(struct endpoint_info, sec_id) == 24, "endpoint_info.sec_id");

/* seta_ipcache: LPM trie, prefix -> identity and tunnel endpoint.
 * prefixlen = 32 static bits (cluster_id, pad, family) + IP prefix length. */
#define IPCACHE_STATIC_PREFIX 32
struct ipcache_key {
	__u32 prefixlen;
	__u16 cluster_id;
	__u8 pad;
	__u8 family;
	__be32 ip4;
};
_Static_assert(sizeof(struct ipcache_key) == 12, "ipcache_key size");
_Static_assert(__builtin_offsetof(struct ipcache_key, ip4) == 8, "ipcache_key.ip4");

struct remote_endpoint_info {
	__u32 sec_identity;
	__be32 tunnel_endpoint;  /* 0 = no tunnel */
	__u16 node_id;
	__u8 flags;
	__u8 pad;
};
_Static_assert(sizeof(struct remote_endpoint_info) == 12, "remote_endpoint_info size");

/* seta_metrics: per-CPU array of counters, one slot per (reason, direction).
 * reason 0 = forwarded, otherwise the positive drop code. dir: 1 ingress,
 * 2 egress, 3 service. */
#define METRIC_INGRESS 1
#define METRIC_EGRESS 2
#define METRIC_SERVICE 3
#define METRICS_SLOTS 1024

static inline __u32 metrics_index(__u8 reason, __u8 dir)
{
	return ((__u32)reason << 2) | (dir & 3);
}

struct metrics_value {
	__u64 count;
	__u64 bytes;
};
_Static_assert(sizeof(struct metrics_value) == 16, "metrics_value size");

/* Reserved identities (Cilium numbering) */
#define HOST_ID 1
#define WORLD_ID 2
