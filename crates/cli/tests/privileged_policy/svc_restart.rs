//! Services survive their agent: while the client's node agent is killed
//! (SIGKILL) and started again, an established TCP stream through a
//! ClusterIP loses no byte and a UDP exchange through it no datagram; the
//! restarted agent keeps the same service numbers.
use super::*;
use std::time::{Duration, Instant};

async fn privileged_policy_service_connections_survive_agent_sigkill(mut p: P) {
    let web = p.ip("web");
    let _u = Responder::start(&p.ns("web"), SocketAddr::new(web.into(), 5353));
    services_import(
        &p,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: st, namespace: default}}\nspec:\n  clusterIP: 10.96.0.70\n  ports: [{{name: s, port: 80, targetPort: 9000}}, {{name: u, port: 53, targetPort: 5353, protocol: UDP}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: st-a, namespace: default, labels: {{kubernetes.io/service-name: st}}}}\naddressType: IPv4\nports: [{{name: s, port: 9000}}, {{name: u, port: 5353, protocol: UDP}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"
        ),
    );
    // every agent's maps hold them (`seta service wait` on each node: the
    // same digest everywhere, synced)
    let digests: std::collections::BTreeSet<String> = p
        .nodes()
        .iter()
        .map(|n| {
            let w = common::seta(n, &["service", "wait", "--timeout", "20"]);
            let st = &w.as_object().unwrap().values().next().unwrap().clone();
            assert_eq!(st["synced"], true, "{w}");
            st["digest"].to_string()
        })
        .collect();
    assert_eq!(digests.len(), 1, "one set of services everywhere: {digests:?}");
    let before = p.seta_at("client", &["bpf", "lb", "list", "--revnat"]);
    // a TCP stream from client through the ClusterIP to web
    let vip: SocketAddr = "10.96.0.70:80".parse().unwrap();
    let stream = seta_lab::traffic::Stream::start(&p.ns("client"), &p.ns("web"), SocketAddr::new(web.into(), 9000), vip, 4);
    // UDP through the ClusterIP, one datagram every 20 ms, each answered
    let udp = seta_lab::spawn_in_netns(&p.ns("client"), move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let udp_vip: SocketAddr = "10.96.0.70:53".parse().unwrap();
        let (mut sent, mut answered) = (0, 0);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            s.send_to(b"hi", udp_vip).unwrap();
            sent += 1;
            let mut b = [0u8; 8];
            if s.recv_from(&mut b).is_ok() {
                answered += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (sent, answered)
    });
    let node = p.node_of("client");
    tokio::time::sleep(Duration::from_millis(700)).await;
    p.t.lab.signal_agent(&node, nix::sys::signal::Signal::SIGKILL).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await; // no agent at all
    p.t.lab.start_agent(&node).await.unwrap();
    let (sent, received) = stream.finish();
    assert_eq!(received, sent, "every byte of the stream through the ClusterIP arrived");
    let (n, answered) = udp.join().unwrap();
    assert_eq!(answered, n, "every UDP datagram through the ClusterIP was answered");
    // the restarted agent keeps the same rev-NAT numbers
    assert_eq!(p.seta_at("client", &["bpf", "lb", "list", "--revnat"]), before);

    // `seta lab node stop`: no agent (no API), the service still answers;
    // `seta lab node start` brings it back
    let lab_cmd = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_seta"))
            .args(["lab"])
            .args(args)
            .output_within(std::time::Duration::from_secs(60))
            .unwrap()
    };
    let name = p.lab().name.clone();
    assert!(lab_cmd(&["node", "stop", "--lab", &name, &node]).status.success());
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &node, "status"])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(!st.status.success(), "no agent answers while stopped");
    assert!(
        udp_ok(&p.ns("client"), "10.96.0.70:53".parse().unwrap()),
        "the datapath keeps serving"
    );
    assert!(lab_cmd(&["node", "start", "--lab", &name, &node]).status.success());
    assert_eq!(p.seta_at("client", &["bpf", "lb", "list", "--revnat"]), before);
    // `seta lab ext exec` runs on the external host
    let out = lab_cmd(&["ext", "exec", "--lab", &name, "--", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("inet 172.30.0.200/24")
            || String::from_utf8_lossy(&out.stdout).contains("inet 192.0.2.10/24")
    );
}

mod privileged_policy_service_connections_survive_agent_sigkill {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_connections_survive_agent_sigkill::one") {
            return;
        }
        super::privileged_policy_service_connections_survive_agent_sigkill(P::new("skone", Topo::One).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_connections_survive_agent_sigkill::tunnel") {
            return;
        }
        super::privileged_policy_service_connections_survive_agent_sigkill(P::new("sktunnel", Topo::Tunnel).await).await;
    }
}
