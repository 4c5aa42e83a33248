//! Socket-LB (`--bpf-lb-sock`): the lab runs each node's pod processes in
//! the node's cgroup, where the agent's connect4/sendmsg4/recvmsg4/
//! getpeername4 programs translate a ClusterIP once per socket. The lab
//! gives the agents only `--cgroup-root`: socket-LB is on by the agent's
//! default (with the kube-proxy replacement, as Cilium's).
use super::*;

/// A python3 client run by the lab in a pod (so in its node's cgroup):
/// TCP connect + getpeername + what the server says, an unconnected UDP
/// datagram and where its reply comes from, a connected UDP socket's peer.
const CLIENT: &str = r#"
import socket, sys
vip = sys.argv[1]
s = socket.create_connection((vip, 80), timeout=3)
print("tcp", "%s:%d" % s.getpeername(), s.recv(100).decode())
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
u.sendto(b"hi", (vip, 53)); d, a = u.recvfrom(100)
print("udp", "%s:%d" % a, d.decode())
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(3)
c.connect((vip, 53)); c.send(b"x")
print("cudp", "%s:%d" % c.getpeername(), c.recv(100).decode())
"#;

/// The pod serves itself through its own service: who does it see?
const SELF: &str = r#"
import socket, sys
l = socket.socket(); l.bind(("0.0.0.0", 9093)); l.listen(1)
c = socket.create_connection((sys.argv[1], 93), timeout=3)
a, peer = l.accept()
print(peer[0])
"#;

/// A connected UDP client that waits, between two requests, until the
/// file argv[2] exists (it writes argv[2].ready when it waits); beside it a
/// UDP socket connected to the backend's own address argv[3] (not through
/// the service), used before and after the wait.
const UDP_WAITS: &str = r#"
import socket, sys, os, time
vip, flag, backend = sys.argv[1], sys.argv[2], sys.argv[3]
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(3)
c.connect((vip, 53)); c.send(b"x"); print("first", c.recv(100).decode(), flush=True)
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d.settimeout(3)
d.connect((backend, 5353)); d.send(b"d"); d.recv(100)
open(flag + ".ready", "w").close()
while not os.path.exists(flag): time.sleep(0.05)
try:
    d.send(b"e"); print("direct", d.recv(100).decode())
except OSError as e:
    print("direct closed", e.errno)
try:
    c.send(b"y"); print("again", c.recv(100).decode())
except OSError as e:
    print("closed", e.errno)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(3)
    c.connect((vip, 53)); c.send(b"z"); print("reconnected", c.recv(100).decode())
"#;

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: sl, namespace: default}\nspec:\n  clusterIP: 10.96.0.50\n  ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, targetPort: 5353, protocol: UDP}, {name: self, port: 93, targetPort: 9093}]\n";

fn slice(backend: std::net::Ipv4Addr) -> String {
    format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: sl-a, namespace: default, labels: {{kubernetes.io/service-name: sl}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}, {{name: dns, port: 5353, protocol: UDP}}, {{name: self, port: 9093}}]\nendpoints:\n- {{addresses: [{backend}], conditions: {{ready: true}}}}\n")
}

/// The only backend is replaced while a client holds a connected UDP
/// socket to it (through socket-LB): the socket is closed, not left
/// sending to the old backend, and a new one reaches the new backend. A
/// socket connected to the old backend's own address is not socket-LB's
/// and stays (Cilium closes only what its sock rev-NAT map holds).
fn udp_client_survives_backend_replacement(p: &P) {
    let text = udp_client_across_backend_replacement(p);
    assert!(text.contains("first ok"), "{text}");
    assert!(text.contains("direct ok"), "the socket to the backend's own address stays: {text}");
    // a closed UDP socket is disconnected: the next send fails (EDESTADDRREQ;
    // a receive would see ECONNABORTED), it never reaches the old backend
    assert!(
        text.contains("closed 89") || text.contains("closed 103"),
        "the socket to the removed backend is closed: {text}"
    );
    assert!(!text.contains("again"), "{text}");
    assert!(text.contains("reconnected ok"), "{text}");
    let rev = sock_list(p, "client")["reverse"].clone();
    let web_left = rev
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["backend"] == format!("{}:5353", p.ip("web")));
    assert!(!web_left, "no reverse entry points at the removed backend: {rev}");
    assert!(
        rev.as_array()
            .unwrap()
            .iter()
            .any(|r| r["backend"] == format!("{}:5353", p.ip("other"))),
        "{rev}"
    );
    // back to web for the rest
    services_import(p, &format!("{SERVICE}---\n{}", slice(p.ip("web"))));
}

/// UDP_WAITS in the client pod, to the service's port 53 with web its only
/// backend, while web is replaced by other: what the client printed.
fn udp_client_across_backend_replacement(p: &P) -> String {
    let flag = std::env::temp_dir().join(format!("{}-udpflag", p.lab().name));
    let ready = flag.with_extension("ready");
    let _ = std::fs::remove_file(&flag);
    let _ = std::fs::remove_file(&ready);
    let web = p.ip("web").to_string();
    let argv: Vec<String> = ["python3", "-c", UDP_WAITS, "10.96.0.50", flag.to_str().unwrap(), &web]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut child = p
        .lab()
        .pod_exec("client", &argv)
        .unwrap()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let d = seta_lab::wait::Deadline::new("the UDP client's first answer", std::time::Duration::from_secs(20));
    while !ready.exists() {
        assert!(!d.expired(), "the UDP client never got its first answer");
        assert!(child.try_wait().unwrap().is_none(), "the UDP client exited early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    services_import(p, &format!("{SERVICE}---\n{}", slice(p.ip("other"))));
    std::fs::write(&flag, "").unwrap();
    let d = seta_lab::wait::Deadline::new("the UDP client to finish", std::time::Duration::from_secs(20));
    while child.try_wait().unwrap().is_none() {
        if d.expired() {
            let _ = child.kill();
            panic!("the UDP client did not finish");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(&flag);
    let _ = std::fs::remove_file(&ready);
    text
}

/// `--bpf-lb-sock-terminate-pod-connections=false` (Cilium's flag, on by
/// default): a pod's UDP socket that socket-LB sent to a backend that went
/// is left connected, so it keeps talking to that pod while it lives.
async fn privileged_policy_service_socket_lb_pod_sockets_kept(p: P) {
    let _u = Responder::start(&p.ns("web"), p.web_addr(5353));
    services_import(&p, &format!("{SERVICE}---\n{}", slice(p.ip("web"))));
    let text = udp_client_across_backend_replacement(&p);
    assert!(text.contains("first ok") && text.contains("direct ok"), "{text}");
    assert!(text.contains("again ok"), "the pod's socket is not closed: {text}");
    assert!(!text.contains("closed"), "{text}");
}

mod privileged_policy_service_socket_lb_pod_sockets_kept {
    use super::*;
    fn o() -> LabOptions {
        LabOptions {
            agent_args: vec!["--bpf-lb-sock-terminate-pod-connections=false".into()],
            ..socket_lb_opts()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_socket_lb_pod_sockets_kept::one") {
            return;
        }
        super::privileged_policy_service_socket_lb_pod_sockets_kept(P::with_opts("skone", Topo::One, o()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_socket_lb_pod_sockets_kept::tunnel") {
            return;
        }
        super::privileged_policy_service_socket_lb_pod_sockets_kept(P::with_opts("sktun", Topo::Tunnel, o()).await).await;
    }
}

/// A lab whose agents run socket-LB.
fn socket_lb_opts() -> LabOptions {
    LabOptions {
        socket_lb: true,
        ..Default::default()
    }
}

fn py(p: &P, pod: &str, script: &str, args: &[&str]) -> (bool, String) {
    python(p.lab().pod_exec(pod, &python_argv(script, args)).unwrap())
}

/// `py` in node `node`'s own namespace (and cgroup).
fn node_py(p: &P, node: &str, script: &str, args: &[&str]) -> (bool, String) {
    python(p.lab().node_exec(node, &python_argv(script, args)).unwrap())
}

fn python_argv(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["python3".to_string(), "-c".to_string(), script.to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// Whether it succeeded, and its stdout then stderr.
fn python(mut cmd: std::process::Command) -> (bool, String) {
    let out = cmd.output_within(std::time::Duration::from_secs(20)).unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn sock_list(p: &P, pod: &str) -> serde_json::Value {
    p.seta_at(pod, &["bpf", "sock", "list"])
}

async fn privileged_policy_service_socket_lb(mut p: P) {
    let web = p.ip("web");
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let _u = Responder::start(&p.ns("web"), p.web_addr(5353));
    let _o = Responder::start(&p.ns("other"), SocketAddr::new(p.ip("other").into(), 5353));
    services_import(&p, &format!("{SERVICE}---\n{}", slice(web)));
    let status = p.seta_at("client", &["status"]);
    assert!(
        status["kube-proxy-replacement"]["socket-lb"]
            .as_str()
            .unwrap()
            .starts_with("Enabled (cgroup "),
        "{status}"
    );
    // the node's namespace and each of its pods' are served, nothing else
    let l = sock_list(&p, "client");
    let kinds: Vec<&str> = l["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    let pods_here = p.lab().pods_on(&p.node_of("client")).len();
    assert_eq!(kinds.iter().filter(|k| **k == "host").count(), 1, "{l}");
    assert_eq!(kinds.iter().filter(|k| **k == "pod").count(), pods_here, "{l}");

    // TCP, UDP and connected UDP: the sockets see the frontend, the
    // translation happened at the socket (a reverse entry per socket)
    let (ok, out) = py(&p, "client", CLIENT, &["10.96.0.50"]);
    assert!(ok, "{out}");
    assert!(out.contains("tcp 10.96.0.50:80 ok"), "getpeername shows the ClusterIP: {out}");
    assert!(out.contains("udp 10.96.0.50:53 ok"), "the reply comes from the ClusterIP: {out}");
    assert!(out.contains("cudp 10.96.0.50:53 ok"), "{out}");
    let rev = sock_list(&p, "client")["reverse"].clone();
    let to = |backend: String, frontend: &str| {
        rev.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["backend"] == backend && r["frontend"] == frontend)
            .count()
    };
    assert!(to(format!("{web}:8080"), "10.96.0.50:80") >= 1, "{rev}");
    assert!(to(format!("{web}:5353"), "10.96.0.50:53") >= 2, "{rev}");
    // the service is an agent event (SERVICE_UPSERTED) with its backend
    common::wait_for("the service as an agent event", 10, || {
        let agent = super::observe(&p, &p.node_of("client"), &["--type", "agent", "--all"]);
        agent.lines().any(|l| {
            l.contains(": SERVICE_UPSERTED (id: ")
                && l.contains("frontend: 10.96.0.50:80, backends: [")
                && l.contains(&format!("{web}:8080"))
        })
    });
    // each translation is traced (trace-sock), as Hubble shows socket-LB:
    // the frontend by its service's name, the reverse points the other way
    // round (what the socket hears from)
    let node = p.node_of("client");
    let mut t = String::new();
    let want = [
        "default/client (ID:",
        "<> default/sl:80 (world) pre-xlate-fwd TRACED (TCP)",
        "post-xlate-fwd TRANSLATED (TCP)",
        "<> default/sl:53 (world) pre-xlate-fwd TRACED (UDP)",
        "pre-xlate-rev TRACED (UDP)",
        ": default/sl:53 (world) <> default/client (ID:",
        "post-xlate-rev TRANSLATED (UDP)",
    ];
    common::wait_for("socket-LB's translations as trace-sock flows", 10, || {
        t = super::observe(&p, &node, &["--type", "trace-sock", "--pod", "default/client", "--last", "50"]);
        want.iter().all(|w| t.contains(w))
    });
    // Hubble's service filters and fields
    let to = super::observe(&p, &node, &["--to-service", "default/sl", "-o", "json", "--last", "50"]);
    assert!(!to.trim().is_empty(), "flows to the service");
    for l in to.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(
            v["flow"]["destination_service"],
            serde_json::json!({"name": "sl", "namespace": "default"}),
            "{v}"
        );
    }
    let from = super::observe(&p, &node, &["--from-service", "default/sl", "--last", "50"]);
    assert!(from.contains("default/sl:53 (world) <> default/client (ID:"), "{from}");
    assert!(!from.contains("pre-xlate-fwd"), "{from}");
    assert!(super::observe(&p, &node, &["--to-service", "other/sl", "--last", "50"])
        .trim()
        .is_empty());
    // the backend after the translation: web, by name where it is local
    let backend = t.lines().find(|l| l.contains("post-xlate-fwd TRANSLATED (TCP)")).unwrap();
    assert!(
        backend.contains("<> default/web:8080 (ID:") || backend.contains(&format!("<> {web}:8080 (")),
        "{backend}"
    );
    let json = super::observe(&p, &node, &["--type", "trace-sock", "-o", "json", "--last", "1"]);
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(v["flow"]["Type"], "SOCK", "{v}");
    assert!(v["flow"]["socket_cookie"].as_str().is_some_and(|c| c != "0"), "{v}");
    assert!(v["flow"]["cgroup_id"].as_str().is_some_and(|c| c != "0"), "{v}");
    // a process outside the node's cgroup (this test's own thread) goes
    // through per-packet LB: it works, and socket-LB never sees it
    let before = rev.as_array().unwrap().len();
    assert!(tcp_ok(&p.ns("client"), "10.96.0.50:80".parse().unwrap()));
    assert_eq!(sock_list(&p, "client")["reverse"].as_array().unwrap().len(), before);

    // a pod reaching itself through its service: a local connection at the
    // socket, so it sees its own address (no hairpin SNAT)
    let (ok, out) = py(&p, "web", SELF, &["10.96.0.50"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), web.to_string());

    // a namespace that is neither the node's nor a pod's, in the node's
    // cgroup (the external host's): socket-LB leaves its socket alone
    let ext = p.lab().external.clone().unwrap();
    let mut cmd = std::process::Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &ext.netns,
        "python3",
        "-c",
        "import socket; socket.socket().connect(('10.96.0.50', 80))",
    ]);
    seta_lab::cgroups::spawn_in(&mut cmd, &seta_lab::cgroups::node_cgroup(&p.node_of("client")).unwrap()).unwrap();
    let n = sock_list(&p, "client")["reverse"].as_array().unwrap().len();
    let _ = cmd.output_within(std::time::Duration::from_secs(20)).unwrap();
    assert_eq!(sock_list(&p, "client")["reverse"].as_array().unwrap().len(), n, "not translated");

    udp_client_survives_backend_replacement(&p);

    // a deleted pod's namespace leaves the map
    p.t.lab.pod_del("other").await.unwrap();
    let kinds = sock_list(&p, "web")["namespaces"].as_array().unwrap().len();
    assert_eq!(kinds, 1 + p.lab().pods_on(&p.node_of("web")).len());
}

mod privileged_policy_service_socket_lb {
    use super::socket_lb_opts as opts;
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_socket_lb::one") {
            return;
        }
        super::privileged_policy_service_socket_lb(P::with_opts("slone", Topo::One, opts()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_socket_lb::tunnel") {
            return;
        }
        super::privileged_policy_service_socket_lb(P::with_opts("sltunnel", Topo::Tunnel, opts()).await).await;
    }
}

/// `--bpf-lb-sock-hostns-only` (Cilium's socketLB.hostNamespaceOnly):
/// socket-LB serves the node's own namespace only; pods' sockets go through
/// per-packet LB (still answered from the ClusterIP, but no translation at
/// the socket), while a process of the node is translated at connect.
async fn privileged_policy_service_socket_lb_hostns_only(p: P) {
    let web = p.ip("web");
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let _u = Responder::start(&p.ns("web"), p.web_addr(5353));
    services_import(&p, &format!("{SERVICE}---\n{}", slice(web)));
    let status = p.seta_at("client", &["status"]);
    let sl = status["kube-proxy-replacement"]["socket-lb"].as_str().unwrap();
    assert!(sl.starts_with("Enabled (cgroup ") && sl.contains("host namespace only"), "{status}");
    let l = sock_list(&p, "client");
    let kinds: Vec<&str> = l["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["host"], "only the node's namespace: {l}");
    // a pod: TCP, UDP and connected UDP work through per-packet LB; no reverse entry
    let before = sock_list(&p, "client")["reverse"].as_array().unwrap().len();
    let (ok, out) = py(&p, "client", CLIENT, &["10.96.0.50"]);
    assert!(ok, "{out}");
    assert!(out.contains("tcp 10.96.0.50:80 ok"), "{out}");
    assert!(
        out.contains("udp 10.96.0.50:53 ok"),
        "the per-packet reverse NAT answers from the ClusterIP: {out}"
    );
    assert!(out.contains("cudp 10.96.0.50:53 ok"), "{out}");
    assert_eq!(
        sock_list(&p, "client")["reverse"].as_array().unwrap().len(),
        before,
        "not translated at the socket"
    );
    // the node itself: translated at connect (a reverse entry to web)
    let node = p.node_of("client");
    let (_, out) = node_py(
        &p,
        &node,
        "import socket; s = socket.create_connection(('10.96.0.50', 80), timeout=3); print(s.recv(10).decode())",
        &[],
    );
    assert_eq!(out.trim(), "ok", "{out}");
    let rev = sock_list(&p, "client")["reverse"].clone();
    assert!(
        rev.as_array()
            .unwrap()
            .iter()
            .any(|r| r["backend"] == format!("{web}:8080") && r["frontend"] == "10.96.0.50:80"),
        "the node's socket was translated: {rev}"
    );
}

mod privileged_policy_service_socket_lb_hostns_only {
    use super::*;
    fn opts() -> LabOptions {
        LabOptions {
            socket_lb: true,
            agent_args: vec!["--bpf-lb-sock-hostns-only".into()],
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_socket_lb_hostns_only::one") {
            return;
        }
        super::privileged_policy_service_socket_lb_hostns_only(P::with_opts("slhone", Topo::One, opts()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_socket_lb_hostns_only::tunnel") {
            return;
        }
        super::privileged_policy_service_socket_lb_hostns_only(P::with_opts("slhtun", Topo::Tunnel, opts()).await).await;
    }
}

/// On the node (bind protection and loopback): binds to 0.0.0.0, 127.0.0.1
/// and the node's address on a NodePort's port, and to an ExternalIP's
/// address and port, each with its errno name or "ok"; then a connection
/// to 127.0.0.1 on the NodePort and what it answers.
const NODE_BINDS: &str = r#"
import socket, sys, errno
node = sys.argv[1]
def bind(a, port, kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: an address the node does not hold
    try:
        s.bind((a, port)); return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
    finally:
        s.close()
for name, a, port in [("any", "0.0.0.0", 30180), ("lo", "127.0.0.1", 30180), ("node", node, 30180),
                      ("other-port", "0.0.0.0", 30181), ("eip", "198.51.100.61", 80), ("eip-other-port", "198.51.100.61", 81)]:
    print(name, bind(a, port))
print("udp", bind("0.0.0.0", 30180, socket.SOCK_DGRAM))
s = socket.create_connection(("127.0.0.1", 30180), timeout=3)
print("loopback", s.recv(10).decode())
"#;

/// Cilium's NodePort on 127.0.0.1 and its bind protection, with socket-LB:
/// a process of the node reaches a NodePort at 127.0.0.1 (through the
/// 0.0.0.0 surrogate frontend, which `service list` shows as Cilium's does),
/// and its binds to the address and port of a NodePort (0.0.0.0, 127.0.0.1,
/// the node's address) or an ExternalIP fail with EPERM, while other ports,
/// another protocol and a pod's own namespace are not held back. Without
/// bind protection (`--node-port-bind-protection=false`) those binds
/// succeed, and the NodePort at 127.0.0.1 still serves.
async fn privileged_policy_service_node_loopback_and_bind_protection(p: P, protected: bool) {
    let web = p.ip("web");
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: np, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.51\n  externalIPs: [198.51.100.61]\n  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: 30180}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: np-a, namespace: default, labels: {{kubernetes.io/service-name: np}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"),
    );
    // the client's node (web's other node on two nodes)
    let node = p.node_of("client");
    let list = p.seta_at("client", &["service", "list"]);
    let node_ports: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "NodePort")
        .map(|e| e["frontend"].as_str().unwrap())
        .collect();
    assert_eq!(node_ports.len(), 2, "the node's address and the 0.0.0.0 surrogate: {list}");
    assert!(node_ports.contains(&"0.0.0.0:30180/TCP"), "{node_ports:?}");
    let lb = p.seta_at("client", &["bpf", "lb", "list"]);
    let surrogate = lb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["service"] == "0.0.0.0:30180/TCP" && e["slot"] == 0)
        .map(|e| e["entry"].to_string());
    assert!(
        surrogate.is_some_and(|m| m.ends_with("[NodePort, non-routable]\"")),
        "as Cilium prints its surrogate: {lb}"
    );
    let node_ip = node_ports
        .iter()
        .find(|f| !f.starts_with("0.0.0.0"))
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    let (ok, text) = node_py(&p, &node, NODE_BINDS, &[node_ip]);
    assert!(ok, "{text}");
    let held = if protected { "EPERM" } else { "ok" };
    let want = [
        format!("any {held}"),
        format!("lo {held}"),
        format!("node {held}"),
        "other-port ok".into(),
        format!("eip {held}"),
        "eip-other-port ok".into(),
        "udp ok".into(),
        "loopback ok".into(),
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), want, "{text}");
    // a pod's namespace is its own: the same bind is its business
    let (ok, out) = py(
        &p,
        "client",
        "import socket; s = socket.socket(); s.bind(('0.0.0.0', 30180)); print('bound')",
        &[],
    );
    assert!(ok && out.trim() == "bound", "{out}");
}

mod privileged_policy_service_node_loopback_and_bind_protection {
    use super::socket_lb_opts as opts;
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_node_loopback_and_bind_protection::one") {
            return;
        }
        super::privileged_policy_service_node_loopback_and_bind_protection(P::with_opts("lbone", Topo::One, opts()).await, true).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unprotected() {
        if !privileged("privileged_policy_service_node_loopback_and_bind_protection::unprotected") {
            return;
        }
        let o = LabOptions {
            agent_args: vec!["--node-port-bind-protection=false".into()],
            ..opts()
        };
        super::privileged_policy_service_node_loopback_and_bind_protection(P::with_opts("lbunp", Topo::One, o).await, false).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_node_loopback_and_bind_protection::tunnel") {
            return;
        }
        super::privileged_policy_service_node_loopback_and_bind_protection(P::with_opts("lbtun", Topo::Tunnel, opts()).await, true).await;
    }
}

/// What a TCP connection to argv[1]:argv[2] reads (the server's tag).
const READ_TAG: &str =
    "import socket, sys\ns = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\nprint(s.recv(64).decode())";

/// CVE-2020-8554 and Cilium's mitigation, with socket-LB: a Service may name
/// an address outside the cluster as its ExternalIP (here the external
/// host's), but the node's and its pods' own connections to that address
/// still reach the external host, through their sockets and (for a process
/// outside the node's cgroup) by packet; an ExternalIP that is the node's own
/// address is served as before. With `--disable-external-ip-mitigation` the
/// service takes the address over, as kube-proxy would.
async fn privileged_policy_service_external_ip_mitigation(p: P, mitigated: bool) {
    let ext = p.lab().external.clone().unwrap();
    tag_server(&ext.netns, SocketAddr::new(ext.ip.into(), 80), "ext");
    tag_server(&p.ns("web"), p.web_addr(8081), "web");
    let web = p.ip("web");
    let yaml = |eips: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: eip, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.52\n  externalIPs: [{eips}]\n  ports: [{{name: http, port: 80, targetPort: 8081, nodePort: 30190}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: eip-a, namespace: default, labels: {{kubernetes.io/service-name: eip}}}}\naddressType: IPv4\nports: [{{name: http, port: 8081}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n")
    };
    services_import(&p, &yaml(&ext.ip.to_string()));
    // the client's node's own address (its NodePort frontend's)
    let list = p.seta_at("client", &["service", "list"]);
    let node_ip = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "NodePort")
        .map(|e| e["frontend"].as_str().unwrap().split(':').next().unwrap().to_string())
        .find(|a| a != "0.0.0.0")
        .unwrap_or_else(|| panic!("{list}"));
    services_import(&p, &yaml(&format!("{}, {node_ip}", ext.ip)));
    let node = p.node_of("client");
    let from_node = |addr: &str| node_py(&p, &node, READ_TAG, &[addr, "80"]).1.trim().to_string();
    let from_pod = |addr: &str| py(&p, "client", READ_TAG, &[addr, "80"]).1.trim().to_string();
    let by_packet = |addr: &str| {
        let a: SocketAddr = format!("{addr}:80").parse().unwrap();
        format!("{:?}", read_from(&p.ns("client"), a))
    };
    let outside = ext.ip.to_string();
    let taken = if mitigated { "ext" } else { "web" };
    assert_eq!(from_pod(&outside), taken, "a pod's socket to the outside address");
    assert_eq!(from_node(&outside), taken, "the node's socket to the outside address");
    assert_eq!(
        by_packet(&outside),
        format!("Ok({taken:?})"),
        "a pod's packets (no socket-LB) to the outside address"
    );
    // the node's own address and the ClusterIP are the service's either way
    assert_eq!(from_pod(&node_ip), "web", "a pod to its node's address");
    assert_eq!(from_node(&node_ip), "web", "the node to its own address");
    assert_eq!(from_pod("10.96.0.52"), "web", "the ClusterIP");
    // the external host itself reaches the node's ExternalIP as ever (on
    // the underlay, where the node serves the outside)
    if p.lab().underlay.is_some() {
        let from_ext = read_from(&ext.netns, format!("{node_ip}:80").parse().unwrap());
        assert_eq!(from_ext, Ok("web".to_string()), "from outside");
    }
}

mod privileged_policy_service_external_ip_mitigation {
    use super::*;
    fn opts(disabled: bool) -> LabOptions {
        LabOptions {
            socket_lb: true,
            agent_args: match disabled {
                true => vec!["--disable-external-ip-mitigation".into()],
                false => vec![],
            },
            ..Default::default()
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_external_ip_mitigation::one") {
            return;
        }
        super::privileged_policy_service_external_ip_mitigation(P::with_opts("eipone", Topo::One, opts(false)).await, true).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_external_ip_mitigation::tunnel") {
            return;
        }
        super::privileged_policy_service_external_ip_mitigation(P::with_opts("eiptun", Topo::Tunnel, opts(false)).await, true).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disabled() {
        if !privileged("privileged_policy_service_external_ip_mitigation::disabled") {
            return;
        }
        super::privileged_policy_service_external_ip_mitigation(P::with_opts("eipoff", Topo::One, opts(true)).await, false).await;
    }
}

/// Cilium's traffic-policy matrix, end to end: with `externalTrafficPolicy:
/// Local` and `internalTrafficPolicy: Cluster`, clients from outside reach
/// the service only through a node with a backend, while the cluster's own
/// pods reach every backend, also at their node's NodePort and the
/// LoadBalancer address (the frontend's internal scope, Cilium's `/i`); with
/// `internalTrafficPolicy: Local` and `externalTrafficPolicy: Cluster` it is
/// the other way round. The client's node has no backend (on one node the
/// slice places web on another node); pods connect through their sockets
/// (socket-LB) and by packet (a process outside the node's cgroup).
async fn privileged_policy_service_traffic_policy_matrix(p: P) {
    let web = p.ip("web");
    peer_server(&p.ns("web"), SocketAddr::new(web.into(), 8080));
    let two = p.nodes().len() > 1;
    let web_node = if two { p.node_of("web") } else { "elsewhere".to_string() };
    let svc = |name: &str, n: u8, policies: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.{n}\n{policies}  ports: [{{name: http, port: 80, nodePort: 30{n}}}]\nstatus:\n  loadBalancer: {{ingress: [{{ip: 198.51.100.{n}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}, nodeName: {web_node}}}\n---\n")
    };
    let yaml = [
        svc("etplocal", 171, "  externalTrafficPolicy: Local\n"),
        svc("itplocal", 172, "  internalTrafficPolicy: Local\n"),
    ]
    .concat();
    services_import(&p, &yaml);
    // the client's node: the last; the router sends service addresses to it
    let last = p.nodes().len() - 1;
    let node = format!("172.30.0.{}", last + 1);
    p.lab().external_route("198.51.100.0/24".parse().unwrap(), last).await.unwrap();
    let ext = p.lab().external.clone().unwrap();
    let list = p.seta_at("client", &["service", "list"]);
    let fronts: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["frontend"].as_str().unwrap()).collect();
    for f in ["198.51.100.171:80/TCP/i", "198.51.100.172:80/TCP/i", &format!("{node}:30171/TCP/i")] {
        assert!(fronts.contains(&f), "the internal scope {f}: {fronts:?}");
    }
    let frontends = |n: u8| [format!("10.96.0.{n}:80"), format!("{node}:30{n}"), format!("198.51.100.{n}:80")];
    let by_socket = |a: &str| {
        let (host, port) = a.split_once(':').unwrap();
        py(&p, "client", READ_TAG, &[host, port]).0
    };
    let by_packet = |a: &str| read_from(&p.ns("client"), a.parse().unwrap()).is_ok();
    let outside = |a: &str| read_from(&ext.netns, a.parse().unwrap()).is_ok();
    // eTP Local, iTP Cluster: pods reach every backend at every frontend
    for f in frontends(171) {
        assert!(by_socket(&f), "{f}: a pod's socket (internal scope: every backend)");
        assert!(by_packet(&f), "{f}: a pod's packets (internal scope: every backend)");
    }
    // ... and from outside only a node with a backend serves
    assert!(!outside(&format!("{node}:30171")), "outside, NodePort of a node without a backend");
    assert!(
        !outside("198.51.100.171:80"),
        "outside, LoadBalancer IP to a node without a backend"
    );
    // iTP Local, eTP Cluster: outside reaches the backend anywhere...
    assert!(outside(&format!("{node}:30172")), "outside, NodePort");
    assert!(outside("198.51.100.172:80"), "outside, LoadBalancer IP");
    // ... and pods on a node without one are refused at every frontend
    for f in frontends(172) {
        assert!(!by_socket(&f), "{f}: a pod's socket, no local backend");
        assert!(!by_packet(&f), "{f}: a pod's packets, no local backend");
    }
    if two {
        // a pod on web's node has its local backend
        assert!(
            read_from(&p.ns("other"), "10.96.0.172:80".parse().unwrap()).is_ok(),
            "iTP Local on web's node"
        );
        // outside through web's node reaches the eTP=Local service
        p.lab().external_route("198.51.100.0/24".parse().unwrap(), 0).await.unwrap();
        assert!(outside("198.51.100.171:80"), "outside, LoadBalancer IP to web's node");
        assert!(outside("172.30.0.1:30171"), "outside, NodePort of web's node");
    }
}

mod privileged_policy_service_traffic_policy_matrix {
    use super::socket_lb_opts as opts;
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_traffic_policy_matrix::one") {
            return;
        }
        super::privileged_policy_service_traffic_policy_matrix(P::with_opts("tpone", Topo::OneUnderlay, opts()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_traffic_policy_matrix::tunnel") {
            return;
        }
        super::privileged_policy_service_traffic_policy_matrix(P::with_opts("tptun", Topo::Tunnel, opts()).await).await;
    }
}

/// Where the socket says it is connected to, and who the server saw.
const PEER: &str = "import socket, sys\ns = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\nprint('%s:%d' % s.getpeername(), s.recv(64).decode())";

/// Cilium's wildcard lookup at the socket: a NodePort at the address of any
/// node of the cluster (another node's, or this node's router address) is
/// served where the client is, as the node's own NodePort: a pod's or the
/// node's socket goes straight to a backend, with the pod's own address
/// (not SNATed by the other node) and the cluster's backends (internal
/// scope) even where the other node has none for outside clients
/// (externalTrafficPolicy Local). getpeername still shows the NodePort.
async fn privileged_policy_service_node_port_of_any_node_by_socket(mut p: P) {
    p.pod_add("near", 1, "default", &["app=near"], &[]).await;
    let near = p.ip("near");
    peer_server(&p.ns("near"), SocketAddr::new(near.into(), 8080));
    let client = p.ip("client").to_string();
    let last = p.lab().nodes.len() - 1;
    let here = &p.lab().nodes[last];
    let router = seta_core::ipam::router_ip(here.pod_cidr).to_string();
    let svc = |name: &str, port: u16, etp: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.1.{}\n  externalTrafficPolicy: {etp}\n  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: {port}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{near}], conditions: {{ready: true}}, nodeName: {}}}\n---\n", port - 30000, here.name)
    };
    // no backends at all; and, for the cluster's own clients, none on
    // this node (internalTrafficPolicy Local, the backend on the first node)
    let web = p.ip("web");
    let more = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: anynone, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.1.187\n  ports: [{{port: 80, nodePort: 30187}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: anyitp, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.1.188\n  internalTrafficPolicy: Local\n  ports: [{{name: http, port: 80, targetPort: 8080, nodePort: 30188}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: anyitp-a, namespace: default, labels: {{kubernetes.io/service-name: anyitp}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}, nodeName: {}}}\n---\n", p.lab().nodes[0].name);
    let yaml = [svc("anynode", 30185, "Cluster"), svc("anylocal", 30186, "Local")].concat();
    services_import(&p, &format!("{yaml}{more}"));
    let by_socket = |addr: &str, port: u16| py(&p, "client", PEER, &[addr, &port.to_string()]);
    // this node's router address (ipcache: host): one node and two
    let (ok, out) = by_socket(&router, 30185);
    assert!(ok, "{router}:30185 by socket: {out}");
    assert_eq!(out.trim(), format!("{router}:30185 {client}"), "the node's router address");
    // a NodePort without backends there is refused at the socket, counted
    let refused = |addr: &str, port: u16| {
        let before = p.drops("Service backend not found", "SERVICE");
        let (ok, out) = by_socket(addr, port);
        assert!(!ok && out.contains("ConnectionRefusedError"), "{addr}:{port}: {out}");
        assert!(p.drops("Service backend not found", "SERVICE") > before, "{addr}:{port} counted");
    };
    refused(&router, 30187);
    if p.nodes().len() == 1 {
        return;
    }
    refused("172.30.0.1", 30187);
    // internalTrafficPolicy Local: no backend on this node for its pods,
    // also at another node's address (which has one)
    refused("172.30.0.1", 30188);
    // another node's address (ipcache: remote-node)
    for port in [30185, 30186] {
        let (ok, out) = by_socket("172.30.0.1", port);
        assert!(ok, "172.30.0.1:{port} by socket: {out}");
        assert_eq!(
            out.trim(),
            format!("172.30.0.1:{port} {client}"),
            "translated at the socket: the backend sees the pod"
        );
    }
    let rev = sock_list(&p, "client")["reverse"].clone();
    assert!(
        rev.as_array()
            .unwrap()
            .iter()
            .any(|r| r["backend"] == format!("{near}:8080") && r["frontend"] == "172.30.0.1:30185"),
        "{rev}"
    );
    // a pod's packets (no socket-LB) still go through the other node, which
    // SNATs them to reach the backend on this node
    let by_packet = read_from(&p.ns("client"), "172.30.0.1:30185".parse().unwrap());
    assert!(
        matches!(&by_packet, Ok(peer) if *peer != client),
        "by packet the other node serves and SNATs: {by_packet:?}"
    );
    // the node's own socket too
    let node = p.node_of("client");
    let (ok, out) = node_py(&p, &node, PEER, &["172.30.0.1", "30185"]);
    assert!(ok && out.starts_with("172.30.0.1:30185 "), "the node's socket: {out}");
}

mod privileged_policy_service_node_port_of_any_node_by_socket {
    use super::socket_lb_opts as opts;
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_node_port_of_any_node_by_socket::one") {
            return;
        }
        super::privileged_policy_service_node_port_of_any_node_by_socket(P::with_opts("anyone", Topo::OneUnderlay, opts()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_node_port_of_any_node_by_socket::tunnel") {
            return;
        }
        super::privileged_policy_service_node_port_of_any_node_by_socket(P::with_opts("anytun", Topo::Tunnel, opts()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_service_node_port_of_any_node_by_socket::native") {
            return;
        }
        super::privileged_policy_service_node_port_of_any_node_by_socket(P::with_opts("anynat", Topo::Native, opts()).await).await;
    }
}
