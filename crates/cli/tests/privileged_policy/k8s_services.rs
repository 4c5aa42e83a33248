//! Services under Kubernetes (`seta lab up --k8s`), driven by kubectl: a
//! Service and its EndpointSlice applied reach every node's maps and carry
//! traffic; a refused version is reported as an Event and changes nothing;
//! `seta service import` is refused; a deleted Service stops answering.
use super::*;

const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  clusterIP: 10.96.0.60\n  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]\n";

async fn privileged_policy_k8s_services_from_kubectl(p: P) {
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        let (ok, out, err) = p.lab().kubectl(args, stdin).unwrap();
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    let _w = Responder::start(&p.ns("web"), p.web_addr(8080));
    let slice = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n- {{addresses: [{}], conditions: {{ready: true}}}}\n",
        p.ip("web")
    );
    assert_eq!(kubectl(&["apply", "-f", "-"], Some(SVC)), "service/web created");
    assert_eq!(
        kubectl(&["apply", "-f", "-"], Some(&slice)),
        "endpointslice.discovery.k8s.io/web-1 created"
    );
    let vip: SocketAddr = "10.96.0.60:80".parse().unwrap();
    until_tcp(&p.ns("client"), vip, true, "client reaches web through the ClusterIP from the API");
    for n in p.nodes() {
        let l = common::seta(&n, &["service", "list"]);
        assert!(
            l.as_array()
                .unwrap()
                .iter()
                .any(|e| e["frontend"] == "10.96.0.60:80/TCP" && e["backends"][0]["address"] == format!("{}:8080/TCP", p.ip("web"))),
            "{n}: {l}"
        );
    }
    // the CLI's import is refused: services come from the API here
    let f = std::env::temp_dir().join(format!("{}-k8ssvc.yaml", p.lab().name));
    std::fs::write(&f, SVC).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seta"))
        .args(["--node", &p.node(), "service", "import", f.to_str().unwrap()])
        .output_within(seta_lab::wait::PROGRAM_TIMEOUT)
        .unwrap();
    let _ = std::fs::remove_file(&f);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("services come from the Kubernetes API here"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a bad version (a port of 0): a Warning Event naming the field; the
    // accepted version keeps working
    let bad = SVC.replace("port: 80,", "port: 0,");
    assert_eq!(kubectl(&["apply", "-f", "-"], Some(&bad)), "service/web configured");
    let t = std::time::Instant::now();
    loop {
        let ev = kubectl(
            &[
                "get",
                "events",
                "-o",
                "jsonpath={range .items[*]}{.reason} {.involvedObject.name} {.message}{\"\\n\"}{end}",
            ],
            None,
        );
        if let Some(line) = ev.lines().find(|l| l.starts_with("ServiceRejected web ")) {
            assert!(line.contains("Service default/web") && line.contains("port"), "{line}");
            break;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "no ServiceRejected event: {ev}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(tcp_ok(&p.ns("client"), vip), "the accepted version stays");
    // deleted: the ClusterIP no longer answers
    assert!(kubectl(&["delete", "service", "web"], None).starts_with("service \"web\" deleted"));
    until_tcp(&p.ns("client"), vip, false, "the deleted service is gone from the maps");
}

mod privileged_policy_k8s_services_from_kubectl {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_k8s_services_from_kubectl::one") {
            return;
        }
        super::privileged_policy_k8s_services_from_kubectl(P::with_opts("ksone", Topo::One, k8s()).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_k8s_services_from_kubectl::tunnel") {
            return;
        }
        super::privileged_policy_k8s_services_from_kubectl(P::with_opts("kstunnel", Topo::Tunnel, k8s()).await).await;
    }
}
