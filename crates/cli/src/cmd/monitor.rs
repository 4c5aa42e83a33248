//! `seta monitor`: the node's datapath events live, as `cilium-dbg monitor`
//! prints them (drop and policy-verdict lines), from its observer.
use crate::*;
use seta_hubble::flow::{EventTypeFilter, FlowFilter};
use seta_hubble::observer::{get_flows_response::ResponseTypes, GetFlowsRequest};

#[derive(clap::Args)]
pub struct MonitorArgs {
    /// Event types: drop, policy-verdict, trace, trace-sock (repeatable; all by default); agent: the agent's own events
    #[arg(short = 't', long = "type")]
    pub kinds: Vec<String>,
    /// Only events from this endpoint id
    #[arg(long)]
    pub from: Option<u32>,
    /// Only events to this endpoint id
    #[arg(long)]
    pub to: Option<u32>,
    /// Only events from or to this endpoint id
    #[arg(long)]
    pub related_to: Option<u32>,
    /// Numeric identities (no reserved names)
    #[arg(short = 'n', long)]
    pub numeric: bool,
    /// One JSON object per event
    #[arg(short = 'j', long)]
    pub json: bool,
    /// The observer: unix:///run/seta/NODE/hubble.sock (default for --node) or HOST:PORT
    #[arg(long)]
    pub server: Option<String>,
}

pub async fn run(a: &MonitorArgs, cli: &Cli) -> Result<i32> {
    let target = super::observe::observer_target(a.server.as_deref(), cli)?;
    if a.kinds.iter().any(|k| k == "agent") {
        return agent(a, &target).await;
    }
    let mut event_type = vec![];
    for k in &a.kinds {
        let t = match k.as_str() {
            "drop" => seta_hubble::decode::MSG_DROP,
            "policy-verdict" => seta_hubble::decode::MSG_POLICY_VERDICT,
            "trace" => seta_hubble::decode::MSG_TRACE,
            "trace-sock" => seta_hubble::decode::MSG_TRACE_SOCK,
            other => bail!("--type {other}: drop, policy-verdict, trace, trace-sock or agent"),
        };
        event_type.push(EventTypeFilter {
            r#type: t,
            ..Default::default()
        });
    }
    let mut c = seta_hubble::connect(&target).await.map_err(anyhow::Error::msg)?;
    let req = GetFlowsRequest {
        follow: true,
        whitelist: vec![FlowFilter {
            event_type,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut stream = c.get_flows(req).await?.into_inner();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("Listening for events on {cpus} CPUs with 64x4096 of shared memory");
    eprintln!("Press Ctrl-C to quit");
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while let Some(r) = stream.message().await? {
        match &r.response_types {
            Some(ResponseTypes::Flow(f)) => {
                let (src, dst) = (f.source.as_ref().map_or(0, |e| e.id), f.destination.as_ref().map_or(0, |e| e.id));
                if a.from.is_some_and(|id| id != src)
                    || a.to.is_some_and(|id| id != dst)
                    || a.related_to.is_some_and(|id| id != src && id != dst)
                {
                    continue;
                }
                if a.json {
                    writeln!(out, "{}", seta_hubble::json::flow(f))?;
                } else if let Some(l) = seta_hubble::monitor::line(f, a.numeric) {
                    writeln!(out, "{l}")?;
                }
            }
            Some(ResponseTypes::LostEvents(l)) => writeln!(out, "CPU 00: Lost {} events", l.num_events_lost)?,
            _ => {}
        }
        out.flush()?;
    }
    Ok(0)
}

/// `seta monitor -t agent`: the agent's own events as they happen,
/// `>> TYPE: details` (or JSON lines with `-j`).
async fn agent(a: &MonitorArgs, target: &str) -> Result<i32> {
    let mut c = seta_hubble::connect(target).await.map_err(anyhow::Error::msg)?;
    let req = seta_hubble::observer::GetAgentEventsRequest {
        follow: true,
        ..Default::default()
    };
    let mut stream = c.get_agent_events(req).await?.into_inner();
    eprintln!("Listening for agent events");
    eprintln!("Press Ctrl-C to quit");
    while let Some(r) = stream.message().await? {
        if a.json {
            println!("{}", seta_hubble::agent_events::json(&r));
            continue;
        }
        let e = r.agent_event.clone().unwrap_or_default();
        let t = seta_hubble::flow::AgentEventType::try_from(e.r#type).map_or("AGENT_EVENT_UNKNOWN", |t| t.as_str_name());
        println!(">> {t}: {}", seta_hubble::agent_events::details(&e));
    }
    Ok(0)
}
