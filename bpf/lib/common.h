/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#pragma once
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../include/abi.h"
#include "../include/drop.h"


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(max_entries, 65535);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lxc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lxc_self);
	__uint(max_entries, LXC_SELF_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_lxc_self SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct remote_endpoint_info);
	__uint(max_entries, 512000);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_ipcache SEC(".maps");

/* Counters per (reason, direction), one slot each: index = reason << 2 | dir.
 * A per-CPU array lookup is inlined by the verifier, so counting costs a few ns. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(max_entries, METRICS_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} seta_metrics SEC(".maps");

static __always_inline void update_metrics(__u32 bytes, __u8 dir, __u8 reason)
{
	__u32 idx = metrics_index(reason, dir);
	struct metrics_value *v = bpf_map_lookup_elem(&seta_metrics, &idx);

	if (v) {
		v->count += 1;
		v->bytes += bytes;
	}
}

/* Count a drop, report it (drop_notify, policy.h) and return TC_ACT_SHOT. */
#define send_drop(ctx, reason, dir) \
	({ update_metrics((ctx)->len, dir, reason); drop_notify(ctx, reason, dir); TC_ACT_SHOT; })

/* The protocols with ports first in their header (source, destination)
 * that services translate: TCP, UDP and SCTP. */
static __always_inline int l4_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

static __always_inline struct endpoint_info *lookup_ip4_endpoint(__be32 ip)
{
	struct endpoint_key key = {.ip4 = ip, .family = ENDPOINT_KEY_IPV4};

	return bpf_map_lookup_elem(&seta_lxc, &key);
}

static __always_inline struct remote_endpoint_info *ipcache_lookup(__be32 ip)
{
	struct ipcache_key key = {
		.prefixlen = IPCACHE_STATIC_PREFIX + 32,
		.family = ENDPOINT_KEY_IPV4,
		.ip4 = ip,
	};

	return bpf_map_lookup_elem(&seta_ipcache, &key);
}

static __always_inline __u32 ipcache_identity(__be32 ip)
{
	struct remote_endpoint_info *info = ipcache_lookup(ip);

	return info ? info->sec_identity : WORLD_ID;
}

/* Rewrite MACs and decrement TTL for a routed hop into an endpoint. */
static __always_inline int l3_local_delivery(struct __sk_buff *ctx, const struct endpoint_info *ep)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end)
		return -DROP_INVALID;
	if (ip->ttl <= 1)
		return -DROP_TTL_EXCEEDED;
	/* ttl is the high byte of the 16-bit word shared with protocol */
	__be16 old = *(__be16 *)&ip->ttl;
	ip->ttl--;
	__be16 new = *(__be16 *)&ip->ttl;
	__builtin_memcpy(eth->h_dest, ep->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ep->node_mac, ETH_ALEN);
	if (bpf_l3_csum_replace(ctx, ETH_HLEN + __builtin_offsetof(struct iphdr, check), old, new, 2) < 0)
		return -DROP_WRITE_ERROR;
	return 0;
}
