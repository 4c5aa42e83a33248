//! Node bring-up: the underlay device and address, the host devices
//! (`seta_host`/`seta_net`), before any subsystem exists; and, while the
//! agent runs, the node's addresses as the host in the ipcache.
use super::*;

/// This node's address for other nodes and the underlay MTU: from the
/// configuration, else the first address outside the pod network and its
/// device's MTU.
pub(super) async fn underlay(nl: &Netlink, cfg: &Config) -> Result<NodeFacts> {
    let links = nl.links().await?;
    let ours = seta_core::devices::is_ours;
    let addrs = nl.ipv4_addrs().await?;
    let found = addrs
        .iter()
        .filter(|(i, ip)| {
            links.iter().any(|l| l.index == *i && !ours(&l.name)) && !cfg.pod_cidr.contains(ip) && cfg.node_ip.is_none_or(|n| n == *ip)
        })
        .min_by_key(|(_, ip)| *ip)
        .copied();
    if let (Some(want), None) = (cfg.node_ip, found) {
        anyhow::bail!("--node-ip {want}: no interface of this node has that address");
    }
    let mtu = match (cfg.mtu, found) {
        (Some(m), _) => m,
        (None, Some((idx, _))) => nl.mtu(idx).await?.unwrap_or(1500),
        (None, None) => 1500,
    };
    let dev = found.and_then(|(idx, _)| links.iter().find(|l| l.index == idx).map(|l| l.name.clone()));
    let dev_addrs = found.map(|(idx, _)| addrs_on(&addrs, idx)).unwrap_or_default();
    // --devices: the other native devices there now, with their addresses
    // (the agent follows them while it runs)
    let names = seta_core::devices::selected(&cfg.devices, links.iter().map(|l| l.name.as_str()), dev.as_deref());
    for p in cfg
        .devices
        .iter()
        .filter(|p| !p.ends_with('+') && Some(*p) != dev.as_ref() && !names.contains(p))
    {
        tracing::warn!(device = %p, "--devices: no such interface on this node (yet); served once it appears");
    }
    let other_devs = names
        .into_iter()
        .filter_map(|name| {
            let l = links.iter().find(|l| l.name == name)?;
            Some((
                name,
                l.index,
                addrs.iter().filter(|(i, _)| *i == l.index).map(|(_, ip)| *ip).collect(),
            ))
        })
        .collect();
    Ok(NodeFacts {
        ip: found.map(|(_, ip)| ip),
        mtu,
        dev,
        dev_addrs,
        other_devs,
        k8s: None,
    })
}

pub(super) async fn setup_host_devices(nl: &Netlink, cfg: &Config, router: Ipv4Addr) -> Result<()> {
    if nl.link(HOST_DEV).await?.is_none() {
        nl.create_veth(HOST_DEV, NET_DEV).await?;
    }
    let host = nl.link(HOST_DEV).await?.context("seta_host missing after creation")?;
    let net = nl.link(NET_DEV).await?.context("seta_net missing after creation")?;
    nl.set_arp(host.index, false).await?;
    nl.set_up(host.index).await?;
    nl.set_up(net.index).await?;
    nl.add_addr(host.index, router, 32).await?;
    nl.replace_route(cfg.pod_cidr.network(), cfg.pod_cidr.prefix_len(), None, host.index, Some(router))
        .await?;
    use seta_datapath::sysfs::set_ipv4_sysctl;
    set_ipv4_sysctl("ip_forward", "1")?;
    for dev in ["all", "default", HOST_DEV, NET_DEV] {
        set_ipv4_sysctl(&format!("conf/{dev}/rp_filter"), "0")?;
    }
    Ok(())
}

impl super::Agent {
    /// Follow the node's addresses (one dump for both uses): the host's
    /// addresses in the ipcache and, with `--nodeport-addresses`, the ones
    /// NodePorts are served on. Whether the latter changed.
    pub(super) async fn refresh_node_addresses(&self) -> Result<bool> {
        // one link dump for the three that use links, only when one is on
        let cfg = &self.cfg;
        let links = match cfg.devices.is_empty() && cfg.nodeport_addresses.is_empty() && !cfg.enable_bpf_masquerade {
            true => vec![],
            false => self.kernel.links().await?,
        };
        self.follow_devices(&links).await;
        let addrs = self.kernel.ipv4_addrs().await?;
        self.set_host_ips(&addrs);
        self.set_masq_devices(&links, &addrs)?;
        self.set_node_port_addrs(&links, &addrs).await
    }

    /// The other native devices (`--devices`) from_netdev serves now.
    pub(super) fn other_devs(&self) -> Vec<String> {
        self.other_devs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Follow `--devices` (as Cilium's runtime device detection): a
    /// matching device that appeared gets from_netdev, one that went is
    /// forgotten and its pinned links removed. NodePorts, hostPorts and
    /// BPF masquerade follow on the same pass. Whether the set changed.
    pub(super) async fn follow_devices(&self, links: &[LinkInfo]) -> bool {
        if self.cfg.devices.is_empty() {
            return false;
        }
        // (name, ifindex): a device made again under the same name is new
        let want: Vec<(String, u32)> =
            seta_core::devices::selected(&self.cfg.devices, links.iter().map(|l| l.name.as_str()), self.node_dev.as_deref())
                .into_iter()
                .filter_map(|n| links.iter().find(|l| l.name == n).map(|l| (n, l.index)))
                .collect();
        let have = self.other_devs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if want == have {
            return false;
        }
        let mut now = Vec::new();
        for d in &want {
            if have.contains(d) {
                now.push(d.clone());
                continue;
            }
            match self.kernel.attach_netdev(&d.0).await {
                Ok(()) => {
                    tracing::info!(device = %d.0, ifindex = d.1, "--devices: a native device appeared; served");
                    now.push(d.clone());
                }
                // tried again on the next pass
                Err(e) => tracing::warn!(device = %d.0, "--devices: attaching from_netdev: {e:#}"),
            }
        }
        for (d, _) in have.iter().filter(|(d, _)| !want.iter().any(|(w, _)| w == d)) {
            tracing::info!(device = %d, "--devices: a native device went");
            if let Err(e) = self.kernel.detach_links(d) {
                tracing::warn!(device = %d, "removing its links: {e}");
            }
        }
        let changed = now != have;
        *self.other_devs.lock().unwrap_or_else(|e| e.into_inner()) = now;
        changed
    }

    /// BPF masquerade's address on each native device (the node IP's and
    /// `--devices`), followed as their addresses change. `links`, `addrs`:
    /// the node's devices and addresses (ifindex, address).
    pub(super) fn set_masq_devices(&self, links: &[LinkInfo], addrs: &[(u32, Ipv4Addr)]) -> Result<bool> {
        if !self.cfg.enable_bpf_masquerade {
            return Ok(false);
        }
        let devices: Vec<_> = self
            .node_dev
            .iter()
            .cloned()
            .chain(self.other_devs())
            .filter_map(|name| links.iter().find(|l| l.name == name))
            .map(|l| (l.index, l.name.clone(), addrs_on(addrs, l.index)))
            .collect();
        let want = seta_core::ipmasq::device_addresses(self.node_ip, &devices);
        super::off_runtime(|| self.ipmasq.set_devices(want))
    }

    /// The node's own addresses as the host in the ipcache (Cilium's host IP
    /// sync): pods' traffic to any of them is the host's for policy, and
    /// socket-LB serves NodePorts and hostPorts on all of them.
    pub(super) fn set_host_ips(&self, addrs: &[(u32, Ipv4Addr)]) {
        let want: std::collections::BTreeMap<_, _> = seta_core::ipcache::host_addresses(addrs.iter().map(|(_, a)| *a))
            .into_iter()
            .map(|a| {
                let e = seta_core::ipcache::Entry {
                    identity: seta_core::identity::ID_HOST,
                    tunnel_endpoint: None,
                };
                (crate::ipcache::host32(a), e)
            })
            .collect();
        let (up, down) = super::off_runtime(|| self.ipcache.get().replace_source(seta_core::ipcache::Source::Host, &want));
        if up + down > 0 {
            tracing::info!(addresses = ?want.keys().map(ToString::to_string).collect::<Vec<_>>(), "the node's addresses are the host in the ipcache");
        }
    }
}

/// The addresses of `addrs` (ifindex, address) on device `index`.
pub(super) fn addrs_on(addrs: &[(u32, Ipv4Addr)], index: u32) -> Vec<Ipv4Addr> {
    addrs.iter().filter(|(i, _)| *i == index).map(|(_, a)| *a).collect()
}

/// Socket-LB's cgroup when the machine has no cgroup2 mount: the agent
/// mounts cgroup2 at its own mount point first, as Cilium mounts
/// `/run/cilium/cgroupv2`. Any other directory is taken as it is.
pub(super) fn mount_cgroup2_if_none(dir: &std::path::Path) -> Result<()> {
    use crate::config::{is_cgroup2_dir, CGROUP2_MOUNT};
    if dir != std::path::Path::new(CGROUP2_MOUNT) || is_cgroup2_dir(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    nix::mount::mount(Some("cgroup2"), dir, Some("cgroup2"), nix::mount::MsFlags::empty(), None::<&str>).with_context(|| {
        format!(
            "socket-LB: mount cgroup2 at {} (no cgroup2 mount found; give --cgroup-root or --bpf-lb-sock=false)",
            dir.display()
        )
    })?;
    tracing::info!(dir = %dir.display(), "socket-LB: mounted cgroup2");
    Ok(())
}
