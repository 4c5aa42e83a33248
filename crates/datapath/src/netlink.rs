//! Netlink (rtnetlink) in any network namespace.
//!
//! setns is never called from async code: `Netlink::in_netns` opens the
//! netlink socket on a dedicated OS thread that enters the namespace, and the
//! socket (bound to that namespace for life) is then used from anywhere.
use futures::TryStreamExt;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMetric, RouteProtocol, RouteScope};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("netlink {op}: {msg}")]
pub struct NetlinkError {
    pub op: String,
    pub msg: String,
    pub errno: Option<i32>,
}

impl NetlinkError {
    fn from_rt(op: impl Into<String>, e: rtnetlink::Error) -> Self {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
            _ => None,
        };
        Self {
            op: op.into(),
            msg: e.to_string(),
            errno,
        }
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno, Some(libc::ENODEV) | Some(libc::ENOENT))
    }
}

type Result<T> = std::result::Result<T, NetlinkError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub up: bool,
}

fn link_info(m: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: m.header.index,
        name: String::new(),
        mac: [0; 6],
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Address(a) if a.len() == 6 => info.mac.copy_from_slice(a),
            _ => {}
        }
    }
    info
}

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Netlink in the caller's current network namespace.
    pub fn current() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetlinkError {
            op: "socket".into(),
            msg: e.to_string(),
            errno: e.raw_os_error(),
        })?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Netlink inside the network namespace at `path` (e.g. /run/netns/x).
    pub async fn in_netns(path: &Path) -> Result<Self> {
        let rt = tokio::runtime::Handle::current();
        let p = path.to_path_buf();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let res = (|| -> std::result::Result<Handle, String> {
                let f = std::fs::File::open(&p).map_err(|e| format!("open netns {}: {e}", p.display()))?;
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {}: {e}", p.display()))?;
                let _g = rt.enter();
                let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
                rt.spawn(conn);
                Ok(handle)
            })();
            let _ = tx.send(res);
        });
        let handle = rx
            .await
            .map_err(|_| NetlinkError {
                op: "netns thread".into(),
                msg: "thread died".into(),
                errno: None,
            })?
            .map_err(|msg| NetlinkError {
                op: format!("enter {}", path.display()),
                msg,
                errno: None,
            })?;
        Ok(Self { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut s = self.handle.link().get().match_name(name.to_string()).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(link_info(&m))),
            Ok(None) => Ok(None),
            Err(e) => {
                let e = NetlinkError::from_rt(format!("get link {name}"), e);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The cls_bpf filters of a device's clsact hook (`tc filter show dev X
    /// ingress|egress`); empty when the device has no clsact qdisc.
    pub async fn tc_bpf_filters(&self, ifindex: u32, ingress: bool) -> Result<Vec<TcBpfFilter>> {
        use netlink_packet_route::tc::{TcAttribute, TcFilterBpfOption, TcMessage, TcOption};
        let mut h = self.handle.traffic_filter(ifindex as i32);
        let req = if ingress { h.get().ingress() } else { h.get().egress() };
        let msgs: std::result::Result<Vec<TcMessage>, _> = req.execute().try_collect().await;
        let msgs = match msgs {
            Ok(m) => m,
            Err(e) => {
                let e = NetlinkError::from_rt(format!("list tc filters of ifindex {ifindex}"), e);
                // no clsact qdisc (EINVAL) or no such device: nothing attached
                if e.is_not_found() || e.errno == Some(libc::EINVAL) {
                    return Ok(vec![]);
                }
                return Err(e);
            }
        };
        let mut out = Vec::new();
        for m in msgs {
            let mut f = TcBpfFilter {
                priority: (m.header.info >> 16) as u16,
                handle: u32::from(m.header.handle.major) << 16 | u32::from(m.header.handle.minor),
                name: String::new(),
                prog_id: 0,
            };
            let mut bpf = false;
            for a in &m.attributes {
                match a {
                    TcAttribute::Kind(k) => bpf = k == "bpf",
                    TcAttribute::Options(opts) => {
                        for o in opts {
                            match o {
                                TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => f.name = n.clone(),
                                TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => f.prog_id = *id,
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            // the dump also lists the filter chain head (handle 0) without options
            if bpf && f.handle != 0 {
                out.push(f);
            }
        }
        Ok(out)
    }

    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::from_rt("list links", e))?;
        Ok(msgs.iter().map(link_info).collect())
    }

    /// IPv4 addresses by interface index.
    pub async fn ipv4_addrs(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        use netlink_packet_route::address::{AddressAttribute, AddressMessage};
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetlinkError::from_rt("list addresses", e))?;
        Ok(msgs
            .iter()
            .flat_map(|m| {
                m.attributes.iter().filter_map(move |a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some((m.header.index, *ip)),
                    _ => None,
                })
            })
            .collect())
    }

    pub async fn create_veth(&self, name: &str, peer: &str) -> Result<()> {
        self.handle
            .link()
            .add(LinkVeth::new(name, peer).build())
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("create veth {name}/{peer}"), e))
    }

    /// Create a veth pair whose peer is born inside the network namespace
    /// behind `peer_ns` (no later move: moving a device between namespaces
    /// waits for an RCU grace period under the RTNL lock).
    /// `mtu` (both ends) is set in the same request.
    pub async fn create_veth_into(&self, name: &str, peer: &str, peer_ns: BorrowedFd<'_>, mtu: Option<u32>) -> Result<()> {
        let mut msg = LinkVeth::new(name, peer).build();
        for a in msg.attributes.iter_mut() {
            if let LinkAttribute::LinkInfo(infos) = a {
                for i in infos.iter_mut() {
                    if let NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = i {
                        p.attributes.push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
                        if let Some(m) = mtu {
                            p.attributes.push(LinkAttribute::Mtu(m));
                        }
                    }
                }
            }
        }
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("create veth {name} with peer {peer} in the pod netns"), e))
    }

    /// Create a bridge with a fixed MAC (a bridge without one takes its
    /// lowest port's and changes it as ports join).
    pub async fn create_bridge(&self, name: &str, mac: [u8; 6]) -> Result<()> {
        self.handle
            .link()
            .add(rtnetlink::LinkBridge::new(name).address(mac.to_vec()).build())
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("create bridge {name}"), e))
    }

    /// Make link `index` a port of `master` (a bridge).
    pub async fn set_master(&self, index: u32, master: u32) -> Result<()> {
        self.set(
            format!("set link {index} master {master}"),
            LinkUnspec::new_with_index(index).controller(master).build(),
        )
        .await
    }

    async fn set(&self, op: String, msg: LinkMessage) -> Result<()> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(op, e))
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.set(format!("set link {index} up"), LinkUnspec::new_with_index(index).up().build())
            .await
    }

    pub async fn set_arp(&self, index: u32, on: bool) -> Result<()> {
        self.set(
            format!("set link {index} arp {on}"),
            LinkUnspec::new_with_index(index).arp(on).build(),
        )
        .await
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.set(
            format!("set link {index} mtu {mtu}"),
            LinkUnspec::new_with_index(index).mtu(mtu).build(),
        )
        .await
    }

    pub async fn rename(&self, index: u32, name: &str) -> Result<()> {
        self.set(
            format!("rename link {index} to {name}"),
            LinkUnspec::new_with_index(index).name(name).build(),
        )
        .await
    }

    /// Move a link into the network namespace behind `ns`.
    pub async fn set_netns(&self, index: u32, ns: BorrowedFd<'_>) -> Result<()> {
        self.set(
            format!("move link {index} to netns"),
            LinkUnspec::new_with_index(index).setns_by_fd(ns.as_raw_fd()).build(),
        )
        .await
    }

    pub async fn del_link(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("delete link {index}"), e))
    }

    /// Delete the link called `name` if it exists. Returns whether it was deleted.
    /// A link that vanishes meanwhile (e.g. its peer's netns is being torn down) counts as gone.
    pub async fn del_link_by_name(&self, name: &str) -> Result<bool> {
        let Some(l) = self.link(name).await? else { return Ok(false) };
        match self.del_link(l.index).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn add_addr(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        self.handle
            .address()
            .add(index, IpAddr::V4(ip), prefix)
            .replace()
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("add address {ip}/{prefix} to link {index}"), e))
    }

    /// `ip route replace dst/prefix [via gw] dev oif [scope link] [src src]`
    pub async fn replace_route(&self, dst: Ipv4Addr, prefix: u8, gw: Option<Ipv4Addr>, oif: u32, src: Option<Ipv4Addr>) -> Result<()> {
        self.replace_route_with(&Route {
            dst,
            prefix,
            gw,
            oif: Some(oif),
            src,
            mtu: None,
            protocol: None,
        })
        .await
    }

    /// `ip route replace` with every option of [`Route`].
    pub async fn replace_route_with(&self, r: &Route) -> Result<()> {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(r.dst, r.prefix);
        if let Some(oif) = r.oif {
            b = b.output_interface(oif);
        }
        match r.gw {
            Some(gw) => b = b.gateway(gw),
            None => b = b.scope(RouteScope::Link),
        }
        if let Some(src) = r.src {
            b = b.pref_source(src);
        }
        if let Some(p) = r.protocol {
            b = b.protocol(RouteProtocol::from(p));
        }
        let mut msg = b.build();
        if let Some(mtu) = r.mtu {
            msg.attributes.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("add route {}/{} via {:?} dev {:?}", r.dst, r.prefix, r.gw, r.oif), e))
    }

    /// Delete the main-table route to dst/prefix (absent = Ok).
    pub async fn del_route(&self, dst: Ipv4Addr, prefix: u8) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst, prefix).build();
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = NetlinkError::from_rt(format!("delete route {dst}/{prefix}"), e);
                if matches!(e.errno, Some(libc::ESRCH) | Some(libc::ENOENT)) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Destinations (network, prefix) of IPv4 main-table routes installed with `protocol`.
    pub async fn routes_with_protocol(&self, protocol: u8) -> Result<Vec<(Ipv4Addr, u8)>> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut out = Vec::new();
        let mut st = self.handle.route().get(msg).execute();
        while let Some(m) = st.try_next().await.map_err(|e| NetlinkError::from_rt("list routes", e))? {
            if u8::from(m.header.protocol) != protocol {
                continue;
            }
            for a in &m.attributes {
                if let RouteAttribute::Destination(RouteAddress::Inet(ip)) = a {
                    out.push((*ip, m.header.destination_prefix_length));
                }
            }
        }
        Ok(out)
    }

    /// A flow-based (collect-metadata) VXLAN device on UDP `port`: the
    /// datapath sets the remote and the VNI of every packet.
    pub async fn create_vxlan(&self, name: &str, port: u16) -> Result<()> {
        self.handle
            .link()
            .add(LinkVxlan::new(name, 0).port(port).collect_metadata(true).learning(false).build())
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("create vxlan {name} (external, port {port})"), e))
    }

    /// MTU of a link.
    pub async fn mtu(&self, index: u32) -> Result<Option<u32>> {
        let mut s = self.handle.link().get().match_index(index).execute();
        let m = s
            .try_next()
            .await
            .map_err(|e| NetlinkError::from_rt(format!("get link {index}"), e))?;
        Ok(m.and_then(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(v) => Some(*v),
                _ => None,
            })
        }))
    }
}

/// A route for [`Netlink::replace_route_with`].
#[derive(Debug, Clone)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub gw: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub src: Option<Ipv4Addr>,
    pub mtu: Option<u32>,
    /// marks routes as ours (so stale ones can be found again)
    pub protocol: Option<u8>,
}

/// A cls_bpf filter on a clsact hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcBpfFilter {
    pub priority: u16,
    pub handle: u32,
    /// the program's name as the filter reports it (e.g. `bpf_lxc.o:[from_container]` or the program name)
    pub name: String,
    pub prog_id: u32,
}
