//! `seta lab`: a virtual cluster in network namespaces.
use crate::*;
use seta_lab::leftovers::Scope;
use seta_lab::wait::{RunError, RunWithin};

#[derive(Subcommand)]
pub enum LabCmd {
    /// Build a lab: nodes with an agent each, pods wired by seta-cni
    Up {
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long, default_value_t = 0)]
        pods: usize,
        #[arg(long, default_value = "lab")]
        lab: String,
        #[arg(long, default_value = "10.200.0.0/16")]
        cluster_cidr: ipnet::Ipv4Net,
        /// the cluster's shared state: memory (each node its own) or etcd (a real etcd in the underlay, shared) [default: etcd with 2+ nodes, memory with --k8s (agents share CRDs)]
        #[arg(long, value_enum)]
        kvstore: Option<seta_core::mode::KvstoreKind>,
        /// how pods reach other nodes' pods: tunnel (VXLAN) or native (routes)
        #[arg(long, value_enum, default_value_t = seta_core::mode::RoutingMode::Tunnel)]
        routing: seta_core::mode::RoutingMode,
        /// run two seta-operator replicas (leader election) in the underlay [default: with etcd or --k8s]
        #[arg(long)]
        operator: Option<bool>,
        /// agents masquerade pods' traffic to the world (BPF masquerade)
        #[arg(long)]
        masquerade: bool,
        /// agents follow an ip-masq-agent file, /run/seta/labs/LAB-conf/ip-masq-agent (its nonMasqueradeCIDRs keep pods' addresses; missing: the default reserved ranges)
        #[arg(long, requires = "masquerade")]
        ip_masq_agent: bool,
        /// agents choose backends of NodePort, ExternalIP and LoadBalancer frontends by Maglev
        #[arg(long)]
        maglev: bool,
        /// run a Kubernetes API (the seta-k8s-api test fixture) in the underlay: agents take policies and namespaces from it; `seta lab status -o json` shows its kubeconfig
        #[arg(long)]
        k8s: bool,
        /// agents translate services at connect time (socket-LB, the agent's default) at a cgroup per node, where `seta lab exec` runs the node's and pods' processes; without it they run with --bpf-lb-sock=false, every service by packet
        #[arg(long)]
        socket_lb: bool,
        /// agents forward north-south traffic to remote backends by snat, dsr or hybrid (dsr and hybrid need --routing native)
        #[arg(long, value_enum, default_value_t = seta_core::mode::LbMode::Snat)]
        lb_mode: seta_core::mode::LbMode,
        /// run Hubble Relay (seta-relay) in the underlay [default: on when there is one]; `seta observe --server unix:///run/seta/labs/LAB-relay/relay.sock` reads it
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        relay: Option<bool>,
    },
    /// Nodes and pods of a lab
    Status {
        #[arg(long)]
        lab: Option<String>,
    },
    /// kubectl against the lab's Kubernetes API (`seta lab up --k8s`), e.g. `seta lab kubectl -- get netpol -A`
    Kubectl {
        #[arg(long)]
        lab: Option<String>,
        /// kubectl's arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Add or remove single pods
    #[command(subcommand)]
    Pod(PodCmd),
    /// Run a command inside a pod: seta lab exec POD -- CMD...
    Exec {
        pod: String,
        #[arg(long)]
        lab: Option<String>,
        /// kill the command after this many seconds (exit code 124, as timeout(1)); 0 = no limit
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Commands on nodes
    #[command(subcommand)]
    Node(NodeCmd),
    /// Commands on the external host
    #[command(subcommand)]
    Ext(ExtCmd),
    /// Namespaces and their labels (namespaceSelector matches these)
    #[command(subcommand)]
    Namespace(NsCmd),
    /// The lab's kubelet under Kubernetes (a daemon `seta lab up --k8s` starts)
    #[command(hide = true)]
    Kubelet {
        #[arg(long)]
        lab: String,
    },
    /// Remove everything of a lab, also after a crash
    Down {
        #[arg(long)]
        lab: Option<String>,
        /// everything labs, tests and the bench left on this machine, found by
        /// prefix (namespaces and the processes in them, agents, operators,
        /// etcds, pins, /run/seta and /var/lib/seta entries), with or without
        /// a state file
        #[arg(long, conflicts_with = "lab")]
        all: bool,
        /// only what test runs left (labs t<digits>…, BPF test pins, test etcds)
        #[arg(long, conflicts_with_all = ["lab", "all"])]
        tests: bool,
    },
}

#[derive(Subcommand)]
pub enum PodCmd {
    Add {
        name: String,
        #[arg(long)]
        node: String,
        #[arg(long, default_value = "")]
        labels: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// named container ports: name=port/PROTO,...
        #[arg(long, default_value = "")]
        ports: String,
        #[arg(long)]
        lab: Option<String>,
    },
    /// Replace a pod's labels
    Label {
        name: String,
        #[arg(long)]
        labels: String,
        #[arg(long)]
        lab: Option<String>,
    },
    Del {
        name: String,
        #[arg(long)]
        lab: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum NsCmd {
    /// Create a namespace (it always carries kubernetes.io/metadata.name=NS)
    Add {
        ns: String,
        #[arg(long, default_value = "")]
        labels: String,
        #[arg(long)]
        lab: Option<String>,
    },
    /// Replace a namespace's labels; its pods follow
    Label {
        ns: String,
        #[arg(long)]
        labels: String,
        #[arg(long)]
        lab: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Run a command in a node's namespace (as the host): seta lab node exec NODE -- CMD...
    Exec {
        node: String,
        #[arg(long)]
        lab: Option<String>,
        /// kill the command after this many seconds (exit code 124, as timeout(1)); 0 = no limit
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Stop a node's agent (SIGTERM): its datapath keeps forwarding; its API,
    /// observer and metrics are gone until `seta lab node start`
    Stop {
        node: String,
        #[arg(long)]
        lab: Option<String>,
    },
    /// Start a stopped node's agent again (it restores its endpoints)
    Start {
        node: String,
        #[arg(long)]
        lab: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ExtCmd {
    /// Run a command on the lab's external host (outside the cluster): seta lab ext exec -- CMD...
    Exec {
        #[arg(long)]
        lab: Option<String>,
        /// kill the command after this many seconds (exit code 124, as timeout(1)); 0 = no limit
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

pub async fn run(cmd: &LabCmd, json: bool) -> Result<i32> {
    match cmd {
        LabCmd::Up {
            nodes,
            pods,
            lab,
            cluster_cidr,
            kvstore,
            routing,
            operator,
            masquerade,
            ip_masq_agent,
            maglev,
            k8s,
            socket_lb,
            lb_mode,
            relay,
        } => {
            use seta_core::mode::KvstoreKind;
            // under Kubernetes agents share identities, nodes and pod IPs as
            // CRDs (Cilium's default): no etcd unless asked for
            let kv = kvstore.unwrap_or(if *nodes > 1 && !k8s {
                KvstoreKind::Etcd
            } else {
                KvstoreKind::Memory
            });
            let etcd = kv == KvstoreKind::Etcd;
            if operator == &Some(true) && !etcd && !k8s {
                bail!("--operator needs --kvstore etcd or --k8s");
            }
            let opts = seta_lab::LabOptions {
                etcd,
                routing: Some(*routing),
                operator: operator.unwrap_or(etcd || *k8s),
                masquerade: *masquerade,
                ip_masq_agent: *ip_masq_agent,
                maglev: *maglev,
                k8s: *k8s,
                socket_lb: *socket_lb,
                agent_args: vec!["--bpf-lb-mode".into(), lb_mode.to_string()],
                relay: relay.unwrap_or(*nodes > 1 || etcd || *k8s),
            };
            let t = std::time::Instant::now();
            let l = Lab::up_with(lab, *nodes, *pods, *cluster_cidr, &bin_dir()?, &opts, &|m| eprintln!("==> {m}")).await?;
            eprintln!(
                "==> lab {} is up: {} node(s), {} pod(s) in {:.1}s",
                l.name,
                l.nodes.len(),
                l.pods.len(),
                t.elapsed().as_secs_f64()
            );
            print_lab(&l, json)?;
        }
        LabCmd::Status { lab } => print_lab(&Lab::load_default(lab.as_deref())?, json)?,
        LabCmd::Kubelet { lab } => seta_lab::kubelet::kubelet(lab).await?,
        LabCmd::Kubectl { lab, args } => {
            let l = Lab::load_default(lab.as_deref())?;
            let stdin = match args.iter().any(|a| a == "-") {
                true => Some(std::io::read_to_string(std::io::stdin())?),
                false => None,
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, out, err) = l.kubectl(&args, stdin.as_deref())?;
            if !out.is_empty() {
                println!("{out}");
            }
            if !err.is_empty() {
                eprintln!("{err}");
            }
            return Ok(if ok { 0 } else { 1 });
        }
        LabCmd::Pod(PodCmd::Add {
            name,
            node,
            labels,
            namespace,
            ports,
            lab,
        }) => {
            let mut l = Lab::load_default(lab.as_deref())?;
            let labels = split_labels(labels)?;
            let ports = split_list(ports);
            for (i, p) in ports.iter().enumerate() {
                seta_core::endpoint::parse_named_port(p).map_err(|e| anyhow::anyhow!("--ports[{i}]: {e}"))?;
            }
            let p = l.pod_add(name, node, namespace, &labels, &ports).await?;
            if json {
                return print_json(&p);
            }
            println!("pod {} on {}: {} (netns {})", p.name, p.node, p.ip, p.netns);
        }
        LabCmd::Pod(PodCmd::Label { name, labels, lab }) => {
            let mut l = Lab::load_default(lab.as_deref())?;
            l.pod_label(name, &split_labels(labels)?).await?;
            println!("pod {name} labels replaced");
        }
        LabCmd::Namespace(NsCmd::Add { ns, labels, lab } | NsCmd::Label { ns, labels, lab }) => {
            let l = Lab::load_default(lab.as_deref())?;
            l.namespace_set(ns, &split_list(labels)).await?;
            println!("namespace {ns} labels set");
        }
        LabCmd::Pod(PodCmd::Del { name, lab }) => {
            Lab::load_default(lab.as_deref())?.pod_del(name).await?;
            println!("pod {name} deleted");
        }
        LabCmd::Exec { pod, lab, timeout, cmd } => {
            return exec_within(Lab::load_default(lab.as_deref())?.pod_exec(pod, cmd)?, *timeout);
        }
        LabCmd::Node(NodeCmd::Exec { node, lab, timeout, cmd }) => {
            return exec_within(Lab::load_default(lab.as_deref())?.node_exec(node, cmd)?, *timeout);
        }
        LabCmd::Node(NodeCmd::Stop { node, lab }) => {
            let mut l = Lab::load_default(lab.as_deref())?;
            l.stop_agent(node)?;
            eprintln!("==> the agent of {node} is stopped (its datapath keeps forwarding)");
        }
        LabCmd::Node(NodeCmd::Start { node, lab }) => {
            let mut l = Lab::load_default(lab.as_deref())?;
            l.start_agent(node).await?;
            eprintln!("==> the agent of {node} is running again");
        }
        LabCmd::Ext(ExtCmd::Exec { lab, timeout, cmd }) => {
            return exec_within(Lab::load_default(lab.as_deref())?.external_exec(cmd)?, *timeout);
        }
        LabCmd::Down { lab, all, tests } => {
            let removed = if *all || *tests {
                let scope = if *all { Scope::All } else { Scope::Tests };
                seta_lab::leftovers::remove(scope)?
            } else {
                let n = match lab {
                    Some(l) => l.clone(),
                    None => Lab::load_default(None).map(|l| l.name).unwrap_or_else(|_| "lab".into()),
                };
                vec![(n.clone(), Lab::down(&n)?)]
            };
            for (n, done) in &removed {
                for d in done {
                    eprintln!("  {d}");
                }
                eprintln!("==> {n}: {} objects removed", done.len());
            }
            if removed.is_empty() {
                eprintln!("==> nothing left behind");
            }
        }
    }
    Ok(0)
}

/// Run a lab command in the foreground; with a limit, kill it there (124).
fn exec_within(mut cmd: std::process::Command, timeout: u64) -> Result<i32> {
    if timeout == 0 {
        return Ok(cmd.status()?.code().unwrap_or(1));
    }
    match cmd.status_within(std::time::Duration::from_secs(timeout)) {
        Ok(st) => Ok(st.code().unwrap_or(1)),
        Err(e @ RunError::Killed { .. }) => {
            eprintln!("seta lab: {e}");
            Ok(124)
        }
        Err(e) => Err(e.into()),
    }
}

fn print_lab(l: &Lab, json: bool) -> Result<()> {
    if json {
        print_json(l)?;
        return Ok(());
    }
    let mut rows = vec![];
    for n in &l.nodes {
        let alive = n.agent_pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        rows.push(vec![
            n.name.clone(),
            "node".into(),
            "-".into(),
            seta_core::ipam::Pool::new(n.pod_cidr)
                .map(|p| p.router().to_string())
                .unwrap_or_default(),
            n.netns.clone(),
            format!(
                "agent {}",
                if alive {
                    format!("pid {}", n.agent_pid.unwrap())
                } else {
                    "down".into()
                }
            ),
        ]);
    }
    if let Some(u) = &l.underlay {
        let etcd = u.etcd_pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        rows.push(vec![
            format!("{}-ul", l.name),
            "underlay".into(),
            "-".into(),
            "172.30.0.254".into(),
            u.netns.clone(),
            match (&u.etcd, etcd) {
                (Some(url), true) => format!("etcd {url} pid {}", u.etcd_pid.unwrap()),
                (Some(url), false) => format!("etcd {url} down"),
                _ => "bridge br0".into(),
            },
        ]);
    }
    if let Some(kc) = &l.kubeconfig {
        rows.push(vec![
            format!("{}-k8s", l.name),
            "kubernetes".into(),
            "-".into(),
            "172.30.0.254:6443".into(),
            l.underlay.as_ref().map(|u| u.netns.clone()).unwrap_or_default(),
            format!("kubeconfig {}", kc.display()),
        ]);
    }
    for o in &l.operators {
        let alive = o.pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        rows.push(vec![
            o.id.clone(),
            "operator".into(),
            "-".into(),
            "-".into(),
            l.underlay.as_ref().map(|u| u.netns.clone()).unwrap_or_default(),
            if alive { format!("pid {}", o.pid.unwrap()) } else { "down".into() },
        ]);
    }
    if let Some(e) = &l.external {
        rows.push(vec![
            format!("{}-ext", l.name),
            "external".into(),
            "-".into(),
            e.ip.to_string(),
            e.netns.clone(),
            format!("via {}", e.gateway),
        ]);
    }
    for p in &l.pods {
        rows.push(vec![
            p.name.clone(),
            "pod".into(),
            p.node.clone(),
            p.ip.to_string(),
            p.netns.clone(),
            format!(
                "ns {}{}",
                p.namespace,
                if p.labels.is_empty() {
                    String::new()
                } else {
                    format!(" labels {}", p.labels.join(","))
                }
            ),
        ]);
    }
    table(&["NAME", "KIND", "NODE", "IPv4", "NETNS", "DETAILS"], rows);
    Ok(())
}
