//! Intent from the Kubernetes API (the in-memory fixture API server on
//! loopback, reached by kube-rs as in production): policies and namespaces'
//! labels reach the maps; a refused object gets its status and an Event and
//! leaves the accepted version in force.
use super::*;
use serde_json::json;
use seta_k8s_fixture::resources::{find, RESOURCES};
use seta_k8s_fixture::store::{object, Write};

struct Api {
    server: Arc<seta_k8s_fixture::ApiServer>,
    kubeconfig: PathBuf,
}

async fn api(dir: &Path) -> Api {
    let server = seta_k8s_fixture::ApiServer::new(Duration::from_millis(200), 1000);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(seta_k8s_fixture::server::serve(server.clone(), listener));
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, seta_k8s_fixture::kubeconfig(&url)).unwrap();
    Api { server, kubeconfig }
}

fn cnp(port: &str) -> serde_json::Value {
    let r = &RESOURCES[find("cilium.io", "v2", "ciliumnetworkpolicies").unwrap()];
    object(
        r,
        Some("default"),
        "web-from-client",
        json!({"spec": {"endpointSelector": {"matchLabels": {"app": "web"}},
                         "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}}],
                                      "toPorts": [{"ports": [{"port": port, "protocol": "TCP"}]}]}]}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_namespace_labels_come_from_the_kubernetes_api() {
    let d = Tmp::new("k8s");
    let api = api(&d.0).await;
    let src = crate::k8s::Source::Kubeconfig(api.kubeconfig.clone());
    let client = crate::k8s::connect(&src).await.unwrap();
    let k8s = Arc::new(crate::k8s::K8s::new(client, src, &super::super::k8s::watches()));
    let k = Fake::new();
    let a = agent_k8s(&d.0, "n1", "10.215.1.0/24", &k, None, None, Some(k8s)).await;
    a.spawn_k8s();
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let client = pod(&a, &k, "client", &["app=client"]).await.unwrap();
    let cnps = find("cilium.io", "v2", "ciliumnetworkpolicies").unwrap();

    // a CiliumNetworkPolicy created in the API is enforced
    api.server.write(cnps, "default", None, Write::Create(cnp("8080"))).unwrap();
    eventually("the CNP reaches web's map", || peers(&k, web.id).contains(&client.identity)).await;
    let err = a.policy_import(WEB_FROM_CLIENT).await.unwrap_err();
    assert!(
        err.to_string().contains("use kubectl") || err.to_string().contains("with kubectl"),
        "{err}"
    );

    // a bad version: refused with the field, its status and an Event; the accepted one stays
    api.server
        .write(
            cnps,
            "default",
            Some("web-from-client"),
            Write::MergePatch {
                patch: json!({"spec": {"ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}}], "toPorts": [{"ports": [{"port": "99999", "protocol": "TCP"}]}]}]}}),
                status_only: false,
            },
        )
        .unwrap();
    let status = |api: &Api| api.server.get(cnps, "default", "web-from-client").unwrap()["status"]["nodes"]["n1"].clone();
    eventually("the refusal in the CNP's status", || status(&api)["ok"] == false).await;
    let msg = status(&api)["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("spec.ingress[0].toPorts[0].ports[0].port") && msg.contains("99999"),
        "{msg}"
    );
    let events = api.server.list(find("", "v1", "events").unwrap(), Some("default"));
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "PolicyRejected" && e["involvedObject"]["name"] == "web-from-client" && e["message"] == msg.as_str()),
        "{events:?}"
    );
    assert!(
        peers(&k, web.id).contains(&client.identity),
        "the accepted version is still enforced"
    );
    assert!(a
        .status()
        .await
        .kubernetes
        .contains("refused: CiliumNetworkPolicy default/web-from-client"));
    // fixed: the status says so
    api.server
        .write(
            cnps,
            "default",
            Some("web-from-client"),
            Write::Update {
                object: cnp("9090"),
                status_only: false,
            },
        )
        .unwrap();
    eventually("the CNP's status is ok again", || status(&api)["ok"] == true).await;

    // a namespace's labels from the API reach the endpoints' identities
    api.server
        .write(
            0,
            "",
            Some("default"),
            Write::MergePatch {
                patch: json!({"metadata": {"labels": {"team": "a"}}}),
                status_only: false,
            },
        )
        .unwrap();
    let mut relabelled = false;
    for _ in 0..500 {
        let ep = a.get(&EndpointRef::Id(web.id)).await.unwrap();
        if ep
            .labels
            .iter()
            .any(|l| l.to_string() == "k8s:io.cilium.k8s.namespace.labels.team=a")
        {
            relabelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(relabelled, "web's identity carries its namespace's new label");

    // deleted: nothing enforces ingress on web any more
    api.server.write(cnps, "default", Some("web-from-client"), Write::Delete).unwrap();
    let mut open = false;
    for _ in 0..500 {
        if !a.get(&EndpointRef::Id(web.id)).await.unwrap().ingress_enforced {
            open = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(open, "the deleted policy no longer applies");
    assert!(
        a.status().await.kubernetes.starts_with("ok (4 watches, kubeconfig "),
        "{}",
        a.status().await.kubernetes
    );
}
