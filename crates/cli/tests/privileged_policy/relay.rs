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
    // a bad filter value is refused by the relay itself, in Hubble's words
    let server = format!("unix://{}", seta_lab::relay::relay_socket(&p.lab().name).display());
    let bad = Command::new(bin_dir().join("seta"))
        .args(["observe", "--server", &server, "--to-ip", "10.0.0.0/40"])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains(r#"invalid CIDR in filter: "10.0.0.0/40""#),
        "{err}"
    );
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
    // hubble list nodes: its JSON (protojson) and its table
    let nodes: serde_json::Value = serde_json::from_str(&via_relay(&p, &["list", "nodes", "-o", "json"]).0).unwrap();
    let states: Vec<(&str, &str)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(n1.as_str(), "NODE_CONNECTED"), (n2.as_str(), "NODE_CONNECTED")]);
    let (listed, _) = via_relay(&p, &["list", "nodes"]);
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"], "{listed}");
    assert_eq!(rows[1][..2], [n1.as_str(), "Connected"], "{listed}");
    assert!(rows[1][4].ends_with("/4095"), "{listed}");
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
        status.contains("Connected Nodes: 1/2") && status.contains(&format!("Unavailable Nodes: 1\n  - {n2}")),
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

/// Chromium (headless) loads `url` from the lab's underlay, runs its
/// scripts for a few (virtual) seconds and returns the DOM; with `shot`, a
/// screenshot of the page is written there as well.
fn browse(p: &P, url: &str, shot: Option<&std::path::Path>) -> String {
    let ul = p.lab().underlay.clone().unwrap().netns;
    let profile = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-chromium", p.lab().name));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ul, "chromium", "--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=6000", "--window-size=1100,1300"]);
    match shot {
        Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output_within(std::time::Duration::from_secs(90)).unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(out.status.success(), "chromium {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The `<path class="edge …">` tags of a dumped service map.
fn edges(dom: &str) -> Vec<&str> {
    dom.split("<path")
        .skip(1)
        .map(|t| t.split('>').next().unwrap())
        .filter(|t| t.contains("class=\"edge "))
        .collect()
}

fn has_edge(dom: &str, verdict: &str, from: &str, to: &str) -> bool {
    edges(dom).iter().any(|t| {
        t.contains(&format!("class=\"edge {verdict}\""))
            && t.contains(&format!("data-source=\"{from}\""))
            && t.contains(&format!("data-target=\"{to}\""))
    })
}

/// The relay's service map in a real browser: the page loads, the pods'
/// traffic across both nodes appears as workloads and edges, a flow denied
/// by policy is a red (dropped) edge and a red row, `seta observe`'s
/// filters narrow it, and a screenshot is taken.
async fn privileged_policy_relay_service_map_in_a_headless_browser(p: P) {
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    p.apply(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-from-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
"#,
    );
    assert!(tcp_ok(&p.ns("client"), p.web_addr(8080)), "client (node 2) -> web (node 1) allowed");
    assert!(!tcp_ok(&p.ns("other"), p.web_addr(8080)), "other -> web denied");
    let base = format!("http://172.30.0.254:{}/", seta_lab::relay::UI_PORT);
    let mut dom = String::new();
    common::wait_for("both edges on the service map", 30, || {
        dom = browse(&p, &base, None);
        has_edge(&dom, "forwarded", "default/client", "default/web") && has_edge(&dom, "dropped", "default/other", "default/web")
    });
    assert!(dom.contains("<h1>seta service map</h1>"), "{dom}");
    assert!(!dom.contains("data-updates=\"0\""), "the page's script fetched the map: {dom}");
    for w in ["default/web", "default/client", "default/other"] {
        assert!(dom.contains(&format!("data-id=\"{w}\"")), "workload {w} is a node: {dom}");
    }
    assert!(
        !has_edge(&dom, "dropped", "default/client", "default/web"),
        "the allowed pair is not marked dropped"
    );
    assert!(dom.contains("nodes connected: 2"), "both nodes answered: {dom}");
    assert!(dom.contains("<tr class=\"dropped\">"), "a denied flow is a marked row");
    assert!(dom.contains("Policy denied"), "its reason is in the map");
    // the flow table and the map take seta observe's filters
    let url = format!("{base}?filter=--from-pod%20default/client%20--verdict%20FORWARDED");
    let filtered = browse(&p, &url, None);
    assert!(has_edge(&filtered, "forwarded", "default/client", "default/web"), "{filtered}");
    assert!(!filtered.contains("data-id=\"default/other\""), "other is filtered out: {filtered}");
    assert!(!filtered.contains("<tr class=\"dropped\">"));
    let bad = browse(&p, &format!("{base}?filter=--colour%20red"), None);
    assert!(bad.contains("--colour: not a filter"), "a bad filter is named on the page: {bad}");
    // and a picture of it
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("service-map.png");
    let _ = std::fs::remove_file(&shot);
    browse(&p, &base, Some(&shot));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot: {} bytes",
        png.len()
    );
}

mod privileged_policy_relay_service_map_in_a_headless_browser {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_relay_service_map_in_a_headless_browser::tunnel") {
            return;
        }
        let o = LabOptions {
            relay: true,
            ..Default::default()
        };
        super::privileged_policy_relay_service_map_in_a_headless_browser(P::with_opts("smap", Topo::Tunnel, o).await).await;
    }
}
