//! A virtual cluster in network namespaces, for `seta lab` and the end-to-end tests.
//!
//! Every object carries the lab name as a prefix: node namespaces and node
//! names `<lab>-n<i>`, pod namespaces `<lab>-<pod>`, pins
//! `/sys/fs/bpf/seta/<lab>-n<i>`, run dirs `/run/seta/<lab>-n<i>`, state
//! `/var/lib/seta/<lab>-n<i>`. `down` finds everything by that prefix, so it
//! also cleans up after a crash without a state file. Nothing links to the
//! root namespace: traffic stays between namespaces the lab created.
use anyhow::{anyhow, bail, Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use seta_client::Client;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
}

const UNDERLAY_GW: &str = "172.30.0.254";
/// the external host's address on the underlay
const EXTERNAL_UL: &str = "172.30.0.200";

fn node_ip(i: usize) -> String {
    format!("172.30.0.{i}")
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
        serde_json::from_slice(&b).with_context(|| format!("parse {}", p.display()))
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

    pub fn pod(&self, name: &str) -> Result<&PodState> {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| anyhow!("no pod {name:?} in lab {}", self.name))
    }

    /// Build the lab: N node namespaces with an agent each, then M pods per node.
    pub async fn up(
        name: &str,
        nodes: usize,
        pods_per_node: usize,
        cluster_cidr: Ipv4Net,
        bin_dir: &Path,
        progress: &dyn Fn(&str),
    ) -> Result<Self> {
        Self::up_with(name, nodes, pods_per_node, cluster_cidr, bin_dir, &LabOptions::default(), progress).await
    }

    pub async fn up_with(
        name: &str,
        nodes: usize,
        pods_per_node: usize,
        cluster_cidr: Ipv4Net,
        bin_dir: &Path,
        opts: &LabOptions,
        progress: &dyn Fn(&str),
    ) -> Result<Self> {
        validate_lab_name(name)?;
        if nodes == 0 || nodes > 64 {
            bail!("--nodes must be 1..64");
        }
        if cluster_cidr.prefix_len() > 16 {
            bail!("cluster CIDR {cluster_cidr} is too small: use /16 or larger (one /24 per node)");
        }
        if Self::state_path(name).exists() {
            bail!("lab {name:?} is already up; run `seta lab down --lab {name}` first");
        }
        for b in ["seta-agent", "seta-cni"] {
            if !bin_dir.join(b).exists() {
                bail!("{} not found; build with `make build`", bin_dir.join(b).display());
            }
        }
        let mut lab = Lab {
            name: name.into(),
            cluster_cidr,
            bin_dir: bin_dir.to_path_buf(),
            nodes: vec![],
            pods: vec![],
            external: None,
            underlay: None,
            agent_args: vec![],
            operators: vec![],
        };
        let r = async {
            let base = u32::from(cluster_cidr.network());
            if nodes > 1 || opts.etcd {
                progress("underlay 172.30.0.0/24 joining the nodes");
                lab.add_underlay(opts.etcd)?;
            }
            if opts.operator {
                if !opts.etcd {
                    bail!("the operator needs the lab's etcd (--kvstore etcd)");
                }
                progress("seta-operator x2 (leader election, cluster-pool IPAM)");
                for i in 1..=2 {
                    lab.operators.push(OperatorState {
                        id: format!("{name}-op{i}"),
                        pid: None,
                        log: seta_core::names::run_dir(&format!("{name}-op{i}")).with_extension("log"),
                    });
                }
                for i in 0..2 {
                    let id = lab.operators[i].id.clone();
                    lab.start_operator(&id)?;
                }
            }
            if let Some(r) = opts.routing {
                lab.agent_args.extend(["--routing-mode".to_string(), r.to_string()]);
            }
            for i in 1..=nodes {
                let node = format!("{name}-n{i}");
                let pod_cidr = Ipv4Net::new(Ipv4Addr::from(base + ((i as u32) << 8)), 24)?;
                progress(&format!("node {node}: namespace, agent (pod CIDR {pod_cidr})"));
                run_ip(&["netns", "add", &node])?;
                run_ip(&["-n", &node, "link", "set", "lo", "up"])?;
                let run = seta_core::names::run_dir(&node);
                lab.nodes.push(NodeState {
                    name: node.clone(),
                    netns: node.clone(),
                    pod_cidr,
                    agent_pid: None,
                    socket: run.join("agent.sock"),
                    cni_conf_dir: run.join("cni/net.d"),
                    log: run.join("agent.log"),
                });
                if let Some(ul) = lab.underlay.clone() {
                    run_ip(&[
                        "-n",
                        &node,
                        "link",
                        "add",
                        "ul0",
                        "type",
                        "veth",
                        "peer",
                        "name",
                        &format!("n{i}"),
                        "netns",
                        &ul.netns,
                    ])?;
                    run_ip(&["-n", &ul.netns, "link", "set", &format!("n{i}"), "master", "br0", "up"])?;
                    run_ip(&["-n", &node, "addr", "add", &format!("{}/24", node_ip(i)), "dev", "ul0"])?;
                    run_ip(&["-n", &node, "link", "set", "ul0", "up"])?;
                }
                lab.save()?;
                lab.start_agent(&node).await?;
            }
            if lab.underlay.is_some() {
                progress("external host (192.0.2.10 on the underlay, 172.30.0.200)");
                lab.add_external_on_underlay()?;
            } else {
                progress("external host (192.0.2.10, routed through the first node)");
                lab.add_external()?;
            }
            for i in 1..=nodes * pods_per_node {
                let node = lab.nodes[(i - 1) % nodes].name.clone();
                let pod = format!("pod{i}");
                progress(&format!("pod {pod} on {node}"));
                lab.pod_add(&pod, &node, "default", &[], &[]).await?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = r {
            let _ = Self::down(name);
            return Err(e);
        }
        Ok(lab)
    }

    /// The underlay namespace with a bridge, and optionally etcd on the bridge IP.
    fn add_underlay(&mut self, etcd: bool) -> Result<()> {
        let ul = format!("{}-ul", self.name);
        run_ip(&["netns", "add", &ul])?;
        run_ip(&["-n", &ul, "link", "set", "lo", "up"])?;
        run_ip(&["-n", &ul, "link", "add", "br0", "type", "bridge"])?;
        run_ip(&["-n", &ul, "addr", "add", &format!("{UNDERLAY_GW}/24"), "dev", "br0"])?;
        run_ip(&["-n", &ul, "link", "set", "br0", "up"])?;
        let mut underlay = Underlay {
            netns: ul.clone(),
            etcd: None,
            etcd_pid: None,
        };
        if etcd {
            let client = format!("http://{UNDERLAY_GW}:2379");
            self.underlay = Some(underlay.clone());
            let _ = std::fs::remove_dir_all(etcd_dir(&self.name));
            self.etcd_start()?;
            underlay = self.underlay.clone().unwrap();
            underlay.etcd = Some(client.clone());
            // a short lease: a dead node's entries expire within seconds in the lab (5 s)
            self.agent_args = vec![
                "--kvstore".into(),
                "etcd".into(),
                "--kvstore-endpoints".into(),
                client,
                "--kvstore-lease-ttl".into(),
                "5".into(),
            ];
        }
        self.underlay = Some(underlay);
        self.save()
    }

    /// Start the lab's etcd in the underlay (again, after `etcd_stop`: same data) and wait until it answers.
    pub fn etcd_start(&mut self) -> Result<()> {
        let ul = self.underlay.clone().context("lab has no underlay")?;
        let dir = etcd_dir(&self.name);
        std::fs::create_dir_all(&dir)?;
        let client = format!("http://{UNDERLAY_GW}:2379");
        let peer = format!("http://{UNDERLAY_GW}:2380");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "lab", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("lab={peer}")]);
        let pid = spawn_daemon(cmd, &ul.netns, &dir.with_extension("log")).context("spawn etcd (install etcd-server)")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let up = spawn_in_netns(&ul.netns, || std::net::TcpStream::connect((UNDERLAY_GW, 2379)).is_ok())
                .join()
                .unwrap_or(false);
            if up {
                break;
            }
            if Instant::now() > deadline {
                bail!("etcd in the underlay did not start; see {}", dir.with_extension("log").display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(u) = self.underlay.as_mut() {
            u.etcd_pid = Some(pid);
            u.etcd = Some(client);
        }
        self.save()
    }

    /// Kill the lab's etcd (its data stays): the cluster loses its kvstore.
    pub fn etcd_stop(&mut self) -> Result<()> {
        let pid = self.underlay.as_ref().and_then(|u| u.etcd_pid).context("lab runs no etcd")?;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while etcd_pids(&etcd_dir(&self.name)).contains(&pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(u) = self.underlay.as_mut() {
            u.etcd_pid = None;
        }
        self.save()
    }

    /// A namespace outside the cluster: veth to the first node, 192.0.2.10/24,
    /// default route through the node (which forwards for it).
    fn add_external(&mut self) -> Result<()> {
        let ext = format!("{}-ext", self.name);
        let node = self.nodes[0].netns.clone();
        run_ip(&["netns", "add", &ext])?;
        run_ip(&["-n", &ext, "link", "set", "lo", "up"])?;
        run_ip(&[
            "-n", &ext, "link", "add", "eth0", "type", "veth", "peer", "name", "extgw", "netns", &node,
        ])?;
        run_ip(&["-n", &ext, "addr", "add", "192.0.2.10/24", "dev", "eth0"])?;
        run_ip(&["-n", &ext, "link", "set", "eth0", "up"])?;
        run_ip(&["-n", &node, "addr", "add", "192.0.2.1/24", "dev", "extgw"])?;
        run_ip(&["-n", &node, "link", "set", "extgw", "up"])?;
        run_ip(&["-n", &ext, "route", "add", "default", "via", "192.0.2.1"])?;
        self.external = Some(External {
            netns: ext,
            ip: "192.0.2.10".parse()?,
            gateway: "192.0.2.1".parse()?,
        });
        self.save()
    }

    /// The external host on the underlay: 172.30.0.200 on the bridge and
    /// 192.0.2.10 behind it (TEST-NET-1); every node routes 192.0.2.0/24 to
    /// it, and it routes each node's pod CIDR back through that node.
    fn add_external_on_underlay(&mut self) -> Result<()> {
        let ext = format!("{}-ext", self.name);
        let ul = self.underlay.clone().context("no underlay")?;
        run_ip(&["netns", "add", &ext])?;
        run_ip(&["-n", &ext, "link", "set", "lo", "up"])?;
        run_ip(&[
            "-n", &ext, "link", "add", "eth0", "type", "veth", "peer", "name", "ext", "netns", &ul.netns,
        ])?;
        run_ip(&["-n", &ul.netns, "link", "set", "ext", "master", "br0", "up"])?;
        run_ip(&["-n", &ext, "addr", "add", &format!("{EXTERNAL_UL}/24"), "dev", "eth0"])?;
        run_ip(&["-n", &ext, "addr", "add", "192.0.2.10/24", "dev", "eth0"])?;
        run_ip(&["-n", &ext, "link", "set", "eth0", "up"])?;
        for (i, n) in self.nodes.iter().enumerate() {
            run_ip(&["-n", &ext, "route", "add", &n.pod_cidr.to_string(), "via", &node_ip(i + 1)])?;
            run_ip(&["-n", &n.netns, "route", "add", "192.0.2.0/24", "via", EXTERNAL_UL])?;
        }
        self.external = Some(External {
            netns: ext,
            ip: "192.0.2.10".parse()?,
            gateway: EXTERNAL_UL.parse()?,
        });
        self.save()
    }

    /// Start (or restart) the agent of `node` inside its namespace and wait until it is healthy.
    pub async fn start_agent(&mut self, node: &str) -> Result<()> {
        let n = self.node(node)?.clone();
        let mut cmd = Command::new(self.bin_dir.join("seta-agent"));
        cmd.args(["--node", &n.name])
            .args(
                (self.operators.is_empty())
                    .then(|| ["--pod-cidr".to_string(), n.pod_cidr.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .args(
                self.underlay
                    .as_ref()
                    .map(|_| ["--node-ip".to_string(), node_ip(self.node_index(&n.name))])
                    .into_iter()
                    .flatten(),
            )
            .arg("--cni-conf-dir")
            .arg(&n.cni_conf_dir)
            .arg("--socket")
            .arg(&n.socket)
            .args(&self.agent_args);
        let pid = spawn_daemon(cmd, &n.netns, &n.log).context("spawn seta-agent")?;
        let client = Client::new(&n.socket).with_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if client.get::<serde_json::Value>("/v1/healthz").await.is_ok() && n.cni_conf_dir.join("05-seta.conflist").exists() {
                break;
            }
            if Instant::now() > deadline || !Path::new(&format!("/proc/{pid}")).exists() {
                let tail = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                bail!(
                    "agent of {} did not become ready; last log lines:\n{}",
                    n.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // with cluster-pool IPAM the operator chose the pod CIDR
        let st: serde_json::Value = client.get("/v1/status").await.map_err(|e| anyhow!("{e}"))?;
        let cidr: Option<Ipv4Net> = st["ipam"]["cidr"].as_str().and_then(|c| c.parse().ok());
        let me = self.nodes.iter_mut().find(|x| x.name == n.name).unwrap();
        me.agent_pid = Some(pid);
        if let Some(c) = cidr {
            me.pod_cidr = c;
        }
        self.save()
    }

    /// Start (or restart) operator replica `id` in the underlay.
    pub fn start_operator(&mut self, id: &str) -> Result<()> {
        let ul = self.underlay.clone().context("no underlay")?;
        let etcd = ul.etcd.clone().context("no etcd")?;
        let op = self
            .operators
            .iter()
            .find(|o| o.id == id)
            .cloned()
            .with_context(|| format!("no operator {id}"))?;
        let mut cmd = Command::new(self.bin_dir.join("seta-operator"));
        cmd.args(["--id", id, "--kvstore-endpoints", &etcd, "--lease-ttl", "3"])
            .args([
                "--cluster-pool-cidr",
                &self.cluster_cidr.to_string(),
                "--cluster-pool-mask-size",
                "24",
            ])
            .args(["--gc-interval", "1", "--identity-gc-grace", "3", "--node-gc-grace", "30"]);
        let pid = spawn_daemon(cmd, &ul.netns, &op.log).context("spawn seta-operator (make build)")?;
        self.operators.iter_mut().find(|o| o.id == id).unwrap().pid = Some(pid);
        self.save()
    }

    /// Kill operator replica `id` (SIGKILL: no resignation, its lease must expire).
    pub fn kill_operator(&mut self, id: &str) -> Result<()> {
        let o = self
            .operators
            .iter_mut()
            .find(|o| o.id == id)
            .with_context(|| format!("no operator {id}"))?;
        if let Some(pid) = o.pid.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        self.save()
    }

    /// Send `signal` to a node's agent (SIGKILL in restart tests, SIGTERM for a graceful stop).
    pub fn signal_agent(&mut self, node: &str, signal: nix::sys::signal::Signal) -> Result<()> {
        let n = self.node(node)?.clone();
        let pid = n.agent_pid.ok_or_else(|| anyhow!("agent of {} is not running", n.name))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.nodes.iter_mut().find(|x| x.name == n.name).unwrap().agent_pid = None;
        self.save()
    }

    /// The CNI network config a runtime would build from the node's conflist for plugin `idx`.
    pub fn cni_conf(&self, node: &str, idx: usize) -> Result<serde_json::Value> {
        let n = self.node(node)?;
        let p = n.cni_conf_dir.join("05-seta.conflist");
        let list: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).with_context(|| format!("read {}", p.display()))?)?;
        let mut conf = list["plugins"][idx].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        Ok(conf)
    }

    /// Invoke seta-cni inside the node's namespace exactly as a runtime does:
    /// CNI_* environment plus the network config on stdin.
    pub fn invoke_cni(&self, node: &str, env: &[(&str, String)], stdin: &serde_json::Value) -> Result<(bool, serde_json::Value)> {
        self.invoke_plugin(node, &self.bin_dir.join("seta-cni"), env, stdin)
    }

    /// Invoke any CNI plugin binary in the node's namespace (e.g. a chained portmap).
    pub fn invoke_plugin(
        &self,
        node: &str,
        plugin: &Path,
        env: &[(&str, String)],
        stdin: &serde_json::Value,
    ) -> Result<(bool, serde_json::Value)> {
        let n = self.node(node)?;
        let mut cmd = Command::new(plugin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_PATH", format!("{}:/usr/lib/cni", self.bin_dir.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        in_netns(&mut cmd, &netns_path(&n.netns))?;
        let mut child = cmd.spawn().context("spawn seta-cni")?;
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        let v = if out.stdout.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&out.stdout)
                .with_context(|| format!("{} printed non-JSON: {}", plugin.display(), String::from_utf8_lossy(&out.stdout)))?
        };
        Ok((out.status.success(), v))
    }

    pub async fn pod_add(&mut self, pod: &str, node: &str, namespace: &str, labels: &[String], ports: &[String]) -> Result<PodState> {
        if pod.is_empty() || pod.len() > 30 || !pod.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("pod name {pod:?} must be 1..30 letters, digits or '-'");
        }
        if self.pods.iter().any(|p| p.name == pod) {
            bail!("pod {pod} already exists in lab {}", self.name);
        }
        let node = self.node(node)?.name.clone();
        let netns = format!("{}-{pod}", self.name);
        run_ip(&["netns", "add", &netns])?;
        let container_id = format!("{}-{pod}", self.name);
        let mut args =
            format!("IgnoreUnknown=1;K8S_POD_NAME={pod};K8S_POD_NAMESPACE={namespace};K8S_POD_INFRA_CONTAINER_ID={container_id}");
        if !labels.is_empty() {
            args.push_str(&format!(";SETA_LABELS={}", labels.join(",")));
        }
        if !ports.is_empty() {
            args.push_str(&format!(";SETA_PORTS={}", ports.join(",")));
        }
        let env = [
            ("CNI_COMMAND", "ADD".to_string()),
            ("CNI_CONTAINERID", container_id.clone()),
            ("CNI_NETNS", netns_path(&netns).display().to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_ARGS", args),
        ];
        let conf = self.cni_conf(&node, 0)?;
        let (ok, result) = self.invoke_cni(&node, &env, &conf)?;
        if !ok {
            let _ = run_ip(&["netns", "del", &netns]);
            bail!("CNI ADD of {pod} failed: {result}");
        }
        let ip: Ipv4Addr = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("CNI result without an IPv4 address: {result}"))?;
        let p = PodState {
            name: pod.into(),
            node,
            netns,
            container_id,
            ifname: "eth0".into(),
            ip,
            namespace: namespace.into(),
            labels: labels.to_vec(),
            ports: ports.to_vec(),
        };
        self.pods.push(p.clone());
        self.save()?;
        Ok(p)
    }

    pub async fn pod_del(&mut self, pod: &str) -> Result<()> {
        let p = self.pod(pod)?.clone();
        let env = [
            ("CNI_COMMAND", "DEL".to_string()),
            ("CNI_CONTAINERID", p.container_id.clone()),
            ("CNI_NETNS", netns_path(&p.netns).display().to_string()),
            ("CNI_IFNAME", p.ifname.clone()),
            (
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAME={pod};K8S_POD_NAMESPACE={}", p.namespace),
            ),
        ];
        let conf = self.cni_conf(&p.node, 0)?;
        let (ok, result) = self.invoke_cni(&p.node, &env, &conf)?;
        if !ok {
            bail!("CNI DEL of {pod} failed: {result}");
        }
        run_ip(&["netns", "del", &p.netns])?;
        self.pods.retain(|x| x.name != pod);
        self.save()
    }

    fn client(&self, node: &str) -> Result<Client> {
        Ok(Client::new(&self.node(node)?.socket))
    }

    /// Replace a pod's labels (its endpoint moves to a new identity).
    pub async fn pod_label(&mut self, pod: &str, labels: &[String]) -> Result<()> {
        let p = self.pod(pod)?.clone();
        let body = seta_core::api::LabelsBody { labels: labels.to_vec() };
        let _: serde_json::Value = self
            .client(&p.node)?
            .request(
                hyper_method_patch(),
                &format!("/v1/endpoint/container-id:{}/labels", p.container_id),
                Some(&body),
            )
            .await?;
        self.pods.iter_mut().find(|x| x.name == pod).unwrap().labels = labels.to_vec();
        self.save()
    }

    /// Create or relabel a namespace on every node (it always carries
    /// kubernetes.io/metadata.name=NS).
    pub async fn namespace_set(&self, ns: &str, labels: &[String]) -> Result<()> {
        let mut m = BTreeMap::new();
        for l in labels {
            let (k, v) = l.split_once('=').ok_or_else(|| anyhow!("namespace label {l:?} is not key=value"))?;
            m.insert(k.to_string(), v.to_string());
        }
        for n in &self.nodes {
            let _: serde_json::Value = Client::new(&n.socket)
                .put(&format!("/v1/namespace/{ns}"), &seta_core::api::NamespaceBody { labels: m.clone() })
                .await?;
        }
        Ok(())
    }

    /// A command that runs `argv` inside a pod (or node) namespace.
    pub fn exec_command(&self, netns: &str, argv: &[String]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", netns]).args(argv);
        c
    }

    pub fn pod_exec(&self, pod: &str, argv: &[String]) -> Result<Command> {
        Ok(self.exec_command(&self.pod(pod)?.netns, argv))
    }

    pub fn external_exec(&self, argv: &[String]) -> Result<Command> {
        let e = self
            .external
            .as_ref()
            .ok_or_else(|| anyhow!("lab {} has no external host", self.name))?;
        Ok(self.exec_command(&e.netns, argv))
    }

    pub fn node_exec(&self, node: &str, argv: &[String]) -> Result<Command> {
        Ok(self.exec_command(&self.node(node)?.netns, argv))
    }

    /// Remove everything of lab `name`: agents, namespaces, pins, run and state dirs.
    /// Works from the prefix alone, so it also cleans up after a crash.
    pub fn down(name: &str) -> Result<Vec<String>> {
        validate_lab_name(name)?;
        let prefix = format!("{name}-");
        let mut done = Vec::new();
        // agents: by pid in /proc whose cmdline names a node of this lab
        for pid in agent_pids(&prefix) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            done.push(format!("killed agent pid {pid}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !agent_pids(&prefix).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in operator_pids(&prefix) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            done.push(format!("killed operator pid {pid}"));
        }
        for i in 1..=2 {
            let _ = std::fs::remove_file(seta_core::names::run_dir(&format!("{name}-op{i}")).with_extension("log"));
        }
        // the lab's etcd: found by its data dir
        let edir = etcd_dir(name);
        for pid in etcd_pids(&edir) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            done.push(format!("killed etcd pid {pid}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !etcd_pids(&edir).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::fs::remove_dir_all(&edir).is_ok() {
            done.push(format!("removed {}", edir.display()));
        }
        let _ = std::fs::remove_file(edir.with_extension("log"));
        // namespaces (pods first, then nodes; deleting a pod netns removes its veth)
        let mut ns: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().map(String::from))
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        ns.sort_by_key(|n| is_node_name(name, n));
        for n in ns {
            // whatever still runs inside (e.g. a server started with `seta lab exec`)
            // would outlive the namespace: stop it first
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &n]).output() {
                for pid in String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok() {
                        done.push(format!("killed pid {pid} in {n}"));
                    }
                }
            }
            if run_ip(&["netns", "del", &n]).is_ok() {
                done.push(format!("deleted netns {n}"));
            }
        }
        for root in ["/sys/fs/bpf/seta", "/run/seta", "/var/lib/seta"] {
            for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
                let fname = e.file_name().to_string_lossy().to_string();
                if fname.starts_with(&prefix) && is_node_name(name, &fname) && std::fs::remove_dir_all(e.path()).is_ok() {
                    done.push(format!("removed {}", e.path().display()));
                }
            }
        }
        let _ = std::fs::remove_dir("/sys/fs/bpf/seta"); // only if empty
        let _ = std::fs::remove_file(Self::state_path(name));
        let _ = std::fs::remove_dir(LABS_DIR);
        let _ = std::fs::remove_dir("/run/seta");
        let _ = std::fs::remove_dir("/var/lib/seta");
        Ok(done)
    }

    /// Pods of a node.
    pub fn pods_on(&self, node: &str) -> Vec<&PodState> {
        self.pods.iter().filter(|p| p.node == node).collect()
    }

    pub fn pods_by_node(&self) -> BTreeMap<String, Vec<&PodState>> {
        let mut m = BTreeMap::new();
        for p in &self.pods {
            m.entry(p.node.clone()).or_insert_with(Vec::new).push(p);
        }
        m
    }
}

/// Traffic helpers for tests and the lab: real sockets opened inside namespaces.
pub mod traffic {
    use super::spawn_in_netns;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A TCP and UDP responder on `addr` inside a namespace ("ok" to every
    /// connection / datagram) until dropped.
    pub struct Responder {
        stop: Arc<AtomicBool>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl Responder {
        pub fn start(ns: &str, addr: SocketAddr) -> Self {
            let (tcp, udp) = spawn_in_netns(ns, move || {
                let t = TcpListener::bind(addr).expect("bind tcp");
                t.set_nonblocking(true).unwrap();
                let u = UdpSocket::bind(addr).expect("bind udp");
                u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                (t, u)
            })
            .join()
            .unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let s1 = stop.clone();
            let t1 = std::thread::spawn(move || {
                while !s1.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut c, _)) => {
                            let _ = c.write_all(b"ok");
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
            let s2 = stop.clone();
            let t2 = std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !s2.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = udp.recv_from(&mut buf) {
                        let _ = udp.send_to(b"ok", from);
                    }
                }
            });
            Self {
                stop,
                threads: vec![t1, t2],
            }
        }
    }

    impl Drop for Responder {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    /// Does a TCP connection from namespace `ns` to `addr` get the responder's "ok"?
    pub fn tcp_ok(ns: &str, addr: SocketAddr) -> bool {
        spawn_in_netns(ns, move || {
            let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_millis(800)) else {
                return false;
            };
            c.set_read_timeout(Some(Duration::from_millis(800))).unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).is_ok() && &b == b"ok"
        })
        .join()
        .unwrap()
    }

    /// Does a UDP datagram from `ns` to `addr` get an "ok" back?
    pub fn udp_ok(ns: &str, addr: SocketAddr) -> bool {
        spawn_in_netns(ns, move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            for _ in 0..2 {
                let _ = s.send_to(b"hi", addr);
                let mut b = [0u8; 16];
                if let Ok((n, _)) = s.recv_from(&mut b) {
                    return &b[..n] == b"ok";
                }
            }
            false
        })
        .join()
        .unwrap()
    }

    pub fn ping_ok(ns: &str, ip: std::net::Ipv4Addr) -> bool {
        std::process::Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", &ip.to_string()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

fn is_node_name(lab: &str, n: &str) -> bool {
    n.strip_prefix(&format!("{lab}-n"))
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
}

fn agent_alive(pid: u32) -> bool {
    // a zombie counts as gone
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .is_some_and(|st| st != "Z")
        })
        .unwrap_or(false)
}

/// Live processes whose argv satisfies `pred`.
fn pids_where(pred: impl Fn(&[&[u8]]) -> bool) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if pred(&argv) && agent_alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// The lab's etcd, by its data dir.
fn etcd_pids(data_dir: &Path) -> Vec<u32> {
    let want = data_dir.join("data");
    let want = want.as_os_str().as_encoded_bytes();
    pids_where(|argv| argv.first().is_some_and(|a| a.ends_with(b"etcd")) && argv.contains(&want))
}

/// Agents of nodes whose name starts with `node_prefix`.
/// Start `cmd` inside network namespace `netns` as a daemon of the lab: its
/// own process group, output appended to `log`. It outlives this process
/// (`seta lab up` returns); a thread reaps it if we are still around.
fn spawn_daemon(mut cmd: Command, netns: &str, log: &Path) -> Result<u32> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).process_group(0);
    in_netns(&mut cmd, &netns_path(netns))?;
    let child = cmd.spawn()?;
    let pid = child.id();
    std::thread::spawn(move || {
        let mut c = child;
        let _ = c.wait();
    });
    Ok(pid)
}

/// Operator replicas whose --id starts with `prefix`.
fn operator_pids(prefix: &str) -> Vec<u32> {
    pids_where(|argv| {
        argv.first().is_some_and(|a| a.ends_with(b"seta-operator"))
            && argv.windows(2).any(|w| w[0] == b"--id" && w[1].starts_with(prefix.as_bytes()))
    })
}

fn agent_pids(node_prefix: &str) -> Vec<u32> {
    pids_where(|argv| {
        argv.first().is_some_and(|a| a.ends_with(b"seta-agent"))
            && argv
                .windows(2)
                .any(|w| w[0] == b"--node" && w[1].starts_with(node_prefix.as_bytes()))
    })
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
            eprintln!("logs of lab {} kept in {}", self.lab.name, dir.display());
        }
        let _ = Lab::down(&self.lab.name);
    }
}

fn hyper_method_patch() -> seta_client::Method {
    seta_client::Method::PATCH
}
