//! Pods wired by invoking seta-cni as a runtime does, namespaces, exec.
use crate::wait::RunWithin;
use crate::*;

/// A CNI plugin that runs longer than this is killed (a runtime gives up too).
const CNI_TIMEOUT: Duration = Duration::from_secs(60);

impl Lab {
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
            .env("CNI_PATH", format!("{}:/usr/lib/cni", self.bin_dir.display()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        in_netns(&mut cmd, &netns_path(&n.netns))?;
        let out = cmd.output_with_input_within(stdin.to_string().as_bytes(), CNI_TIMEOUT)?;
        if !out.stderr.is_empty() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
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
        if self.pods.iter().any(|p| p.name == pod && p.namespace == namespace) {
            bail!("pod {namespace}/{pod} already exists in lab {}", self.name);
        }
        let node = self.node(node)?.name.clone();
        // under Kubernetes the Pod object is all: the lab's kubelet wires it
        // (the agent takes the endpoint's labels from it)
        if self.kubeconfig.is_some() {
            self.k8s_namespace_ensure(namespace)?;
            self.k8s_pod_apply(pod, &node, namespace, labels, ports)?;
            return match self.kubelet_wait_wired(namespace, pod, CNI_TIMEOUT) {
                Ok(p) => Ok(p),
                Err(e) => {
                    let _ = self.kubectl(&["delete", "pod", pod, "-n", namespace, "--wait=false"], None);
                    let _ = self.kubelet_wait_gone(namespace, pod, CNI_TIMEOUT);
                    Err(e)
                }
            };
        }
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
        if self.kubeconfig.is_some() {
            // the kubelet runs CNI DEL once the Pod is gone
            self.kubectl_ok(&["delete", "pod", &p.name, "-n", &p.namespace, "--wait=false"], None)?;
            return self.kubelet_wait_gone(&p.namespace, &p.name, CNI_TIMEOUT);
        }
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
        self.pods.retain(|x| !(x.name == p.name && x.namespace == p.namespace));
        self.save()
    }

    fn client(&self, node: &str) -> Result<Client> {
        Ok(Client::new(&self.node(node)?.socket))
    }

    /// Replace a pod's labels (its endpoint moves to a new identity).
    pub async fn pod_label(&mut self, pod: &str, labels: &[String]) -> Result<()> {
        let p = self.pod(pod)?.clone();
        if self.kubeconfig.is_some() {
            // through the API: the agent follows the Pod
            self.k8s_pod_apply(&p.name, &p.node, &p.namespace, labels, &p.ports)?;
            if let Some(x) = self.pods.iter_mut().find(|x| x.name == p.name && x.namespace == p.namespace) {
                x.labels = labels.to_vec();
            }
            return Ok(());
        }
        self.client(&p.node)?
            .endpoint_labels(
                &seta_core::endpoint::EndpointRef::ContainerId(p.container_id.clone()),
                labels.to_vec(),
            )
            .await?;
        if let Some(x) = self.pods.iter_mut().find(|x| x.name == p.name && x.namespace == p.namespace) {
            x.labels = labels.to_vec();
        }
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
        if self.kubeconfig.is_some() {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": m}});
            self.kubectl_ok(&["apply", "-f", "-"], Some(&obj.to_string()))?;
            return Ok(());
        }
        for n in &self.nodes {
            Client::new(&n.socket).namespace_put(ns, m.clone()).await?;
        }
        Ok(())
    }

    /// A command that runs `argv` inside a pod (or node) namespace. With
    /// socket-LB, a node's or pod's process runs in the node's cgroup.
    pub fn exec_command(&self, netns: &str, argv: &[String]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", netns]).args(argv);
        if self.socket_lb {
            let node = self
                .nodes
                .iter()
                .find(|n| n.netns == netns)
                .map(|n| n.name.clone())
                .or_else(|| self.pods.iter().find(|p| p.netns == netns).map(|p| p.node.clone()));
            if let Some(node) = node {
                let joined = crate::cgroups::node_cgroup(&node).and_then(|d| crate::cgroups::spawn_in(&mut c, &d));
                if let Err(e) = joined {
                    // the command fails rather than run outside the node's cgroup
                    c = Command::new("false");
                    eprintln!("seta lab: {netns}: {e:#}");
                }
            }
        }
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
