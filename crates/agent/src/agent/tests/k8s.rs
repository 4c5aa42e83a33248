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

/// An agent of node n1 on the fake kernel, reading the fixture API through
/// kube-rs, with Pods web (app=web) and client (app=client) wired.
async fn setup(d: &Tmp) -> (Api, Arc<Fake>, Arc<Agent>, Endpoint, Endpoint) {
    let api = api(&d.0).await;
    let src = crate::k8s::Source::Kubeconfig(api.kubeconfig.clone());
    let client = crate::k8s::connect(&src).await.unwrap();
    let mut k8s = crate::k8s::K8s::new(client, src, &super::super::k8s::watches());
    k8s.pod_wait = Duration::from_millis(500);
    let k = Fake::new();
    let a = agent_k8s(&d.0, "n1", "10.215.1.0/24", &k, None, None, Some(Arc::new(k8s))).await;
    a.spawn_k8s();
    // a CNI ADD for a Pod the API does not have is refused and takes nothing
    let err = pod(&a, &k, "ghost", &[]).await.unwrap_err();
    assert!(
        matches!(err, ApiError::Unavailable(_)) && err.to_string().contains("pod default/ghost: not in the Kubernetes API"),
        "{err}"
    );
    assert!(a.list().await.is_empty());
    // Pods of this node give their endpoints' labels (the CNI's are not used)
    let pods = find("", "v1", "pods").unwrap();
    let pod_obj = |name: &str, app: &str, node: &str| {
        object(
            &RESOURCES[pods],
            Some("default"),
            name,
            json!({"metadata": {"labels": {"app": app}}, "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}),
        )
    };
    for (n, app) in [("web", "web"), ("client", "client")] {
        api.server
            .write(pods, "default", None, Write::Create(pod_obj(n, app, "n1")))
            .unwrap();
    }
    api.server
        .write(pods, "default", None, Write::Create(pod_obj("elsewhere", "web", "n2")))
        .unwrap();
    let web = pod(&a, &k, "web", &["app=wrong"]).await.unwrap();
    let client = pod(&a, &k, "client", &[]).await.unwrap();
    assert!(web.labels.iter().any(|l| l.to_string() == "k8s:app=web"), "{:?}", web.labels);
    assert_eq!(web.named_ports["http"], (6, 8080), "named ports from the Pod's containers");
    (api, k, a, web, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_give_labels_and_ciliumendpoints_and_namespaces_relabel() {
    let d = Tmp::new("k8spods");
    let (api, k, a, web, client) = setup(&d).await;
    let _ = &k;
    let pods = find("", "v1", "pods").unwrap();
    // their CiliumEndpoints
    let ceps = find("cilium.io", "v2", "ciliumendpoints").unwrap();
    let cep = |api: &Api, name: &str| api.server.get(ceps, "default", name);
    eventually("web's CiliumEndpoint", || cep(&api, "web").is_some()).await;
    let c = cep(&api, "web").unwrap();
    assert_eq!(c["status"]["id"], web.id);
    assert_eq!(c["status"]["identity"]["id"], web.identity);
    assert_eq!(c["status"]["networking"]["addressing"][0]["ipv4"], web.ipv4.to_string());
    assert_eq!(c["metadata"]["ownerReferences"][0]["kind"], "Pod");
    // Cilium's status without --endpoint-status=policy (kubectl get cep -o wide)
    assert_eq!(c["status"]["policy"]["ingress"]["state"], "<status disabled>");
    assert_eq!(c["status"]["policy"]["egress"]["state"], "<status disabled>");
    assert_eq!(c["status"]["visibility-policy-status"], "<status disabled>");

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

    // a Pod's label change re-identifies its endpoint, and its CEP follows
    let before = a.get(&EndpointRef::Id(client.id)).await.unwrap().identity;
    api.server
        .write(
            pods,
            "default",
            Some("client"),
            Write::MergePatch {
                patch: json!({"metadata": {"labels": {"app": "client2"}}}),
                status_only: false,
            },
        )
        .unwrap();
    let mut moved = None;
    for _ in 0..500 {
        let ep = a.get(&EndpointRef::Id(client.id)).await.unwrap();
        if ep.identity != before {
            moved = Some(ep);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let moved = moved.expect("client re-identified");
    assert!(moved.labels.iter().any(|l| l.to_string() == "k8s:app=client2"));
    eventually("client's CEP has the new identity", || {
        cep(&api, "client").is_some_and(|c| c["status"]["identity"]["id"] == moved.identity)
    })
    .await;
    // the endpoint's delete takes its CEP
    a.delete_endpoint(&EndpointRef::Id(client.id)).await.unwrap();
    eventually("client's CEP is gone", || cep(&api, "client").is_none()).await;

    assert!(
        a.status().await.kubernetes.starts_with("ok (8 watches, kubeconfig "),
        "{}",
        a.status().await.kubernetes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_from_the_api_are_enforced_refused_with_status_and_deleted() {
    let d = Tmp::new("k8spol");
    let (api, k, a, web, client) = setup(&d).await;
    let cnps = find("cilium.io", "v2", "ciliumnetworkpolicies").unwrap();
    // a CiliumNetworkPolicy created in the API is enforced
    api.server.write(cnps, "default", None, Write::Create(cnp("8080"))).unwrap();
    // `policy wait` right after the write: the API's state as of now is enforced when it returns
    a.policy_wait(None, Duration::from_secs(10)).await.unwrap();
    assert!(peers(&k, web.id).contains(&client.identity), "enforced when policy wait returns");
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
        a.status().await.kubernetes.starts_with("ok (8 watches, kubeconfig "),
        "{}",
        a.status().await.kubernetes
    );
}

/// Services and EndpointSlices come from the API: they reach the service
/// maps; a refused version keeps the accepted one and gets an Event; local
/// imports are refused; a delete takes the frontend away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_from_the_api_reach_the_maps_and_bad_ones_are_reported() {
    let d = Tmp::new("k8ssvc");
    let (api, k, a, web, _client) = setup(&d).await;
    let svcs = find("", "v1", "services").unwrap();
    let slices = find("discovery.k8s.io", "v1", "endpointslices").unwrap();
    let svc = |port: i64| {
        object(
            &RESOURCES[svcs],
            Some("default"),
            "web",
            json!({"spec": {"clusterIP": "10.96.0.77", "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}}),
        )
    };
    api.server.write(svcs, "default", None, Write::Create(svc(80))).unwrap();
    api.server
        .write(
            slices,
            "default",
            None,
            Write::Create(object(
                &RESOURCES[slices],
                Some("default"),
                "web-1",
                json!({"metadata": {"labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4",
                       "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                       "endpoints": [{"addresses": [web.ipv4.to_string()], "conditions": {"ready": true}}]}),
            )),
        )
        .unwrap();
    let frontend = |k: &Fake, port: u16| {
        k.state()
            .lb
            .services
            .keys()
            .any(|key| key.address == [10, 96, 0, 77] && u16::from_be_bytes(key.dport) == port && key.backend_slot == 1)
    };
    eventually("the ClusterIP with its backend in the maps", || frontend(&k, 80)).await;
    let l = a.service_list();
    assert_eq!(l[0].backends[0].address, format!("{}:8080/TCP", web.ipv4));
    // local imports are refused under Kubernetes
    let err = a
        .service_import("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: 10.96.0.78, ports: [{port: 80}]}\n")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("services come from the Kubernetes API"), "{err}");
    // a bad version (port 0): refused with its field, an Event; port 80 stays
    api.server
        .write(
            svcs,
            "default",
            Some("web"),
            Write::MergePatch {
                patch: json!({"spec": {"ports": [{"name": "http", "port": 0, "targetPort": "http", "protocol": "TCP"}]}}),
                status_only: false,
            },
        )
        .unwrap();
    let rejected = || {
        api.server
            .list(find("", "v1", "events").unwrap(), Some("default"))
            .into_iter()
            .find(|e| e["reason"] == "ServiceRejected" && e["involvedObject"]["name"] == "web")
    };
    eventually("the refusal as an Event", || rejected().is_some()).await;
    let msg = rejected().unwrap()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("Service default/web") && msg.contains("port"), "{msg}");
    assert!(frontend(&k, 80), "the accepted version stays");
    // a valid change applies; a delete takes it away
    api.server
        .write(
            svcs,
            "default",
            Some("web"),
            Write::MergePatch {
                patch: json!({"spec": {"ports": [{"name": "http", "port": 81, "targetPort": "http", "protocol": "TCP"}]}}),
                status_only: false,
            },
        )
        .unwrap();
    eventually("port 81", || frontend(&k, 81) && !frontend(&k, 80)).await;
    api.server.write(svcs, "default", Some("web"), Write::Delete).unwrap();
    eventually("the frontend gone", || !frontend(&k, 81)).await;
}

/// CRD mode: two agents allocating the same label sets at the same moment
/// end with one CiliumIdentity per label set and agree on its number
/// (Cilium's #25251), also when the first number the labels suggest is
/// taken by other labels; the identities, CiliumNodes and CiliumEndpoints
/// reflect as the kvstore's entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_mode_racing_agents_get_one_identity_per_label_set() {
    use crate::k8s::crd::{candidates, cilium_identity, Crd, Shared};
    let d = Tmp::new("k8scrd");
    let api = api(&d.0).await;
    let src = crate::k8s::Source::Kubeconfig(api.kubeconfig.clone());
    let crd = |node: &str, ip: &str| {
        let src = src.clone();
        let node = node.to_string();
        let ip: Ipv4Addr = ip.parse().unwrap();
        async move { Arc::new(Crd::new(crate::k8s::connect(&src).await.unwrap(), &node, "/seta", Some(ip))) }
    };
    let (a, b) = (crd("n1", "172.30.0.1").await, crd("n2", "172.30.0.2").await);
    let sets: Vec<LabelSet> = (0..24)
        .map(|i| seta_core::labels::parse_list(&format!("app=a{i},io.kubernetes.pod.namespace=default"), "k8s").unwrap())
        .collect();
    // the first number of set 0 is held by other labels already
    let ids_res = find("cilium.io", "v2", "ciliumidentities").unwrap();
    let taken = candidates(&seta_core::labels::labels_key(&sets[0])).next().unwrap();
    let other = seta_core::labels::parse_list("app=other", "k8s").unwrap();
    api.server
        .write(ids_res, "", None, Write::Create(cilium_identity(taken, &other)))
        .unwrap();
    let race = |c: Arc<Crd>, sets: Vec<LabelSet>| {
        tokio::spawn(async move {
            let mut out = vec![];
            for s in &sets {
                out.push(c.allocate(s).await.unwrap());
            }
            out
        })
    };
    let (ra, rb) = tokio::join!(race(a.clone(), sets.clone()), race(b.clone(), sets.clone()));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra, rb, "both agents got the same numbers");
    assert_ne!(ra[0], taken, "set 0 moved past the number other labels hold");
    let listed = api.server.list(ids_res, None);
    assert_eq!(listed.len(), sets.len() + 1, "one CiliumIdentity per label set: {listed:?}");
    for (s, id) in sets.iter().zip(&ra) {
        let o = api.server.get(ids_res, "", &id.to_string()).unwrap();
        assert_eq!(
            o["security-labels"]["k8s:app"],
            s.iter().find(|l| l.key == "app").unwrap().value.as_str()
        );
    }
    // again: the existing objects are found, nothing new is made
    assert_eq!(a.allocate(&sets[3]).await.unwrap(), ra[3]);
    assert_eq!(api.server.list(ids_res, None).len(), sets.len() + 1);

    // reflections: identities, this node's CiliumNode, CiliumEndpoints
    let health = Arc::new(seta_kvstore::reflector::Health::default());
    let mut rx = a.reflect(Shared::Identities, health.clone());
    match rx.recv().await.unwrap() {
        seta_kvstore::reflector::Update::Reset(snap) => {
            assert_eq!(snap.len(), sets.len() + 1);
            let key = format!("/seta/identities/v1/id/{}", ra[0]);
            let v = &snap.iter().find(|(k, _)| *k == key).unwrap().1;
            assert_eq!(String::from_utf8_lossy(v), seta_core::labels::labels_key(&sets[0]));
        }
        u => panic!("{u:?}"),
    }
    assert!(health.connected());
    let info = seta_kvstore::nodes::NodeInfo {
        name: "n2".into(),
        ips: vec!["172.30.0.2".parse().unwrap()],
        pod_cidr: "10.215.2.0/24".into(),
        boot_id: "b2".into(),
        internal_ip: Some("172.30.0.2".parse().unwrap()),
        routing_mode: "tunnel".into(),
        health_address: Some("172.30.0.2:4240".into()),
    };
    b.register_node(&info).await.unwrap();
    b.register_node(&info).await.unwrap(); // unchanged: no write
    assert_eq!(a.nodes().await.unwrap(), vec![info.clone()]);
    let mut rx = a.reflect(Shared::Nodes, health.clone());
    match rx.recv().await.unwrap() {
        seta_kvstore::reflector::Update::Reset(snap) => {
            assert_eq!(snap.len(), 1);
            assert_eq!(serde_json::from_slice::<seta_kvstore::nodes::NodeInfo>(&snap[0].1).unwrap(), info);
        }
        u => panic!("{u:?}"),
    }
    let mut ips = a.reflect(Shared::Ips, health.clone());
    assert_eq!(ips.recv().await.unwrap(), seta_kvstore::reflector::Update::Reset(vec![]));
    let ceps = find("cilium.io", "v2", "ciliumendpoints").unwrap();
    api.server
        .write(
            ceps,
            "default",
            None,
            Write::Create(object(
                &RESOURCES[ceps],
                Some("default"),
                "web",
                json!({"status": {"id": 7, "identity": {"id": ra[1]}, "networking": {"addressing": [{"ipv4": "10.215.2.9"}], "node": "172.30.0.2"}}}),
            )),
        )
        .unwrap();
    match ips.recv().await.unwrap() {
        seta_kvstore::reflector::Update::Changes(ev) => {
            assert_eq!(ev[0].key, "/seta/ip/v1/10.215.2.9");
            let e = seta_kvstore::ipcache::parse(ev[0].value.as_ref().unwrap()).unwrap();
            assert_eq!((e.identity, e.host_ip.to_string()), (ra[1], "172.30.0.2".to_string()));
        }
        u => panic!("{u:?}"),
    }
}
