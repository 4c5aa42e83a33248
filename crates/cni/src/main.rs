//! seta-cni: the CNI plugin (spec 0.3.1, 0.4.0, 1.0.0, 1.1.0).
//!
//! ADD allocates an address from the agent, creates the veth pair (host side
//! `lxc<12 hex>`), moves the peer into the pod netns as CNI_IFNAME with a /32,
//! a route to the router and a default route, and registers the endpoint; the
//! agent answers only once the endpoint's programs and map entries are live.
//! Every step is undone if a later one fails.
use serde_json::{json, Value};
use seta_client::{Client, ClientError};
use seta_core::api::{IpamResponse, Status};
use seta_core::cni::{self, code, AddOutcome, CniError, Command, Env, NetConf};
use seta_core::endpoint::{format_mac, Endpoint, EndpointChangeRequest, EndpointRef};
use seta_core::names::lxc_name;
use seta_datapath::netlink::Netlink;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

/// `seta-cni install DIR`: copy this binary into DIR (a node's
/// /opt/cni/bin, from the agent DaemonSet's init container) atomically:
/// written beside it, then renamed, so a runtime never runs half a file.
fn install(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe()?;
    let dst = dir.join("seta-cni");
    let tmp = dir.join(".seta-cni.new");
    std::fs::copy(&me, &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &dst)?;
    Ok(dst)
}

fn main() {
    // runtimes call a CNI plugin without arguments; an installer passes some
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("install") {
        let Some(dir) = args.get(2) else {
            eprintln!("usage: seta-cni install DIR   (copies seta-cni into DIR, e.g. /host/opt/cni/bin)");
            std::process::exit(2);
        };
        match install(std::path::Path::new(dir)) {
            Ok(p) => println!("installed {}", p.display()),
            Err(e) => {
                eprintln!("installing seta-cni into {dir}: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let version = serde_json::from_slice::<Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(String::from))
        .filter(|v| cni::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cmd_name = std::env::var("CNI_COMMAND").unwrap_or_default();
    let result = rt.block_on(run(&cmd_name, &stdin));
    let mut out = std::io::stdout();
    match result {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&v).unwrap());
        }
        Ok(None) => {}
        Err(e) => {
            log_line(&stdin, &format!("{cmd_name} failed: code {} {}", e.code, e.msg));
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&e.to_json(&version)).unwrap());
            std::process::exit(1);
        }
    }
}

/// Append to the conf's log-file, if it has one.
fn log_line(stdin: &[u8], msg: &str) {
    let Some(path) = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v["log-file"].as_str().map(String::from))
    else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "seta-cni[{}]: {msg}", std::process::id());
    }
}

async fn run(cmd_name: &str, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let cmd = Command::parse(cmd_name)?;
    if cmd == Command::Version {
        let v = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(String::from));
        return Ok(Some(cni::version_result(v.as_deref())));
    }
    let conf = cni::parse_netconf(stdin)?;
    let env = cni::parse_env(cmd, |k| std::env::var(k).ok())?;
    let client = Client::new(&conf.agent_socket);
    match cmd {
        Command::Add => add(&conf, &env, &client).await.map(Some),
        Command::Del => del(&conf, &env, &client).await.map(|_| None),
        Command::Check => check(&conf, &env, &client).await.map(|_| None),
        Command::Status => status(&conf, &client).await.map(|_| None),
        Command::Gc => gc(&conf, &client).await.map(|_| None),
        Command::Version => unreachable!(),
    }
}

fn agent_err(what: &str, e: ClientError) -> CniError {
    // the agent is down, or a dependency of it (the kvstore) is: retry later
    if e.is_unreachable() || e.status() == Some(503) {
        CniError::new(code::TRY_AGAIN_LATER, format!("{what}: {e}"))
    } else {
        CniError::new(code::IO_FAILURE, format!("{what}: {e}"))
    }
}

fn nl_err(e: impl std::fmt::Display) -> CniError {
    CniError::new(code::IO_FAILURE, e.to_string())
}

/// What this ADD invocation created, undone in reverse order if a later
/// step fails: only these, never state an earlier ADD left.
enum Undo {
    ReleaseIp(std::net::Ipv4Addr),
    DeleteLink(String),
    DeleteEndpoint(String),
}

async fn undo(client: &Client, steps: Vec<Undo>) {
    let Ok(nl) = Netlink::current() else { return };
    for s in steps.into_iter().rev() {
        match s {
            Undo::ReleaseIp(ip) => {
                let _ = client.ipam_release(ip).await;
            }
            Undo::DeleteLink(name) => {
                let _ = nl.del_link_by_name(&name).await;
            }
            Undo::DeleteEndpoint(cid) => {
                let _ = client.endpoint_delete(&EndpointRef::ContainerId(cid)).await;
            }
        }
    }
}

/// Test hook: SETA_CNI_INJECT_FAILURE=<step> fails ADD right after that step.
fn injected(step: &str) -> Result<(), CniError> {
    if std::env::var("SETA_CNI_INJECT_FAILURE").as_deref() == Ok(step) {
        return Err(CniError::new(code::IO_FAILURE, format!("injected failure after {step}")));
    }
    Ok(())
}

async fn add(conf: &NetConf, env: &Env, client: &Client) -> Result<Value, CniError> {
    if conf.prev_result.is_some() {
        return Err(CniError::new(
            code::INVALID_NETCONF,
            "seta-cni must be the first plugin of the chain (it got a prevResult)",
        ));
    }
    // hostPorts are checked before anything is created
    let host_ports = cni::port_mappings(conf)?;
    let netns = std::fs::File::open(&env.netns).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("CNI_NETNS {}: cannot open the network namespace: {e}", env.netns),
        )
    })?;
    let mut done = Vec::new();
    let r = add_steps(conf, env, client, &netns, host_ports, &mut done).await;
    if r.is_err() {
        undo(client, done).await;
    }
    r
}

async fn add_steps(
    conf: &NetConf,
    env: &Env,
    client: &Client,
    netns: &std::fs::File,
    host_ports: Vec<seta_core::service::HostPort>,
    done: &mut Vec<Undo>,
) -> Result<Value, CniError> {
    let cid = &env.container_id;
    let nl = Netlink::current().map_err(nl_err)?;
    let host_if = lxc_name(cid, &env.ifname);

    // 0. a second ADD for an attachment that exists fails before it changes
    //    anything: the first attachment stays as it is
    let pod = Netlink::in_netns(Path::new(&env.netns)).await.map_err(nl_err)?;
    if pod.link(&env.ifname).await.map_err(nl_err)?.is_some() {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_IFNAME {} already exists in {} (container {cid} is attached already? DEL it first)",
                env.ifname, env.netns
            ),
        ));
    }
    // a host side of this name belongs to an attachment of this container
    // (then this ADD fails) or was left by an ADD that died before
    // registering its endpoint (then it is stale and goes); only then is the
    // agent asked, so a new pod's ADD does not wait for it here
    if nl.link(&host_if).await.map_err(nl_err)?.is_some() {
        if let Some(ep) = client
            .endpoint_opt(&EndpointRef::ContainerId(cid.clone()))
            .await
            .map_err(|e| agent_err("looking up the container's endpoint", e))?
        {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "container {cid} is attached already: endpoint {} ({} {} in {}); DEL it first",
                    ep.id, ep.container_interface_name, ep.ipv4, ep.netns_path
                ),
            ));
        }
        nl.del_link_by_name(&host_if).await.map_err(nl_err)?;
    }

    // 1. address
    let ipam: IpamResponse = client
        .ipam_allocate(cid)
        .await
        .map_err(|e| agent_err("allocating an address from the seta agent", e))?;
    done.push(Undo::ReleaseIp(ipam.ipv4.ip));
    let (ip, gw) = (ipam.ipv4.ip, ipam.ipv4.gateway);

    // 2. veth pair, the peer created directly in the pod netns as CNI_IFNAME
    let mtu = (ipam.mtu != 0 && ipam.mtu != 1500).then_some(ipam.mtu);
    nl.create_veth_into(&host_if, &env.ifname, netns.as_fd(), mtu)
        .await
        .map_err(nl_err)?;
    done.push(Undo::DeleteLink(host_if.clone()));
    let host = nl
        .link(&host_if)
        .await
        .map_err(nl_err)?
        .ok_or_else(|| nl_err(format!("{host_if} vanished")))?;
    seta_datapath::sysfs::set_ipv4_sysctl(&format!("conf/{host_if}/rp_filter"), "0").map_err(nl_err)?;
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6"), "1");
    nl.set_up(host.index).await.map_err(nl_err)?;
    injected("veth")?;

    // 3. container side: address, route to the router, default route
    let peer = pod
        .link(&env.ifname)
        .await
        .map_err(nl_err)?
        .ok_or_else(|| nl_err(format!("{} not found in {}", env.ifname, env.netns)))?;
    if let Some(lo) = pod.link("lo").await.map_err(nl_err)? {
        pod.set_up(lo.index).await.map_err(nl_err)?;
    }
    pod.set_up(peer.index).await.map_err(nl_err)?;
    pod.add_addr(peer.index, ip, 32).await.map_err(nl_err)?;
    pod.replace_route(gw, 32, None, peer.index, Some(ip)).await.map_err(nl_err)?;
    // tunnel mode: routes beyond the node leave room for the encapsulation,
    // while the node's own pod CIDR (same-node pods) keeps the full MTU
    let route_mtu = (ipam.route_mtu != 0 && ipam.route_mtu != ipam.mtu).then_some(ipam.route_mtu);
    let route = |dst: std::net::Ipv4Addr, prefix: u8, mtu: Option<u32>| seta_datapath::netlink::Route {
        dst,
        prefix,
        gw: Some(gw),
        oif: Some(peer.index),
        src: None,
        mtu,
        protocol: None,
    };
    pod.replace_route_with(&route(std::net::Ipv4Addr::UNSPECIFIED, 0, route_mtu))
        .await
        .map_err(nl_err)?;
    if route_mtu.is_some() {
        let cidr = ipam.ipv4.cidr;
        pod.replace_route_with(&route(cidr.network(), cidr.prefix_len(), None))
            .await
            .map_err(nl_err)?;
    }
    injected("netns")?;

    // 4. endpoint: returns once programs and maps are live
    let req = EndpointChangeRequest {
        container_id: cid.clone(),
        container_interface_name: env.ifname.clone(),
        pod_name: env.args.get("K8S_POD_NAME").cloned().unwrap_or_default(),
        namespace: env.args.get("K8S_POD_NAMESPACE").cloned().unwrap_or_default(),
        ipv4: ip,
        mac: format_mac(&peer.mac),
        host_mac: format_mac(&host.mac),
        interface_name: host_if.clone(),
        interface_index: host.index,
        netns_path: env.netns.clone(),
        labels: cni::labels_from_args(&env.args),
        named_ports: cni::ports_from_args(&env.args),
        host_ports,
    };
    let _ep: Endpoint = client
        .endpoint_put(&req)
        .await
        .map_err(|e| agent_err("registering the endpoint with the seta agent", e))?;
    done.push(Undo::DeleteEndpoint(cid.clone()));
    injected("endpoint")?;

    Ok(cni::add_result(
        &conf.cni_version,
        &AddOutcome {
            host_ifname: host_if,
            host_mac: format_mac(&host.mac),
            ifname: env.ifname.clone(),
            mac: format_mac(&peer.mac),
            sandbox: env.netns.clone(),
            ip,
            gateway: gw,
        },
    ))
}

async fn del(conf: &NetConf, env: &Env, client: &Client) -> Result<(), CniError> {
    let cid = &env.container_id;
    let host_if = lxc_name(cid, &env.ifname);
    match client.endpoint_delete(&EndpointRef::ContainerId(cid.clone())).await {
        Ok(_) => {}
        Err(e) if e.status() == Some(404) => {}
        Err(e) if e.is_unreachable() => {
            // The agent finishes this DEL when it starts again.
            let dir = conf.delete_queue_dir.clone().unwrap_or_else(|| {
                Path::new(&conf.agent_socket)
                    .parent()
                    .unwrap_or(Path::new("/run/seta"))
                    .join("deleteQueue")
                    .display()
                    .to_string()
            });
            std::fs::create_dir_all(&dir).map_err(|e| CniError::new(code::IO_FAILURE, format!("create delete queue {dir}: {e}")))?;
            let body = json!({"container-id": cid, "ifname": env.ifname, "host-ifname": host_if});
            let path = Path::new(&dir).join(format!("{cid}-{}.json", env.ifname));
            std::fs::write(&path, body.to_string())
                .map_err(|e| CniError::new(code::IO_FAILURE, format!("queue DEL in {}: {e}", path.display())))?;
        }
        Err(e) => return Err(agent_err("deleting the endpoint", e)),
    }
    match client.ipam_release_owner(cid).await {
        Ok(_) => {}
        Err(e) if e.is_unreachable() => {}
        Err(e) => return Err(agent_err("releasing the address", e)),
    }
    let nl = Netlink::current().map_err(nl_err)?;
    nl.del_link_by_name(&host_if).await.map_err(nl_err)?;
    Ok(())
}

async fn check(conf: &NetConf, env: &Env, client: &Client) -> Result<(), CniError> {
    if !cni::version_at_least(&conf.cni_version, "0.4.0") {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("CHECK needs cniVersion 0.4.0 or later, config has {}", conf.cni_version),
        ));
    }
    let fail = |m: String| CniError::new(code::IO_FAILURE, m);
    let cid = &env.container_id;
    let ep: Endpoint = client
        .endpoint(&EndpointRef::ContainerId(cid.clone()))
        .await
        .map_err(|e| agent_err(&format!("endpoint of container {cid}"), e))?;
    if ep.state != seta_core::endpoint::EndpointState::Ready {
        return Err(fail(format!("endpoint {} is {}, not ready", ep.id, ep.state)));
    }
    let nl = Netlink::current().map_err(nl_err)?;
    match nl.link(&ep.interface_name).await.map_err(nl_err)? {
        Some(l) if l.index == ep.interface_index && l.up => {}
        _ => return Err(fail(format!("host interface {} is missing or down", ep.interface_name))),
    }
    let pod = Netlink::in_netns(Path::new(&env.netns)).await.map_err(nl_err)?;
    match pod.link(&env.ifname).await.map_err(nl_err)? {
        Some(l) if l.up && format_mac(&l.mac) == ep.mac => {}
        _ => return Err(fail(format!("{} in {} is missing, down or has another MAC", env.ifname, env.netns))),
    }
    if let Some(prev) = &conf.prev_result {
        let want = format!("{}/32", ep.ipv4);
        let ok = prev["ips"]
            .as_array()
            .is_some_and(|ips| ips.iter().any(|i| i["address"] == want.as_str()));
        if !ok {
            return Err(fail(format!("prevResult does not hold the endpoint address {want}")));
        }
    }
    Ok(())
}

async fn status(conf: &NetConf, client: &Client) -> Result<(), CniError> {
    if !cni::version_at_least(&conf.cni_version, "1.1.0") {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("STATUS needs cniVersion 1.1.0, config has {}", conf.cni_version),
        ));
    }
    client
        .healthz()
        .await
        .map(|_| ())
        .map_err(|e| CniError::new(code::PLUGIN_NOT_AVAILABLE, format!("seta agent is not available: {e}")))
}

async fn gc(conf: &NetConf, client: &Client) -> Result<(), CniError> {
    if !cni::version_at_least(&conf.cni_version, "1.1.0") {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("GC needs cniVersion 1.1.0, config has {}", conf.cni_version),
        ));
    }
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let keep = |cid: &str, ifname: &str| valid.iter().any(|a| a.container_id == cid && a.ifname == ifname);
    let eps: Vec<Endpoint> = client.endpoints().await.map_err(|e| agent_err("listing endpoints", e))?;
    let nl = Netlink::current().map_err(nl_err)?;
    for ep in eps.iter().filter(|e| !keep(&e.container_id, &e.container_interface_name)) {
        client
            .endpoint_delete(&EndpointRef::Id(ep.id))
            .await
            .map_err(|e| agent_err(&format!("deleting stale endpoint {}", ep.id), e))?;
        nl.del_link_by_name(&ep.interface_name).await.map_err(nl_err)?;
    }
    // addresses whose owner is no valid attachment (an ADD that died half-way)
    let st: Status = client.status().await.map_err(|e| agent_err("agent status", e))?;
    let owners: std::collections::BTreeSet<String> = st.ipam.allocations.values().cloned().collect();
    for owner in owners.iter().filter(|o| !valid.iter().any(|a| &a.container_id == *o)) {
        client
            .ipam_release_owner(owner)
            .await
            .map_err(|e| agent_err("releasing stale addresses", e))?;
    }
    Ok(())
}
