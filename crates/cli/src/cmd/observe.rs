//! `seta observe`: flows from a node's Hubble observer, with `hubble
//! observe`'s selectors, filters and output (compact by default, `-o json`
//! as protojson lines); `seta observe status` and `seta observe list nodes`.
use crate::*;
use seta_hubble::flow::FlowFilter;
use seta_hubble::observer::{get_flows_response::ResponseTypes, GetFlowsRequest, GetNodesRequest, ServerStatusRequest};

#[derive(clap::Args)]
pub struct ObserveArgs {
    #[command(subcommand)]
    pub what: Option<ObserveWhat>,
    /// The observer: unix:///run/seta/NODE/hubble.sock (the default for --node) or HOST:PORT
    #[arg(long)]
    pub server: Option<String>,
    #[command(flatten)]
    pub window: EventArgs,
    /// Pod (NS/NAME-PREFIX or NAME-PREFIX) on either side
    #[arg(long)]
    pub pod: Vec<String>,
    #[arg(long)]
    pub from_pod: Vec<String>,
    #[arg(long)]
    pub to_pod: Vec<String>,
    /// Namespace on either side (qualifies --pod and --service names without one, as hubble's)
    #[arg(short = 'n', long)]
    pub namespace: Vec<String>,
    /// Namespace of the source (qualifies --from-pod/--from-service names without one)
    #[arg(long)]
    pub from_namespace: Vec<String>,
    /// Namespace of the destination (qualifies --to-pod/--to-service names without one)
    #[arg(long)]
    pub to_namespace: Vec<String>,
    /// Label selector on either side
    #[arg(short = 'l', long)]
    pub label: Vec<String>,
    #[arg(long)]
    pub from_label: Vec<String>,
    #[arg(long)]
    pub to_label: Vec<String>,
    /// Address or CIDR on either side
    #[arg(long)]
    pub ip: Vec<String>,
    #[arg(long)]
    pub from_ip: Vec<String>,
    #[arg(long)]
    pub to_ip: Vec<String>,
    /// Security identity on either side: a number or a reserved name (world, host, remote-node, ...)
    #[arg(long, value_parser = seta_hubble::select::identity)]
    pub identity: Vec<u32>,
    #[arg(long, value_parser = seta_hubble::select::identity)]
    pub from_identity: Vec<u32>,
    #[arg(long, value_parser = seta_hubble::select::identity)]
    pub to_identity: Vec<u32>,
    /// FORWARDED or DROPPED
    #[arg(long)]
    pub verdict: Vec<String>,
    /// drop, policy-verdict, trace, trace-sock; agent: the agent's own events, debug: the datapath's debug messages, instead of flows
    #[arg(short = 't', long = "type")]
    pub kind: Vec<String>,
    /// tcp, udp, icmp, sctp
    #[arg(long)]
    pub protocol: Vec<String>,
    /// Port on either side
    #[arg(long)]
    pub port: Vec<u16>,
    #[arg(long)]
    pub from_port: Vec<u16>,
    #[arg(long)]
    pub to_port: Vec<u16>,
    /// Node name pattern (`*` globs)
    #[arg(long)]
    pub node_name: Vec<String>,
    /// Service (NS/NAME-PREFIX or NAME-PREFIX) on either side: a side at one of its frontends
    #[arg(long)]
    pub service: Vec<String>,
    #[arg(long)]
    pub from_service: Vec<String>,
    #[arg(long)]
    pub to_service: Vec<String>,
    /// Negate the filter flag that follows: --not --from-pod NS/NAME (repeatable)
    #[arg(long = "not", id = "not_flag")]
    pub not_flag: bool,
    /// The negated filters (`--not --FLAG VALUE`), taken out by `split_not`
    #[arg(skip)]
    pub not: Vec<(String, String)>,
}

/// Filters negated by `--not`: (flag, value).
pub type Negated = Vec<(String, String)>;

/// Take `--not --FLAG VALUE` (or `--not --FLAG=VALUE`) out of `seta
/// observe`'s arguments: the rest for clap, and the negated (flag, value)
/// pairs. Other commands' arguments pass untouched.
pub fn split_not(args: Vec<String>) -> std::result::Result<(Vec<String>, Negated), String> {
    let Some(at) = args.iter().position(|a| a == "observe") else {
        return Ok((args, vec![]));
    };
    let mut out: Vec<String> = args[..=at].to_vec();
    let mut not = Vec::new();
    let mut rest = args[at + 1..].iter();
    while let Some(a) = rest.next() {
        if a != "--not" {
            out.push(a.clone());
            continue;
        }
        let flag = rest
            .next()
            .ok_or("--not: must be followed by a filter flag, e.g. --not --from-pod NS/NAME")?;
        let (key, value) = match flag.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (
                flag.clone(),
                rest.next().ok_or_else(|| format!("--not {flag}: needs a value"))?.clone(),
            ),
        };
        let name = key.trim_start_matches('-');
        let name = match name {
            "n" => "namespace",
            "l" => "label",
            "t" => "type",
            n => n,
        };
        if !key.starts_with('-') || !seta_hubble::select::NAMES.contains(&name) {
            return Err(format!(
                "--not {key}: not a filter flag; one of --{}",
                seta_hubble::select::NAMES.join(", --")
            ));
        }
        not.push((name.to_string(), value));
    }
    Ok((out, not))
}

#[derive(Subcommand)]
pub enum ObserveWhat {
    /// The observer's status (flows held, seen, uptime)
    Status,
    /// Lists, as `hubble list`: `list nodes`
    #[command(subcommand)]
    List(ListWhat),
    /// The nodes the observer knows (as `list nodes`)
    #[command(hide = true)]
    Nodes,
    /// The agent's own events (as `--type agent`)
    AgentEvents(EventArgs),
    /// The datapath's debug messages, made with the agent's --debug-verbose=datapath (as `--type debug`)
    DebugEvents(EventArgs),
}

#[derive(Subcommand)]
pub enum ListWhat {
    /// The nodes the observer knows, as `hubble list nodes`: NAME STATUS AGE FLOWS/S CURRENT/MAX-FLOWS
    Nodes,
}

/// Which of the flows or events held, and what follows: hubble's flags
/// (flows, `agent-events` and `debug-events`).
#[derive(clap::Args, Clone, Default)]
pub struct EventArgs {
    /// The last N flows or events (20 unless following)
    #[arg(long)]
    pub last: Option<u64>,
    /// The first N held
    #[arg(long, conflicts_with_all = ["last", "follow"])]
    pub first: Option<u64>,
    /// Every one held
    #[arg(long, conflicts_with_all = ["last", "first"])]
    pub all: bool,
    /// Go on with live ones
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Since this long ago (e.g. 5m, 30s)
    #[arg(long)]
    pub since: Option<String>,
    /// Until this long ago
    #[arg(long)]
    pub until: Option<String>,
    /// Print the node name in compact lines
    #[arg(long)]
    pub print_node_name: bool,
}

impl EventArgs {
    /// (number, first, follow, since, until) of the request.
    #[allow(clippy::type_complexity)]
    fn window(&self) -> Result<(u64, bool, bool, Option<prost_types::Timestamp>, Option<prost_types::Timestamp>)> {
        let number = match (self.first, self.last, self.all || self.since.is_some() || self.follow) {
            (Some(n), ..) | (_, Some(n), _) => n,
            (_, _, true) => 0,
            _ => 20,
        };
        Ok((
            number,
            self.first.is_some(),
            self.follow,
            self.since.as_deref().map(time_arg).transpose()?,
            self.until.as_deref().map(time_arg).transpose()?,
        ))
    }
}

/// `5m`, `30s`, `2h` ago, or an RFC 3339 time (UTC `Z`).
fn time_arg(s: &str) -> Result<prost_types::Timestamp> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let unit = s.chars().last().context("empty time")?;
    if let (Some(mult), Ok(n)) = (
        match unit {
            's' => Some(1),
            'm' => Some(60),
            'h' => Some(3600),
            _ => None,
        },
        s[..s.len() - 1].parse::<u64>(),
    ) {
        let t = now.as_secs().saturating_sub(n * mult);
        return Ok(prost_types::Timestamp {
            seconds: t as i64,
            nanos: 0,
        });
    }
    bail!("{s:?}: expected a duration such as 30s, 5m, 2h")
}

/// The filters: `--x` on either side means two whitelist filters (source
/// or destination), each side's flags AND within one.
fn whitelist(a: &ObserveArgs) -> Result<Vec<FlowFilter>> {
    let s = seta_hubble::select::Selectors {
        pod: a.pod.clone(),
        from_pod: a.from_pod.clone(),
        to_pod: a.to_pod.clone(),
        namespace: a.namespace.clone(),
        from_namespace: a.from_namespace.clone(),
        to_namespace: a.to_namespace.clone(),
        label: a.label.clone(),
        from_label: a.from_label.clone(),
        to_label: a.to_label.clone(),
        ip: a.ip.clone(),
        from_ip: a.from_ip.clone(),
        to_ip: a.to_ip.clone(),
        identity: a.identity.clone(),
        from_identity: a.from_identity.clone(),
        to_identity: a.to_identity.clone(),
        verdict: a.verdict.clone(),
        kind: a.kind.clone(),
        protocol: a.protocol.clone(),
        port: a.port.clone(),
        from_port: a.from_port.clone(),
        to_port: a.to_port.clone(),
        node_name: a.node_name.clone(),
        service: a.service.clone(),
        from_service: a.from_service.clone(),
        to_service: a.to_service.clone(),
    };
    s.whitelist().map_err(anyhow::Error::msg)
}

/// 2542 as "2,542" (hubble's uint64Grouping).
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The agent's own events (GetAgentEvents, `--type agent`, compact as
/// `<time>: <TYPE> (<details>)`) or the datapath's debug messages
/// (GetDebugEvents, `--type debug`), as Hubble prints them or protojson.
async fn event_log(c: &mut seta_hubble::Client, a: &EventArgs, json: bool, debug: bool) -> Result<i32> {
    let (number, first, follow, since, until) = a.window()?;
    let node = a.print_node_name;
    if debug {
        let req = seta_hubble::observer::GetDebugEventsRequest {
            number,
            first,
            follow,
            since,
            until,
        };
        let s = c.get_debug_events(req).await?.into_inner();
        return print_lines(s, |r| match json {
            true => seta_hubble::debug::json(r).to_string(),
            false => seta_hubble::debug::compact(r, node),
        })
        .await;
    }
    let req = seta_hubble::observer::GetAgentEventsRequest {
        number,
        first,
        follow,
        since,
        until,
    };
    let s = c.get_agent_events(req).await?.into_inner();
    print_lines(s, |r| match json {
        true => seta_hubble::agent_events::json(r).to_string(),
        false => seta_hubble::agent_events::compact(r, node),
    })
    .await
}

/// Each message of `stream` as the line `line` makes of it.
async fn print_lines<T, E: std::error::Error + Send + Sync + 'static>(
    mut stream: impl futures::Stream<Item = std::result::Result<T, E>> + Unpin,
    line: impl Fn(&T) -> String,
) -> Result<i32> {
    use futures::StreamExt;
    while let Some(r) = stream.next().await {
        println!("{}", line(&r?));
    }
    Ok(0)
}

/// The negated filters: each `--not` filter is a blacklist entry of its
/// own, so a flow matching any of them is left out.
fn blacklist(not: &[(String, String)]) -> Result<Vec<FlowFilter>> {
    let mut out = Vec::new();
    for (k, v) in not {
        let mut s = seta_hubble::select::Selectors::default();
        s.set(k, v).map_err(|e| anyhow::anyhow!("--not {e}"))?;
        out.extend(s.whitelist().map_err(|e| anyhow::anyhow!("--not {e}"))?);
    }
    Ok(out)
}

/// `--server`, else the node's observer socket beside its agent's.
pub fn observer_target(server: Option<&str>, cli: &Cli) -> Result<String> {
    if let Some(s) = server {
        return Ok(s.to_string());
    }
    let sock = seta_client::resolve_socket(cli.node.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(format!("unix://{}", sock.with_file_name("hubble.sock").display()))
}

pub async fn run(a: &ObserveArgs, cli: &Cli, json: bool) -> Result<i32> {
    let target = observer_target(a.server.as_deref(), cli)?;
    let mut c = seta_hubble::connect(&target).await.map_err(anyhow::Error::msg)?;
    match a.what {
        Some(ObserveWhat::Status) => {
            let s = c.server_status(ServerStatusRequest {}).await?.into_inner();
            if json {
                return print_json(&serde_json::json!({
                    "num_flows": s.num_flows, "max_flows": s.max_flows, "seen_flows": s.seen_flows,
                    "uptime_ns": s.uptime_ns, "version": s.version,
                    "num_connected_nodes": s.num_connected_nodes, "num_unavailable_nodes": s.num_unavailable_nodes,
                    "unavailable_nodes": s.unavailable_nodes,
                }));
            }
            println!("Healthcheck (via {target}): Ok");
            // as hubble status: thousands grouped, and the share held
            let ratio = if s.max_flows > 0 {
                format!(" ({:.2}%)", 100.0 * s.num_flows as f64 / s.max_flows as f64)
            } else {
                String::new()
            };
            println!("Current/Max Flows: {}/{}{ratio}", grouped(s.num_flows), grouped(s.max_flows));
            println!("Flows/s: {:.2}", s.seen_flows as f64 / (s.uptime_ns.max(1) as f64 / 1e9));
            if let Some(n) = s.num_connected_nodes {
                println!("Connected Nodes: {n}/{}", n + s.num_unavailable_nodes.unwrap_or(0));
            }
            if !s.unavailable_nodes.is_empty() {
                println!("Unavailable Nodes: {}", s.unavailable_nodes.len());
                for n in &s.unavailable_nodes {
                    println!("  - {n}");
                }
            }
            return Ok(0);
        }
        Some(ObserveWhat::Nodes | ObserveWhat::List(ListWhat::Nodes)) => {
            let mut nodes = c.get_nodes(GetNodesRequest {}).await?.into_inner().nodes;
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            if json {
                return print_json(&nodes.iter().map(node_json).collect::<Vec<_>>());
            }
            table(
                &["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS"],
                nodes.iter().map(node_row).collect(),
            );
            return Ok(0);
        }
        Some(ObserveWhat::AgentEvents(ref e)) => return event_log(&mut c, e, json, false).await,
        Some(ObserveWhat::DebugEvents(ref e)) => return event_log(&mut c, e, json, true).await,
        None => {}
    }
    if a.kind.iter().any(|k| k == "agent") {
        return event_log(&mut c, &a.window, json, false).await;
    }
    if a.kind.iter().any(|k| k == "debug") {
        return event_log(&mut c, &a.window, json, true).await;
    }
    let (number, first, follow, since, until) = a.window.window()?;
    let req = GetFlowsRequest {
        number,
        first,
        follow,
        whitelist: whitelist(a)?,
        blacklist: blacklist(&a.not)?,
        since,
        until,
    };
    // (a refused filter says why in Hubble's words, as `hubble observe`)
    let mut stream = c.get_flows(req).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?.into_inner();
    while let Some(r) = stream.message().await? {
        if json {
            println!("{}", seta_hubble::json::response(&r));
            continue;
        }
        match &r.response_types {
            Some(ResponseTypes::Flow(f)) => println!("{}", seta_hubble::compact::line(f, a.window.print_node_name)),
            Some(ResponseTypes::LostEvents(l)) => {
                let source =
                    seta_hubble::flow::LostEventSource::try_from(l.source).map_or("UNKNOWN_LOST_EVENT_SOURCE", |s| s.as_str_name());
                println!("EVENTS LOST: {source} CPU(0) {}", l.num_events_lost)
            }
            // a relay's word on its nodes: beside the flows, not among them
            Some(ResponseTypes::NodeStatus(n)) => {
                let state = seta_hubble::relay::NodeState::try_from(n.state_change).map_or("UNKNOWN_NODE_STATE", |s| s.as_str_name());
                let why = if n.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", n.message)
                };
                eprintln!("{state}: {}{why}", n.node_names.join(", "));
            }
            _ => {}
        }
    }
    Ok(0)
}

#[cfg(test)]
mod not_tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn counts_are_grouped_as_hubble_status_prints_them() {
        assert_eq!(
            [0, 999, 1000, 4095, 1234567].map(grouped),
            ["0", "999", "1,000", "4,095", "1,234,567"]
        );
    }

    #[test]
    fn not_takes_out_the_next_filter_as_a_blacklist() {
        let (rest, not) = split_not(v("seta observe --last 5 --not --from-pod default/a --not -t=trace --pod x")).unwrap();
        assert_eq!(rest, v("seta observe --last 5 --pod x"));
        assert_eq!(not, [("from-pod".into(), "default/a".into()), ("type".into(), "trace".into())]);
        let bl = blacklist(&not).unwrap();
        assert_eq!(bl.len(), 2);
        assert_eq!(bl[0].source_pod, ["default/a"]);
        assert_eq!(bl[1].event_type[0].r#type, 4);
        // either side: two blacklist entries, source or destination
        assert_eq!(blacklist(&[("ip".into(), "10.0.0.1".into())]).unwrap().len(), 2);
        // other commands are untouched
        assert_eq!(
            split_not(v("seta policy import --not x")).unwrap().0,
            v("seta policy import --not x")
        );
        for (args, want) in [
            ("seta observe --not", "must be followed by a filter flag"),
            ("seta observe --not --last 5", "--not --last: not a filter flag"),
            ("seta observe --not --from-pod", "--not --from-pod: needs a value"),
        ] {
            let e = split_not(v(args)).unwrap_err();
            assert!(e.contains(want), "{args}: {e}");
        }
        assert!(blacklist(&[("verdict".into(), "MAYBE".into())])
            .unwrap_err()
            .to_string()
            .contains("--not --verdict MAYBE"));
    }
}

fn node_state(n: &seta_hubble::observer::Node) -> seta_hubble::relay::NodeState {
    seta_hubble::relay::NodeState::try_from(n.state).unwrap_or(seta_hubble::relay::NodeState::UnknownNodeState)
}

/// A row of `hubble list nodes`: the age rounded to the second as Go prints
/// a duration, flows per second over that age, the buffer's fill; `N/A`
/// where there is none.
fn node_row(n: &seta_hubble::observer::Node) -> Vec<String> {
    use seta_hubble::relay::NodeState::*;
    let status = match node_state(n) {
        NodeConnected => "Connected",
        NodeUnavailable => "Unavailable",
        NodeGone => "Gone",
        NodeError => "Error",
        UnknownNodeState => "Unknown",
    };
    let secs = (n.uptime_ns + 500_000_000) / 1_000_000_000;
    let (age, rate) = if secs > 0 {
        (go_duration(secs), format!("{:.2}", n.seen_flows as f64 / secs as f64))
    } else {
        ("N/A".into(), "N/A".into())
    };
    let fill = if n.max_flows > 0 {
        format!(
            "{}/{} ({:6.2}%)",
            n.num_flows,
            n.max_flows,
            100.0 * n.num_flows as f64 / n.max_flows as f64
        )
    } else {
        "N/A".into()
    };
    vec![n.name.clone(), status.into(), age, rate, fill]
}

/// Whole seconds as Go's `time.Duration` prints them: 5s, 16m40s, 1h0m0s.
fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// A node as `hubble list nodes -o json` prints it (protojson: proto field
/// names in proto order, the state's enum name, 64-bit numbers as strings,
/// zero values left out).
#[derive(serde::Serialize)]
struct NodeJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uptime_ns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_flows: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_flows: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seen_flows: Option<String>,
}

#[derive(serde::Serialize)]
struct TlsJson<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    enabled: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    server_name: &'a str,
}

fn node_json(n: &seta_hubble::observer::Node) -> NodeJson<'_> {
    let num = |v: u64| (v != 0).then(|| v.to_string());
    NodeJson {
        name: &n.name,
        version: &n.version,
        address: &n.address,
        state: (n.state != 0).then(|| node_state(n).as_str_name()),
        tls: n.tls.as_ref().map(|t| TlsJson {
            enabled: t.enabled,
            server_name: &t.server_name,
        }),
        uptime_ns: num(n.uptime_ns),
        num_flows: num(n.num_flows),
        max_flows: num(n.max_flows),
        seen_flows: num(n.seen_flows),
    }
}

#[cfg(test)]
mod list_nodes_tests {
    use super::*;
    use seta_hubble::observer::{Node, Tls};
    use seta_hubble::relay::NodeState;

    // hubble's own expectations (cmd/list/node_test.go)
    fn nodes() -> Vec<Node> {
        vec![
            Node {
                name: "foo".into(),
                version: "1".into(),
                address: "1.2.3.4".into(),
                state: NodeState::NodeConnected as i32,
                tls: Some(Tls {
                    enabled: true,
                    server_name: "foo.bar.tls".into(),
                }),
                uptime_ns: 1_000_000_000_000,
                num_flows: 500,
                max_flows: 1000,
                seen_flows: 0,
            },
            Node {
                name: "bar".into(),
                version: "2".into(),
                address: "5.6.7.8".into(),
                state: NodeState::NodeUnavailable as i32,
                ..Default::default()
            },
        ]
    }

    #[test]
    fn rows_as_hubble_prints_them() {
        let rows: Vec<Vec<String>> = nodes().iter().map(node_row).collect();
        assert_eq!(rows[0], ["foo", "Connected", "16m40s", "0.00", "500/1000 ( 50.00%)"]);
        assert_eq!(rows[1], ["bar", "Unavailable", "N/A", "N/A", "N/A"]);
        assert_eq!(go_duration(5), "5s");
        assert_eq!(go_duration(3600), "1h0m0s");
        assert_eq!(go_duration(3725), "1h2m5s");
    }

    #[test]
    fn json_as_hubble_prints_it() {
        let n = nodes();
        let v: Vec<NodeJson> = n.iter().map(node_json).collect();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            concat!(
                r#"[{"name":"foo","version":"1","address":"1.2.3.4","state":"NODE_CONNECTED","#,
                r#""tls":{"enabled":true,"server_name":"foo.bar.tls"},"uptime_ns":"1000000000000","#,
                r#""num_flows":"500","max_flows":"1000"},"#,
                r#"{"name":"bar","version":"2","address":"5.6.7.8","state":"NODE_UNAVAILABLE"}]"#
            )
        );
    }
}
