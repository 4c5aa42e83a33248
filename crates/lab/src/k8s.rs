//! The lab's Kubernetes API: the fixture API server (`seta-k8s-api`, a test
//! fixture) in the underlay, a kubeconfig for it, and kubectl run where it
//! can reach it. Started and ended by pid like etcd.
use crate::wait::RunWithin;
use crate::*;

/// The API's port on the underlay gateway (plain HTTP).
const K8S_PORT: u16 = 6443;

pub(crate) fn k8s_dir(lab: &str) -> PathBuf {
    Path::new(LABS_DIR).join(format!("{lab}-k8s"))
}

/// The lab's API server, by its kubeconfig path.
pub(crate) fn k8s_pids(dir: &Path) -> Vec<u32> {
    let want = dir.join("kubeconfig").display().to_string();
    pids_where(|argv| argv.first().is_some_and(|a| a.ends_with(b"seta-k8s-api")) && argv.contains(&want.as_bytes()))
}

impl Lab {
    /// Start the API server in the underlay; returns once it answers.
    pub fn k8s_start(&mut self) -> Result<()> {
        let ul = self.underlay.clone().context("the Kubernetes API needs a lab with an underlay")?;
        let dir = k8s_dir(&self.name);
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        let mut cmd = Command::new(self.bin_dir.join("seta-k8s-api"));
        cmd.args(["--listen", &format!("{UNDERLAY_GW}:{K8S_PORT}")])
            .arg("--kubeconfig")
            .arg(&kubeconfig);
        let log = dir.with_extension("log");
        let pid = spawn_daemon(cmd, &ul.netns, &log).context("spawn seta-k8s-api (make build)")?;
        let d = wait::Deadline::new(
            format!("the lab's Kubernetes API on {UNDERLAY_GW}:{K8S_PORT}"),
            Duration::from_secs(15),
        )
        .hint(format!("log: {}", log.display()));
        wait::poll(&d, Duration::from_millis(50), || {
            if !agent_alive(pid) {
                return Ok(Err(format!("seta-k8s-api (pid {pid}) exited")));
            }
            let r = spawn_in_netns(&ul.netns, || {
                std::net::TcpStream::connect((UNDERLAY_GW, K8S_PORT))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("probe thread panicked".into()));
            match r {
                Ok(()) if kubeconfig.exists() => Ok(Ok(())),
                Ok(()) => Err("no kubeconfig yet".into()),
                Err(e) => Err(e),
            }
        })?
        .map_err(|e| anyhow!("{e}; see {}", log.display()))?;
        self.kubeconfig = Some(kubeconfig);
        self.save()
    }

    /// Cut node `node` off the lab's API (on) or reconnect it (off), as an
    /// API server outage looks to its agent: new connections are refused
    /// and open ones (the watches) are closed. kubectl in the underlay still
    /// reaches the API, so objects can change meanwhile.
    pub fn k8s_api_cut(&self, node: &str, on: bool) -> Result<()> {
        let ns = self.node(node)?.netns.clone();
        let table = "seta_lab_api_outage";
        let run = |argv: &[&str], stdin: &str| -> Result<()> {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            let out = self
                .exec_command(&ns, &argv)
                .output_with_input_within(stdin.as_bytes(), Duration::from_secs(10))
                .map_err(|e| anyhow!("{e}"))?;
            if !out.status.success() {
                bail!("{}: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr).trim());
            }
            Ok(())
        };
        if on {
            run(
                &["nft", "-f", "-"],
                &format!(
                    "table ip {table} {{\n chain out {{\n  type filter hook output priority 0;\n  ip daddr {UNDERLAY_GW} tcp dport {K8S_PORT} reject with tcp reset\n }}\n}}\n"
                ),
            )?;
            run(
                &["ss", "-K", "dst", &UNDERLAY_GW.to_string(), "dport", "=", &K8S_PORT.to_string()],
                "",
            )
        } else {
            run(&["nft", "delete", "table", "ip", table], "")
        }
    }

    /// `kubectl` that must succeed: its stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let (ok, out, err) = self.kubectl(args, stdin)?;
        if !ok {
            bail!("kubectl {}: {err}", args.join(" "));
        }
        Ok(out)
    }

    /// A namespace in the API, created when missing (its labels untouched).
    pub(crate) fn k8s_namespace_ensure(&self, ns: &str) -> Result<()> {
        let (ok, _, _) = self.kubectl(&["get", "namespace", ns, "-o", "name"], None)?;
        if !ok {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            self.kubectl_ok(&["apply", "-f", "-"], Some(&obj.to_string()))?;
        }
        Ok(())
    }

    /// The Node object of a lab node: its address, and the pod CIDR the
    /// lab chose (`spec.podCIDRs`, IPAM kubernetes) unless the operator
    /// allocates one (cluster-pool).
    pub(crate) fn k8s_node_apply(&self, node: &str, ip: Ipv4Addr, pod_cidr: Option<Ipv4Net>) -> Result<()> {
        let mut spec = serde_json::json!({});
        if let Some(c) = pod_cidr {
            spec = serde_json::json!({"podCIDR": c.to_string(), "podCIDRs": [c.to_string()]});
        }
        let obj = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux"}},
            "spec": spec,
        });
        self.kubectl_ok(&["apply", "-f", "-"], Some(&obj.to_string()))?;
        let st = serde_json::json!({"status": {
            "addresses": [{"type": "InternalIP", "address": ip.to_string()}, {"type": "Hostname", "address": node}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        }});
        self.kubectl_ok(
            &["patch", "node", node, "--subresource=status", "--type=merge", "-p", &st.to_string()],
            None,
        )?;
        Ok(())
    }

    /// A Pod object bound to `node` with `labels` (`k=v`) and named
    /// container ports (`name=port/PROTO`), created or updated.
    pub(crate) fn k8s_pod_apply(&self, pod: &str, node: &str, ns: &str, labels: &[String], ports: &[String]) -> Result<()> {
        let mut l = serde_json::Map::new();
        for x in labels {
            let (k, v) = x.split_once('=').ok_or_else(|| anyhow!("pod label {x:?} is not key=value"))?;
            let k = k.strip_prefix("k8s:").unwrap_or(k);
            l.insert(k.to_string(), v.into());
        }
        let mut cports = vec![];
        for p in ports {
            let (name, pp) = p.split_once('=').ok_or_else(|| anyhow!("port {p:?} is not name=port/PROTO"))?;
            let (port, proto) = pp.split_once('/').unwrap_or((pp, "TCP"));
            let port: u16 = port.parse().map_err(|_| anyhow!("port {p:?}: not a number"))?;
            cports.push(serde_json::json!({"name": name, "containerPort": port, "protocol": proto.to_ascii_uppercase()}));
        }
        let obj = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": ns, "labels": l},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "seta-lab/none", "ports": cports}]},
        });
        self.kubectl_ok(&["apply", "-f", "-"], Some(&obj.to_string()))?;
        Ok(())
    }

    /// `kubectl ARGS` against the lab's API (run in the underlay, with the
    /// lab's kubeconfig; `stdin` piped in): (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<(bool, String, String)> {
        let kc = self
            .kubeconfig
            .clone()
            .context("this lab runs no Kubernetes API (seta lab up --k8s)")?;
        let ul = self.underlay.clone().context("lab has no underlay")?;
        let mut argv = vec!["kubectl".to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut c = self.exec_command(&ul.netns, &argv);
        c.env("KUBECONFIG", kc).env("HOME", k8s_dir(&self.name));
        let out = c
            .output_with_input_within(stdin.unwrap_or("").as_bytes(), Duration::from_secs(60))
            .map_err(|e| anyhow!("{e}"))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
