//! Datapath events into Hubble flows: a `seta_event` record (drop or
//! policy verdict) with what the agent knows of both sides (its endpoints
//! by address, the identities' labels). Pure: the agent passes the context.
use crate::flow::{self, layer4::Protocol, Flow};
use seta_abi::SetaEvent;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Cilium's monitor message types (the flow's `event_type.type`).
pub const MSG_DROP: i32 = 1;
pub const MSG_TRACE: i32 = 4;
pub const MSG_POLICY_VERDICT: i32 = 5;
pub const MSG_TRACE_SOCK: i32 = 7;

/// A local endpoint as a flow shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointView {
    pub id: u32,
    pub identity: u32,
    pub namespace: String,
    pub pod_name: String,
    pub labels: Vec<String>,
}

/// What the agent knows when it decodes: this node's endpoints and the
/// cluster's identities (labels as `source:key=value`).
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub node: String,
    pub endpoints: HashMap<Ipv4Addr, EndpointView>,
    pub identities: HashMap<u32, Vec<String>>,
    /// wall clock minus CLOCK_MONOTONIC, in ns (event times are monotonic)
    pub wall_offset_ns: i128,
    /// this node's pod CIDR and its router address: an address in it that
    /// is not an endpoint here is one this context does not know yet
    pub local_pods: Option<(ipnet::Ipv4Net, Ipv4Addr)>,
    /// network namespace cookies: the pod address of each (socket-LB's
    /// traces name the socket's namespace), and the node's own
    pub netns: HashMap<u64, Ipv4Addr>,
    pub host_netns: Option<u64>,
    /// the services' frontends (ClusterIP, ExternalIP, LoadBalancer IP,
    /// NodePort at this node's addresses): address and port to the
    /// service, as Hubble's service getter names a flow's side by them
    pub services: std::sync::Arc<ServicesByAddr>,
}

/// Frontend address and port to the service.
pub type ServicesByAddr = HashMap<(Ipv4Addr, u16), flow::Service>;

impl Context {
    /// The service whose frontend is `addr:port`, if any (Hubble's
    /// `GetServiceByAddr`).
    pub fn service_at(&self, addr: Ipv4Addr, port: u32) -> Option<flow::Service> {
        let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
        self.services.get(&(addr, port)).cloned()
    }

    /// An event's time (CLOCK_MONOTONIC ns) on the wall clock.
    pub fn time(&self, ts: u64) -> prost_types::Timestamp {
        let wall = ts as i128 + self.wall_offset_ns;
        prost_types::Timestamp {
            seconds: wall.div_euclid(1_000_000_000) as i64,
            nanos: wall.rem_euclid(1_000_000_000) as i32,
        }
    }

    /// Whether this context can name both sides of `ev`: every identity it
    /// carries (above the reserved ones) and every local pod address is
    /// known. A pod or identity newer than the context is not.
    pub fn knows(&self, ev: &SetaEvent) -> bool {
        if ev.event_type == seta_abi::EVENT_TRACE_SOCK {
            let ns = seta_abi::SockEvent::of(ev).netns_cookie;
            return self.host_netns == Some(ns) || self.netns.contains_key(&ns);
        }
        if ev.event_type == seta_abi::EVENT_DEBUG {
            let id = seta_abi::DebugEvent::of(ev).source as u32;
            return id == 0 || self.endpoints.values().any(|v| v.id == id);
        }
        let id_known = |id: u32| id < 256 || self.identities.contains_key(&id);
        let ip_known = |raw: [u8; 4]| {
            let ip = Ipv4Addr::from(raw);
            match self.local_pods {
                Some((net, router)) if net.contains(&ip) && ip != router => self.endpoints.contains_key(&ip),
                _ => true,
            }
        };
        id_known(ev.src_label) && id_known(ev.dst_label) && ip_known(ev.saddr) && ip_known(ev.daddr)
    }
}

fn side(ctx: &Context, addr: Ipv4Addr, identity: u32) -> flow::Endpoint {
    let ep = ctx.endpoints.get(&addr);
    // the endpoint's own labels, else its identity's (cloned once)
    let labels = match ep {
        Some(v) if !v.labels.is_empty() => v.labels.clone(),
        _ => ctx.identities.get(&identity).cloned().unwrap_or_default(),
    };
    let mut e = flow::Endpoint {
        identity,
        labels,
        ..Default::default()
    };
    if let Some(v) = ep {
        e.id = v.id;
        e.namespace = v.namespace.clone();
        e.pod_name = v.pod_name.clone();
    } else if let Some(ns) = e.labels.iter().find_map(|l| l.strip_prefix("k8s:io.kubernetes.pod.namespace=")) {
        e.namespace = ns.to_string();
    }
    e
}

fn tcp_flags(f: u8) -> flow::TcpFlags {
    flow::TcpFlags {
        fin: f & 0x01 != 0,
        syn: f & 0x02 != 0,
        rst: f & 0x04 != 0,
        psh: f & 0x08 != 0,
        ack: f & 0x10 != 0,
        urg: f & 0x20 != 0,
        ece: f & 0x40 != 0,
        cwr: f & 0x80 != 0,
        ns: false,
    }
}

/// The flow of one ring-buffer record: [`flow_of`], with what a drop's
/// packet bytes tell (see [`add_payload`]).
pub fn flow_of_record(r: &seta_abi::Record, ctx: &Context) -> Option<Flow> {
    let mut f = flow_of(&r.ev, ctx)?;
    if let Some(p) = &r.payload {
        add_payload(&mut f, p.bytes());
        f.seta_packet = p.bytes().to_vec();
        f.seta_packet_len = p.orig_len;
    }
    Some(f)
}

/// An IPv4 address as text (digit by digit: every flow has two).
pub fn ip4(a: Ipv4Addr) -> String {
    let mut s = String::with_capacity(15);
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if o >= 100 {
            s.push((b'0' + o / 100) as char);
        }
        if o >= 10 {
            s.push((b'0' + o / 10 % 10) as char);
        }
        s.push((b'0' + o % 10) as char);
    }
    s
}

/// A MAC address as `02:00:00:00:00:01`.
pub fn mac(b: &[u8]) -> String {
    crate::hex(b, Some(':'))
}

/// What a dropped packet's first bytes add, as Hubble decodes a drop's
/// payload: the Ethernet addresses; and for a frame the datapath could not
/// read as IPv4 (an IPv6 one, dropped as an unsupported L3 protocol) its
/// IPv6 addresses and L4 (ICMPv6 type, TCP/UDP ports).
pub fn add_payload(f: &mut Flow, p: &[u8]) {
    if p.len() < 14 {
        return;
    }
    f.ethernet = Some(flow::Ethernet {
        source: mac(&p[6..12]),
        destination: mac(&p[0..6]),
    });
    let no_ipv4 = f.ip.as_ref().is_none_or(|ip| ip.source == "0.0.0.0" && ip.destination == "0.0.0.0");
    if !(no_ipv4 && p[12..14] == [0x86, 0xdd] && p.len() >= 14 + 40) {
        return;
    }
    let v6 = |b: &[u8]| std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or([0; 16])).to_string();
    f.ip = Some(flow::Ip {
        source: v6(&p[22..38]),
        destination: v6(&p[38..54]),
        ip_version: flow::IpVersion::IPv6 as i32,
        encrypted: false,
    });
    let l4 = &p[54..];
    let port = |o: usize| u16::from_be_bytes([l4[o], l4[o + 1]]) as u32;
    f.l4 = match p[20] {
        58 if l4.len() >= 2 => Some(Protocol::IcmPv6(flow::IcmPv6 {
            r#type: l4[0] as u32,
            code: l4[1] as u32,
        })),
        6 if l4.len() >= 14 => Some(Protocol::Tcp(flow::Tcp {
            source_port: port(0),
            destination_port: port(2),
            flags: Some(tcp_flags(l4[13])),
        })),
        17 if l4.len() >= 4 => Some(Protocol::Udp(flow::Udp {
            source_port: port(0),
            destination_port: port(2),
        })),
        _ => None,
    }
    .map(|p| flow::Layer4 { protocol: Some(p) });
}

/// A socket-LB translation as Hubble's SOCK flow: the socket's pod (by its
/// namespace) to the address before (pre-xlate, TRACED) or after
/// (post-xlate, TRANSLATED) the translation, the socket's cookie and cgroup.
fn sock_flow(ev: &SetaEvent, ctx: &Context) -> Option<Flow> {
    use seta_abi::*;
    let s = SockEvent::of(ev);
    let verdict = match s.subtype {
        XLATE_PRE_DIRECTION_FWD | XLATE_PRE_DIRECTION_REV => flow::Verdict::Traced,
        XLATE_POST_DIRECTION_FWD | XLATE_POST_DIRECTION_REV => flow::Verdict::Translated,
        _ => return None,
    };
    let dst = Ipv4Addr::from(s.daddr);
    let dport = u16::from_be_bytes(s.dport) as u32;
    // the reverse points are about what the socket receives: from the
    // address (the frontend again after post-xlate-rev), as Hubble's sock
    // parser turns them around
    let rev = matches!(s.subtype, XLATE_PRE_DIRECTION_REV | XLATE_POST_DIRECTION_REV);
    let (sp, dp) = if rev { (dport, 0) } else { (0, dport) };
    let l4 = match s.proto {
        6 => Protocol::Tcp(flow::Tcp {
            source_port: sp,
            destination_port: dp,
            flags: None,
        }),
        17 => Protocol::Udp(flow::Udp {
            source_port: sp,
            destination_port: dp,
        }),
        _ => return None,
    };
    let (src_ip, source) = match ctx.netns.get(&s.netns_cookie) {
        Some(ip) => (ip.to_string(), side(ctx, *ip, ctx.endpoints.get(ip).map_or(0, |v| v.identity))),
        None => (
            String::new(),
            flow::Endpoint {
                identity: if ctx.host_netns == Some(s.netns_cookie) { 1 } else { 0 },
                labels: if ctx.host_netns == Some(s.netns_cookie) {
                    vec!["reserved:host".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            },
        ),
    };
    // the frontend (or an address no pod here has) is the world to the
    // socket, as Hubble shows it; a local backend is its endpoint
    let dst_identity = ctx.endpoints.get(&dst).map_or(2, |v| v.identity);
    let (mut ips, mut sides) = ((src_ip, dst.to_string()), (source, side(ctx, dst, dst_identity)));
    // the frontend the socket asked for or hears from, as Hubble names it
    let (mut src_svc, mut dst_svc) = (None, ctx.service_at(dst, dport));
    if rev {
        std::mem::swap(&mut ips.0, &mut ips.1);
        std::mem::swap(&mut sides.0, &mut sides.1);
        std::mem::swap(&mut src_svc, &mut dst_svc);
    }
    Some(Flow {
        time: Some(ctx.time(s.ts)),
        verdict: verdict as i32,
        ip: Some(flow::Ip {
            source: ips.0,
            destination: ips.1,
            ip_version: flow::IpVersion::IPv4 as i32,
            encrypted: false,
        }),
        l4: Some(flow::Layer4 { protocol: Some(l4) }),
        source: Some(sides.0),
        destination: Some(sides.1),
        source_service: src_svc,
        destination_service: dst_svc,
        r#type: flow::FlowType::Sock as i32,
        node_name: ctx.node.clone(),
        event_type: Some(flow::CiliumEventType {
            r#type: MSG_TRACE_SOCK,
            sub_type: 0,
        }),
        sock_xlate_point: s.subtype as i32,
        socket_cookie: s.sock_cookie,
        cgroup_id: s.cgroup_id,
        ..Default::default()
    })
}

/// Hubble's TraceObservationPoint of a trace's point (Cilium's numbers, but
/// to-endpoint is 101).
pub fn observation_point(point: u8) -> i32 {
    match point {
        seta_abi::TRACE_TO_LXC => flow::TraceObservationPoint::ToEndpoint as i32,
        p => p as i32,
    }
}

/// The flow of one datapath event, or None for a record that is not one.
pub fn flow_of(ev: &SetaEvent, ctx: &Context) -> Option<Flow> {
    if ev.event_type == seta_abi::EVENT_TRACE_SOCK {
        return sock_flow(ev, ctx);
    }
    let (msg, dropped, code) = match ev.event_type {
        seta_abi::EVENT_DROP => (MSG_DROP, true, ev.subtype),
        seta_abi::EVENT_POLICY_VERDICT => (MSG_POLICY_VERDICT, ev.verdict < 0, (-ev.verdict).clamp(0, 255) as u8),
        seta_abi::EVENT_TRACE => (MSG_TRACE, false, 0),
        _ => return None,
    };
    // a trace's CT state: 0 new, 2 reply (verdicts and drops: first packets)
    let reply = msg == MSG_TRACE && ev.cookie == 2;
    let (src, dst) = (Ipv4Addr::from(ev.saddr), Ipv4Addr::from(ev.daddr));
    let (sport, dport) = (u16::from_be_bytes(ev.sport) as u32, u16::from_be_bytes(ev.dport) as u32);
    let l4 = match ev.proto {
        6 => Some(Protocol::Tcp(flow::Tcp {
            source_port: sport,
            destination_port: dport,
            flags: Some(tcp_flags(ev.flags)),
        })),
        17 => Some(Protocol::Udp(flow::Udp {
            source_port: sport,
            destination_port: dport,
        })),
        132 => Some(Protocol::Sctp(flow::Sctp {
            source_port: sport,
            destination_port: dport,
        })),
        // ICMP echo carries its id in both ports; the type is not recorded
        1 => Some(Protocol::IcmPv4(flow::IcmPv4 { r#type: 8, code: 0 })),
        _ => None,
    };
    let ported = matches!(ev.proto, 6 | 17 | 132);
    let direction = match ev.dir {
        seta_abi::METRIC_INGRESS => flow::TrafficDirection::Ingress,
        seta_abi::METRIC_EGRESS => flow::TrafficDirection::Egress,
        _ => flow::TrafficDirection::Unknown,
    };
    Some(Flow {
        time: Some(ctx.time(ev.ts)),
        verdict: if dropped {
            flow::Verdict::Dropped
        } else {
            flow::Verdict::Forwarded
        } as i32,
        drop_reason: if dropped { code as u32 } else { 0 },
        drop_reason_desc: if dropped { code as i32 } else { 0 },
        ip: Some(flow::Ip {
            source: ip4(src),
            destination: ip4(dst),
            ip_version: flow::IpVersion::IPv4 as i32,
            encrypted: false,
        }),
        l4: l4.map(|p| flow::Layer4 { protocol: Some(p) }),
        source: Some(side(ctx, src, ev.src_label)),
        destination: Some(side(ctx, dst, ev.dst_label)),
        // a side at a frontend (before translation, or a reply from it)
        source_service: ported.then(|| ctx.service_at(src, sport)).flatten(),
        destination_service: ported.then(|| ctx.service_at(dst, dport)).flatten(),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: ctx.node.clone(),
        event_type: Some(flow::CiliumEventType {
            r#type: msg,
            sub_type: if msg == MSG_DROP { code as i32 } else { 0 },
        }),
        traffic_direction: direction as i32,
        trace_observation_point: if msg == MSG_TRACE { observation_point(ev.subtype) } else { 0 },
        is_reply: Some(reply),
        interface: Some(flow::NetworkInterface {
            index: ev.ifindex,
            name: String::new(),
        }),
        policy_match_type: if msg == MSG_POLICY_VERDICT { ev.subtype as u32 } else { 0 },
        seta_cpu: ev.cpu as u32,
        ..Default::default()
    })
}

#[cfg(test)]
mod ip4_tests {
    #[test]
    fn ip4_is_displays_text() {
        for a in [
            [0, 0, 0, 0],
            [10, 200, 1, 3],
            [255, 255, 255, 255],
            [192, 0, 2, 10],
            [1, 20, 100, 9],
        ] {
            let ip = std::net::Ipv4Addr::from(a);
            assert_eq!(super::ip4(ip), ip.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drops_packet_bytes_name_its_macs_and_an_ipv6_frame() {
        // an IPv6 router solicitation from fe80::1 to ff02::2, dropped as
        // an unsupported L3 protocol (the event has no IPv4 addresses)
        let mut p = vec![0x33, 0x33, 0, 0, 0, 2, 0x02, 0xaa, 0, 0, 0, 2, 0x86, 0xdd];
        p.extend([0x60, 0, 0, 0, 0, 8, 58, 255]);
        p.extend(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).octets());
        p.extend(std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2).octets());
        p.extend([133, 0, 0, 0, 0, 0, 0, 0]);
        let mut payload = seta_abi::DropPayload {
            orig_len: p.len() as u32,
            cap_len: p.len() as u32,
            data: [0; seta_abi::DROP_PAYLOAD_LEN],
        };
        payload.data[..p.len()].copy_from_slice(&p);
        let r = seta_abi::Record {
            ev: SetaEvent {
                event_type: seta_abi::EVENT_DROP,
                subtype: 139,
                verdict: -139,
                dir: seta_abi::METRIC_EGRESS,
                ..Default::default()
            },
            payload: Some(payload),
        };
        let f = flow_of_record(&r, &Context::default()).unwrap();
        let eth = f.ethernet.clone().unwrap();
        assert_eq!(
            (eth.source.as_str(), eth.destination.as_str()),
            ("02:aa:00:00:00:02", "33:33:00:00:00:02")
        );
        let line = crate::compact::line(&f, false);
        assert!(
            line.ends_with(": fe80::1 (ID:0) -> ff02::2 (ID:0) Unsupported L3 protocol DROPPED (ICMPv6 RouterSolicitation)"),
            "{line}"
        );
        let j = crate::json::flow(&f);
        assert_eq!(j["IP"]["ipVersion"], "IPv6");
        assert_eq!(j["ethernet"]["source"], "02:aa:00:00:00:02");
        // an IPv4 drop keeps its addresses; only the MACs are added
        let mut v4 = r;
        v4.ev.saddr = [10, 0, 0, 1];
        v4.ev.daddr = [10, 0, 0, 2];
        let f = flow_of_record(&v4, &Context::default()).unwrap();
        assert_eq!(f.ip.unwrap().source, "10.0.0.1");
        assert!(f.ethernet.is_some());
    }

    #[test]
    fn socket_lb_translations_are_sock_flows() {
        let client = Ipv4Addr::new(10, 200, 1, 7);
        let mut ctx = Context {
            node: "n1".into(),
            identities: [(300, vec!["k8s:app=client".into()])].into(),
            ..Default::default()
        };
        ctx.endpoints.insert(
            client,
            EndpointView {
                id: 12,
                identity: 300,
                namespace: "default".into(),
                pod_name: "client".into(),
                labels: vec![],
            },
        );
        ctx.netns.insert(77, client);
        let sock = |point: u8, addr: [u8; 4], port: u16, proto: u8| {
            seta_abi::SockEvent {
                event_type: seta_abi::EVENT_TRACE_SOCK,
                subtype: point,
                proto,
                daddr: addr,
                dport: port.to_be_bytes(),
                sock_cookie: 4242,
                cgroup_id: 99,
                netns_cookie: 77,
                ..Default::default()
            }
            .to_event()
        };
        let pre = sock(seta_abi::XLATE_PRE_DIRECTION_FWD, [10, 96, 0, 50], 80, 6);
        assert!(ctx.knows(&pre));
        let f = flow_of(&pre, &ctx).unwrap();
        assert_eq!(f.r#type, flow::FlowType::Sock as i32);
        assert_eq!((f.socket_cookie, f.cgroup_id), (4242, 99));
        let line = crate::compact::line(&f, false);
        assert!(
            line.ends_with(": default/client (ID:300) <> 10.96.0.50:80 (world) pre-xlate-fwd TRACED (TCP)"),
            "{line}"
        );
        assert_eq!(
            crate::monitor::line(&f, false).unwrap(),
            "[pre-xlate-fwd] cgroup_id: 99 sock_cookie: 4242, dst [10.96.0.50]:80 tcp"
        );
        let post = flow_of(&sock(seta_abi::XLATE_POST_DIRECTION_REV, [10, 96, 0, 50], 53, 17), &ctx).unwrap();
        let line = crate::compact::line(&post, false);
        // what the socket hears from: the other way round, as Hubble's
        assert!(
            line.ends_with(": 10.96.0.50:53 (world) <> default/client (ID:300) post-xlate-rev TRANSLATED (UDP)"),
            "{line}"
        );
        assert_eq!(
            crate::monitor::line(&post, false).unwrap(),
            "[post-xlate-rev] cgroup_id: 99 sock_cookie: 4242, dst [10.96.0.50]:53 udp"
        );
        let json = crate::json::flow(&post);
        assert_eq!(json["Type"], "SOCK");
        assert_eq!(json["sock_xlate_point"], "SOCK_XLATE_POINT_POST_DIRECTION_REV");
        assert_eq!(json["socket_cookie"], "4242");
        // a socket of a namespace the context does not know yet
        let mut other = seta_abi::SockEvent::of(&pre);
        other.netns_cookie = 78;
        assert!(!ctx.knows(&other.to_event()));
    }

    /// Hubble's service getter: a side at a frontend (address and port)
    /// names its service, in the flow, its compact line, its JSON and the
    /// service filters.
    #[test]
    fn sides_at_a_frontend_name_the_service() {
        let (client, vip, web) = (
            Ipv4Addr::new(10, 200, 1, 7),
            Ipv4Addr::new(10, 96, 0, 50),
            Ipv4Addr::new(10, 200, 1, 9),
        );
        let mut ctx = Context {
            node: "n1".into(),
            identities: [(300, vec!["k8s:app=client".into()])].into(),
            services: std::sync::Arc::new(
                [(
                    (vip, 80),
                    flow::Service {
                        name: "web".into(),
                        namespace: "shop".into(),
                    },
                )]
                .into(),
            ),
            ..Default::default()
        };
        let client_view = EndpointView {
            id: 12,
            identity: 300,
            namespace: "default".into(),
            pod_name: "client".into(),
            labels: vec![],
        };
        ctx.endpoints.insert(client, client_view);
        let ev = |s: Ipv4Addr, sp: u16, d: Ipv4Addr, dp: u16, proto: u8, reply: bool| SetaEvent {
            event_type: seta_abi::EVENT_TRACE,
            subtype: seta_abi::TRACE_TO_LXC,
            cookie: if reply { 2 } else { 0 },
            proto,
            saddr: s.octets(),
            daddr: d.octets(),
            sport: sp.to_be_bytes(),
            dport: dp.to_be_bytes(),
            src_label: if s == client { 300 } else { 2 },
            dst_label: if d == client { 300 } else { 2 },
            ..Default::default()
        };
        let to = flow_of(&ev(client, 40000, vip, 80, 6, false), &ctx).unwrap();
        let svc = to.destination_service.clone().unwrap();
        assert_eq!((svc.namespace.as_str(), svc.name.as_str()), ("shop", "web"));
        assert_eq!(to.source_service, None);
        let line = crate::compact::line(&to, false);
        assert!(line.contains(": default/client:40000 (ID:300) -> shop/web:80 (world) "), "{line}");
        let j = crate::json::flow(&to);
        assert_eq!(j["destination_service"], serde_json::json!({"name": "web", "namespace": "shop"}));
        assert!(j.get("source_service").is_none(), "{j}");
        // the reply from the frontend
        let back = flow_of(&ev(vip, 80, client, 40000, 6, true), &ctx).unwrap();
        assert_eq!(back.source_service.as_ref().unwrap().name, "web");
        assert!(crate::compact::line(&back, false).contains(": default/client:40000 (ID:300) <- shop/web:80 (world) "));
        assert_eq!(crate::json::flow(&back)["source_service"]["namespace"], "shop");
        // another port, the backend, an ICMP echo id: no service
        for (s, sp, d, dp, proto) in [(client, 40000, vip, 81, 6), (client, 40000, web, 80, 6), (client, 80, vip, 80, 1)] {
            let f = flow_of(&ev(s, sp, d, dp, proto, false), &ctx).unwrap();
            assert_eq!((f.source_service, f.destination_service), (None, None), "{d}:{dp}/{proto}");
        }
        // --to-service / --from-service, as the pod filters: ns/prefix, ns/, or a
        // prefix in namespace default
        let filt = |to: &[&str], from: &[&str]| crate::flow::FlowFilter {
            destination_service: to.iter().map(|s| s.to_string()).collect(),
            source_service: from.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(crate::filter::matches(&filt(&["shop/web"], &[]), &to));
        assert!(crate::filter::matches(&filt(&["shop/"], &[]), &to));
        assert!(crate::filter::matches(&filt(&["shop/we"], &[]), &to));
        assert!(!crate::filter::matches(&filt(&["we"], &[]), &to), "a bare name is default's");
        assert!(!crate::filter::matches(&filt(&["other/web"], &[]), &to));
        assert!(!crate::filter::matches(&filt(&[], &["shop/web"]), &to));
        assert!(crate::filter::matches(&filt(&[], &["shop/web"]), &back));
        // socket-LB: the frontend asked for, and heard from
        ctx.netns.insert(77, client);
        let sock = |point: u8| {
            seta_abi::SockEvent {
                event_type: seta_abi::EVENT_TRACE_SOCK,
                subtype: point,
                proto: 6,
                daddr: vip.octets(),
                dport: 80u16.to_be_bytes(),
                netns_cookie: 77,
                ..Default::default()
            }
            .to_event()
        };
        let pre = flow_of(&sock(seta_abi::XLATE_PRE_DIRECTION_FWD), &ctx).unwrap();
        assert_eq!(pre.destination_service.unwrap().name, "web");
        let rev = flow_of(&sock(seta_abi::XLATE_POST_DIRECTION_REV), &ctx).unwrap();
        assert_eq!((rev.source_service.unwrap().name.as_str(), rev.destination_service), ("web", None));
        assert_eq!(rev.source.unwrap().pod_name, "");
        assert_eq!(rev.destination.unwrap().pod_name, "client");
    }

    #[test]
    fn a_context_knows_its_pods_and_identities_only() {
        let mut ctx = Context {
            identities: [(300, vec![])].into(),
            local_pods: Some(("10.0.1.0/24".parse().unwrap(), "10.0.1.1".parse().unwrap())),
            ..Default::default()
        };
        ctx.endpoints.insert("10.0.1.5".parse().unwrap(), EndpointView::default());
        let ev = |s: [u8; 4], d: [u8; 4], sl: u32, dl: u32| SetaEvent {
            saddr: s,
            daddr: d,
            src_label: sl,
            dst_label: dl,
            ..Default::default()
        };
        assert!(
            ctx.knows(&ev([10, 0, 1, 5], [10, 0, 2, 7], 300, 2)),
            "a local pod, a remote address, known ids"
        );
        assert!(ctx.knows(&ev([10, 0, 1, 1], [10, 0, 1, 5], 1, 300)), "the router is not a pod");
        assert!(
            !ctx.knows(&ev([10, 0, 1, 6], [10, 0, 1, 5], 300, 300)),
            "a local pod newer than the context"
        );
        assert!(
            !ctx.knows(&ev([10, 0, 2, 7], [10, 0, 1, 5], 301, 300)),
            "an identity newer than the context"
        );
    }

    #[test]
    fn a_policy_denial_becomes_a_dropped_flow_with_both_sides() {
        let ctx = Context {
            node: "n1".into(),
            endpoints: [(
                Ipv4Addr::new(10, 200, 1, 7),
                EndpointView {
                    id: 12,
                    identity: 301,
                    namespace: "shop".into(),
                    pod_name: "web".into(),
                    labels: vec!["k8s:app=web".into()],
                },
            )]
            .into(),
            identities: [(300, vec!["k8s:app=client".into(), "k8s:io.kubernetes.pod.namespace=shop".into()])].into(),
            wall_offset_ns: 1_000_000_000_000,
            ..Default::default()
        };
        let ev = SetaEvent {
            event_type: seta_abi::EVENT_POLICY_VERDICT,
            source: 12,
            ifindex: 9,
            src_label: 300,
            dst_label: 301,
            verdict: -133,
            saddr: [10, 200, 2, 5],
            daddr: [10, 200, 1, 7],
            sport: 40000u16.to_be_bytes(),
            dport: 80u16.to_be_bytes(),
            proto: 6,
            dir: seta_abi::METRIC_INGRESS,
            flags: 0x02,
            ts: 5_000_000,
            ..Default::default()
        };
        let f = flow_of(&ev, &ctx).unwrap();
        assert_eq!(f.verdict, flow::Verdict::Dropped as i32);
        assert_eq!(f.drop_reason_desc, flow::DropReason::PolicyDenied as i32);
        assert_eq!(f.time.unwrap().seconds, 1000);
        let (s, d) = (f.source.clone().unwrap(), f.destination.clone().unwrap());
        assert_eq!((s.identity, s.namespace.as_str(), s.pod_name.as_str()), (300, "shop", ""));
        assert_eq!((d.id, d.pod_name.as_str(), d.labels[0].as_str()), (12, "web", "k8s:app=web"));
        assert_eq!(f.traffic_direction, flow::TrafficDirection::Ingress as i32);
        assert_eq!(f.event_type.unwrap().r#type, MSG_POLICY_VERDICT);
        let line = crate::compact::line(&f, false);
        assert!(
            line.ends_with(": 10.200.2.5:40000 (ID:300) -> shop/web:80 (ID:301) policy-verdict:none INGRESS DENIED (TCP Flags: SYN)"),
            "{line}"
        );
        // an allowed verdict forwards, with the match type of the entry
        // that allowed it and the CPU; other records are no flows
        let ok = flow_of(
            &SetaEvent {
                verdict: 0,
                subtype: seta_abi::POLICY_MATCH_L3_L4,
                cpu: 1,
                ..ev
            },
            &ctx,
        )
        .unwrap();
        assert_eq!(ok.verdict, flow::Verdict::Forwarded as i32);
        assert_eq!((ok.policy_match_type, ok.seta_cpu), (2, 1));
        let line = crate::compact::line(&ok, false);
        assert!(line.ends_with(" policy-verdict:L3-L4 INGRESS ALLOWED (TCP Flags: SYN)"), "{line}");
        let mon = crate::monitor::line(&ok, false).unwrap();
        assert!(mon.contains(", action allow, auth: disabled, match L3-L4, "), "{mon}");
        assert!(flow_of(&SetaEvent { event_type: 99, ..ev }, &ctx).is_none());
        // a trace: forwarded to the endpoint; a reply's arrow points back
        let t = flow_of(
            &SetaEvent {
                event_type: seta_abi::EVENT_TRACE,
                verdict: 0,
                cookie: 2,
                flags: 0x12,
                ..ev
            },
            &ctx,
        )
        .unwrap();
        assert_eq!(t.verdict, flow::Verdict::Forwarded as i32);
        assert_eq!(t.trace_observation_point, flow::TraceObservationPoint::ToEndpoint as i32);
        let line = crate::compact::line(&t, false);
        assert!(
            line.ends_with(": shop/web:80 (ID:301) <- 10.200.2.5:40000 (ID:300) to-endpoint FORWARDED (TCP Flags: SYN, ACK)"),
            "{line}"
        );
        // every observation point, by Hubble's name and cilium monitor's summary
        for (point, name, summary) in [
            (seta_abi::TRACE_TO_OVERLAY, "to-overlay", "-> overlay"),
            (seta_abi::TRACE_TO_STACK, "to-stack", "-> stack"),
            (seta_abi::TRACE_TO_NETWORK, "to-network", "-> network"),
            (seta_abi::TRACE_FROM_LXC, "from-endpoint", "<- endpoint 0"),
            (seta_abi::TRACE_FROM_HOST, "from-host", "<- host"),
            (seta_abi::TRACE_FROM_OVERLAY, "from-overlay", "<- overlay"),
            (seta_abi::TRACE_FROM_NETWORK, "from-network", "<- network"),
        ] {
            let t = flow_of(
                &SetaEvent {
                    event_type: seta_abi::EVENT_TRACE,
                    subtype: point,
                    verdict: 0,
                    cookie: 0,
                    ..ev
                },
                &ctx,
            )
            .unwrap();
            assert_eq!(t.trace_observation_point, point as i32);
            let line = crate::compact::line(&t, false);
            assert!(
                line.contains(&format!(" -> shop/web:80 (ID:301) {name} FORWARDED (TCP Flags: SYN)")),
                "{line}"
            );
            let m = crate::monitor::line(&t, false).unwrap();
            assert!(
                m.starts_with(&format!("{summary} flow 0x0 , identity 300->301 state new ifindex 9")),
                "{m}"
            );
        }
    }
}
