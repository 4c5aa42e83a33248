//! Hubble Relay (`seta-relay`, started by the lab in the underlay): the
//! flows of both nodes through one API, merged by time; with one node's
//! agent stopped, that node is named unavailable (a node-status event in
//! GetFlows, the status counts, the node list) and the other's flows still
//! come.
use super::*;

/// `seta observe ARGS --server <the lab's relay>`: (stdout, stderr).
fn via_relay(p: &P, args: &[&str]) -> (String, String) {
    let server = format!("unix://{}", seta_lab::relay::relay_socket(&p.lab().name).display());
    let out = Command::new(bin_dir().join("seta"))
        .args(["observe", "--server", &server])
        .args(args)
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    assert!(
        out.status.success(),
        "seta observe {args:?} via the relay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// The nodes whose flows the relay returned (`-o json`), and whether they
/// came oldest first.
fn nodes_in(json: &str) -> (std::collections::BTreeSet<String>, bool) {
    let flows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("flow").is_some())
        .collect();
    let times: Vec<String> = flows.iter().map(|v| v["flow"]["time"].as_str().unwrap().to_string()).collect();
    let sorted = times.windows(2).all(|w| w[0] <= w[1]);
    (flows.iter().map(|v| v["node_name"].as_str().unwrap().to_string()).collect(), sorted)
}

async fn privileged_policy_relay_merges_nodes_and_names_the_unavailable(mut p: P) {
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let _c = Responder::start(&p.ns("client"), SocketAddr::new(p.ip("client").into(), 8080));
    // traffic delivered on both nodes: into web (node 1) and into client (node 2)
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)));
    assert!(tcp_ok(&p.ns("web"), SocketAddr::new(p.ip("client").into(), 8080)));
    let (n1, n2) = (p.nodes()[0].clone(), p.nodes()[1].clone());
    let mut json = String::new();
    common::wait_for("flows of both nodes through the relay", 10, || {
        json = via_relay(&p, &["-o", "json", "--last", "200"]).0;
        nodes_in(&json).0 == [n1.clone(), n2.clone()].into()
    });
    assert!(nodes_in(&json).1, "merged oldest first: {json}");
    let (status, _) = via_relay(&p, &["status"]);
    assert!(status.contains("Connected Nodes: 2/2"), "{status}");
    let nodes: serde_json::Value = serde_json::from_str(&via_relay(&p, &["nodes", "-o", "json"]).0).unwrap();
    let states: Vec<(&str, &str)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["status"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(n1.as_str(), "Connected"), (n2.as_str(), "Connected")]);
    // the same over TCP, at Hubble Relay's port in the underlay
    let ul = p.lab().underlay.clone().unwrap().netns;
    let out = Command::new("ip")
        .args(["netns", "exec", &ul])
        .arg(bin_dir().join("seta"))
        .args(["observe", "--server", "172.30.0.254:4245", "status"])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Connected Nodes: 2/2"),
        "over TCP: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // node 2's agent goes away: the relay says so and still serves node 1
    p.t.lab.stop_agent(&n2).unwrap();
    let mut out = (String::new(), String::new());
    common::wait_for("node 2 unavailable in the relay's answer", 15, || {
        out = via_relay(&p, &["-o", "json", "--last", "50"]);
        out.1.contains(&format!("NODE_UNAVAILABLE: {n2}")) || out.0.contains("NODE_UNAVAILABLE")
    });
    let unavailable = out
        .0
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["node_status"]["state_change"] == "NODE_UNAVAILABLE");
    assert_eq!(
        unavailable.map(|v| v["node_status"]["node_names"].clone()),
        Some(serde_json::json!([n2])),
        "a node-status event names node 2: {}",
        out.0
    );
    assert_eq!(nodes_in(&out.0).0, [n1.clone()].into(), "node 1's flows still come");
    let (status, _) = via_relay(&p, &["status"]);
    assert!(
        status.contains("Connected Nodes: 1/2") && status.contains(&format!("Unavailable Nodes: (1)\n  - {n2}")),
        "{status}"
    );
    let (compact, err) = via_relay(&p, &["--last", "5"]);
    assert!(
        err.contains(&format!("NODE_UNAVAILABLE: {n2}")),
        "compact output tells it on stderr: {err}"
    );
    assert!(compact.lines().count() > 0, "and still prints node 1's flows");
    p.t.lab.start_agent(&n2).await.unwrap();
}

mod privileged_policy_relay_merges_nodes_and_names_the_unavailable {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_relay_merges_nodes_and_names_the_unavailable::tunnel") {
            return;
        }
        let o = LabOptions {
            relay: true,
            ..Default::default()
        };
        super::privileged_policy_relay_merges_nodes_and_names_the_unavailable(P::with_opts("relay", Topo::Tunnel, o).await).await;
    }
}
