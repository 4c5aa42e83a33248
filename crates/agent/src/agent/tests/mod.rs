//! The agent's subsystems against the fake kernel and an in-memory kvstore:
//! endpoint create/delete/restore, identity churn, policy changes and their
//! recovery, ipcache precedence and cluster events, all without root. The
//! privileged lab tests check the same against the real kernel.
use super::*;
use crate::kernel::fake::{Fake, PROG};
use seta_core::endpoint::format_mac;
use seta_kvstore::memory::MemoryStore;
use seta_kvstore::KvStore;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod k8s;
mod lifecycle;
mod outage;
mod policy_input;
mod requests;
mod services;

pub(crate) use crate::testutil::Tmp;

fn config(dir: &Path, node: &str, cidr: &str, mode: RoutingMode) -> Config {
    let mut c = Config::resolve(crate::config::RunArgs {
        node: Some(node.into()),
        pod_cidr: Some(cidr.parse().unwrap()),
        state_dir: Some(dir.join("state")),
        socket: Some(dir.join("run/agent.sock")),
        bpffs: Some(dir.join("bpffs")),
        cni_conf_dir: Some(dir.join("cni")),
        allow_host_ingress: true,
        kvstore_prefix: "/seta".into(),
        kvstore_lease_ttl: 15,
        routing_mode: mode,
        // flags whose default is true (RunArgs' Default has false)
        bpf_lb_sock_terminate_pod_connections: true,
        node_port_bind_protection: true,
        kube_proxy_replacement: true,
        // socket-LB (on by default with the replacement) only where a test asks
        bpf_lb_sock: Some(false),
        enable_session_affinity: true,
        enable_health_check_nodeport: true,
        bpf_lb_dsr_dispatch: "opt".into(),
        bpf_lb_acceleration: "disabled".into(),
        ..Default::default()
    })
    .unwrap();
    c.node_ip = None;
    c
}

use crate::config::RoutingMode;

/// An agent on the fake kernel; `kv` None: its own node-local store.
async fn agent(dir: &Path, node: &str, cidr: &str, k: &Arc<Fake>, kv: Option<Kv>, node_ip: Option<Ipv4Addr>) -> Arc<Agent> {
    agent_k8s(dir, node, cidr, k, kv, node_ip, None).await
}

/// `agent` with the Kubernetes subsystem.
async fn agent_k8s(
    dir: &Path,
    node: &str,
    cidr: &str,
    k: &Arc<Fake>,
    kv: Option<Kv>,
    node_ip: Option<Ipv4Addr>,
    k8s: Option<Arc<crate::k8s::K8s>>,
) -> Arc<Agent> {
    agent_cfg(dir, config(dir, node, cidr, RoutingMode::Tunnel), k, kv, node_ip, k8s).await
}

/// `agent` with a configuration of the test's own.
async fn agent_cfg(
    dir: &Path,
    cfg: Config,
    k: &Arc<Fake>,
    kv: Option<Kv>,
    node_ip: Option<Ipv4Addr>,
    k8s: Option<Arc<crate::k8s::K8s>>,
) -> Arc<Agent> {
    let kv = match kv {
        Some(kv) => kv,
        None => Kv::open(&cfg).await.unwrap(),
    };
    let store = Store::open(&cfg.state_dir).unwrap();
    let pool: Pool = store
        .load::<Option<Pool>>("ipam.json")
        .unwrap()
        .unwrap_or(Pool::new(cfg.pod_cidr).unwrap());
    // the fake's link "ul0", when a test made one, is the node's device
    let dev = k.state().links.get("ul0").map(|l| l.index);
    let facts = NodeFacts {
        ip: node_ip,
        mtu: 1500,
        dev: dev.map(|_| "ul0".to_string()),
        dev_addrs: match dev {
            Some(i) => k.state().addrs.iter().filter(|(x, _)| *x == i).map(|(_, a)| *a).collect(),
            None => node_ip.into_iter().collect(),
        },
        other_devs: vec![],
        k8s,
    };
    let kernel: Arc<dyn Kernel> = k.clone();
    Agent::assemble(cfg, LabelFilter::default(), kernel, kv, store, pool, facts, dir.join("pins"))
        .await
        .unwrap()
}

/// The create request the CNI plugin sends for container `name` on `link`.
fn request(name: &str, ip: Ipv4Addr, link: &seta_datapath::netlink::LinkInfo, labels: &[&str]) -> EndpointChangeRequest {
    EndpointChangeRequest {
        container_id: name.into(),
        container_interface_name: "eth0".into(),
        pod_name: name.into(),
        namespace: "default".into(),
        ipv4: ip,
        mac: "02:aa:00:00:00:01".into(),
        host_mac: format_mac(&link.mac),
        interface_name: link.name.clone(),
        interface_index: link.index,
        netns_path: String::new(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        named_ports: vec![],
        host_ports: vec![],
    }
}

/// What the CNI plugin does for a pod: an address from IPAM, a veth, the endpoint.
async fn pod(a: &Agent, k: &Fake, name: &str, labels: &[&str]) -> Result<Endpoint, ApiError> {
    let ip = a.ipam_allocate(name).await?.ipv4.ip;
    let link = k.add_link(&format!("lxc{name}"));
    a.create_endpoint(request(name, ip, &link, labels)).await
}

fn h32(ip: Ipv4Addr) -> ipnet::Ipv4Net {
    ipnet::Ipv4Net::new(ip, 32).unwrap()
}

/// Identities the policy map of endpoint `id` names (ingress and egress).
fn peers(k: &Fake, id: u16) -> std::collections::BTreeSet<u32> {
    k.state().policy[&id].keys().map(|(_, d)| d.sec_label).collect()
}

const WEB_FROM_CLIENT: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-from-client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
"#;

#[tokio::test]
async fn endpoint_create_and_delete_go_through_the_adapter() {
    let d = Tmp::new("crud");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let router: Ipv4Addr = "10.210.1.1".parse().unwrap();
    assert!(
        k.state().endpoints[&router].flags & ENDPOINT_F_HOST != 0,
        "the router entry is the host"
    );

    let ep = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    assert_eq!(ep.state, EndpointState::Ready);
    {
        {
            let st = k.state();
            assert_eq!(st.filters[&ep.interface_index], PROG, "the endpoint program is on its veth");
            assert_eq!(st.endpoints[&ep.ipv4].lxc_id, ep.id);
            assert_eq!(st.endpoints[&ep.ipv4].sec_id, ep.identity);
            assert_eq!(
                st.ipcache[&h32(ep.ipv4)].identity,
                ep.identity,
                "its identity for everyone's policy"
            );
            assert!(st.policy.contains_key(&ep.id));
        }
        // the same attachment again is idempotent; another container with the IP is not
        let again = a.get(&EndpointRef::ContainerId("web".into())).await.unwrap();
        assert_eq!(again, ep);

        let gone = a.delete_endpoint(&EndpointRef::Id(ep.id)).await.unwrap();
        assert_eq!(gone.state, EndpointState::Disconnected);
        let st = k.state();
        assert!(!st.filters.contains_key(&ep.interface_index), "program detached");
        assert!(!st.endpoints.contains_key(&ep.ipv4), "endpoint map entry gone");
        assert!(!st.ipcache.contains_key(&h32(ep.ipv4)), "ipcache entry gone");
        assert!(
            st.policy[&ep.id].is_empty(),
            "the policy map is kept registered, emptied, for the next endpoint"
        );
    }
    assert!(a.list().await.is_empty());
    assert_eq!(a.status().await.ipam.allocated, 0, "the IP went back to the pool");
    assert!(
        a.identities().await.iter().all(|i| i.id < 256),
        "no identity but the reserved ones is left"
    );
}

#[tokio::test]
async fn a_failed_attach_takes_back_only_what_it_took() {
    let d = Tmp::new("rollback");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let snapshot = |k: &Fake| {
        let st = k.state();
        (st.endpoints.clone(), st.ipcache.clone(), st.filters.clone())
    };
    let before = snapshot(&k);
    k.state().fail_attach.insert("lxcbad".into());
    let err = pod(&a, &k, "bad", &["app=bad"]).await.unwrap_err();
    assert!(matches!(err, ApiError::Internal(_)), "{err}");
    assert!(err.to_string().contains("lxcbad"), "the error names the device: {err}");
    assert_eq!(
        before,
        snapshot(&k),
        "the first endpoint's kernel state is untouched, nothing of the second stays"
    );
    assert_eq!(a.list().await, vec![web.clone()]);
    let ids: Vec<u32> = a.identities().await.iter().map(|i| i.id).filter(|i| *i >= 256).collect();
    assert_eq!(ids, vec![web.identity], "the failed pod's identity reference was released");
    // the IP stays with its owner (the CNI plugin's rollback releases it)
    assert_eq!(a.status().await.ipam.allocated, 2);
    assert_eq!(a.ipam_release_owner("bad").await.unwrap(), 1);

    // a second create for an existing container fails and changes nothing
    let dup = a
        .create_endpoint(EndpointChangeRequest {
            container_id: "web".into(),
            container_interface_name: "eth0".into(),
            ipv4: "10.210.1.99".parse().unwrap(),
            mac: "02:aa:00:00:00:02".into(),
            host_mac: web.host_mac.clone(),
            interface_name: web.interface_name.clone(),
            interface_index: web.interface_index,
            pod_name: String::new(),
            namespace: "default".into(),
            netns_path: String::new(),
            labels: vec![],
            named_ports: vec![],
            host_ports: vec![],
        })
        .await
        .unwrap_err();
    assert!(matches!(dup, ApiError::Conflict(_)), "{dup}");
    assert_eq!(k.state().filters[&web.interface_index], PROG);
    assert_eq!(a.list().await, vec![web]);
}

#[tokio::test]
async fn a_restart_is_the_same_reconcile() {
    let d = Tmp::new("restore");
    let k = Fake::new();
    let (web, client, gone) = {
        let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
        a.policy_import(WEB_FROM_CLIENT).await.unwrap();
        let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
        let client = pod(&a, &k, "client", &["app=client"]).await.unwrap();
        let gone = pod(&a, &k, "gone", &["app=gone"]).await.unwrap();
        (web, client, gone)
    };
    // while the agent was down: one pod went away, one lost its filter,
    // and a stray endpoint map entry and policy map appeared
    k.remove_link(&gone.interface_name);
    k.state().filters.remove(&client.interface_index);
    let stray: Ipv4Addr = "10.210.1.200".parse().unwrap();
    k.state().endpoints.insert(stray, Default::default());
    k.state()
        .policy
        .insert(999, [((32, Default::default()), Default::default())].into_iter().collect());
    let writes_before = k.state().log.len();

    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    assert_eq!(a.status().await.restored_endpoints, 2);
    let eps = a.list().await;
    assert_eq!(eps.iter().map(|e| e.id).collect::<Vec<_>>(), vec![web.id, client.id]);
    assert!(eps.iter().all(|e| e.state == EndpointState::Ready));
    assert_eq!(eps[0].identity, web.identity, "identities keep their numbers");
    {
        let st = k.state();
        assert_eq!(st.filters[&client.interface_index], PROG, "the lost filter is attached again");
        assert!(!st.endpoints.contains_key(&gone.ipv4) && !st.endpoints.contains_key(&stray));
        assert!(!st.ipcache.contains_key(&h32(gone.ipv4)));
        assert!(st.policy[&999].is_empty(), "a stray policy map is emptied");
        assert!(!st.policy.contains_key(&gone.id) || st.policy[&gone.id].is_empty());
        // the live web endpoint was not re-attached (no gap)
        assert!(!st.log[writes_before..].contains(&format!("attach {}", web.interface_name)));
    }
    assert!(peers(&k, web.id).contains(&client.identity), "web's policy still allows the client");
    assert!(a.policy_verify().await.unwrap().is_empty());
}

#[tokio::test]
async fn identity_churn_reaches_every_policy_incrementally() {
    let d = Tmp::new("churn");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    a.policy_import(WEB_FROM_CLIENT).await.unwrap();
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    assert!(web.ingress_enforced);
    assert!(!peers(&k, web.id).iter().any(|i| *i >= 256), "no client yet: no peer entry");
    let c1 = pod(&a, &k, "c1", &["app=client", "n=1"]).await.unwrap();
    let c2 = pod(&a, &k, "c2", &["app=client", "n=2"]).await.unwrap();
    let other = pod(&a, &k, "other", &["app=other"]).await.unwrap();
    let p = peers(&k, web.id);
    assert!(p.contains(&c1.identity) && p.contains(&c2.identity), "{p:?}");
    assert!(!p.contains(&other.identity));
    // relabel: other becomes a client, c1 stops being one
    a.set_labels(&EndpointRef::Id(other.id), vec!["app=client".into(), "n=3".into()])
        .await
        .unwrap();
    a.set_labels(&EndpointRef::Id(c1.id), vec!["app=gone".into()]).await.unwrap();
    let relabelled = a.get(&EndpointRef::Id(other.id)).await.unwrap();
    let p = peers(&k, web.id);
    assert!(p.contains(&relabelled.identity) && p.contains(&c2.identity));
    assert!(!p.contains(&c1.identity), "c1's old identity left web's map");
    a.delete_endpoint(&EndpointRef::Id(c2.id)).await.unwrap();
    assert!(!peers(&k, web.id).contains(&c2.identity), "a freed identity leaves every map");
    assert_eq!(
        a.policy_verify().await.unwrap(),
        Vec::<String>::new(),
        "incremental == full recompute"
    );
    // the policy goes: web is open again
    a.policy_delete(None, None, None, true).await.unwrap();
    let w = a.get(&EndpointRef::Id(web.id)).await.unwrap();
    assert!(!w.ingress_enforced);
    assert!(a.policy_verify().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_full_policy_map_recovers_once_its_cause_is_gone() {
    let d = Tmp::new("full");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    k.state().policy_capacity = Some(3);
    let ports: Vec<String> = (1..=10).map(|p| format!("{{port: \"{}\", protocol: TCP}}", 8000 + p)).collect();
    let wide = format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: wide, namespace: default}}\nspec:\n  endpointSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - toPorts: [{{ports: [{}]}}]\n",
        ports.join(", ")
    );
    a.policy_import(&wide).await.unwrap();
    let st = a.status().await;
    let w = a.get(&EndpointRef::Id(web.id)).await.unwrap();
    assert_eq!(w.state, EndpointState::NotReady);
    assert!(w.status_message.contains("full"), "{}", w.status_message);
    assert_eq!(st.reconcile.endpoints_failed.len(), 1);
    assert!(st.policy_map_full_errors >= 1);
    assert_eq!(a.retry_once().await, Retry::Pending, "still full");
    // the map grows (or the policy shrinks): the next retry converges
    k.state().policy_capacity = Some(64);
    assert_eq!(a.retry_once().await, Retry::Converged(1));
    assert_eq!(a.get(&EndpointRef::Id(web.id)).await.unwrap().state, EndpointState::Ready);
    assert!(a.status().await.reconcile.endpoints_failed.is_empty());
    assert!(a.policy_verify().await.unwrap().is_empty());
    assert_eq!(a.retry_once().await, Retry::Idle);
}

#[tokio::test]
async fn cidr_rules_never_replace_a_pods_ipcache_entry() {
    let d = Tmp::new("cidr");
    let k = Fake::new();
    let a = agent(&d.0, "n1", "10.210.1.0/24", &k, None, None).await;
    let web = pod(&a, &k, "web", &["app=web"]).await.unwrap();
    let client = pod(&a, &k, "client", &["app=client"]).await.unwrap();
    let before = k.state().ipcache.clone();
    let policy = format!(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: cidrs, namespace: default}}
spec:
  endpointSelector: {{matchLabels: {{app: client}}}}
  egress:
  - toCIDR: [{web}/32, 10.210.0.0/16]
  - toCIDRSet: [{{cidr: 0.0.0.0/0, except: [{client}/32]}}]
"#,
        web = web.ipv4,
        client = client.ipv4
    );
    a.policy_import(&policy).await.unwrap();
    {
        let st = k.state();
        assert_eq!(
            st.ipcache[&h32(web.ipv4)],
            before[&h32(web.ipv4)],
            "the pod keeps its label identity"
        );
        assert_eq!(st.ipcache[&h32(client.ipv4)], before[&h32(client.ipv4)]);
        let wide = st.ipcache[&"10.210.0.0/16".parse().unwrap()].identity;
        assert!(wide >= SCOPE_LOCAL, "a CIDR gets a node-local identity ({wide})");
    }
    // an ipcache write that fails stays pending in status and converges on retry
    let net: ipnet::Ipv4Net = "192.0.2.0/24".parse().unwrap();
    k.state().fail_ipcache.insert(net);
    let more = policy.replace("10.210.0.0/16", "10.210.0.0/16, 192.0.2.0/24");
    a.policy_import(&more).await.unwrap();
    assert_eq!(a.status().await.reconcile.ipcache_failed.len(), 1);
    k.state().fail_ipcache.clear();
    assert_eq!(a.retry_once().await, Retry::Converged(0));
    assert!(k.state().ipcache.contains_key(&net));
    // deleting the policy brings the ipcache back to exactly what it was
    a.policy_delete(Some("cidrs"), Some("default"), None, false).await.unwrap();
    assert_eq!(k.state().ipcache, before);
    assert!(a.policy_verify().await.unwrap().is_empty());
}

/// Wait until `f` holds (cluster events arrive through the store's watch).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cluster_events_reach_ipcache_routes_and_policy() {
    let d = Tmp::new("cluster");
    let store = Arc::new(MemoryStore::new());
    let (k1, k2) = (Fake::new(), Fake::new());
    k1.add_link(HOST_DEV);
    let ip1: Ipv4Addr = "172.31.0.1".parse().unwrap();
    let ip2: Ipv4Addr = "172.31.0.2".parse().unwrap();
    let (d1, d2) = (d.0.join("n1"), d.0.join("n2"));
    let a1 = agent(
        &d1,
        "n1",
        "10.210.1.0/24",
        &k1,
        Some(Kv::shared_memory(store.clone(), "/seta", "n1")),
        Some(ip1),
    )
    .await;
    let a2 = agent(
        &d2,
        "n2",
        "10.210.2.0/24",
        &k2,
        Some(Kv::shared_memory(store.clone(), "/seta", "n2")),
        Some(ip2),
    )
    .await;
    for a in [&a1, &a2] {
        a.republish_all().await.unwrap();
        tokio::spawn(a.clone().cluster_sync());
        tokio::spawn(a.clone().ip_publisher());
    }
    // a policy imported on one node is enforced on both
    let web = pod(&a1, &k1, "web", &["app=web"]).await.unwrap();
    a2.policy_import(WEB_FROM_CLIENT).await.unwrap();
    let rev = a2.revision().await;
    eventually("n1 has the policy", || a1.policy.get().revision() >= 1).await;
    assert!(rev >= 1);

    // a pod on n2: n1 learns its IP, identity and tunnel endpoint
    let client = pod(&a2, &k2, "client", &["app=client"]).await.unwrap();
    let want = seta_core::ipcache::Entry {
        identity: client.identity,
        tunnel_endpoint: Some(ip2),
    };
    eventually("n1's ipcache has the remote pod", || {
        k1.state().ipcache.get(&h32(client.ipv4)) == Some(&want)
    })
    .await;
    eventually("web's policy allows the remote client", || {
        k1.state()
            .policy
            .get(&web.id)
            .is_some_and(|m| m.keys().any(|(_, d)| d.sec_label == client.identity))
    })
    .await;
    // and a route to n2's pod CIDR through seta_host
    let cidr2 = ("10.210.2.0".parse().unwrap(), 24);
    eventually("n1 routes to n2's pods", || k1.state().routes.contains_key(&cidr2)).await;
    let host = k1.state().links[HOST_DEV].index;
    assert_eq!(k1.state().routes[&cidr2].oif, Some(host), "tunnel mode: through seta_host");
    // n2's router address is the remote-node identity, behind n2's tunnel endpoint
    let router2: Ipv4Addr = "10.210.2.1".parse().unwrap();
    let node_entry = seta_core::ipcache::Entry {
        identity: seta_abi::REMOTE_NODE_ID,
        tunnel_endpoint: Some(ip2),
    };
    eventually("n2 is a remote node", || k1.state().ipcache.get(&h32(router2)) == Some(&node_entry)).await;

    // the pod goes: its entry and its identity go everywhere
    a2.delete_endpoint(&EndpointRef::Id(client.id)).await.unwrap();
    a2.flush_identity_releases().await;
    eventually("n1 forgets the remote pod", || !k1.state().ipcache.contains_key(&h32(client.ipv4))).await;
    // n2 dropped its reference; the identity itself stays until the
    // operator's GC removes it (as Cilium's), which is done here by hand
    let base = "/seta/identities/v1";
    assert!(
        store.list(&format!("{base}/ref/{}/", client.identity)).await.unwrap().is_empty(),
        "n2's reference is gone"
    );
    let key = store
        .get(&format!("{base}/id/{}", client.identity))
        .await
        .unwrap()
        .expect("the identity outlives its last reference until GC");
    store.delete(&format!("{base}/id/{}", client.identity)).await.unwrap();
    store
        .delete(&format!("{base}/labels/{}", String::from_utf8_lossy(&key)))
        .await
        .unwrap();
    eventually("the freed identity leaves web's map", || {
        !k1.state().policy[&web.id].keys().any(|(_, d)| d.sec_label == client.identity)
    })
    .await;
    // the node leaves the registry: its route and node entry go
    store.delete("/seta/nodes/v1/n2").await.unwrap();
    eventually("n1 drops the route", || !k1.state().routes.contains_key(&cidr2)).await;
    eventually("n1 drops n2's node entry", || !k1.state().ipcache.contains_key(&h32(router2))).await;
    assert!(a1.policy_verify().await.unwrap().is_empty());
}
