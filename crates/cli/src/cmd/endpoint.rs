//! `seta endpoint`: the agent's endpoints.
use crate::*;

#[derive(Subcommand)]
pub enum EndpointCmd {
    /// List endpoints
    List,
    /// Show one endpoint (id, container-id:ID or pod-name:NS/POD)
    Get { id: String },
    /// Show an endpoint's labels, or replace them with --set k=v,...
    Labels {
        id: String,
        #[arg(long)]
        set: Option<String>,
    },
}

pub async fn run(cmd: &EndpointCmd, cli: &Cli, json: bool) -> Result<i32> {
    match cmd {
        EndpointCmd::List => {
            let eps: Vec<Endpoint> = client(cli.node.as_deref())?.endpoints().await?;
            if json {
                return print_json(&eps);
            }
            let mut rows = vec![];
            for e in &eps {
                let labels: Vec<String> = e.labels.iter().map(|l| l.to_string()).collect();
                let first = labels.first().cloned().unwrap_or_else(|| "reserved:init".into());
                let enf = |b: bool| if b { "Enabled" } else { "Disabled" }.to_string();
                rows.push(vec![
                    e.id.to_string(),
                    enf(e.ingress_enforced),
                    enf(e.egress_enforced),
                    e.identity.to_string(),
                    first,
                    e.ipv4.to_string(),
                    e.state.to_string(),
                ]);
                for l in labels.iter().skip(1) {
                    rows.push(vec!["".into(), "".into(), "".into(), "".into(), l.clone(), "".into(), "".into()]);
                }
            }
            table(
                &[
                    "ENDPOINT",
                    "POLICY (ingress)",
                    "POLICY (egress)",
                    "IDENTITY",
                    "LABELS (source:key[=value])",
                    "IPv4",
                    "STATUS",
                ],
                rows,
            );
        }
        EndpointCmd::Get { id } => {
            let e: Endpoint = client(cli.node.as_deref())?.endpoint(&ep_ref(id)?).await?;
            if json {
                return print_json(&e);
            }
            kv(&[
                ("ID", e.id.to_string()),
                ("State", e.state.to_string()),
                ("Identity", e.identity.to_string()),
                ("Labels", e.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(" ")),
                ("Pod", format!("{}/{}", e.namespace, e.pod_name)),
                ("Container", format!("{} ({})", e.container_id, e.container_interface_name)),
                ("IPv4", e.ipv4.to_string()),
                ("MAC", e.mac.clone()),
                (
                    "Host interface",
                    format!("{} (ifindex {}, {})", e.interface_name, e.interface_index, e.host_mac),
                ),
                ("Netns", e.netns_path.clone()),
            ]);
        }
        EndpointCmd::Labels { id, set } => {
            let c = client(cli.node.as_deref())?;
            let e: Endpoint = match set {
                Some(l) => c.endpoint_labels(&ep_ref(id)?, split_labels(l)?).await?,
                None => c.endpoint(&ep_ref(id)?).await?,
            };
            if json {
                return print_json(
                    &serde_json::json!({"id": e.id, "pod-labels": e.pod_labels, "identity-labels": e.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(), "identity": e.identity}),
                );
            }
            kv(&[
                ("Endpoint", e.id.to_string()),
                ("Identity", e.identity.to_string()),
                ("Pod labels", e.pod_labels.join(" ")),
                (
                    "Identity labels",
                    e.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(" "),
                ),
            ]);
        }
    }
    Ok(0)
}

/// An endpoint id as one URL path segment (`pod-name:ns/pod` has a slash).
/// An endpoint named as the API does: id, container-id:ID or pod-name:NS/POD.
pub fn ep_ref(id: &str) -> Result<seta_core::endpoint::EndpointRef> {
    seta_core::endpoint::EndpointRef::parse(id).map_err(anyhow::Error::msg)
}
