//! `seta bpf`: the pinned maps and attached programs, read directly.
use crate::*;

#[derive(Subcommand)]
pub enum BpfCmd {
    /// The local endpoint map (seta_lxc)
    #[command(subcommand)]
    Endpoint(ListOnly),
    /// The IP -> identity cache (seta_ipcache)
    #[command(subcommand)]
    Ipcache(ListOnly),
    /// Tunnel endpoints: ipcache entries that are encapsulated to another node (tunnel mode)
    #[command(subcommand)]
    Tunnel(ListOnly),
    /// Datapath forward/drop counters (seta_metrics)
    #[command(subcommand)]
    Metrics(ListOnly),
    /// Programs attached per device, including TCX links (which bpftool 7.1 cannot show)
    #[command(subcommand)]
    Prog(ListOnly),
    /// An endpoint's policy map (seta_pol_NNNNN)
    #[command(subcommand)]
    Policy(BpfPolicyCmd),
    /// Connection tracking (seta_ct4)
    #[command(subcommand)]
    Ct(CtCmd),
    /// Service load-balancing maps (seta_lb4_svc, seta_lb4_be, seta_lb4_rnat)
    #[command(subcommand)]
    Lb(LbCmd),
    /// The NAT engine's table (seta_snat_v4_external): both directions of each SNATed connection
    #[command(subcommand)]
    Nat(ListOnly),
    /// Destinations BPF masquerade leaves alone (seta_ipmasq_v4): the ip-masq-agent's nonMasqueradeCIDRs and --ipv4-native-routing-cidr
    #[command(subcommand)]
    Ipmasq(ListOnly),
    /// Fragmented datagrams (seta_ipv4_frag): the ports each one's first fragment carried, for its later fragments
    #[command(subcommand)]
    Frag(ListOnly),
    /// Socket-LB (--bpf-lb-sock): the namespaces it serves (seta_sock_netns) and its reverse translations (seta_lb4_reverse_sk)
    #[command(subcommand)]
    Sock(ListOnly),
}

#[derive(Subcommand)]
pub enum LbCmd {
    /// Frontends and their backend slots (SERVICE ADDRESS, BACKEND ADDRESS (REVNAT_ID) (SLOT)); or one table
    List {
        /// the rev-NAT table (ID, FRONTEND)
        #[arg(long, conflicts_with_all = ["backends", "frontends"])]
        revnat: bool,
        /// the backend table (ID, BACKEND ADDRESS, STATE)
        #[arg(long, conflicts_with = "frontends")]
        backends: bool,
        /// frontend slots as stored (SERVICE ADDRESS, BACKEND ID)
        #[arg(long, conflicts_with = "source_ranges")]
        frontends: bool,
        /// loadBalancerSourceRanges (SOURCE RANGE (REVNAT_ID))
        #[arg(long, conflicts_with_all = ["revnat", "backends"])]
        source_ranges: bool,
    },
    /// Maglev lookup tables (--bpf-lb-algorithm maglev)
    #[command(subcommand)]
    Maglev(MaglevCmd),
}

#[derive(Subcommand)]
pub enum MaglevCmd {
    /// Each service's table: SVC ID (rev-NAT), its M slots, and how many slots each backend has; -o json adds the table
    List,
}

/// The Maglev tables in the maps: rev-NAT index -> the M backend ids.
fn maglev_tables(pin: &std::path::Path) -> Result<(u32, std::collections::BTreeMap<u16, Vec<u32>>)> {
    let m = seta_datapath::maps::get_config(pin, seta_abi::CONFIG_LB_MAGLEV_M)?;
    let st = seta_datapath::maps::LbMaps::open(pin)?.list();
    let mut out: std::collections::BTreeMap<u16, Vec<u32>> = Default::default();
    for (k, c) in &st.maglev {
        let t = out.entry(k.rev_nat_id).or_default();
        let start = k.chunk as usize * seta_abi::LB_MAGLEV_CHUNK;
        if t.len() < start + seta_abi::LB_MAGLEV_CHUNK {
            t.resize(start + seta_abi::LB_MAGLEV_CHUNK, 0);
        }
        t[start..start + seta_abi::LB_MAGLEV_CHUNK].copy_from_slice(&c.backend_ids);
    }
    for t in out.values_mut() {
        t.truncate(m as usize);
    }
    Ok((m, out))
}

fn maglev_list(pin: &std::path::Path, json: bool) -> Result<i32> {
    let (m, tables) = maglev_tables(pin)?;
    let share = |t: &[u32]| {
        let mut c: std::collections::BTreeMap<u32, usize> = Default::default();
        for id in t {
            *c.entry(*id).or_default() += 1;
        }
        c
    };
    if json {
        return print_json(
            &tables
                .iter()
                .map(|(id, t)| serde_json::json!({"rev_nat_index": id, "m": m, "slots": share(t), "table": t}))
                .collect::<Vec<_>>(),
        );
    }
    let rows = tables
        .iter()
        .map(|(id, t)| {
            let s: Vec<String> = share(t).iter().map(|(b, n)| format!("{b}({n})")).collect();
            vec![id.to_string(), t.len().to_string(), s.join(" ")]
        })
        .collect();
    table(&["SVC ID", "M", "BACKEND ID (SLOTS)"], rows);
    Ok(0)
}

fn lb_addr(a: [u8; 4], p: [u8; 2]) -> String {
    format!("{}:{}", std::net::Ipv4Addr::from(a), u16::from_be_bytes(p))
}

fn lb_proto(p: u8) -> &'static str {
    match p {
        6 => "TCP",
        17 => "UDP",
        132 => "SCTP",
        0 => "ANY",
        _ => "?",
    }
}

fn lb_state(flags: u8) -> &'static str {
    match flags {
        0 => "active",
        1 => "terminating",
        2 => "quarantined",
        3 => "maintenance",
        _ => "?",
    }
}

fn lb_list(pin: &std::path::Path, revnat: bool, backends: bool, frontends: bool, ranges: bool, json: bool) -> Result<i32> {
    let st = seta_datapath::maps::LbMaps::open(pin)?.list();
    if ranges {
        if json {
            return print_json(
                &st.source_ranges
                    .iter()
                    .map(|(id, n)| serde_json::json!({"rev_nat_index": id, "range": n.to_string()}))
                    .collect::<Vec<_>>(),
            );
        }
        let rows = st.source_ranges.iter().map(|(id, n)| vec![format!("{n} ({id})")]).collect();
        table(&["SOURCE RANGE (REVNAT_ID)"], rows);
        return Ok(0);
    }
    if revnat {
        let rows: Vec<Vec<String>> = st
            .revnat
            .iter()
            .map(|(id, r)| vec![id.to_string(), lb_addr(r.address, r.port)])
            .collect();
        if json {
            return print_json(
                &rows
                    .iter()
                    .map(|r| serde_json::json!({"id": r[0].parse::<u16>().unwrap_or(0), "frontend": r[1]}))
                    .collect::<Vec<_>>(),
            );
        }
        table(&["ID", "FRONTEND"], rows);
        return Ok(0);
    }
    if backends {
        let rows: Vec<Vec<String>> = st
            .backends
            .iter()
            .map(|(id, b)| {
                vec![
                    id.to_string(),
                    format!("{}/{}", lb_addr(b.address, b.port), lb_proto(b.proto)),
                    lb_state(b.flags).into(),
                ]
            })
            .collect();
        if json {
            return print_json(
                &rows
                    .iter()
                    .map(|r| serde_json::json!({"id": r[0].parse::<u32>().unwrap_or(0), "backend": r[1], "state": r[2]}))
                    .collect::<Vec<_>>(),
            );
        }
        table(&["ID", "BACKEND ADDRESS", "STATE"], rows);
        return Ok(0);
    }
    let (rows, out) = lb_entries(&st, frontends);
    if json {
        return print_json(&out);
    }
    let second = if frontends {
        "BACKEND ID"
    } else {
        "BACKEND ADDRESS (REVNAT_ID) (SLOT)"
    };
    table(&["SERVICE ADDRESS", second], rows);
    Ok(0)
}

/// Every entry of the service map as Cilium's `bpf lb list` prints it: the
/// frontend with its slot (`10.96.0.10:53/UDP (0)`), then the master entry as
/// `0.0.0.0:0 (revnat) (0) [flags]` or a slot's backend as
/// `10.244.0.7:53/UDP (revnat) (slot)` (`--frontends`: the backend id).
/// Table rows and JSON objects.
fn lb_entries(st: &seta_datapath::maps::LbState, frontends: bool) -> (Vec<Vec<String>>, Vec<serde_json::Value>) {
    let mut rows = Vec::new();
    let mut out = Vec::new();
    for (k, v) in &st.services {
        // the internal scope of a frontend with two, as Cilium writes it
        let scope = if k.scope == 1 { "/i" } else { "" };
        let svc = format!("{}/{}{scope}", lb_addr(k.address, k.dport), lb_proto(k.proto));
        let (be, detail) = if k.backend_slot == 0 {
            let kind = [
                (seta_abi::LB_F_NODEPORT, "NodePort"),
                (seta_abi::LB_F_EXTERNAL_IP, "ExternalIPs"),
                (seta_abi::LB_F_LOADBALANCER, "LoadBalancer"),
                (seta_abi::LB_F_HOSTPORT, "HostPort"),
            ]
            .iter()
            .find(|(bit, _)| v.flags & bit != 0)
            .map_or("ClusterIP", |(_, name)| name);
            let mut f = vec![kind];
            // not reached from outside, as Cilium marks it: a ClusterIP
            // (unless --bpf-lb-external-clusterip) and the 0.0.0.0
            // surrogate of a NodePort or hostPort (the node's own sockets)
            let routable = match kind {
                "ClusterIP" => v.flags & seta_abi::LB_F_ROUTABLE != 0,
                "NodePort" | "HostPort" => k.address != [0; 4],
                _ => true,
            };
            if !routable {
                f.push("non-routable");
            }
            if v.flags & seta_abi::LB_F_EXT_LOCAL_SCOPE != 0 {
                f.push("Local");
            }
            if v.flags & seta_abi::LB_F_AFFINITY != 0 {
                f.push("sessionAffinity");
            }
            if v.flags & seta_abi::LB_F_SOURCE_RANGE != 0 {
                f.push("check source-range");
                if v.flags2 & seta_abi::LB_F2_SOURCE_RANGE_DENY != 0 {
                    f.push("deny");
                }
            }
            if v.flags2 & seta_abi::LB_F2_FWD_MODE_DSR != 0 {
                f.push("dsr");
            }
            if v.flags2 & seta_abi::LB_F2_TWO_SCOPES != 0 {
                f.push("two-scopes");
            }
            (
                format!("0.0.0.0:0 ({}) (0) [{}]", v.rev_nat_index, f.join(", ")),
                serde_json::json!({"count": v.count, "flags": v.flags, "flags2": v.flags2}),
            )
        } else if frontends {
            (v.backend_id.to_string(), serde_json::json!({"backend_id": v.backend_id}))
        } else {
            match st.backends.get(&v.backend_id) {
                Some(b) => (
                    format!(
                        "{}/{} ({}) ({})",
                        lb_addr(b.address, b.port),
                        lb_proto(b.proto),
                        v.rev_nat_index,
                        k.backend_slot
                    ),
                    serde_json::json!({"backend_id": v.backend_id, "backend": lb_addr(b.address, b.port)}),
                ),
                None => (
                    format!("backend {} not found", v.backend_id),
                    serde_json::json!({"backend_id": v.backend_id}),
                ),
            }
        };
        rows.push(vec![format!("{svc} ({})", k.backend_slot), be.clone()]);
        out.push(
            serde_json::json!({"service": svc, "slot": k.backend_slot, "rev_nat_index": v.rev_nat_index, "entry": be, "detail": detail}),
        );
    }
    (rows, out)
}

#[derive(Subcommand)]
pub enum BpfPolicyCmd {
    /// An endpoint's policy map, or every endpoint's (`--all`), as `cilium-dbg bpf policy get`
    Get {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        endpoint: Option<u16>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
pub enum CtCmd {
    /// The connection tracking table (`global`, as Cilium names its one table; the default)
    List {
        #[arg(value_parser = ["global"], default_value = "global")]
        scope: String,
    },
    Flush {
        #[arg(value_parser = ["global"], default_value = "global")]
        scope: String,
    },
}

/// The entries of one endpoint's policy map, with the peers' labels.
fn policy_rows(path: &std::path::Path, labels: &std::collections::BTreeMap<u32, String>) -> Result<Vec<serde_json::Value>> {
    let m = seta_datapath::maps::PolicyMap::open_pinned(path)?;
    Ok(m.list()
        .iter()
        .map(|((plen, k), v)| {
            let key = seta_core::policy::resolve::Key {
                identity: k.sec_label,
                egress: k.egress != 0,
                proto: k.protocol,
                port: u16::from_be_bytes(k.dport),
                port_bits: (*plen as u8).saturating_sub(48),
            };
            serde_json::json!({
                "policy": if v.deny != 0 { "Deny" } else { "Allow" },
                "direction": if key.egress { "Egress" } else { "Ingress" },
                "identity": k.sec_label,
                "labels": if k.sec_label == 0 { "ANY".to_string() } else { labels.get(&k.sec_label).cloned().unwrap_or_default() },
                "port": key.port_text(),
                "prefix": plen,
                "cookie": v.cookie,
            })
        })
        .collect())
}

fn policy_table(rows: &[serde_json::Value]) {
    let s = |v: &serde_json::Value| v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
    table(
        &["POLICY", "DIRECTION", "IDENTITY", "LABELS", "PORT/PROTO", "PREFIX", "RULE"],
        rows.iter()
            .map(|r| {
                vec![
                    s(&r["policy"]),
                    s(&r["direction"]),
                    s(&r["identity"]),
                    s(&r["labels"]),
                    s(&r["port"]),
                    s(&r["prefix"]),
                    if r["cookie"] == seta_core::policy::resolve::COOKIE_NOT_ENFORCED {
                        "not enforced".into()
                    } else {
                        s(&r["cookie"])
                    },
                ]
            })
            .collect(),
    );
}

/// `seta bpf ipmasq list`: IP PREFIX/ADDRESS (Cilium's column) and where
/// each range comes from.
fn ipmasq_list(pin: &std::path::Path, json: bool) -> Result<i32> {
    let rows: Vec<serde_json::Value> = seta_datapath::maps::IpmasqMap::open(pin)?
        .list()
        .iter()
        .map(|(n, v)| {
            let sources: Vec<&str> = [
                (seta_abi::IPMASQ_F_AGENT, "ip-masq-agent"),
                (seta_abi::IPMASQ_F_NATIVE_CIDR, "native-routing-cidr"),
            ]
            .into_iter()
            .filter(|(bit, _)| v & bit != 0)
            .map(|(_, s)| s)
            .collect();
            serde_json::json!({"prefix": n.to_string(), "sources": sources})
        })
        .collect();
    if json {
        return print_json(&rows);
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    table(
        &["IP PREFIX/ADDRESS", "SOURCE"],
        rows.iter()
            .map(|r| {
                let src: Vec<String> = r["sources"].as_array().into_iter().flatten().map(s).collect();
                vec![s(&r["prefix"]), src.join(",")]
            })
            .collect(),
    );
    Ok(0)
}

/// `seta bpf nat list`, as Cilium's `bpf nat list`: one line per direction,
/// `TCP OUT client -> backend XLATE_SRC node:port Created=Ns ago`.
fn nat_list(pin: &std::path::Path, json: bool) -> Result<i32> {
    let now = seta_datapath::maps::monotonic_ns();
    let rows: Vec<serde_json::Value> = seta_datapath::maps::NatMap::open(pin)?
        .list()
        .iter()
        .map(|(k, e)| {
            let out = k.pad[0] == seta_abi::NAT_DIR_OUT;
            serde_json::json!({
                "proto": seta_core::policy::proto_name(k.proto),
                "direction": if out { "OUT" } else { "IN" },
                "src": format!("{}:{}", std::net::Ipv4Addr::from(k.saddr), u16::from_be_bytes(k.sport)),
                "dst": format!("{}:{}", std::net::Ipv4Addr::from(k.daddr), u16::from_be_bytes(k.dport)),
                "xlate": if out { "XLATE_SRC" } else { "XLATE_DST" },
                "to": lb_addr(e.to_addr, e.to_port),
                "created_ago": now.saturating_sub(e.created) / 1_000_000_000,
            })
        })
        .collect();
    if json {
        return print_json(&rows);
    }
    for r in rows {
        println!(
            "{} {} {} -> {} {} {} Created={}sec ago",
            r["proto"].as_str().unwrap().to_uppercase(),
            r["direction"].as_str().unwrap(),
            r["src"].as_str().unwrap(),
            r["dst"].as_str().unwrap(),
            r["xlate"].as_str().unwrap(),
            r["to"].as_str().unwrap(),
            r["created_ago"]
        );
    }
    Ok(0)
}

/// `seta bpf frag list`, as Cilium's `bpf frag list`: `ID PROTO SOURCE
/// ADDRESS:PORT DEST ADDRESS:PORT`, one line per datagram.
fn frag_list(pin: &std::path::Path, json: bool) -> Result<i32> {
    let rows: Vec<serde_json::Value> = seta_datapath::maps::Frag4Map::open(pin)?
        .list()
        .iter()
        .map(|(k, p)| {
            serde_json::json!({
                "id": u16::from_be_bytes(k.id),
                "proto": seta_core::policy::proto_name(k.proto),
                "source": format!("{}:{}", std::net::Ipv4Addr::from(k.saddr), u16::from_be_bytes(p.sport)),
                "destination": format!("{}:{}", std::net::Ipv4Addr::from(k.daddr), u16::from_be_bytes(p.dport)),
            })
        })
        .collect();
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        eprintln!("No entries found.");
        return Ok(0);
    }
    println!("{:<7} {:<6} {:<23} DEST ADDRESS:PORT", "ID", "PROTO", "SOURCE ADDRESS:PORT");
    for r in rows {
        println!(
            "{:<7} {:<6} {:<23} {}",
            r["id"],
            r["proto"].as_str().unwrap_or(""),
            r["source"].as_str().unwrap_or(""),
            r["destination"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

/// `seta bpf sock list`: socket-LB's namespaces and reverse translations
/// (`SOCKET COOKIE  BACKEND ADDRESS  FRONTEND (REVNAT_ID)`).
fn sock_list(pin: &std::path::Path, json: bool) -> Result<i32> {
    let m = seta_datapath::maps::SockMaps::open(pin).context("socket-LB maps (is the agent running with --bpf-lb-sock?)")?;
    let netns: Vec<serde_json::Value> = m
        .netns_list()
        .iter()
        .map(|(c, k)| serde_json::json!({"netns-cookie": c, "kind": if *k == seta_abi::SOCK_NETNS_HOST { "host" } else { "pod" }}))
        .collect();
    let rev: Vec<serde_json::Value> = m
        .reverse_list()
        .iter()
        .map(|(k, v)| {
            serde_json::json!({
                "socket-cookie": k.cookie,
                "backend": lb_addr(k.address, k.port),
                "frontend": lb_addr(v.address, v.port),
                "rev-nat-id": v.rev_nat_index,
            })
        })
        .collect();
    if json {
        return print_json(&serde_json::json!({"namespaces": netns, "reverse": rev}));
    }
    table(
        &["NETNS COOKIE", "KIND"],
        netns
            .iter()
            .map(|n| vec![n["netns-cookie"].to_string(), n["kind"].as_str().unwrap_or("").into()])
            .collect(),
    );
    println!();
    table(
        &["SOCKET COOKIE", "BACKEND ADDRESS", "FRONTEND (REVNAT_ID)"],
        rev.iter()
            .map(|r| {
                vec![
                    r["socket-cookie"].to_string(),
                    r["backend"].as_str().unwrap_or("").into(),
                    format!("{} ({})", r["frontend"].as_str().unwrap_or(""), r["rev-nat-id"]),
                ]
            })
            .collect(),
    );
    Ok(0)
}

pub async fn run(cmd: &BpfCmd, cli: &Cli, json: bool) -> Result<i32> {
    match cmd {
        BpfCmd::Endpoint(ListOnly::List) => {
            let m = EndpointMap::open(&pin_dir(cli)?)?;
            let list = m.list();
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(ip, i)| serde_json::json!({"ip": ip, "id": i.lxc_id, "sec_id": i.sec_id, "flags": i.flags, "ifindex": i.ifindex, "mac": format_mac(&i.mac), "nodemac": format_mac(&i.node_mac), "host": i.flags & seta_abi::ENDPOINT_F_HOST != 0}))
                    .collect();
                return print_json(&v);
            }
            let rows = list
                .iter()
                .map(|(ip, i)| {
                    let info = if i.flags & seta_abi::ENDPOINT_F_HOST != 0 {
                        "(localhost)".to_string()
                    } else {
                        format!(
                            "id={} sec_id={} flags={:#06x} ifindex={} mac={} nodemac={} parent_ifindex={}",
                            i.lxc_id,
                            i.sec_id,
                            i.flags,
                            i.ifindex,
                            format_mac(&i.mac),
                            format_mac(&i.node_mac),
                            i.parent_ifindex
                        )
                    };
                    vec![format!("{ip}:0"), info]
                })
                .collect();
            table(&["IP ADDRESS", "LOCAL ENDPOINT INFO"], rows);
        }
        BpfCmd::Ipcache(ListOnly::List) => {
            let m = IpcacheMap::open(&pin_dir(cli)?)?;
            let list = m.list();
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(ip, p, i)| serde_json::json!({"prefix": format!("{ip}/{p}"), "identity": i.sec_identity, "tunnelendpoint": std::net::Ipv4Addr::from(i.tunnel_endpoint), "node_id": i.node_id, "flags": i.flags}))
                    .collect();
                return print_json(&v);
            }
            let rows = list
                .iter()
                .map(|(ip, p, i)| {
                    vec![
                        format!("{ip}/{p}"),
                        format!(
                            "identity={} encryptkey=0 tunnelendpoint={} flags=<none>",
                            i.sec_identity,
                            std::net::Ipv4Addr::from(i.tunnel_endpoint)
                        ),
                    ]
                })
                .collect();
            table(&["IP PREFIX/ADDRESS", "IDENTITY"], rows);
        }
        BpfCmd::Tunnel(ListOnly::List) => {
            let pin = pin_dir(cli)?;
            let m = IpcacheMap::open(&pin)?;
            let dev = seta_datapath::maps::get_config(&pin, seta_abi::CONFIG_VXLAN_IFINDEX).unwrap_or(0);
            let list: Vec<_> = m.list().into_iter().filter(|(_, _, i)| i.tunnel_endpoint != [0; 4]).collect();
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(ip, p, i)| serde_json::json!({"prefix": format!("{ip}/{p}"), "tunnel-endpoint": std::net::Ipv4Addr::from(i.tunnel_endpoint), "identity": i.sec_identity}))
                    .collect();
                return print_json(&v);
            }
            if dev == 0 {
                eprintln!("(no tunnel device: this node routes natively)");
            }
            let rows = list
                .iter()
                .map(|(ip, p, i)| {
                    vec![
                        format!("{ip}/{p}"),
                        std::net::Ipv4Addr::from(i.tunnel_endpoint).to_string(),
                        i.sec_identity.to_string(),
                    ]
                })
                .collect();
            table(&["PREFIX", "TUNNEL ENDPOINT", "IDENTITY"], rows);
        }
        BpfCmd::Metrics(ListOnly::List) => {
            let m = MetricsMap::open(&pin_dir(cli)?)?;
            let list = m.totals();
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(r, d, v)| serde_json::json!({"reason_code": r, "reason": reason_name(*r), "direction": direction_name(*d), "packets": v.count, "bytes": v.bytes}))
                    .collect();
                return print_json(&v);
            }
            let rows = list
                .iter()
                .map(|(r, d, v)| vec![reason_name(*r), direction_name(*d).into(), v.count.to_string(), v.bytes.to_string()])
                .collect();
            table(&["REASON", "DIRECTION", "PACKETS", "BYTES"], rows);
        }
        BpfCmd::Prog(ListOnly::List) => {
            let list: Vec<Attachment> = client(cli.node.as_deref())?.attachments().await?;
            if json {
                return print_json(&list);
            }
            let rows = list
                .iter()
                .map(|a| {
                    vec![
                        a.device.clone(),
                        a.ifindex.to_string(),
                        a.direction.clone(),
                        a.mode.clone(),
                        a.program.clone(),
                        a.prog_id.to_string(),
                        a.pinned.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            table(&["DEVICE", "IFINDEX", "DIRECTION", "MODE", "PROGRAM", "PROG ID", "LINK PIN"], rows);
        }
        BpfCmd::Policy(BpfPolicyCmd::Get { endpoint, .. }) => {
            let dir = pin_dir(cli)?;
            let labels: std::collections::BTreeMap<u32, String> = match client(cli.node.as_deref()) {
                Ok(c) => c
                    .identities()
                    .await
                    .map(|v| v.into_iter().map(|i| (i.id, i.labels.join(","))).collect())
                    .unwrap_or_default(),
                Err(_) => Default::default(),
            };
            let Some(endpoint) = endpoint else {
                // --all: every endpoint of the node's endpoint map, each under its map's path
                let mut ids: Vec<u16> = EndpointMap::open(&dir)?
                    .list()
                    .iter()
                    .filter(|(_, i)| i.flags & seta_abi::ENDPOINT_F_HOST == 0)
                    .map(|(_, i)| i.lxc_id)
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                let mut out = serde_json::Map::new();
                for id in ids {
                    let path = dir.join(format!("seta_pol_{id:05}"));
                    let rows = policy_rows(&path, &labels)?;
                    if json {
                        out.insert(id.to_string(), rows.into());
                    } else {
                        println!("{}:\n", path.display());
                        policy_table(&rows);
                        println!();
                    }
                }
                return if json { print_json(&out) } else { Ok(0) };
            };
            let rows = policy_rows(&dir.join(format!("seta_pol_{endpoint:05}")), &labels)?;
            if json {
                return print_json(&rows);
            }
            policy_table(&rows);
        }
        BpfCmd::Ct(CtCmd::List { .. }) => {
            let m = seta_datapath::maps::CtMap::open(&pin_dir(cli)?)?;
            let now = seta_datapath::maps::monotonic_ns();
            let rows: Vec<serde_json::Value> = m
                .list()
                .iter()
                .map(|(k, e)| {
                    serde_json::json!({
                        "proto": seta_core::policy::proto_name(k.proto),
                        "src": format!("{}:{}", std::net::Ipv4Addr::from(k.saddr), u16::from_be_bytes(k.sport)),
                        "dst": format!("{}:{}", std::net::Ipv4Addr::from(k.daddr), u16::from_be_bytes(k.dport)),
                        "expires_in": (e.expires as i64 - now as i64) / 1_000_000_000,
                        "packets": e.packets, "bytes": e.bytes, "src_identity": e.src_sec_id,
                        "tx_closing": e.tx_closing != 0, "rx_closing": e.rx_closing != 0, "seen_reply": e.seen_reply != 0,
                    })
                })
                .collect();
            if json {
                return print_json(&rows);
            }
            for r in rows {
                println!(
                    "{} {} -> {} expires={}s Packets={} Bytes={} SourceSecurityID={}{}{}",
                    r["proto"].as_str().unwrap(),
                    r["src"].as_str().unwrap(),
                    r["dst"].as_str().unwrap(),
                    r["expires_in"],
                    r["packets"],
                    r["bytes"],
                    r["src_identity"],
                    if r["tx_closing"] == true { " TxClosing" } else { "" },
                    if r["rx_closing"] == true { " RxClosing" } else { "" }
                );
            }
        }
        BpfCmd::Nat(ListOnly::List) => return nat_list(&pin_dir(cli)?, json),
        BpfCmd::Sock(ListOnly::List) => return sock_list(&pin_dir(cli)?, json),
        BpfCmd::Ipmasq(ListOnly::List) => return ipmasq_list(&pin_dir(cli)?, json),
        BpfCmd::Frag(ListOnly::List) => return frag_list(&pin_dir(cli)?, json),
        BpfCmd::Lb(LbCmd::List {
            revnat,
            backends,
            frontends,
            source_ranges,
        }) => return lb_list(&pin_dir(cli)?, *revnat, *backends, *frontends, *source_ranges, json),
        BpfCmd::Lb(LbCmd::Maglev(MaglevCmd::List)) => return maglev_list(&pin_dir(cli)?, json),
        BpfCmd::Ct(CtCmd::Flush { .. }) => {
            let n = seta_datapath::maps::CtMap::open(&pin_dir(cli)?)?.flush(false)?;
            if json {
                return print_json(&serde_json::json!({"flushed": n}));
            }
            println!("Flushed {n} entries from seta_ct4");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod lb_list_tests {
    use super::*;
    use seta_abi::{Lb4Backend, Lb4Key, Lb4Service};

    #[test]
    fn entries_as_cilium_prints_them() {
        let mut st = seta_datapath::maps::LbState::default();
        let key = |slot: u16| Lb4Key {
            address: [10, 96, 0, 10],
            dport: 53u16.to_be_bytes(),
            backend_slot: slot,
            proto: 17,
            ..Default::default()
        };
        st.services.insert(
            key(0),
            Lb4Service {
                count: 1,
                rev_nat_index: 5,
                ..Default::default()
            },
        );
        st.services.insert(
            key(1),
            Lb4Service {
                backend_id: 9,
                rev_nat_index: 5,
                ..Default::default()
            },
        );
        st.backends.insert(
            9,
            Lb4Backend {
                address: [10, 244, 0, 7],
                port: 53u16.to_be_bytes(),
                proto: 17,
                ..Default::default()
            },
        );
        let (rows, _) = lb_entries(&st, false);
        assert_eq!(
            rows,
            [
                ["10.96.0.10:53/UDP (0)", "0.0.0.0:0 (5) (0) [ClusterIP, non-routable]"],
                ["10.96.0.10:53/UDP (1)", "10.244.0.7:53/UDP (5) (1)"],
            ]
        );
        let (rows, _) = lb_entries(&st, true);
        assert_eq!(rows[1], ["10.96.0.10:53/UDP (1)", "9"]);
        // a LoadBalancer frontend with a deny list, forwarding by DSR
        let lb = Lb4Key {
            address: [198, 51, 100, 9],
            dport: 80u16.to_be_bytes(),
            proto: 6,
            ..Default::default()
        };
        let mut st = seta_datapath::maps::LbState::default();
        st.services.insert(
            lb,
            Lb4Service {
                count: 0,
                rev_nat_index: 7,
                flags: seta_abi::LB_F_LOADBALANCER | seta_abi::LB_F_SOURCE_RANGE,
                flags2: seta_abi::LB_F2_SOURCE_RANGE_DENY | seta_abi::LB_F2_FWD_MODE_DSR,
                ..Default::default()
            },
        );
        let mut cip = lb;
        cip.address = [10, 96, 0, 9];
        st.services.insert(
            cip,
            Lb4Service {
                rev_nat_index: 8,
                flags: seta_abi::LB_F_ROUTABLE,
                ..Default::default()
            },
        );
        // a NodePort on the node's address, and its 0.0.0.0 surrogate
        let np = |address: [u8; 4], rev_nat_index: u16| {
            let key = seta_abi::Lb4Key {
                address,
                dport: 30080u16.to_be_bytes(),
                proto: 6,
                ..Default::default()
            };
            let svc = Lb4Service {
                rev_nat_index,
                flags: seta_abi::LB_F_NODEPORT,
                ..Default::default()
            };
            (key, svc)
        };
        st.services.extend([np([0; 4], 10), np([172, 30, 0, 1], 11)]);
        let (rows, json) = lb_entries(&st, false);
        assert_eq!(rows[0][0], "0.0.0.0:30080/TCP (0)");
        assert_eq!(rows[0][1], "0.0.0.0:0 (10) (0) [NodePort, non-routable]", "the surrogate");
        assert_eq!(rows[1][1], "0.0.0.0:0 (8) (0) [ClusterIP]", "routable: served from outside");
        let row = |front: &str| rows.iter().position(|r| r[0] == front).unwrap();
        assert_eq!(rows[row("172.30.0.1:30080/TCP (0)")][1], "0.0.0.0:0 (11) (0) [NodePort]");
        let lb = row("198.51.100.9:80/TCP (0)");
        assert_eq!(rows[lb][1], "0.0.0.0:0 (7) (0) [LoadBalancer, check source-range, deny, dsr]");
        assert_eq!(json[lb]["detail"]["flags2"], 192, "{json:?}");
    }
}
