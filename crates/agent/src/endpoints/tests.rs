use super::*;

fn eps() -> Endpoints {
    Endpoints::new(Pool::new("10.200.1.0/24".parse().unwrap()).unwrap())
}

fn req(cid: &str, ip: Ipv4Addr, ifindex: u32) -> EndpointChangeRequest {
    EndpointChangeRequest {
        container_id: cid.into(),
        container_interface_name: "eth0".into(),
        pod_name: "p".into(),
        namespace: "default".into(),
        ipv4: ip,
        mac: "02:00:00:00:00:01".into(),
        host_mac: "02:00:00:00:00:02".into(),
        interface_name: format!("lxc{ifindex}"),
        interface_index: ifindex,
        netns_path: String::new(),
        labels: vec![],
        named_ports: vec![],
        host_ports: vec![],
    }
}

fn ready(r: &EndpointChangeRequest, id: u16) -> Endpoint {
    let mut ep = new_endpoint(
        r,
        id,
        &[2, 0, 0, 0, 0, 1],
        &[2, 0, 0, 0, 0, 2],
        BTreeMap::new(),
        LabelSet::new(),
        1000,
    );
    ep.state = EndpointState::Ready;
    ep
}

#[test]
fn admission_checks_the_address_and_holds_id_and_container_until_finished() {
    let mut e = eps();
    let outside = req("c0", "10.9.9.9".parse().unwrap(), 5);
    assert!(matches!(e.admit(&outside), Err(Refusal::BadRequest(m)) if m.starts_with("ipv4: 10.9.9.9 is not in")));
    let unallocated = req("c0", "10.200.1.77".parse().unwrap(), 5);
    assert!(matches!(e.admit(&unallocated), Err(Refusal::BadRequest(m)) if m.contains("not allocated through IPAM")));

    let ip = e.allocate("c1").unwrap();
    let r1 = req("c1", ip, 5);
    let Ok(Admission::New(id)) = e.admit(&r1) else { panic!("admitted") };
    assert!(e.used_ids().contains(&id));
    // a second create for the same container while the first loads
    assert!(matches!(e.admit(&r1), Err(Refusal::Conflict(m)) if m.contains("being attached")));
    // another container gets another id
    let ip2 = e.allocate("c2").unwrap();
    let Ok(Admission::New(id2)) = e.admit(&req("c2", ip2, 6)) else {
        panic!("admitted")
    };
    assert_ne!(id, id2);
    // the first commits: the same request again is idempotent
    e.finish(id, "c1");
    e.insert(ready(&r1, id));
    assert!(matches!(e.admit(&r1), Ok(Admission::Existing(ep)) if ep.id == id));
    // the same container with another interface is a conflict
    assert!(matches!(e.admit(&req("c1", ip, 9)), Err(Refusal::Conflict(m)) if m.contains("delete it first")));
    // another container on the first one's address
    e.adopt_ip(ip, "c3");
    assert!(matches!(e.admit(&req("c3", ip, 7)), Err(Refusal::Conflict(m)) if m.contains("already used")));
    // a rolled-back creation gives its id back
    e.finish(id2, "c2");
    assert!(!e.used_ids().contains(&id2));
}

#[test]
fn ipam_keeps_addresses_of_endpoints_and_releases_by_owner() {
    let mut e = eps();
    assert!(matches!(e.allocate(""), Err(Refusal::BadRequest(_))));
    let a = e.allocate("c1").unwrap();
    let b = e.allocate("c1").unwrap();
    let r = req("c1", a, 5);
    let Ok(Admission::New(id)) = e.admit(&r) else { panic!() };
    e.finish(id, "c1");
    e.insert(ready(&r, id));
    assert!(matches!(e.release(a), Err(Refusal::Conflict(_))), "an endpoint's address stays");
    assert_eq!(e.release_owner("c1"), 1, "only the unused one goes");
    assert!(e.pool().owner_of(b).is_none());
    assert!(matches!(e.release(b), Err(Refusal::NotFound(_))));
    let gone = e.remove(id).unwrap();
    e.free_ip(gone.ipv4);
    assert!(e.pool().allocated.is_empty());
    assert!(matches!(e.find(&EndpointRef::Id(id)), Err(Refusal::NotFound(_))));
}

#[test]
fn peer_ports_and_states_follow_the_endpoints() {
    let mut e = eps();
    for (i, cid) in ["a", "b"].iter().enumerate() {
        let ip = e.allocate(cid).unwrap();
        let r = req(cid, ip, 10 + i as u32);
        let Ok(Admission::New(id)) = e.admit(&r) else { panic!() };
        e.finish(id, cid);
        let mut ep = ready(&r, id);
        ep.named_ports.insert("http".into(), (6, 8080 + i as u16));
        if i == 1 {
            ep.state = EndpointState::NotReady;
        }
        e.insert(ep);
    }
    assert_eq!(e.peer_ports()["http"], [(6, 8080), (6, 8081)].into_iter().collect());
    assert_eq!(e.state_counts().get("ready"), Some(&1));
    assert_eq!(e.not_ready().len(), 1);
    assert!(e.uses_identity(1000));
}
