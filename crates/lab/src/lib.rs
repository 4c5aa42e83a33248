//! A virtual cluster in network namespaces, for `seta lab` and the end-to-end tests.
//!
//! Every object carries the lab name as a prefix: node namespaces and node
//! names `<lab>-n<i>`, pod namespaces `<lab>-<pod>`, pins
//! `/sys/fs/bpf/seta/<lab>-n<i>`, run dirs `/run/seta/<lab>-n<i>`, state
//! `/var/lib/seta/<lab>-n<i>`. `down` finds everything by that prefix, so it
//! also cleans up after a crash without a state file. Nothing links to the
//! root namespace: traffic stays between namespaces the lab created.
pub mod cgroups;
mod daemons;
mod k8s;
pub mod kubelet;
pub mod leftovers;
mod pods;
mod prometheus;
pub mod relay;
mod topology;
pub mod traffic;
pub mod wait;

use anyhow::{anyhow, bail, Context, Result};
pub(crate) use daemons::*;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use seta_client::Client;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const LABS_DIR: &str = "/run/seta/labs";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    pub netns: String,
    pub pod_cidr: Ipv4Net,
    pub agent_pid: Option<u32>,
    pub socket: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    pub node: String,
    pub netns: String,
    pub container_id: String,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub namespace: String,
    pub labels: Vec<String>,
    #[serde(default)]
    pub ports: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lab {
    pub name: String,
    pub cluster_cidr: Ipv4Net,
    pub bin_dir: PathBuf,
    pub nodes: Vec<NodeState>,
    pub pods: Vec<PodState>,
    /// a host outside the cluster, routed through the first node
    #[serde(default)]
    pub external: Option<External>,
    /// the network joining the nodes (namespace <lab>-ul, bridge br0, 172.30.0.0/24)
    #[serde(default)]
    pub underlay: Option<Underlay>,
    /// extra flags every agent of this lab gets (e.g. the kvstore)
    #[serde(default)]
    pub agent_args: Vec<String>,
    /// operator replicas (cluster-pool IPAM: agents get no --pod-cidr)
    #[serde(default)]
    pub operators: Vec<OperatorState>,
    /// the kubeconfig of the lab's Kubernetes API (`--k8s`), which agents take their intent from
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// agents run socket-LB at their node's cgroup, where the lab runs the
    /// node's and its pods' processes (`--socket-lb`)
    #[serde(default)]
    pub socket_lb: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OperatorState {
    pub id: String,
    pub pid: Option<u32>,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Underlay {
    pub netns: String,
    /// etcd's client URL inside the underlay, when the lab runs one
    pub etcd: Option<String>,
    pub etcd_pid: Option<u32>,
}

/// Options of `Lab::up_with`.
#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// run a real etcd in the underlay and point every agent's kvstore at it
    pub etcd: bool,
    /// the agent's --routing-mode; None = the agent's default
    pub routing: Option<seta_core::mode::RoutingMode>,
    /// run two seta-operator replicas in the underlay (needs etcd)
    pub operator: bool,
    /// agents masquerade pods' traffic to the world (--enable-bpf-masquerade)
    pub masquerade: bool,
    /// agents follow an ip-masq-agent file, the lab's
    /// [`Lab::ip_masq_agent_config`] (--enable-ip-masq-agent; with `masquerade`)
    pub ip_masq_agent: bool,
    /// agents choose backends of north-south frontends by Maglev (--bpf-lb-algorithm maglev)
    pub maglev: bool,
    /// run a Kubernetes API (the test fixture) in the underlay; agents take
    /// policies and namespaces from it (--k8s-kubeconfig)
    pub k8s: bool,
    /// socket-LB (--bpf-lb-sock) at a cgroup per node
    pub socket_lb: bool,
    /// more flags for every agent (e.g. map sizes)
    pub agent_args: Vec<String>,
    /// run Hubble Relay (seta-relay) in the underlay
    pub relay: bool,
}

const UNDERLAY_GW: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 254);
/// the underlay bridge's own MAC (locally administered), fixed: see add_underlay
const UNDERLAY_MAC: [u8; 6] = [0x02, 0x5e, 0x7a, 0, 0, 0xfe];
/// the external host's address on the underlay
const EXTERNAL_UL: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 200);
/// the external host's own address, and the gateway of a one-node lab's
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const EXTERNAL_GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, i as u8)
}

/// Files the lab hands its agents (the ip-masq-agent's), as ConfigMaps
/// mounted on every node would be; removed with the lab.
pub fn conf_dir(lab: &str) -> PathBuf {
    Path::new(LABS_DIR).join(format!("{lab}-conf"))
}

fn etcd_dir(lab: &str) -> PathBuf {
    Path::new(LABS_DIR).join(format!("{lab}-etcd"))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct External {
    pub netns: String,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

/// The external host's network (TEST-NET-1, never routed on a real network).
pub const EXTERNAL_NET: &str = "192.0.2.0/24";

/// Lab names become prefixes of netns, node and device-free paths: keep them short and plain.
pub fn validate_lab_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 20 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || name.starts_with('-') {
        bail!("lab name {name:?} must be 1..20 letters, digits or '-'");
    }
    Ok(())
}

fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

/// Netlink inside lab namespace `ns` (a socket opened there on its own
/// thread), for the lab's links, addresses and routes.
struct Ns {
    name: String,
    nl: seta_datapath::netlink::Netlink,
}

impl Ns {
    async fn open(name: &str) -> Result<Self> {
        let nl = seta_datapath::netlink::Netlink::in_netns(&netns_path(name))
            .await
            .with_context(|| format!("netlink in netns {name}"))?;
        Ok(Self { name: name.into(), nl })
    }

    /// A new namespace (a bind mount: `ip netns add`), loopback up.
    async fn create(name: &str) -> Result<Self> {
        run_ip(&["netns", "add", name])?;
        let ns = Self::open(name).await?;
        ns.up("lo").await?;
        Ok(ns)
    }

    async fn index(&self, dev: &str) -> Result<u32> {
        Ok(self
            .nl
            .link(dev)
            .await?
            .with_context(|| format!("no device {dev} in netns {}", self.name))?
            .index)
    }

    async fn up(&self, dev: &str) -> Result<()> {
        Ok(self.nl.set_up(self.index(dev).await?).await?)
    }

    async fn addr(&self, dev: &str, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        Ok(self.nl.add_addr(self.index(dev).await?, ip, prefix).await?)
    }

    /// `dst` via `gw` out of `dev`.
    async fn route(&self, dst: Ipv4Net, gw: Ipv4Addr, dev: &str) -> Result<()> {
        let oif = self.index(dev).await?;
        Ok(self.nl.replace_route(dst.network(), dst.prefix_len(), Some(gw), oif, None).await?)
    }

    /// A veth pair: `dev` here, `peer` born in namespace `other`.
    async fn veth_to(&self, dev: &str, other: &Ns, peer: &str) -> Result<()> {
        let f = std::fs::File::open(netns_path(&other.name)).with_context(|| format!("open netns {}", other.name))?;
        Ok(self.nl.create_veth_into(dev, peer, std::os::fd::AsFd::as_fd(&f), None).await?)
    }

    /// Make `dev` a port of bridge `br` and bring it up.
    async fn port(&self, dev: &str, br: &str) -> Result<()> {
        let (i, b) = (self.index(dev).await?, self.index(br).await?);
        self.nl.set_master(i, b).await?;
        Ok(self.nl.set_up(i).await?)
    }
}

fn run_ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Make `cmd` run inside the network namespace at `ns` (setns in the forked
/// child, before exec; the mount namespace stays the host's, so bpffs pins
/// remain visible).
pub fn in_netns(cmd: &mut Command, ns: &Path) -> Result<()> {
    let f = std::fs::File::open(ns).with_context(|| format!("open netns {}", ns.display()))?;
    let fd = f.as_raw_fd();
    // SAFETY: only async-signal-safe syscalls (setns) run between fork and exec;
    // `f` is moved into the closure so the descriptor stays open until exec.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &f;
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// All lab names that have leftovers on this machine (state file, netns, pins, run dirs).
pub fn list_labs() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(LABS_DIR)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(String::from))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl Lab {
    fn state_path(name: &str) -> PathBuf {
        Path::new(LABS_DIR).join(format!("{name}.json"))
    }

    pub fn load(name: &str) -> Result<Self> {
        let p = Self::state_path(name);
        let b = std::fs::read(&p).with_context(|| format!("lab {name:?} is not up (no {})", p.display()))?;
        let mut lab: Self = serde_json::from_slice(&b).with_context(|| format!("parse {}", p.display()))?;
        // under Kubernetes the kubelet daemon keeps the pods
        if lab.kubeconfig.is_some() {
            if let Some(w) = kubelet::read_wired(name) {
                lab.pods = w.pods;
            }
        }
        Ok(lab)
    }

    /// The only lab that is up, when `name` is None.
    pub fn load_default(name: Option<&str>) -> Result<Self> {
        if let Some(n) = name {
            return Self::load(n);
        }
        match list_labs().as_slice() {
            [] => bail!("no lab is up; start one with `seta lab up`"),
            [one] => Self::load(one),
            many => bail!("several labs are up ({}); choose one with --lab NAME", many.join(", ")),
        }
    }

    pub fn save(&self) -> Result<()> {
        std::fs::create_dir_all(LABS_DIR)?;
        let p = Self::state_path(&self.name);
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &p)?;
        Ok(())
    }

    pub fn node(&self, name: &str) -> Result<&NodeState> {
        self.nodes
            .iter()
            .find(|n| n.name == name || n.name.strip_prefix(&format!("{}-", self.name)) == Some(name))
            .ok_or_else(|| {
                anyhow!(
                    "no node {name:?} in lab {} (nodes: {})",
                    self.name,
                    self.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            })
    }

    /// 1-based position of a node (its underlay address is 172.30.0.<i>).
    pub fn node_index(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).map(|p| p + 1).unwrap_or(0)
    }

    /// A pod by `NAME` (in any namespace, when only one has it) or `NS/NAME`.
    pub fn pod(&self, name: &str) -> Result<&PodState> {
        let found: Vec<&PodState> = match name.split_once('/') {
            Some((ns, n)) => self.pods.iter().filter(|p| p.namespace == ns && p.name == n).collect(),
            None => self.pods.iter().filter(|p| p.name == name).collect(),
        };
        match found.as_slice() {
            [one] => Ok(one),
            [] => bail!("no pod {name:?} in lab {}", self.name),
            many => {
                let refs: Vec<String> = many.iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
                bail!("pod {name:?} is in several namespaces ({}): name it NS/NAME", refs.join(", "))
            }
        }
    }
}

/// For privileged tests: true when running as root. Without root the test is
/// skipped with a message, except under CI=true where that is a failure.
pub fn privileged(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: privileged test cannot run without root under CI=true"
    );
    eprintln!("SKIP {test}: needs root");
    false
}

/// Run `f` on a dedicated OS thread inside the network namespace `ns`
/// (a name under /run/netns). Sockets it creates stay in that namespace.
pub fn spawn_in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let path = netns_path(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// A lab for one test: unique name, torn down on drop (also when the test panics).
pub struct TestLab {
    pub lab: Lab,
}

impl TestLab {
    pub async fn up(tag: &str, nodes: usize, pods_per_node: usize, bin_dir: &Path) -> Result<Self> {
        Self::up_with(tag, nodes, pods_per_node, bin_dir, &LabOptions::default()).await
    }

    pub async fn up_with(tag: &str, nodes: usize, pods_per_node: usize, bin_dir: &Path, opts: &LabOptions) -> Result<Self> {
        let name = format!("t{}{}", std::process::id() % 100000, tag);
        let _ = Lab::down(&name);
        let cidr: Ipv4Net = "10.201.0.0/16".parse().unwrap();
        let lab = Lab::up_with(&name, nodes, pods_per_node, cidr, bin_dir, opts, &|_| {}).await?;
        Ok(Self { lab })
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        // a failing test keeps its agents' and etcd's logs for the post-mortem
        if std::thread::panicking() {
            let dir = std::env::temp_dir().join(format!("seta-test-logs/{}", self.lab.name));
            let _ = std::fs::create_dir_all(&dir);
            for n in &self.lab.nodes {
                let _ = std::fs::copy(&n.log, dir.join(format!("{}.log", n.name)));
            }
            for o in &self.lab.operators {
                let _ = std::fs::copy(&o.log, dir.join(format!("{}.log", o.id)));
            }
            let _ = std::fs::copy(etcd_dir(&self.lab.name).with_extension("log"), dir.join("etcd.log"));
            let k8s = crate::k8s::k8s_dir(&self.lab.name);
            let _ = std::fs::copy(k8s.join("kubelet.log"), dir.join("kubelet.log"));
            let _ = std::fs::copy(k8s.with_extension("log"), dir.join("k8s-api.log"));
            eprintln!("logs of lab {} kept in {}", self.lab.name, dir.display());
        }
        let _ = Lab::down(&self.lab.name);
    }
}
