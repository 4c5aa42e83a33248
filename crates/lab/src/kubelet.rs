//! The lab as the kubelet of its Kubernetes API (`seta lab up --k8s`): a
//! daemon (`seta lab kubelet`, in the underlay) watches Pods. A Pod bound
//! to a lab node (`spec.nodeName`), or unbound (the daemon binds it to the
//! node with the fewest pods), gets a network namespace wired by seta-cni
//! with the `K8S_POD_*` CNI_ARGS and the Pod's hostPorts as
//! `runtimeConfig.portMappings`; its `status` (phase, podIP, Ready) is
//! written back. A deleted Pod gets CNI DEL and its namespace removed.
//!
//! The daemon alone writes the pods it wired to `<lab>-k8s/pods.json`;
//! `Lab::load` reads them from there, so the CLI and the daemon never write
//! the same file.
use crate::k8s::k8s_dir;
use crate::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};

/// What the kubelet wired, and the Pods it could not wire (`ns/name` → why).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Wired {
    pub pods: Vec<PodState>,
    #[serde(default)]
    pub failed: BTreeMap<String, String>,
}

pub(crate) fn wired_path(lab: &str) -> PathBuf {
    k8s_dir(lab).join("pods.json")
}

pub(crate) fn read_wired(lab: &str) -> Option<Wired> {
    serde_json::from_slice(&std::fs::read(wired_path(lab)).ok()?).ok()
}

fn write_wired(lab: &str, w: &Wired) -> Result<()> {
    let p = wired_path(lab);
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(w)?)?;
    std::fs::rename(&tmp, &p)?;
    Ok(())
}

/// The lab's kubelet daemon, by the k8s directory of its lab.
pub(crate) fn kubelet_pids(dir: &Path) -> Vec<u32> {
    let Some(lab) = dir.file_name().and_then(|f| f.to_str()).and_then(|f| f.strip_suffix("-k8s")) else {
        return vec![];
    };
    let lab = lab.as_bytes().to_vec();
    pids_where(|argv| {
        argv.first().is_some_and(|a| a.ends_with(b"/seta") || *a == b"seta")
            && argv.windows(2).any(|w| w == [&b"lab"[..], &b"kubelet"[..]])
            && argv.windows(2).any(|w| w[0] == b"--lab" && w[1] == lab.as_slice())
    })
}

impl Lab {
    /// Start the kubelet daemon in the underlay (it watches the lab's API).
    pub(crate) fn kubelet_start(&self) -> Result<u32> {
        let ul = self.underlay.clone().context("the kubelet needs a lab with an underlay")?;
        let dir = k8s_dir(&self.name);
        std::fs::create_dir_all(&dir)?;
        if read_wired(&self.name).is_none() {
            write_wired(&self.name, &Wired::default())?;
        }
        let mut cmd = Command::new(self.bin_dir.join("seta"));
        cmd.args(["lab", "kubelet", "--lab", &self.name]);
        let log = dir.join("kubelet.log");
        spawn_daemon(cmd, &ul.netns, &log).context("spawn the lab's kubelet (seta lab kubelet; make build)")
    }

    /// Under Kubernetes: wait until the kubelet wired the Pod `ns/name`
    /// (its PodState) or gave up on it (the reason).
    pub(crate) fn kubelet_wait_wired(&mut self, ns: &str, name: &str, limit: Duration) -> Result<PodState> {
        let key = format!("{ns}/{name}");
        let d = wait::Deadline::new(format!("the lab's kubelet wiring pod {key}"), limit)
            .hint(format!("log: {}", k8s_dir(&self.name).join("kubelet.log").display()));
        let r = wait::poll(&d, Duration::from_millis(20), || {
            let w = read_wired(&self.name).unwrap_or_default();
            if let Some(p) = w.pods.iter().find(|p| p.namespace == ns && p.name == name) {
                return Ok(Ok(p.clone()));
            }
            match w.failed.get(&key) {
                Some(why) => Ok(Err(why.clone())),
                None => Err("not wired yet".to_string()),
            }
        })?;
        self.pods = read_wired(&self.name).unwrap_or_default().pods;
        r.map_err(|why| anyhow!("pod {key}: {why}"))
    }

    /// Under Kubernetes: wait until the kubelet unwired the Pod.
    pub(crate) fn kubelet_wait_gone(&mut self, ns: &str, name: &str, limit: Duration) -> Result<()> {
        let d = wait::Deadline::new(format!("the lab's kubelet removing pod {ns}/{name}"), limit)
            .hint(format!("log: {}", k8s_dir(&self.name).join("kubelet.log").display()));
        wait::poll(&d, Duration::from_millis(20), || {
            let w = read_wired(&self.name).unwrap_or_default();
            match w.pods.iter().any(|p| p.namespace == ns && p.name == name) {
                true => Err("still wired".to_string()),
                false => Ok(()),
            }
        })?;
        self.pods = read_wired(&self.name).unwrap_or_default().pods;
        Ok(())
    }
}

/// The daemon: runs until killed.
pub async fn kubelet(lab_name: &str) -> Result<()> {
    let lab = Lab::load(lab_name)?;
    let kc = lab
        .kubeconfig
        .clone()
        .context("this lab runs no Kubernetes API (seta lab up --k8s)")?;
    let cfg = kube::config::Kubeconfig::read_from(&kc).map_err(|e| anyhow!("{}: {e}", kc.display()))?;
    let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(cfg, &Default::default()).await?)?;
    let mut k = Kubelet {
        lab: Arc::new(lab),
        client: client.clone(),
        wired: read_wired(lab_name).unwrap_or_default(),
        pending: BTreeMap::new(),
    };
    eprintln!("kubelet of lab {lab_name}: watching Pods");
    let mut s = watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Vec<Pod> = vec![];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ev = s.next() => match ev {
                None => bail!("the Pod watch ended"),
                Some(Err(e)) => eprintln!("kubelet: Pod watch: {e}; retrying"),
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitApply(p))) => listed.push(p),
                Some(Ok(watcher::Event::InitDone)) => {
                    let keys: std::collections::BTreeSet<(String, String)> = listed.iter().map(key).collect();
                    let gone: Vec<(String, String)> = k
                        .wired
                        .pods
                        .iter()
                        .map(|p| (p.namespace.clone(), p.name.clone()))
                        .filter(|x| !keys.contains(x))
                        .collect();
                    for g in gone {
                        k.unwire(&g).await;
                    }
                    for p in std::mem::take(&mut listed) {
                        k.pod(p).await;
                    }
                }
                Some(Ok(watcher::Event::Apply(p))) => k.pod(p).await,
                Some(Ok(watcher::Event::Delete(p))) => k.unwire(&key(&p)).await,
            },
            _ = tick.tick() => {
                // Pods whose wiring failed are retried with backoff, as a
                // kubelet retries a sandbox
                let now = Instant::now();
                let due: Vec<(String, String)> = k.pending.iter().filter(|(_, r)| r.at <= now).map(|(x, _)| x.clone()).collect();
                for x in due {
                    if let Some(r) = k.pending.get(&x) {
                        k.pod(r.pod.clone()).await;
                    }
                }
            }
        }
    }
}

fn key(p: &Pod) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

struct Kubelet {
    lab: Arc<Lab>,
    client: kube::Client,
    wired: Wired,
    /// Pods to wire again (the last attempt failed)
    pending: BTreeMap<(String, String), Retry>,
}

struct Retry {
    pod: Pod,
    at: Instant,
    delay: Duration,
}

impl Kubelet {
    fn save(&self) {
        if let Err(e) = write_wired(&self.lab.name, &self.wired) {
            eprintln!("kubelet: writing {}: {e}", wired_path(&self.lab.name).display());
        }
    }

    /// A Pod was listed or changed.
    async fn pod(&mut self, p: Pod) {
        let (ns, name) = key(&p);
        if p.metadata.deletion_timestamp.is_some() {
            return self.unwire(&(ns, name)).await;
        }
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        if node.is_empty() {
            return self.bind(&ns, &name).await;
        }
        if self.lab.node(&node).is_err() {
            return; // another kubelet's
        }
        if let Some(r) = self.pending.get_mut(&(ns.clone(), name.clone())) {
            r.pod = p.clone(); // the newest version is the one retried
        }
        let labels = pod_labels(&p);
        if let Some(w) = self.wired.pods.iter_mut().find(|w| w.namespace == ns && w.name == name) {
            if w.labels != labels {
                w.labels = labels;
                self.save();
            }
            return;
        }
        let lab = self.lab.clone();
        let pod = p.clone();
        let node2 = node.clone();
        let r = tokio::task::spawn_blocking(move || wire(&lab, &pod, &node2))
            .await
            .unwrap_or_else(|e| Err(anyhow!("wiring panicked: {e}")));
        let fkey = format!("{ns}/{name}");
        match r {
            Ok(st) => {
                self.pending.remove(&(ns.clone(), name.clone()));
                let ip = st.ip;
                self.wired.failed.remove(&fkey);
                self.wired.pods.push(st);
                self.save();
                let host_ip = self.lab.nodes.iter().position(|n| n.name == node).map(|i| node_ip(i + 1));
                if let Err(e) = self.write_status(&ns, &name, ip, host_ip).await {
                    eprintln!("kubelet: status of pod {fkey}: {e}");
                }
                eprintln!("kubelet: pod {fkey} on {node}: {ip}");
            }
            Err(e) => {
                let msg = format!("{e:#}");
                eprintln!("kubelet: pod {fkey} on {node}: {msg}; retrying");
                if self.wired.failed.get(&fkey) != Some(&msg) {
                    self.event(&ns, &name, "FailedCreatePodSandBox", &msg).await;
                    self.wired.failed.insert(fkey, msg);
                    self.save();
                }
                let delay = match self.pending.get(&(ns.clone(), name.clone())) {
                    Some(r) => (r.delay * 2).min(Duration::from_secs(30)),
                    None => Duration::from_secs(1),
                };
                let at = Instant::now() + delay;
                self.pending.insert((ns, name), Retry { pod: p, at, delay });
            }
        }
    }

    /// An unbound Pod goes to the lab node with the fewest pods.
    async fn bind(&mut self, ns: &str, name: &str) {
        let Some(node) = self
            .lab
            .nodes
            .iter()
            .min_by_key(|n| self.wired.pods.iter().filter(|p| p.node == n.name).count())
            .map(|n| n.name.clone())
        else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({"spec": {"nodeName": node}});
        if let Err(e) = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            eprintln!("kubelet: binding pod {ns}/{name} to {node}: {e}");
        }
    }

    /// A Pod went: CNI DEL and its namespace removed.
    async fn unwire(&mut self, k: &(String, String)) {
        self.pending.remove(k);
        let fkey = format!("{}/{}", k.0, k.1);
        let had_failure = self.wired.failed.remove(&fkey).is_some();
        let Some(i) = self.wired.pods.iter().position(|p| p.namespace == k.0 && p.name == k.1) else {
            if had_failure {
                self.save();
            }
            return;
        };
        let st = self.wired.pods[i].clone();
        let lab = self.lab.clone();
        let r = tokio::task::spawn_blocking(move || unwire(&lab, &st))
            .await
            .unwrap_or_else(|e| Err(anyhow!("unwiring panicked: {e}")));
        if let Err(e) = r {
            // the namespace is gone either way; the agent's own GC covers the rest
            eprintln!("kubelet: pod {fkey}: {e:#}");
        }
        self.wired.pods.remove(i);
        self.save();
        eprintln!("kubelet: pod {fkey} removed");
    }

    async fn write_status(&self, ns: &str, name: &str, ip: Ipv4Addr, host_ip: Option<Ipv4Addr>) -> kube::Result<()> {
        let now = seta_core::time::rfc3339(seta_core::time::unix_now());
        let cond = |t: &str| serde_json::json!({"type": t, "status": "True", "lastTransitionTime": now});
        let st = serde_json::json!({"status": {
            "phase": "Running",
            "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
            "hostIP": host_ip.map(|h| h.to_string()),
            "startTime": now,
            "conditions": [cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")],
        }});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&st))
            .await
            .map(|_| ())
    }

    /// A Warning Event about the Pod, as a kubelet records one.
    async fn event(&self, ns: &str, name: &str, reason: &str, msg: &str) {
        let now = seta_core::time::rfc3339(seta_core::time::unix_now());
        let ev = serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{name}."), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns},
            "reason": reason, "message": msg, "type": "Warning",
            "source": {"component": "kubelet"},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            ns,
            &kube::api::ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("", "v1", "Event"), "events"),
        );
        let r = match serde_json::from_value(ev) {
            Ok(o) => api.create(&PostParams::default(), &o).await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = r {
            eprintln!("kubelet: Event for {ns}/{name}: {e}");
        }
    }
}

/// `k=v` labels of the Pod.
fn pod_labels(p: &Pod) -> Vec<String> {
    p.metadata.labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The Pod's named container ports (`name=port/PROTO`) and hostPorts (as
/// CNI `portMappings`).
fn pod_ports(p: &Pod) -> (Vec<String>, Vec<serde_json::Value>) {
    let (mut named, mut host) = (vec![], vec![]);
    for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
        for port in c.ports.iter().flatten() {
            let proto = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            if let Some(n) = &port.name {
                named.push(format!("{n}={}/{proto}", port.container_port));
            }
            if let Some(hp) = port.host_port {
                host.push(serde_json::json!({
                    "hostPort": hp, "containerPort": port.container_port,
                    "protocol": proto.to_ascii_lowercase(), "hostIP": port.host_ip.clone().unwrap_or_default(),
                }));
            }
        }
    }
    (named, host)
}

/// The Pod's network namespace name: `<lab>-<pod>` in `default`,
/// `<lab>-<pod>.<ns>` elsewhere.
fn pod_netns(lab: &str, ns: &str, name: &str) -> String {
    match ns {
        "default" => format!("{lab}-{name}"),
        ns => format!("{lab}-{name}.{ns}"),
    }
}

fn cni_env(cmd: &str, st: &PodState) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", cmd.to_string()),
        ("CNI_CONTAINERID", st.container_id.clone()),
        ("CNI_NETNS", netns_path(&st.netns).display().to_string()),
        ("CNI_IFNAME", st.ifname.clone()),
        (
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAME={};K8S_POD_NAMESPACE={};K8S_POD_INFRA_CONTAINER_ID={}",
                st.name, st.namespace, st.container_id
            ),
        ),
    ]
}

/// Create the Pod's namespace and CNI ADD it on `node`; nothing is left
/// behind when that fails.
fn wire(lab: &Lab, p: &Pod, node: &str) -> Result<PodState> {
    let (ns, name) = key(p);
    let netns = pod_netns(&lab.name, &ns, &name);
    if netns_path(&netns).exists() || crate::topology::is_node_name(&lab.name, &netns) {
        bail!("network namespace {netns} is taken (another pod's or a node's)");
    }
    let (ports, host_ports) = pod_ports(p);
    let mut st = PodState {
        name: name.clone(),
        node: node.to_string(),
        netns: netns.clone(),
        container_id: netns.clone(),
        ifname: "eth0".into(),
        ip: Ipv4Addr::UNSPECIFIED,
        namespace: ns.clone(),
        labels: pod_labels(p),
        ports,
    };
    let mut conf = lab.cni_conf(node, 0)?;
    if !host_ports.is_empty() {
        conf["runtimeConfig"] = serde_json::json!({"portMappings": host_ports});
    }
    run_ip(&["netns", "add", &netns])?;
    let r = lab.invoke_cni(node, &cni_env("ADD", &st), &conf);
    let result = match r {
        Ok((true, result)) => result,
        Ok((false, result)) => {
            let _ = run_ip(&["netns", "del", &netns]);
            bail!("CNI ADD failed: {}", result["msg"].as_str().unwrap_or(&result.to_string()));
        }
        Err(e) => {
            let _ = run_ip(&["netns", "del", &netns]);
            return Err(e.context("CNI ADD"));
        }
    };
    st.ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("CNI result without an IPv4 address: {result}"))?;
    Ok(st)
}

fn unwire(lab: &Lab, st: &PodState) -> Result<()> {
    let conf = lab.cni_conf(&st.node, 0)?;
    let r = lab.invoke_cni(&st.node, &cni_env("DEL", st), &conf);
    let mut done = vec![];
    crate::leftovers::remove_netns(&st.netns, &mut done);
    match r? {
        (true, _) => Ok(()),
        (false, result) => bail!("CNI DEL failed: {result}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ports_and_host_ports_come_from_the_pod_spec() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"containerPort": 53, "protocol": "UDP", "hostPort": 5353, "hostIP": "172.30.0.1"},
            ]}]},
        }))
        .unwrap();
        let (named, host) = pod_ports(&p);
        assert_eq!(named, vec!["http=8080/TCP"]);
        assert_eq!(
            host,
            vec![serde_json::json!({"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "172.30.0.1"})]
        );
        assert_eq!(pod_labels(&p), vec!["app=web"]);
        assert_eq!(pod_netns("lab", "default", "web"), "lab-web");
        assert_eq!(pod_netns("lab", "team-a", "web"), "lab-web.team-a");
    }
}
