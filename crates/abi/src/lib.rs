//! Rust mirrors of the structs in `bpf/include/abi.h`.
//!
//! Every struct has compile-time size and offset asserts that match the
//! `_Static_assert`s on the C side; change both together and bump
//! [`ABI_VERSION`] so pinned maps of the old layout are never reused.
#![cfg_attr(not(feature = "aya"), no_std)]

use core::mem::{offset_of, size_of};

/// Layout version; pins live under `/sys/fs/bpf/seta/<node>/v<ABI_VERSION>/`.
pub const ABI_VERSION: u32 = 2;

pub const ENDPOINT_KEY_IPV4: u8 = 1;
pub const ENDPOINT_F_HOST: u32 = 1;
/// Static bits in front of the address in an ipcache LPM key.
pub const IPCACHE_STATIC_PREFIX: u32 = 32;

pub const METRIC_INGRESS: u8 = 1;
pub const METRIC_EGRESS: u8 = 2;
pub const METRIC_SERVICE: u8 = 3;

/// Key of `seta_lxc`. `ip4` is in network byte order (as the raw bytes of the address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub ip4: [u8; 4],
    pub family: u8,
    pub pad: u8,
    pub cluster_id: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    pub ifindex: u32,
    pub unused: u16,
    pub lxc_id: u16,
    pub flags: u32,
    pub mac: [u8; 6],
    pub node_mac: [u8; 6],
    pub sec_id: u32,
    pub parent_ifindex: u32,
    pub pad: [u32; 2],
}

pub const LXC_SELF_SLOTS: u32 = 65536;

/// `seta_lxc_self` slot: the endpoint behind a host-side veth (see abi.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LxcSelf {
    pub ifindex: u32,
    pub ipv4: [u8; 4],
    pub sec_id: u32,
    pub lxc_id: u16,
    pub node_mac: [u8; 6],
}

const _: () = {
    assert!(size_of::<LxcSelf>() == 20);
    assert!(offset_of!(LxcSelf, lxc_id) == 12);
};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcacheKey {
    pub prefixlen: u32,
    pub cluster_id: u16,
    pub pad: u8,
    pub family: u8,
    pub ip4: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteEndpointInfo {
    pub sec_identity: u32,
    pub tunnel_endpoint: [u8; 4],
    pub node_id: u16,
    pub flags: u8,
    pub pad: u8,
}

/// Slots of the `seta_metrics` per-CPU array.
pub const METRICS_SLOTS: u32 = 1024;

/// Index of the (reason, direction) counter in `seta_metrics`.
pub const fn metrics_index(reason: u8, dir: u8) -> u32 {
    ((reason as u32) << 2) | (dir as u32 & 3)
}

/// Inverse of [`metrics_index`]: (reason, direction).
pub const fn metrics_slot(idx: u32) -> (u8, u8) {
    ((idx >> 2) as u8, (idx & 3) as u8)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsValue {
    pub count: u64,
    pub bytes: u64,
}

const _: () = {
    assert!(size_of::<EndpointKey>() == 8);
    assert!(offset_of!(EndpointKey, family) == 4);
    assert!(size_of::<EndpointInfo>() == 40);
    assert!(offset_of!(EndpointInfo, mac) == 12);
    assert!(offset_of!(EndpointInfo, node_mac) == 18);
    assert!(offset_of!(EndpointInfo, sec_id) == 24);
    assert!(size_of::<IpcacheKey>() == 12);
    assert!(offset_of!(IpcacheKey, ip4) == 8);
    assert!(size_of::<RemoteEndpointInfo>() == 12);
    assert!(size_of::<MetricsValue>() == 16);
};

impl EndpointKey {
    pub fn v4(ip: [u8; 4]) -> Self {
        Self {
            ip4: ip,
            family: ENDPOINT_KEY_IPV4,
            ..Default::default()
        }
    }
}

impl IpcacheKey {
    /// Key for `ip/prefix_len`; host bits of `ip` are cleared.
    pub fn v4(ip: [u8; 4], prefix_len: u8) -> Self {
        let mask = if prefix_len == 0 { 0 } else { u32::MAX << (32 - prefix_len as u32) };
        let masked = (u32::from_be_bytes(ip) & mask).to_be_bytes();
        Self {
            prefixlen: IPCACHE_STATIC_PREFIX + prefix_len as u32,
            family: ENDPOINT_KEY_IPV4,
            ip4: masked,
            ..Default::default()
        }
    }
    pub fn ip_prefix_len(&self) -> u8 {
        self.prefixlen.saturating_sub(IPCACHE_STATIC_PREFIX) as u8
    }
}

/// The part of [`IpcacheKey`] after `prefixlen`, as aya's `lpm_trie::Key` wants it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcacheLpmData {
    pub cluster_id: u16,
    pub pad: u8,
    pub family: u8,
    pub ip4: [u8; 4],
}
const _: () = assert!(size_of::<IpcacheLpmData>() + 4 == size_of::<IpcacheKey>());

impl IpcacheKey {
    pub fn lpm_data(&self) -> IpcacheLpmData {
        IpcacheLpmData {
            cluster_id: self.cluster_id,
            pad: self.pad,
            family: self.family,
            ip4: self.ip4,
        }
    }
    pub fn from_lpm(prefixlen: u32, d: IpcacheLpmData) -> Self {
        Self {
            prefixlen,
            cluster_id: d.cluster_id,
            pad: d.pad,
            family: d.family,
            ip4: d.ip4,
        }
    }
}

pub const POLICY_MAP_SIZE: u32 = 16384;
pub const POLICY_STATIC_PREFIX: u32 = 40;
/// policy_entry.cookie of a direction no policy enforces: no verdict event
pub const POLICY_COOKIE_NOT_ENFORCED: u32 = u32::MAX;
pub const POLICY_FULL_PREFIX: u32 = 64;

/// `policy_key` after its `prefixlen` (aya's `lpm_trie::Key` carries that).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyLpmData {
    pub sec_label: u32,
    pub egress: u8,
    pub protocol: u8,
    /// network byte order
    pub dport: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyEntry {
    pub deny: u8,
    pub l4_prefix: u8,
    pub pad: u16,
    pub cookie: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CtKey {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// nanoseconds of CLOCK_MONOTONIC
    pub expires: u64,
    pub packets: u64,
    pub bytes: u64,
    pub src_sec_id: u32,
    pub tx_closing: u8,
    pub rx_closing: u8,
    pub seen_reply: u8,
    /// trace aggregation: the ~4.3 s epoch it last reported in
    pub last_report: u8,
}

/// `seta_lb4_svc` key: a frontend's slot (0 = the service's master entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4Key {
    pub address: [u8; 4],
    pub dport: [u8; 2],
    pub backend_slot: u16,
    pub proto: u8,
    pub scope: u8,
    pub pad: [u8; 2],
}

/// `seta_lb4_svc` value: the master entry (count, rev-NAT index, flags) or
/// a slot (backend id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4Service {
    pub backend_id: u32,
    pub count: u16,
    pub rev_nat_index: u16,
    pub flags: u8,
    pub flags2: u8,
    pub qcount: u16,
}

pub const LB_F_EXTERNAL_IP: u8 = 1;
pub const LB_F_NODEPORT: u8 = 2;
pub const LB_F_EXT_LOCAL_SCOPE: u8 = 4;
pub const LB_F_LOADBALANCER: u8 = 32;
pub const LB_F_SOURCE_RANGE: u8 = 128;
pub const LB_F_HOSTPORT: u8 = 8;
/// A ClusterIP served from outside too (Cilium's ROUTABLE, `--bpf-lb-external-clusterip`)
pub const LB_F_ROUTABLE: u8 = 64;
/// flags2: `service.cilium.io/src-ranges-policy: deny` (the ranges are a deny list)
pub const LB_F2_SOURCE_RANGE_DENY: u8 = 64;
/// flags2: north-south to a remote backend by DSR (read with OPT_LB_DSR_BY_SERVICE)
pub const LB_F2_FWD_MODE_DSR: u8 = 128;
/// flags2: an ExternalIP that is none of this node's addresses; with the
/// CVE-2020-8554 mitigation the node's and pods' own connections to it are
/// not translated (Cilium's `sock4_skip_xlate`, which asks the ipcache): they
/// reach the address itself
pub const LB_F2_EXTERNAL_IP_FOREIGN: u8 = 1;
/// flags2: the frontend has two scopes (Cilium's SVC_FLAG_TWO_SCOPES): this
/// entry (scope 0) serves clients from outside, the scope-1 twin the
/// cluster's own (pods' packets and sockets, the node's sockets)
pub const LB_F2_TWO_SCOPES: u8 = 32;

/// `lb4_src_range_key` after its `prefixlen` (aya's `lpm_trie::Key` carries
/// that: 32 + the range's length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4SrcRangeData {
    pub rev_nat_id: u16,
    pub pad: u16,
    pub addr: [u8; 4],
}

/// `seta_lb4_be` value (key: backend id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4Backend {
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub proto: u8,
    /// state: 0 active, 1 terminating, 2 quarantined, 3 maintenance
    pub flags: u8,
    pub cluster_id: u16,
    pub zone: u8,
    pub pad: u8,
}

/// `seta_lb4_rnat` value (key: rev-NAT index, u16).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4ReverseNat {
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub pad: u16,
}

/// `seta_lb4_conn` value (key: a CtKey with pad[0] = LB_CONN_FWD | LB_CONN_REV).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lb4Conn {
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub rev_nat_index: u16,
    pub backend_id: u32,
}

/// `seta_snat_v4_external` value (key: a CtKey with pad[0] = NAT_DIR_OUT |
/// NAT_DIR_IN): the address and port a SNATed connection is given (OUT), or
/// the client's a reply goes back to (IN).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nat4Entry {
    pub created: u64,
    pub to_addr: [u8; 4],
    pub to_port: [u8; 2],
    pub pad: u16,
}

pub const NAT_DIR_OUT: u8 = 1;
pub const NAT_DIR_IN: u8 = 2;

/// `seta_ipv4_frag` key (LRU hash): a fragmented datagram, as Cilium's
/// `ipv4_frag_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Frag4Key {
    pub daddr: [u8; 4],
    pub saddr: [u8; 4],
    pub id: [u8; 2],
    pub proto: u8,
    pub pad: u8,
}

/// `seta_ipv4_frag` value: the ports its first fragment carried, for the
/// later ones (Cilium's `ipv4_frag_l4ports`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frag4Ports {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
}

/// `seta_ipv4_frag`'s size (Cilium's `--bpf-fragments-map-max` default).
pub const FRAG4_MAP_SIZE: u32 = 8192;

/// `seta_lb4_reverse_sk` key: a socket (cookie) that socket-LB sent to a
/// backend address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SockRevnatKey {
    pub cookie: u64,
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub pad: u16,
}

/// `seta_lb4_reverse_sk` value: the frontend recvmsg/getpeername show.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevnatEntry {
    pub address: [u8; 4],
    pub port: [u8; 2],
    pub rev_nat_index: u16,
}

/// `seta_sock_netns` values: the node's own network namespace, or a pod's.
pub const SOCK_NETNS_HOST: u8 = 1;
pub const SOCK_NETNS_POD: u8 = 2;
pub const SOCK_NETNS_MAP_SIZE: u32 = 65536;

/// `seta_lb4_affinity` key (sessionAffinity ClientIP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lb4AffinityKey {
    /// the client's IPv4 address in the first 4 bytes (network order)
    pub client_id: u64,
    pub rev_nat_id: u16,
    pub netns_cookie: u8,
    pub pad1: u8,
    pub pad2: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbAffinityVal {
    pub last_used: u64,
    pub backend_id: u32,
    pub pad: u32,
}

pub const LB_F_AFFINITY: u8 = 16;
/// master entry `backend_id`: upper 8 bits the algorithm, lower 24 the affinity timeout
pub const LB_ALG_RANDOM: u32 = 1;
pub const LB_ALG_MAGLEV: u32 = 2;

/// Slots per `seta_lb4_maglev` value.
pub const LB_MAGLEV_CHUNK: usize = 1024;
pub const LB_MAGLEV_MAP_SIZE: u32 = 16384;

/// `seta_lb4_maglev` key: a service (rev-NAT index) and a chunk of its table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4MaglevKey {
    pub rev_nat_id: u16,
    pub chunk: u16,
}

/// `seta_lb4_maglev` value: backend ids of LB_MAGLEV_CHUNK consecutive slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lb4MaglevChunk {
    pub backend_ids: [u32; LB_MAGLEV_CHUNK],
}

impl Default for Lb4MaglevChunk {
    fn default() -> Self {
        Self {
            backend_ids: [0; LB_MAGLEV_CHUNK],
        }
    }
}

pub const LB_CONN_FWD: u8 = 1;
pub const LB_CONN_REV: u8 = 2;
pub const LB_MAP_SIZE: u32 = 65536;
/// the BPF NAT table's default size (Cilium's bpf-nat-global-max)
pub const NAT_MAP_SIZE: u32 = 524288;
/// `seta_ipmasq_v4` (LPM, key {prefixlen, addr[4]}, value u8): destinations
/// BPF masquerade leaves alone, and which sources put each range there
pub const IPMASQ_MAP_SIZE: u32 = 16384;
pub const IPMASQ_F_AGENT: u8 = 1;
pub const IPMASQ_F_NATIVE_CIDR: u8 = 2;
/// `seta_masq_dev_v4` (hash, ifindex u32 -> address in network order): the
/// address BPF masquerade gives a connection leaving by each native device
pub const MASQ_DEV_MAP_SIZE: u32 = 64;

pub const CONFIG_FLAGS: u32 = 0;
pub const CONFIG_F_IPBLOCK: u32 = 1;
/// seta_config slot: ifindex of seta_vxlan (tunnel mode), 0 = no tunnel
pub const CONFIG_VXLAN_IFINDEX: u32 = 1;
/// seta_config slot: datapath option bits (OPT_*)
pub const CONFIG_DATAPATH_OPTS: u32 = 2;
/// a service without backends drops (else: rejects with ICMP port unreachable)
pub const OPT_LB_NO_BACKEND_DROP: u32 = 1;
/// BPF masquerade: pods' traffic to the world leaves from the node's address
pub const OPT_MASQUERADE: u32 = 2;
/// north-south TCP to a remote backend goes by DSR (--bpf-lb-mode dsr|hybrid)
pub const OPT_LB_DSR_TCP: u32 = 4;
/// north-south UDP to a remote backend goes by DSR (--bpf-lb-mode dsr)
pub const OPT_LB_DSR_UDP: u32 = 8;
/// trace aggregation (--monitor-aggregation): 2 bits at this shift
pub const OPT_MONITOR_AGG_SHIFT: u32 = 4;
/// the datapath makes no drop events (--bpf-events-drop-enabled=false)
pub const OPT_NO_DROP_EVENTS: u32 = 64;
/// no policy-verdict events (--bpf-events-policy-verdict-enabled=false)
pub const OPT_NO_VERDICT_EVENTS: u32 = 128;
/// no trace events (--bpf-events-trace-enabled=false)
pub const OPT_NO_TRACE_EVENTS: u32 = 256;
pub const MONITOR_AGG_MEDIUM: u32 = 0;
pub const MONITOR_AGG_NONE: u32 = 1;
pub const MONITOR_AGG_LOW: u32 = 2;
pub const MONITOR_AGG_MAXIMUM: u32 = 3;
/// seta_config slot: the node's address in network order (SNAT of north-south service traffic)
pub const CONFIG_NODE_IP: u32 = 3;
/// seta_config slot: the Maglev table size M (prime); 0 = no Maglev
pub const CONFIG_LB_MAGLEV_M: u32 = 4;
/// seta_config slot: the seed of the datapath's flow hash (Maglev slot)
pub const CONFIG_LB_HASH_SEED: u32 = 5;
/// reserved identity carried in the VNI by a node's own traffic
pub const REMOTE_NODE_ID: u32 = 6;
pub const IDENTITY_SCOPE_IPBLOCK: u32 = 3 << 24;

pub const EVENT_DROP: u8 = 1;
/// a packet at a trace observation point (subtype TRACE_*; cookie = the CT state)
pub const EVENT_TRACE: u8 = 4;
/// Trace observation points, Cilium's `enum trace_point` (Hubble's
/// TraceObservationPoint has the same numbers, but 101 for to-endpoint).
pub const TRACE_TO_LXC: u8 = 0;
pub const TRACE_TO_HOST: u8 = 2;
pub const TRACE_TO_STACK: u8 = 3;
pub const TRACE_TO_OVERLAY: u8 = 4;
pub const TRACE_FROM_LXC: u8 = 5;
pub const TRACE_FROM_HOST: u8 = 7;
pub const TRACE_FROM_STACK: u8 = 8;
pub const TRACE_FROM_OVERLAY: u8 = 9;
pub const TRACE_FROM_NETWORK: u8 = 10;
pub const TRACE_TO_NETWORK: u8 = 11;
/// subtype: the match type (POLICY_MATCH_*)
pub const EVENT_POLICY_VERDICT: u8 = 5;
/// Which policy entry decided a verdict (Cilium's match types and numbers).
pub const POLICY_MATCH_NONE: u8 = 0;
pub const POLICY_MATCH_L3_ONLY: u8 = 1;
pub const POLICY_MATCH_L3_L4: u8 = 2;
pub const POLICY_MATCH_L4_ONLY: u8 = 3;
pub const POLICY_MATCH_ALL: u8 = 4;
pub const POLICY_MATCH_L3_PROTO: u8 = 5;
pub const POLICY_MATCH_PROTO_ONLY: u8 = 6;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetaEvent {
    pub event_type: u8,
    pub subtype: u8,
    pub source: u16,
    pub ifindex: u32,
    pub src_label: u32,
    pub dst_label: u32,
    pub verdict: i32,
    pub cookie: u32,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub dir: u8,
    pub flags: u8,
    /// the CPU it happened on
    pub cpu: u8,
    pub ts: u64,
}

const _: () = {
    assert!(size_of::<PolicyLpmData>() + 4 == 12);
    assert!(offset_of!(PolicyLpmData, dport) == 6);
    assert!(size_of::<PolicyEntry>() == 8);
    assert!(size_of::<CtKey>() == 16);
    assert!(size_of::<CtEntry>() == 32);
    assert!(offset_of!(CtEntry, src_sec_id) == 24);
    assert!(size_of::<SetaEvent>() == 48);
    assert!(size_of::<Lb4Key>() == 12);
    assert!(size_of::<Lb4Service>() == 12);
    assert!(size_of::<Lb4Backend>() == 12);
    assert!(size_of::<Lb4ReverseNat>() == 8);
    assert!(size_of::<Lb4Conn>() == 12);
    assert!(size_of::<Nat4Entry>() == 16);
    assert!(size_of::<Lb4AffinityKey>() == 16);
    assert!(size_of::<LbAffinityVal>() == 16);
    assert!(offset_of!(SetaEvent, ts) == 40);
    assert!(size_of::<SockRevnatKey>() == 16);
    assert!(size_of::<SockRevnatEntry>() == 8);
    assert!(size_of::<Frag4Key>() == 12);
    assert!(size_of::<Frag4Ports>() == 4);
};

/// An EVENT_DROP record carries the packet's first bytes after the event
/// (Cilium's drop notification payload).
pub const DROP_PAYLOAD_LEN: usize = 128;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropPayload {
    /// the packet's length
    pub orig_len: u32,
    /// bytes captured in `data`
    pub cap_len: u32,
    pub data: [u8; DROP_PAYLOAD_LEN],
}

impl DropPayload {
    /// The captured bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..(self.cap_len as usize).min(DROP_PAYLOAD_LEN)]
    }
}

/// One ring-buffer record: the event, and a drop's packet bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub ev: SetaEvent,
    pub payload: Option<DropPayload>,
}

impl From<SetaEvent> for Record {
    fn from(ev: SetaEvent) -> Self {
        Self { ev, payload: None }
    }
}

impl Record {
    /// Decode a ring-buffer record (a drop's payload when it has one).
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let ev = SetaEvent::from_bytes(b)?;
        let rest = &b[size_of::<SetaEvent>()..];
        let payload = (ev.event_type == EVENT_DROP && rest.len() >= size_of::<DropPayload>())
            // SAFETY: DropPayload is plain data of this size; read_unaligned copes with alignment.
            .then(|| unsafe { core::ptr::read_unaligned(rest.as_ptr() as *const DropPayload) });
        Some(Self { ev, payload })
    }
}

/// EVENT_TRACE_SOCK: socket-LB's translation points (Cilium's
/// trace_sock_notify), the subtype.
pub const EVENT_TRACE_SOCK: u8 = 7;
pub const XLATE_PRE_DIRECTION_FWD: u8 = 1;
pub const XLATE_POST_DIRECTION_FWD: u8 = 2;
pub const XLATE_PRE_DIRECTION_REV: u8 = 3;
pub const XLATE_POST_DIRECTION_REV: u8 = 4;
/// `--enable-socket-lb-tracing=false`
pub const OPT_NO_SOCK_TRACE: u32 = 512;

/// The record of an EVENT_TRACE_SOCK: the size of a [`SetaEvent`], its own
/// layout (the type and the time where a SetaEvent has them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockEvent {
    pub event_type: u8,
    pub subtype: u8,
    pub proto: u8,
    pub pad: u8,
    pub daddr: [u8; 4],
    pub dport: [u8; 2],
    pub pad2: u16,
    pub pad3: u32,
    pub sock_cookie: u64,
    pub cgroup_id: u64,
    pub netns_cookie: u64,
    pub ts: u64,
}

const _: () = {
    assert!(size_of::<SockEvent>() == size_of::<SetaEvent>());
    assert!(offset_of!(SockEvent, ts) == offset_of!(SetaEvent, ts));
};

impl SockEvent {
    /// The same record read as a socket trace.
    pub fn of(ev: &SetaEvent) -> Self {
        // SAFETY: both are plain data of the same size.
        unsafe { core::ptr::read_unaligned(ev as *const SetaEvent as *const Self) }
    }
    /// A socket trace as the record the reader returns.
    pub fn to_event(&self) -> SetaEvent {
        // SAFETY: both are plain data of the same size.
        unsafe { core::ptr::read_unaligned(self as *const Self as *const SetaEvent) }
    }
}

/// EVENT_DEBUG: a datapath debug message (Cilium's `debug_msg`), made only
/// with OPT_DEBUG (`--debug-verbose=datapath`).
pub const EVENT_DEBUG: u8 = 2;
/// debug messages (`--debug-verbose=datapath`)
pub const OPT_DEBUG: u32 = 1024;
/// North-south DSR per frontend (its LB_F2_FWD_MODE_DSR flag), Cilium's
/// `--bpf-lb-mode-annotation`; OPT_LB_DSR_TCP/UDP are not read then.
pub const OPT_LB_DSR_BY_SERVICE: u32 = 2048;
/// Pods' per-packet LB leaves LB_F2_EXTERNAL_IP_FOREIGN frontends alone, as
/// their sockets do (socket-LB on for pods, mitigation on; Cilium has no
/// per-packet LB for pods then)
pub const OPT_EXTERNAL_IP_MITIGATION: u32 = 4096;
/// Bits 16-31 of the options: the first BPF SNAT port, above the NodePort
/// range (Cilium's NODEPORT_PORT_MIN_NAT); 0: 32768
pub const OPT_NAT_PORT_MIN_SHIFT: u32 = 16;
/// Debug message types the datapath sends (Cilium's `bpf/lib/dbg.h`
/// numbers, which Hubble's DebugEventType shares).
pub const DBG_GENERIC: u8 = 1;
pub const DBG_LOCAL_DELIVERY: u8 = 2;
pub const DBG_ENCAP: u8 = 3;
pub const DBG_POLICY_DENIED: u8 = 5;
pub const DBG_CT_VERDICT: u8 = 15;
pub const DBG_DECAP: u8 = 16;
pub const DBG_LB4_LOOKUP_FRONTEND: u8 = 30;
pub const DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS: u8 = 33;
pub const DBG_CT_LOOKUP4_1: u8 = 48;
pub const DBG_CT_LOOKUP4_2: u8 = 49;
pub const DBG_CT_CREATED4: u8 = 50;
pub const DBG_IP_ID_MAP_FAILED4: u8 = 56;
pub const DBG_IP_ID_MAP_SUCCEED4: u8 = 58;

/// The record of an EVENT_DEBUG: the size of a [`SetaEvent`], its own
/// layout (the type and the time where a SetaEvent has them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugEvent {
    pub event_type: u8,
    pub subtype: u8,
    pub source: u16,
    /// the packet's hash (Cilium prints it as the MARK)
    pub hash: u32,
    pub arg1: u32,
    pub arg2: u32,
    pub arg3: u32,
    pub cpu: u32,
    pub ifindex: u32,
    pub pad: u32,
    pub pad2: u64,
    pub ts: u64,
}

const _: () = {
    assert!(size_of::<DebugEvent>() == size_of::<SetaEvent>());
    assert!(offset_of!(DebugEvent, ts) == offset_of!(SetaEvent, ts));
};

impl DebugEvent {
    /// The same record read as a debug message.
    pub fn of(ev: &SetaEvent) -> Self {
        // SAFETY: both are plain data of the same size.
        unsafe { core::ptr::read_unaligned(ev as *const SetaEvent as *const Self) }
    }
    /// A debug message as the record the reader returns.
    pub fn to_event(&self) -> SetaEvent {
        // SAFETY: both are plain data of the same size.
        unsafe { core::ptr::read_unaligned(self as *const Self as *const SetaEvent) }
    }
}

impl SetaEvent {
    /// Decode a ring-buffer record.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: SetaEvent is plain data of this size; read_unaligned copes with alignment.
        Some(unsafe { core::ptr::read_unaligned(b.as_ptr() as *const Self) })
    }
}

#[cfg(feature = "aya")]
mod pod {
    unsafe impl aya::Pod for super::PolicyLpmData {}
    unsafe impl aya::Pod for super::PolicyEntry {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtEntry {}
    // SAFETY: all of these are #[repr(C)] plain data without padding holes
    // that the kernel would read (sizes asserted above).
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::EndpointInfo {}
    unsafe impl aya::Pod for super::LxcSelf {}
    unsafe impl aya::Pod for super::IpcacheLpmData {}
    unsafe impl aya::Pod for super::RemoteEndpointInfo {}
    unsafe impl aya::Pod for super::MetricsValue {}
    unsafe impl aya::Pod for super::Lb4Key {}
    unsafe impl aya::Pod for super::Lb4Service {}
    unsafe impl aya::Pod for super::Lb4Backend {}
    unsafe impl aya::Pod for super::Lb4ReverseNat {}
    unsafe impl aya::Pod for super::Lb4Conn {}
    unsafe impl aya::Pod for super::Nat4Entry {}
    unsafe impl aya::Pod for super::Lb4SrcRangeData {}
    unsafe impl aya::Pod for super::Lb4AffinityKey {}
    unsafe impl aya::Pod for super::LbAffinityVal {}
    unsafe impl aya::Pod for super::Lb4MaglevKey {}
    unsafe impl aya::Pod for super::Lb4MaglevChunk {}
    unsafe impl aya::Pod for super::SockRevnatKey {}
    unsafe impl aya::Pod for super::SockRevnatEntry {}
    unsafe impl aya::Pod for super::Frag4Key {}
    unsafe impl aya::Pod for super::Frag4Ports {}
}
