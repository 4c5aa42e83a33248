//! The lab's daemons: agents, operators and etcd, started and ended by pid.
use crate::*;

impl Lab {
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
        let log = dir.with_extension("log");
        let d = wait::Deadline::new(format!("the lab's etcd to accept connections on {client}"), Duration::from_secs(15))
            .hint(format!("etcd log: {}", log.display()));
        wait::poll(&d, Duration::from_millis(100), || {
            if !agent_alive(pid) {
                return Ok(Err(format!("etcd (pid {pid}) exited")));
            }
            let r = spawn_in_netns(&ul.netns, || {
                std::net::TcpStream::connect((UNDERLAY_GW, 2379))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("probe thread panicked".into()));
            r.map(Ok)
        })?
        .map_err(|e| anyhow!("{e}; see {}", log.display()))?;
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
        let d = wait::Deadline::new(format!("etcd pid {pid} to exit after SIGKILL"), Duration::from_secs(5));
        wait::poll(&d, Duration::from_millis(20), || {
            if etcd_pids(&etcd_dir(&self.name)).contains(&pid) {
                Err("still running".to_string())
            } else {
                Ok(())
            }
        })?;
        if let Some(u) = self.underlay.as_mut() {
            u.etcd_pid = None;
        }
        self.save()
    }

    /// Start (or restart) the agent of `node` inside its namespace and wait until it is healthy.
    pub async fn start_agent(&mut self, node: &str) -> Result<()> {
        let n = self.node(node)?.clone();
        let mut cmd = Command::new(self.bin_dir.join("seta-agent"));
        cmd.args(["--node", &n.name])
            .args(match (self.operators.is_empty(), self.kubeconfig.is_some()) {
                // the pod CIDR the lab chose, in the Node object under Kubernetes
                (true, true) => vec!["--ipam".to_string(), "kubernetes".to_string()],
                (true, false) => vec!["--pod-cidr".to_string(), n.pod_cidr.to_string()],
                // cluster-pool IPAM by the operator
                (false, _) => vec![],
            })
            .args(
                self.underlay
                    .as_ref()
                    .map(|_| ["--node-ip".to_string(), node_ip(self.node_index(&n.name)).to_string()])
                    .into_iter()
                    .flatten(),
            )
            .arg("--cni-conf-dir")
            .arg(&n.cni_conf_dir)
            .arg("--socket")
            .arg(&n.socket)
            // every lab agent exports its flows beside its socket
            .arg("--hubble-export-file-path")
            .arg(n.socket.with_file_name("hubble-events.log"))
            .args(&self.agent_args);
        // socket-LB is the agent's default (with kube-proxy replacement, as
        // Cilium's): at the node's cgroup, never the machine's root; else off
        match self.socket_lb {
            true => cmd.arg("--cgroup-root").arg(crate::cgroups::node_cgroup(&n.name)?),
            false => cmd.arg("--bpf-lb-sock=false"),
        };
        let pid = spawn_daemon(cmd, &n.netns, &n.log).context("spawn seta-agent")?;
        let client = Client::new(&n.socket).with_timeout(Duration::from_secs(2));
        let conflist = n.cni_conf_dir.join("05-seta.conflist");
        let d = wait::Deadline::new(
            format!(
                "the agent of {} to answer on {} and write {}",
                n.name,
                n.socket.display(),
                conflist.display()
            ),
            Duration::from_secs(20),
        );
        let ready = wait::poll_async(&d, Duration::from_millis(50), || async {
            if !agent_alive(pid) {
                return Ok(Err(format!("the agent (pid {pid}) exited")));
            }
            match client.healthz().await {
                Err(e) => Err(format!("socket: {e}")),
                Ok(_) if !conflist.exists() => Err("healthy, CNI config not written yet".to_string()),
                Ok(_) => Ok(Ok(())),
            }
        })
        .await
        .unwrap_or_else(|t| Err(t.to_string()));
        if let Err(why) = ready {
            let tail = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            bail!(
                "agent of {} did not become ready: {why}; its log is {}, last lines:\n{}",
                n.name,
                n.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        // with cluster-pool IPAM the operator chose the pod CIDR
        let st = client.status().await.map_err(|e| anyhow!("{e}"))?;
        let cidr: Option<Ipv4Net> = Some(st.ipam.cidr).filter(|c| c.prefix_len() > 0);
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
        let etcd = ul.etcd.clone();
        let op = self
            .operators
            .iter()
            .find(|o| o.id == id)
            .cloned()
            .with_context(|| format!("no operator {id}"))?;
        let mut cmd = Command::new(self.bin_dir.join("seta-operator"));
        cmd.args(["--id", id]);
        match &self.kubeconfig {
            // under Kubernetes: the API's objects, a Lease elects the leader
            Some(kc) => cmd.arg("--k8s-kubeconfig").arg(kc).args([
                "--leader-election-lease-duration",
                "3s",
                "--leader-election-renew-deadline",
                "2s",
                "--leader-election-retry-period",
                "500ms",
            ]),
            None => cmd.args(["--kvstore-endpoints", etcd.context("no etcd")?.as_str(), "--lease-ttl", "3"]),
        };
        cmd.args([
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
    /// Stop a node's agent (SIGTERM, waited for): its pinned datapath stays.
    pub fn stop_agent(&mut self, node: &str) -> Result<()> {
        self.signal_agent(node, nix::sys::signal::Signal::SIGTERM)
    }

    pub fn signal_agent(&mut self, node: &str, signal: nix::sys::signal::Signal) -> Result<()> {
        let n = self.node(node)?.clone();
        let pid = n.agent_pid.ok_or_else(|| anyhow!("agent of {} is not running", n.name))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
        let d = wait::Deadline::new(
            format!("the agent of {} (pid {pid}) to exit after {signal}", n.name),
            Duration::from_secs(10),
        )
        .hint(format!("agent log: {}", n.log.display()));
        wait::poll(&d, Duration::from_millis(20), || {
            if agent_alive(pid) {
                Err("still running".to_string())
            } else {
                Ok(())
            }
        })?;
        self.nodes.iter_mut().find(|x| x.name == n.name).unwrap().agent_pid = None;
        self.save()
    }
}

pub(crate) fn agent_alive(pid: u32) -> bool {
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
pub(crate) fn pids_where(pred: impl Fn(&[&[u8]]) -> bool) -> Vec<u32> {
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
pub(crate) fn etcd_pids(data_dir: &Path) -> Vec<u32> {
    let want = data_dir.join("data");
    let want = want.as_os_str().as_encoded_bytes();
    pids_where(|argv| argv.first().is_some_and(|a| a.ends_with(b"etcd")) && argv.contains(&want))
}

/// Agents of nodes whose name starts with `node_prefix`.
/// Start `cmd` inside network namespace `netns` as a daemon of the lab: its
/// own process group, output appended to `log`. It outlives this process
/// (`seta lab up` returns); a thread reaps it if we are still around.
pub(crate) fn spawn_daemon(mut cmd: Command, netns: &str, log: &Path) -> Result<u32> {
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
pub(crate) fn operator_pids(prefix: &str) -> Vec<u32> {
    pids_where(|argv| {
        argv.first().is_some_and(|a| a.ends_with(b"seta-operator"))
            && argv.windows(2).any(|w| w[0] == b"--id" && w[1].starts_with(prefix.as_bytes()))
    })
}

pub(crate) fn agent_pids(node_prefix: &str) -> Vec<u32> {
    pids_where(|argv| {
        argv.first().is_some_and(|a| a.ends_with(b"seta-agent"))
            && argv
                .windows(2)
                .any(|w| w[0] == b"--node" && w[1].starts_with(node_prefix.as_bytes()))
    })
}
