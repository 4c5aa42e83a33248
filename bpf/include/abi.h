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

/* seta_lxc_self: ARRAY indexed by a host-side veth's ifindex (mod
 * LXC_SELF_SLOTS): the endpoint behind that device, which from_container
 * reads for every packet (an array lookup, inlined by the verifier). A slot
 * counts only while .ifindex equals the device's; otherwise the program
 * falls back to seta_lxc, which stays the source of truth. */
#define LXC_SELF_SLOTS 65536
struct lxc_self {
	__u32 ifindex;        /* 0 = empty */
	__be32 ipv4;          /* the endpoint's own address */
	__u32 sec_id;
	__u16 lxc_id;
	__u8 node_mac[6];     /* host-side MAC (lxc*) */
};
_Static_assert(sizeof(struct lxc_self) == 20, "lxc_self size");
_Static_assert(__builtin_offsetof(struct lxc_self, lxc_id) == 12, "lxc_self.lxc_id");

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
#define REMOTE_NODE_ID 6   /* what the node's own traffic carries in the VNI */

/* Per-endpoint policy map (LPM trie), one per endpoint, pinned seta_pol_NNNNN
 * and registered in seta_policy (hash of maps, endpoint id -> policy map).
 * prefixlen = 40 static bits (sec_label + egress byte) + 8 if the protocol is
 * set + the number of port bits. sec_label 0 = any identity. */
#define POLICY_MAP_SIZE 16384
#define POLICY_STATIC_PREFIX 40
#define POLICY_FULL_PREFIX 64
struct policy_key {
	__u32 prefixlen;
	__u32 sec_label;
	__u8 egress;
	__u8 protocol;
	__be16 dport;
};
_Static_assert(sizeof(struct policy_key) == 12, "policy_key size");
_Static_assert(__builtin_offsetof(struct policy_key, dport) == 10, "policy_key.dport");

struct policy_entry {
	__u8 deny;
	__u8 l4_prefix;   /* protocol + port bits, for display */
	__u16 pad;
	__u32 cookie;     /* 1-based rule index in the agent's repository, 0 = built-in,
			   * POLICY_COOKIE_NOT_ENFORCED = no policy in this direction */
};
/* the allow-all of a direction no policy enforces: no policy-verdict event
 * (Cilium's per-endpoint verdict filter) */
#define POLICY_COOKIE_NOT_ENFORCED 0xffffffffU
_Static_assert(sizeof(struct policy_entry) == 8, "policy_entry size");

/* seta_ct4: connection tracking, keyed by the tuple of the first packet. */
struct ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;     /* ICMP echo: the echo id in both ports */
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct ct_key) == 16, "ct_key size");

struct ct_entry {
	__u64 expires;    /* nanoseconds of CLOCK_MONOTONIC (bpf_ktime_get_coarse_ns) */
	__u64 packets;
	__u64 bytes;
	__u32 src_sec_id;
	__u8 tx_closing;  /* FIN/RST seen from the initiator */
	__u8 rx_closing;  /* FIN/RST seen from the responder */
	__u8 seen_reply;
	__u8 last_report; /* trace aggregation: the ~4.3 s epoch (ns >> 32) it last reported in */
};
_Static_assert(sizeof(struct ct_entry) == 32, "ct_entry size");
_Static_assert(__builtin_offsetof(struct ct_entry, src_sec_id) == 24, "ct_entry.src_sec_id");

/* Services (Cilium's lb4 layouts). seta_lb4_svc: frontend -> slot 0 (the
 * "master": count of backend slots, rev-NAT index, flags) and slots
 * 1..count (backend ids). */
struct lb4_key {
	__be32 address;       /* frontend (VIP) */
	__be16 dport;
	__u16 backend_slot;   /* 0 = master */
	__u8 proto;
	__u8 scope;           /* 0 = external (or all), 1 = internal (LB_F2_TWO_SCOPES) */
	__u8 pad[2];
};
_Static_assert(sizeof(struct lb4_key) == 12, "lb4_key size");

struct lb4_service {
	__u32 backend_id;     /* slots; the master holds the affinity timeout */
	__u16 count;          /* master: number of backend slots */
	__u16 rev_nat_index;
	__u8 flags;           /* LB_F_* */
	__u8 flags2;
	__u16 qcount;
};
_Static_assert(sizeof(struct lb4_service) == 12, "lb4_service size");

#define LB_F_EXTERNAL_IP 1
#define LB_F_NODEPORT 2
#define LB_F_EXT_LOCAL_SCOPE 4
#define LB_F_LOADBALANCER 32
#define LB_F_HOSTPORT 8
#define LB_F_SOURCE_RANGE 128 /* loadBalancerSourceRanges: only those clients, from outside */
#define LB_F_ROUTABLE 64       /* a ClusterIP served from outside too (--bpf-lb-external-clusterip) */
/* flags2 (Cilium's SVC_FLAG_SOURCE_RANGE_DENY, SVC_FLAG_FWD_MODE_DSR) */
#define LB_F2_SOURCE_RANGE_DENY 64 /* src-ranges-policy deny: the ranges are a deny list */
#define LB_F2_FWD_MODE_DSR 128     /* north-south to a remote backend by DSR (OPT_LB_DSR_BY_SERVICE) */
#define LB_F2_EXTERNAL_IP_FOREIGN 1 /* an ExternalIP that is none of the node's addresses (CVE-2020-8554) */
#define LB_F2_TWO_SCOPES 32 /* Cilium's: scope 0 serves outside clients, the scope-1 twin the cluster's own */

/* seta_lb4_source_range (LPM): a frontend's allowed client ranges, as
 * Cilium's lb4_src_range_key; prefixlen = 32 (id + pad) + the range's. */
struct lb4_src_range_key {
	__u32 prefixlen;
	__u16 rev_nat_id;
	__u16 pad;
	__be32 addr;
};
_Static_assert(sizeof(struct lb4_src_range_key) == 12, "lb4_src_range_key size");

/* seta_lb4_be: backend id -> address */
struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags;           /* state: 0 active, 1 terminating, 2 quarantined, 3 maintenance */
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};
_Static_assert(sizeof(struct lb4_backend) == 12, "lb4_backend size");

/* seta_lb4_rnat: rev-NAT index -> the frontend replies come from */
struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
	__u16 pad;
};
_Static_assert(sizeof(struct lb4_reverse_nat) == 8, "lb4_reverse_nat size");

/* seta_lb4_conn (LRU): a translated connection, keyed by a ct_key whose
 * pad[0] says which way: LB_CONN_FWD (the client's tuple to the frontend ->
 * its backend) or LB_CONN_REV (the translated tuple -> the frontend). */
struct lb4_conn {
	__be32 address;
	__be16 port;
	__u16 rev_nat_index;
	__u32 backend_id;
};
_Static_assert(sizeof(struct lb4_conn) == 12, "lb4_conn size");

/* seta_lb4_affinity (LRU): sessionAffinity ClientIP, per client and
 * frontend (rev-NAT index), as Cilium's lb4_affinity map */
struct lb4_affinity_key {
	__u64 client_id;      /* the client's IPv4 address (per-packet LB) */
	__u16 rev_nat_id;
	__u8 netns_cookie;    /* 0: client_id is an address */
	__u8 pad1;
	__u32 pad2;
};
_Static_assert(sizeof(struct lb4_affinity_key) == 16, "lb4_affinity_key size");

struct lb_affinity_val {
	__u64 last_used;      /* bpf_ktime_get_coarse_ns */
	__u32 backend_id;
	__u32 pad;
};
_Static_assert(sizeof(struct lb_affinity_val) == 16, "lb_affinity_val size");

#define LB_F_AFFINITY 16
#define LB_ALG_RANDOM 1
#define LB_ALG_MAGLEV 2

/* seta_lb4_maglev: a service's Maglev lookup table (M backend ids, M from
 * CONFIG_LB_MAGLEV_M) in chunks of LB_MAGLEV_CHUNK slots, keyed by the
 * service's rev-NAT index and the chunk's number (slot / LB_MAGLEV_CHUNK). */
#define LB_MAGLEV_CHUNK 1024
#define LB_MAGLEV_MAP_SIZE 16384
struct lb4_maglev_key {
	__u16 rev_nat_id;
	__u16 chunk;
};
_Static_assert(sizeof(struct lb4_maglev_key) == 4, "lb4_maglev_key size");

struct lb4_maglev_chunk {
	__u32 backend_ids[LB_MAGLEV_CHUNK];
};

/* seta_lb4_reverse_sk (LRU): socket-LB's way back (Cilium's
 * ipv4_revnat_tuple/entry): a socket (cookie) that connect4/sendmsg4 sent to
 * backend address:port -> the frontend recvmsg4/getpeername4 show instead. */
struct sock_revnat_key {
	__u64 cookie;         /* bpf_get_socket_cookie */
	__be32 address;       /* backend */
	__be16 port;
	__u16 pad;
};
_Static_assert(sizeof(struct sock_revnat_key) == 16, "sock_revnat_key size");

struct sock_revnat_entry {
	__be32 address;       /* frontend */
	__be16 port;
	__u16 rev_nat_index;
};
_Static_assert(sizeof(struct sock_revnat_entry) == 8, "sock_revnat_entry size");

/* seta_sock_netns: network namespace cookie -> what it is. Socket-LB
 * translates only the sockets of this node's namespace and of its pods. */
#define SOCK_NETNS_HOST 1
#define SOCK_NETNS_POD 2
#define SOCK_NETNS_MAP_SIZE 65536

/* DSR: the IPv4 option that carries the service to the backend's node
 * (Cilium's DSR_IPV4_OPT_TYPE: IPOPT_COPY | 0x1a, 8 bytes) */
#define DSR_IPV4_OPT_TYPE 0x9a
#define DSR_IPV4_OPT_LEN 8
struct dsr_opt_v4 {
	__u8 type;
	__u8 len;
	__be16 port;
	__be32 addr;
};
_Static_assert(sizeof(struct dsr_opt_v4) == 8, "dsr_opt_v4 size");

/* hairpin: a pod reaching itself through a service comes from this
 * address (Cilium's ipv4-service-loopback-address), 169.254.42.1 */
#define LB_LOOPBACK_ADDR bpf_htonl(0xa9fe2a01)

#define LB_CONN_FWD 1
#define LB_CONN_REV 2
#define LB_MAP_SIZE 65536

/* CT timeouts (seconds), Cilium's defaults */
#define CT_LIFETIME_TCP 21600
#define CT_LIFETIME_NONTCP 60
#define CT_SYN_TIMEOUT 60
#define CT_CLOSE_TIMEOUT 10

/* seta_events ring buffer records */
#define EVENT_DROP 1
#define EVENT_TRACE 4          /* subtype: the observation point; cookie: the CT state (0 new, 2 reply) */
#define EVENT_POLICY_VERDICT 5 /* subtype: the match type, POLICY_MATCH_* */
/* which policy entry decided, Cilium's numbers */
#define POLICY_MATCH_NONE 0
#define POLICY_MATCH_L3_ONLY 1
#define POLICY_MATCH_L3_L4 2
#define POLICY_MATCH_L4_ONLY 3
#define POLICY_MATCH_ALL 4
#define POLICY_MATCH_L3_PROTO 5
#define POLICY_MATCH_PROTO_ONLY 6
/* trace observation points, Cilium's enum trace_point */
#define TRACE_TO_LXC 0
#define TRACE_TO_HOST 2
#define TRACE_TO_STACK 3
#define TRACE_TO_OVERLAY 4
#define TRACE_FROM_LXC 5
#define TRACE_FROM_HOST 7
#define TRACE_FROM_STACK 8
#define TRACE_FROM_OVERLAY 9
#define TRACE_FROM_NETWORK 10
#define TRACE_TO_NETWORK 11
struct seta_event {
	__u8 type;        /* EVENT_* */
	__u8 subtype;     /* drop reason for EVENT_DROP */
	__u16 source;     /* endpoint id the event is about */
	__u32 ifindex;
	__u32 src_label;
	__u32 dst_label;
	__s32 verdict;    /* 0 allowed, -133 / -181 dropped */
	__u32 cookie;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;         /* METRIC_INGRESS / METRIC_EGRESS */
	__u8 flags;
	__u8 cpu;         /* the CPU it happened on (Cilium's monitor prints it) */
	__u64 ts;         /* bpf_ktime_get_ns() */
};
_Static_assert(sizeof(struct seta_event) == 48, "seta_event size");

/* An EVENT_DROP record is a seta_event followed by the packet's first bytes
 * (Cilium's drop notification payload, TRACE_PAYLOAD_LEN 128). */
#define DROP_PAYLOAD_LEN 128
struct drop_payload {
	__u32 orig_len;   /* the packet's length */
	__u32 cap_len;    /* bytes in data */
	__u8 data[DROP_PAYLOAD_LEN];
};
_Static_assert(sizeof(struct drop_payload) == 136, "drop_payload size");
struct seta_drop_record {
	struct seta_event ev;
	struct drop_payload p;
};

/* EVENT_TRACE_SOCK: socket-LB's translations (Cilium's trace_sock_notify),
 * a record of the same size with its own layout (ts at the same place).
 * subtype: XLATE_*; daddr:dport the address before (pre-) or after (post-)
 * the translation. */
#define EVENT_TRACE_SOCK 7
#define XLATE_PRE_DIRECTION_FWD 1
#define XLATE_POST_DIRECTION_FWD 2
#define XLATE_PRE_DIRECTION_REV 3
#define XLATE_POST_DIRECTION_REV 4
struct seta_sock_event {
	__u8 type;        /* EVENT_TRACE_SOCK */
	__u8 subtype;     /* XLATE_* */
	__u8 proto;
	__u8 pad;
	__be32 daddr;
	__be16 dport;
	__u16 pad2;
	__u32 pad3;
	__u64 sock_cookie;
	__u64 cgroup_id;
	__u64 netns_cookie;
	__u64 ts;
};
_Static_assert(sizeof(struct seta_sock_event) == 48, "seta_sock_event size");
_Static_assert(__builtin_offsetof(struct seta_sock_event, ts) == 40, "seta_sock_event.ts");
_Static_assert(__builtin_offsetof(struct seta_event, ts) == 40, "seta_event.ts");

/* EVENT_DEBUG: a datapath debug message (Cilium's debug_msg, made only with
 * --debug-verbose=datapath), a record of the same size with its own layout.
 * subtype: DBG_* (Cilium's numbers); the arguments as Cilium's dbg.h has them. */
#define EVENT_DEBUG 2
#define DBG_GENERIC 1
#define DBG_LOCAL_DELIVERY 2     /* arg1: endpoint id, arg2: source identity */
#define DBG_ENCAP 3              /* arg1: the tunnel endpoint, arg2: source identity */
#define DBG_POLICY_DENIED 5      /* arg1: source identity, arg2: destination identity */
#define DBG_CT_VERDICT 15        /* arg1: CT state, arg2: rev-NAT index (network order) */
#define DBG_DECAP 16             /* arg1: the VNI (the sender's identity), arg2: 0 */
#define DBG_LB4_LOOKUP_FRONTEND 30 /* arg1: address, arg2: port (network order) */
#define DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS 33 /* arg1: backend address, arg2: its port */
#define DBG_CT_LOOKUP4_1 48      /* arg1: saddr, arg2: daddr, arg3: dport << 16 | sport */
#define DBG_CT_LOOKUP4_2 49      /* arg1: nexthdr << 8 | flags, arg2: direction */
#define DBG_CT_CREATED4 50       /* arg1: rev-NAT index, arg2: source identity, arg3: lb address */
#define DBG_IP_ID_MAP_FAILED4 56 /* arg1: address */
#define DBG_IP_ID_MAP_SUCCEED4 58 /* arg1: address, arg2: identity */
struct seta_debug_event {
	__u8 type;        /* EVENT_DEBUG */
	__u8 subtype;     /* DBG_* */
	__u16 source;     /* the endpoint it is about */
	__u32 hash;       /* the packet's hash (Cilium prints it as MARK) */
	__u32 arg1;
	__u32 arg2;
	__u32 arg3;
	__u32 cpu;
	__u32 ifindex;
	__u32 pad;
	__u64 pad2;
	__u64 ts;
};
_Static_assert(sizeof(struct seta_debug_event) == 48, "seta_debug_event size");
_Static_assert(__builtin_offsetof(struct seta_debug_event, ts) == 40, "seta_debug_event.ts");

/* seta_config: ARRAY of u32 runtime flags. */
#define CONFIG_FLAGS 0
#define CONFIG_F_IPBLOCK 1   /* seta_ipblock holds entries: consult it */
#define CONFIG_VXLAN_IFINDEX 1 /* seta_vxlan (tunnel mode), 0 = no tunnel device */
#define CONFIG_DATAPATH_OPTS 2 /* OPT_* bits */
#define OPT_LB_NO_BACKEND_DROP 1 /* a service without backends drops (else: ICMP reject) */
#define OPT_MASQUERADE 2         /* pods' traffic to the world leaves from the node's address */
#define OPT_LB_DSR_TCP 4         /* north-south TCP to a remote backend: DSR (--bpf-lb-mode dsr|hybrid) */
#define OPT_LB_DSR_UDP 8         /* north-south UDP to a remote backend: DSR (--bpf-lb-mode dsr) */
/* trace aggregation (--monitor-aggregation), 2 bits: 0 medium (the default),
 * MONITOR_AGG_NONE, _LOW, _MAXIMUM */
#define OPT_MONITOR_AGG_SHIFT 4
#define MONITOR_AGG_MEDIUM 0
#define MONITOR_AGG_NONE 1
#define MONITOR_AGG_LOW 2
#define MONITOR_AGG_MAXIMUM 3
/* events the datapath does not make (--bpf-events-*-enabled=false) */
#define OPT_NO_DROP_EVENTS 64
#define OPT_NO_VERDICT_EVENTS 128
#define OPT_NO_TRACE_EVENTS 256
#define OPT_NO_SOCK_TRACE 512    /* --enable-socket-lb-tracing=false */
#define OPT_DEBUG 1024           /* debug messages (--debug-verbose=datapath) */
#define OPT_LB_DSR_BY_SERVICE 2048 /* DSR per frontend (LB_F2_FWD_MODE_DSR), --bpf-lb-mode-annotation */
#define OPT_EXTERNAL_IP_MITIGATION 4096 /* pods' per-packet LB skips LB_F2_EXTERNAL_IP_FOREIGN frontends */
/* bits 16-31: the first BPF SNAT port, above the NodePort range (Cilium's
 * NODEPORT_PORT_MIN_NAT, --node-port-range); 0: NAT_PORT_MIN */
#define OPT_NAT_PORT_MIN_SHIFT 16
#define CONFIG_NODE_IP 3     /* the node's address (network order): SNAT of north-south service traffic */
#define CONFIG_LB_MAGLEV_M 4 /* Maglev table size M (prime); 0 = no Maglev */
#define CONFIG_LB_HASH_SEED 5 /* seed of the datapath's flow hash (Maglev slot) */
#define CONFIG_SLOTS 6

/* seta_snat_v4_external (LRU hash): both directions of a SNATed connection
 * under a ct_key. pad[0] = NAT_DIR_OUT: the connection as it leaves (client ->
 * backend) -> the node's address and port it is given; NAT_DIR_IN: the
 * reply's tuple (backend -> node:port) -> the client's address and port. */
struct nat4_entry {
	__u64 created;    /* bpf_ktime_get_coarse_ns() */
	__be32 to_addr;
	__be16 to_port;
	__u16 pad;
};
_Static_assert(sizeof(struct nat4_entry) == 16, "nat4_entry size");
#define NAT_DIR_OUT 1
#define NAT_DIR_IN 2
#define NAT_PORT_MIN 32768 /* the default first SNAT port (OPT_NAT_PORT_MIN_SHIFT) .. 65535 */
#define NAT_COLLISION_RETRIES 32
#define NAT_MAP_SIZE 524288

/* seta_ipmasq_v4 (LPM trie, Cilium's cilium_ipmasq_v4): destinations BPF
 * masquerade leaves alone. Key: {prefixlen, addr[4]}; value: u8, which
 * sources put the range there (IPMASQ_F_*). */
struct ipmasq_key {
	__u32 prefixlen;
	__u8 addr[4];
};
#define IPMASQ_F_AGENT 1       /* the ip-masq-agent's nonMasqueradeCIDRs (and link-local) */
#define IPMASQ_F_NATIVE_CIDR 2 /* --ipv4-native-routing-cidr */
#define IPMASQ_MAP_SIZE 16384

/* seta_masq_dev_v4 (hash): the native devices BPF masquerade knows, ifindex
 * (u32) -> the address (__be32) a pod's connection leaving by that device
 * is masqueraded to (Cilium masquerades on each device to its address); a
 * device not in it: the node's address. */
#define MASQ_DEV_MAP_SIZE 64

/* seta_ipv4_frag (LRU hash): the ports of a fragmented TCP, UDP or SCTP
 * datagram, recorded from its first fragment for the later ones, which
 * carry no L4 header (Cilium's cilium_ipv4_frag_datagrams: ipv4_frag_id ->
 * ipv4_frag_l4ports). */
struct frag4_key {
	__be32 daddr;
	__be32 saddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct frag4_ports {
	__be16 sport;
	__be16 dport;
};

#define FRAG4_MAP_SIZE 8192

/* Synthetic identities for pod IPs selected by Kubernetes ipBlock (per IP). */
#define IDENTITY_SCOPE_IPBLOCK (3U << 24)
