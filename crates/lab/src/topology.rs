//! Building and removing a lab: namespaces, underlay, external host.
use crate::*;

impl Lab {
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
            kubeconfig: None,
            socket_lb: opts.socket_lb,
        };
        let r = async {
            let base = u32::from(cluster_cidr.network());
            if nodes > 1 || opts.etcd || opts.k8s {
                progress("underlay 172.30.0.0/24 joining the nodes");
                lab.add_underlay(opts.etcd).await?;
            }
            if opts.k8s {
                progress("Kubernetes API (the seta-k8s-api fixture) on the underlay");
                lab.k8s_start()?;
                let kc = lab.kubeconfig.clone().expect("started");
                lab.agent_args.extend(["--k8s-kubeconfig".to_string(), kc.display().to_string()]);
            }
            if opts.operator {
                if !opts.etcd && !opts.k8s {
                    bail!("the operator needs the lab's etcd (--kvstore etcd) or its Kubernetes API (--k8s)");
                }
                progress(match opts.k8s {
                    true => "seta-operator x2 (a Lease elects the leader; cluster-pool IPAM into CiliumNodes; GC)",
                    false => "seta-operator x2 (leader election, cluster-pool IPAM)",
                });
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
            if opts.masquerade {
                lab.agent_args.push("--enable-bpf-masquerade".to_string());
            }
            if opts.ip_masq_agent {
                std::fs::create_dir_all(crate::conf_dir(name))?;
                lab.agent_args.extend([
                    "--enable-ip-masq-agent".to_string(),
                    "--ip-masq-agent-config-path".to_string(),
                    lab.ip_masq_agent_config().display().to_string(),
                ]);
            }
            if opts.maglev {
                lab.agent_args.extend(["--bpf-lb-algorithm".to_string(), "maglev".to_string()]);
            }
            lab.agent_args.extend(opts.agent_args.iter().cloned());
            for i in 1..=nodes {
                let node = format!("{name}-n{i}");
                let pod_cidr = Ipv4Net::new(Ipv4Addr::from(base + ((i as u32) << 8)), 24)?;
                progress(&format!("node {node}: namespace, agent (pod CIDR {pod_cidr})"));
                let ns = Ns::create(&node).await?;
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
                    let ul = Ns::open(&ul.netns).await?;
                    let port = format!("n{i}");
                    ns.veth_to("ul0", &ul, &port).await?;
                    ul.port(&port, "br0").await?;
                    ns.addr("ul0", node_ip(i), 24).await?;
                    ns.up("ul0").await?;
                }
                lab.save()?;
                if lab.kubeconfig.is_some() {
                    // the node registers in the API before its agent starts, as a kubelet does
                    let cidr = lab.operators.is_empty().then_some(pod_cidr);
                    lab.k8s_node_apply(&node, node_ip(i), cidr)?;
                }
                if lab.socket_lb {
                    crate::cgroups::create_node_cgroup(&node)?;
                }
                lab.start_agent(&node).await?;
            }
            if lab.kubeconfig.is_some() {
                progress("the lab's kubelet: Pods applied with kubectl get a namespace wired by seta-cni");
                lab.kubelet_start()?;
            }
            if opts.relay && lab.underlay.is_some() {
                progress(&format!(
                    "Hubble Relay (seta-relay) on {UNDERLAY_GW}:{} and unix://{}",
                    crate::relay::RELAY_PORT,
                    crate::relay::relay_socket(name).display()
                ));
                lab.relay_start()?;
            }
            if lab.underlay.is_some() {
                progress("external host (192.0.2.10 on the underlay, 172.30.0.200)");
                lab.add_external_on_underlay().await?;
            } else {
                progress("external host (192.0.2.10, routed through the first node)");
                lab.add_external().await?;
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
    async fn add_underlay(&mut self, etcd: bool) -> Result<()> {
        let ul = format!("{}-ul", self.name);
        let ns = Ns::create(&ul).await?;
        // A fixed MAC: a bridge without one takes its lowest port's MAC and
        // changes it as ports join. Nodes that resolved the old MAC then send
        // frames the bridge takes in as "other host" and IP drops them,
        // until their neighbour entry expires (seconds of a silent etcd).
        ns.nl.create_bridge("br0", UNDERLAY_MAC).await?;
        ns.addr("br0", UNDERLAY_GW, 24).await?;
        ns.up("br0").await?;
        // a switch: bridged frames do not climb into this namespace's
        // iptables hooks (br_netfilter, where loaded, makes them by
        // default), a cost on every crossing of the underlay
        let _ = spawn_in_netns(&ul, || {
            for f in ["iptables", "ip6tables", "arptables"] {
                let _ = std::fs::write(format!("/proc/sys/net/bridge/bridge-nf-call-{f}"), "0");
            }
        })
        .join();
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

    /// A namespace outside the cluster: veth to the first node, 192.0.2.10/24,
    /// default route through the node (which forwards for it).
    async fn add_external(&mut self) -> Result<()> {
        let name = format!("{}-ext", self.name);
        let node = Ns::open(&self.nodes[0].netns).await?;
        let ext = Ns::create(&name).await?;
        ext.veth_to("eth0", &node, "extgw").await?;
        ext.addr("eth0", EXTERNAL_IP, 24).await?;
        ext.up("eth0").await?;
        node.addr("extgw", EXTERNAL_GW, 24).await?;
        node.up("extgw").await?;
        ext.route("0.0.0.0/0".parse()?, EXTERNAL_GW, "eth0").await?;
        // the agent follows its node's addresses: the lab is up once the
        // gateway's is the host in its ipcache (tests compare ipcaches)
        let pin = seta_core::names::pin_dir(Path::new("/sys/fs/bpf"), &self.nodes[0].name, seta_abi::ABI_VERSION);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !seta_datapath::maps::IpcacheMap::open(&pin)
            .map(|m| {
                m.list()
                    .iter()
                    .any(|(ip, plen, v)| *ip == EXTERNAL_GW && *plen == 32 && v.sec_identity == 1)
            })
            .unwrap_or(false)
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the agent of {} did not take {EXTERNAL_GW} as its own address",
                self.nodes[0].name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.external = Some(External {
            netns: name,
            ip: EXTERNAL_IP,
            gateway: EXTERNAL_GW,
        });
        self.save()
    }

    /// The external host on the underlay: 172.30.0.200 on the bridge and
    /// 192.0.2.10 behind it (TEST-NET-1); every node routes 192.0.2.0/24 to
    /// it, and it routes each node's pod CIDR back through that node.
    async fn add_external_on_underlay(&mut self) -> Result<()> {
        let name = format!("{}-ext", self.name);
        let ul = Ns::open(&self.underlay.clone().context("no underlay")?.netns).await?;
        let ext = Ns::create(&name).await?;
        ext.veth_to("eth0", &ul, "ext").await?;
        ul.port("ext", "br0").await?;
        ext.addr("eth0", EXTERNAL_UL, 24).await?;
        ext.addr("eth0", EXTERNAL_IP, 24).await?;
        ext.up("eth0").await?;
        for (i, n) in self.nodes.iter().enumerate() {
            ext.route(n.pod_cidr, node_ip(i + 1), "eth0").await?;
            Ns::open(&n.netns).await?.route(EXTERNAL_NET.parse()?, EXTERNAL_UL, "ul0").await?;
        }
        self.external = Some(External {
            netns: name,
            ip: EXTERNAL_IP,
            gateway: EXTERNAL_UL,
        });
        self.save()
    }

    /// The ip-masq-agent file the agents follow (LabOptions::ip_masq_agent);
    /// missing until written.
    pub fn ip_masq_agent_config(&self) -> PathBuf {
        crate::conf_dir(&self.name).join("ip-masq-agent")
    }

    /// Let the external host reach `net` (service addresses: ExternalIPs,
    /// LoadBalancer IPs) through node `idx`, as a router announcing them
    /// to that node would (labs with an underlay).
    pub async fn external_route(&self, net: ipnet::Ipv4Net, idx: usize) -> Result<()> {
        let ext = self.external.as_ref().context("no external host")?;
        anyhow::ensure!(self.underlay.is_some(), "external_route needs a lab with an underlay");
        anyhow::ensure!(idx < self.nodes.len(), "no node {idx}");
        Ns::open(&ext.netns).await?.route(net, node_ip(idx + 1), "eth0").await
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
        for f in std::fs::read_dir("/run/seta").into_iter().flatten().flatten() {
            let fname = f.file_name().to_string_lossy().to_string();
            if fname.starts_with(&prefix) && fname.ends_with(".log") && leftovers::lab_of(&fname) == Some(name) {
                let _ = std::fs::remove_file(f.path());
            }
        }
        // the lab's daemons in the underlay, each found by its directory
        let pdir = crate::prometheus::prometheus_dir(name);
        stop_daemons("prometheus", &pdir, crate::prometheus::prometheus_pids, &mut done);
        stop_daemons("seta-relay", &crate::relay::relay_dir(name), crate::relay::relay_pids, &mut done);
        stop_daemons(
            "the lab's kubelet",
            &crate::k8s::k8s_dir(name),
            crate::kubelet::kubelet_pids,
            &mut done,
        );
        stop_daemons("the Kubernetes API", &crate::k8s::k8s_dir(name), crate::k8s::k8s_pids, &mut done);
        stop_daemons("etcd", &etcd_dir(name), etcd_pids, &mut done);
        if std::fs::remove_dir_all(crate::conf_dir(name)).is_ok() {
            done.push(format!("removed {}", crate::conf_dir(name).display()));
        }
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
            leftovers::remove_netns(&n, &mut done);
        }
        // the nodes' cgroups (socket-LB), with what the lab ran in them
        if let Some(root) = crate::cgroups::cgroup_root() {
            for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let fname = e.file_name().to_string_lossy().to_string();
                if fname.starts_with(&prefix) && is_node_name(name, &fname) {
                    crate::cgroups::remove_node_cgroup(&e.path(), &mut done);
                }
            }
            let _ = std::fs::remove_dir(&root); // only if empty
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
}

pub(crate) fn is_node_name(lab: &str, n: &str) -> bool {
    n.strip_prefix(&format!("{lab}-n"))
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
}

/// Kill the daemons `pids` finds for `dir` (SIGKILL, then wait up to 5 s),
/// and remove `dir` and its log.
fn stop_daemons(what: &str, dir: &Path, pids: fn(&Path) -> Vec<u32>, done: &mut Vec<String>) {
    for pid in pids(dir) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        done.push(format!("killed {what} pid {pid}"));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids(dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if std::fs::remove_dir_all(dir).is_ok() {
        done.push(format!("removed {}", dir.display()));
    }
    let _ = std::fs::remove_file(dir.with_extension("log"));
}
