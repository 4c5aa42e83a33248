//! The Kubernetes API away for 60 s (every node cut off it: connections
//! refused, watches closed) during traffic: the datapath keeps enforcing
//! what it had (an allowed pod keeps reaching web, a denied one stays
//! denied, not one probe fails), `seta status` says Kubernetes is degraded,
//! an agent restarted meanwhile restores its endpoints and policy from its
//! state and pins; once the API is back the watches resume and converge,
//! including a policy changed while the agents were cut off. Every node's
//! kube-proxy healthz (`--kube-proxy-replacement-healthz-bind-address`),
//! probed from the other node as a load balancer would, answers 200 before,
//! 503 while the node cannot follow the services, and 200 again after.
use super::*;

/// Each node's kube-proxy healthz as the other node (or itself, alone) sees
/// it: the status line and the body.
fn kpr_healthz(p: &P) -> Vec<(String, String, String)> {
    let nodes = p.nodes();
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ip = common::seta(n, &["status"])["node-ip"].as_str().unwrap_or("127.0.0.1").to_string();
            let from = &p.lab().nodes[(i + 1) % nodes.len()].netns;
            let r = http_get_path(from, format!("{ip}:10256").parse().unwrap(), "/healthz");
            let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
            (n.clone(), head.lines().next().unwrap_or("").to_string(), body.to_string())
        })
        .collect()
}

fn all_answer(p: &P, code: &str) -> bool {
    kpr_healthz(p)
        .iter()
        .all(|(_, status, _)| status.starts_with(&format!("HTTP/1.1 {code}")))
}

async fn privileged_policy_k8s_api_outage_keeps_the_datapath(mut p: P) {
    let kubectl = |p: &P, args: &[&str], stdin: Option<&str>| {
        let (ok, out, err) = p.lab().kubectl(args, stdin).unwrap();
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    let np = |from: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web-in, namespace: default}}\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - from: [{from}]\n    ports: [{{port: 8080, protocol: TCP}}]\n")
    };
    let only_client = np("{podSelector: {matchLabels: {app: client}}}");
    let also_other = np("{podSelector: {matchLabels: {app: client}}}, {podSelector: {matchLabels: {app: other}}}");
    kubectl(&p, &["apply", "-f", "-"], Some(&only_client));
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let web = p.web_addr(8080);
    until_tcp(&p.ns("other"), web, false, "the policy denies other");
    until_tcp(&p.ns("client"), web, true, "the policy allows client");
    common::wait_for("every node's kube-proxy healthz answers 200", 30, || all_answer(&p, "200"));
    for (n, _, body) in kpr_healthz(&p) {
        let b: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{n}: {e}: {body}"));
        assert_eq!(b["lastUpdated"], b["currentTime"], "{n}: healthy means up to date: {b}");
        assert!(b["currentTime"].as_str().unwrap().ends_with('Z'), "{n}: {b}");
    }

    // probes every 200 ms for the whole outage: client allowed, other denied
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (c_ns, o_ns) = (p.ns("client"), p.ns("other"));
    let probe = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut n, mut wrong) = (0, vec![]);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                if !tcp_ok(&c_ns, web) {
                    wrong.push(format!("probe {n}: client denied"));
                }
                if tcp_ok(&o_ns, web) {
                    wrong.push(format!("probe {n}: other allowed"));
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            (n, wrong)
        })
    };
    let t0 = std::time::Instant::now();
    for n in p.nodes() {
        p.lab().k8s_api_cut(&n, true).unwrap();
    }
    for n in p.nodes() {
        common::wait_for(&format!("{n} reports Kubernetes degraded"), 30, || {
            common::seta(&n, &["status"])["kubernetes"]
                .as_str()
                .unwrap_or("")
                .starts_with("degraded")
        });
    }
    common::wait_for("every node's kube-proxy healthz answers 503", 30, || all_answer(&p, "503"));
    for (n, _, body) in kpr_healthz(&p) {
        let b: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            b["lastUpdated"].as_str().unwrap() < b["currentTime"].as_str().unwrap(),
            "{n}: the last update was before the outage: {b}"
        );
    }
    // changed while the agents cannot see it
    assert_eq!(
        kubectl(&p, &["apply", "-f", "-"], Some(&also_other)),
        "networkpolicy.networking.k8s.io/web-in configured"
    );
    // web's agent restarted meanwhile: restored from its state and pins
    let web_node = p.node_of("web");
    p.t.lab.signal_agent(&web_node, nix::sys::signal::Signal::SIGKILL).unwrap();
    p.t.lab.start_agent(&web_node).await.unwrap();
    let eps = common::seta(&web_node, &["endpoint", "list"]);
    assert!(eps.as_array().unwrap().iter().any(|e| e["pod-name"] == "web"), "{eps}");
    assert!(common::seta(&web_node, &["status"])["kubernetes"]
        .as_str()
        .unwrap_or("")
        .starts_with("degraded"));
    // restarted without the API: it has listed no services, so it stays out
    assert!(all_answer(&p, "503"), "{:?}", kpr_healthz(&p));
    let rest = std::time::Duration::from_secs(60).saturating_sub(t0.elapsed());
    tokio::time::sleep(rest).await;
    for n in p.nodes() {
        p.lab().k8s_api_cut(&n, false).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (n, wrong) = probe.join().unwrap();
    assert!(n > 20, "{n} probes");
    assert!(wrong.is_empty(), "the datapath changed during the outage: {wrong:?}");
    // back: the watches resume and the policy changed meanwhile applies
    for n in p.nodes() {
        common::wait_for(&format!("{n} reports Kubernetes ok"), 60, || {
            common::seta(&n, &["status"])["kubernetes"].as_str().unwrap_or("").starts_with("ok")
        });
    }
    common::wait_for("other is allowed by the policy changed during the outage", 30, || {
        tcp_ok(&p.ns("other"), web)
    });
    common::wait_for("every node's kube-proxy healthz answers 200 again", 30, || all_answer(&p, "200"));
    assert!(tcp_ok(&p.ns("client"), web));
}

mod privileged_policy_k8s_api_outage_keeps_the_datapath {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_k8s_api_outage_keeps_the_datapath::tunnel") {
            return;
        }
        super::privileged_policy_k8s_api_outage_keeps_the_datapath(
            P::with_opts(
                "k8sout",
                Topo::Tunnel,
                LabOptions {
                    agent_args: vec!["--kube-proxy-replacement-healthz-bind-address".into(), "0.0.0.0:10256".into()],
                    ..k8s()
                },
            )
            .await,
        )
        .await;
    }
}
