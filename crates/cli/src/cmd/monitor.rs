//! `seta monitor`: the node's datapath events live, as `cilium-dbg monitor`
//! prints them (drop, trace, policy-verdict, trace-sock and debug lines),
//! from its observer.
use crate::*;
use futures::StreamExt;
use seta_hubble::flow::{EventTypeFilter, FlowFilter};
use seta_hubble::observer::{get_flows_response::ResponseTypes, GetFlowsRequest};

#[derive(clap::Args)]
pub struct MonitorArgs {
    /// Event types: drop, policy-verdict, trace, trace-sock, debug (repeatable; all by default); agent: the agent's own events
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
    /// One JSON object per event (overrides -v)
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Verbose: a separator before each event, a drop's header (CPU, MARK, FROM, bytes, reason, identities) and its packet dissected
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// With -v: a drop's packet as a hex dump instead of dissected (implies -v)
    #[arg(long)]
    pub hex: bool,
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
    // debug messages: asked for, or everything
    let debug = a.kinds.is_empty() || a.kinds.iter().any(|k| k == "debug");
    for k in a.kinds.iter().filter(|k| *k != "debug") {
        let t = match k.as_str() {
            "drop" => seta_hubble::decode::MSG_DROP,
            "policy-verdict" => seta_hubble::decode::MSG_POLICY_VERDICT,
            "trace" => seta_hubble::decode::MSG_TRACE,
            "trace-sock" => seta_hubble::decode::MSG_TRACE_SOCK,
            other => bail!("--type {other}: drop, policy-verdict, trace, trace-sock, debug or agent"),
        };
        event_type.push(EventTypeFilter {
            r#type: t,
            ..Default::default()
        });
    }
    let mut c = seta_hubble::connect(&target).await.map_err(anyhow::Error::msg)?;
    // the flows asked for (none when only debug messages are), and the
    // debug messages, as one stream
    let flows = (a.kinds.is_empty() || !event_type.is_empty()).then(|| GetFlowsRequest {
        follow: true,
        whitelist: vec![FlowFilter {
            event_type,
            ..Default::default()
        }],
        ..Default::default()
    });
    let flows = match flows {
        Some(req) => c
            .get_flows(req)
            .await?
            .into_inner()
            .map(|r| r.map(|f| Event::Flow(Box::new(f))))
            .boxed(),
        None => futures::stream::empty().boxed(),
    };
    let debug = match debug {
        true => {
            let req = seta_hubble::observer::GetDebugEventsRequest {
                follow: true,
                ..Default::default()
            };
            match c.get_debug_events(req).await {
                Ok(s) => s.into_inner().map(|r| r.map(|d| Event::Debug(Box::new(d)))).boxed(),
                // (a server without debug messages, e.g. a relay: only asked-for ones fail)
                Err(_) if a.kinds.is_empty() => futures::stream::empty().boxed(),
                Err(e) => return Err(e.into()),
            }
        }
        false => futures::stream::empty().boxed(),
    };
    let mut stream = futures::stream::select(flows, debug);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("Listening for events on {cpus} CPUs with 64x4096 of shared memory");
    eprintln!("Press Ctrl-C to quit");
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while let Some(r) = stream.next().await {
        let r = match r? {
            Event::Flow(r) => r,
            Event::Debug(d) => {
                let src = d.debug_event.as_ref().and_then(|e| e.source.as_ref()).map_or(0, |s| s.id);
                if a.from.is_some_and(|id| id != src) || a.related_to.is_some_and(|id| id != src) || a.to.is_some() {
                    continue;
                }
                if a.json {
                    writeln!(out, "{}", seta_hubble::debug::monitor_json(&d))?;
                } else {
                    if a.verbose > 0 || a.hex {
                        writeln!(out, "{}", seta_hubble::monitor::SEPARATOR)?;
                    }
                    writeln!(out, "{}", seta_hubble::debug::monitor(&d))?;
                }
                out.flush()?;
                continue;
            }
        };
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
                } else if a.verbose > 0 || a.hex {
                    for l in seta_hubble::monitor::verbose(f, a.numeric, a.hex).unwrap_or_default() {
                        writeln!(out, "{l}")?;
                    }
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

/// One of the streams `seta monitor` follows.
enum Event {
    Flow(Box<seta_hubble::observer::GetFlowsResponse>),
    Debug(Box<seta_hubble::observer::GetDebugEventsResponse>),
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
