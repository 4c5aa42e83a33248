//! The CLI on a machine running several agents (its own test binary, so no
//! other test's lab shares the machine while it runs): cluster-wide policy
//! commands need no `--node` when the agents share a kvstore, `policy wait`
//! waits for every agent, node-local reads keep asking for `--node`, and
//! agents that do not share a kvstore make it ask again.
mod common;
use common::bin_dir;
use seta_lab::traffic::{tcp_ok, Responder};
use seta_lab::wait::RunWithin;
use seta_lab::{privileged, LabOptions, TestLab};
use std::net::SocketAddr;
use std::process::{Command, Output};

fn seta_bare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seta"))
        .env_remove("SETA_NODE")
        .args(args)
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap()
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["-o", "json"];
    a.extend_from_slice(args);
    let out = seta_bare(&a);
    assert!(
        out.status.success(),
        "seta {args:?} without --node: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_cli_cluster_wide_policy_commands_without_node() {
    if !privileged("privileged_cli_cluster_wide_policy_commands_without_node") {
        return;
    }
    let opts = LabOptions {
        etcd: true,
        routing: Some(seta_core::mode::RoutingMode::Tunnel),
        operator: false,
        ..Default::default()
    };
    let mut t = TestLab::up_with("cli", 2, 0, &bin_dir(), &opts).await.unwrap();
    let (n0, n1) = (t.lab.nodes[0].name.clone(), t.lab.nodes[1].name.clone());
    t.lab.pod_add("web", &n0, "default", &["app=web".into()], &[]).await.unwrap();
    t.lab.pod_add("client", &n1, "default", &["app=client".into()], &[]).await.unwrap();
    let web = t.lab.pod("web").unwrap().clone();
    let client_ns = t.lab.pod("client").unwrap().netns.clone();
    let _r = Responder::start(&web.netns, SocketAddr::new(web.ip.into(), 8080));
    let f = std::env::temp_dir().join(format!("{}-deny.yaml", t.lab.name));
    std::fs::write(
        &f,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-web, namespace: default}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress]\n",
    )
    .unwrap();
    let file = f.to_str().unwrap();

    let v = ok_json(&["policy", "validate", file]);
    assert_eq!(v["policies"][0], "NetworkPolicy default/deny-web");
    let r = ok_json(&["policy", "import", file]);
    let w = ok_json(&["policy", "wait", &r["revision"].to_string(), "--timeout", "20"]);
    let nodes = w["nodes"].as_object().unwrap();
    assert!(nodes.contains_key(&n0) && nodes.contains_key(&n1), "wait covered every agent: {w}");
    // every agent enforces it the moment wait returns: the web pod's node too
    assert!(!tcp_ok(&client_ns, SocketAddr::new(web.ip.into(), 8080)), "enforced across nodes");
    for n in [&n0, &n1] {
        let g = common::seta(n, &["policy", "get"]);
        assert_eq!(g["policies"].as_array().unwrap().len(), 1, "{n}: {g}");
    }
    let g = ok_json(&["policy", "get"]);
    assert_eq!(g["policies"][0]["origin"]["name"], "deny-web");

    ok_json(&["policy", "delete", "deny-web"]);
    let w = ok_json(&["policy", "wait"]);
    assert_eq!(w["nodes"].as_object().unwrap().len(), 2);
    assert!(tcp_ok(&client_ns, SocketAddr::new(web.ip.into(), 8080)), "deleted everywhere");
    for n in [&n0, &n1] {
        assert!(common::seta(n, &["policy", "get"])["policies"].as_array().unwrap().is_empty());
    }

    // node-local reads still need --node
    let out = seta_bare(&["endpoint", "list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--node"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // a second cluster (its own kvstore) on the machine: ambiguous, so ask
    let other = TestLab::up("cli2", 1, 0, &bin_dir()).await.unwrap();
    let out = seta_bare(&["policy", "get"]);
    assert!(!out.status.success(), "agents without one shared kvstore");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shared kvstore") && err.contains("--node"), "{err}");
    drop(other);
    let _ = std::fs::remove_file(&f);
}
