//! The Kubernetes subsystem: the API client, what the watched objects
//! contribute (policies; namespaces' labels go to the policy subsystem
//! directly), and the watches' health. The agent (`agent/k8s.rs`) runs the
//! watches and applies what this computes; translation is pure
//! (`translate`).
#[cfg(test)]
mod tests;
pub mod translate;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use translate::PolicySource;

/// Where the API is: a kubeconfig, or the pod's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Kubeconfig(std::path::PathBuf),
    InCluster,
}

pub struct K8s {
    pub client: kube::Client,
    /// the watched policy objects and what they contribute
    pub policies: Mutex<PolicySource>,
    /// per watch: Ok once it has listed, or its last error
    health: Mutex<BTreeMap<&'static str, Result<(), String>>>,
    pub source: Source,
}

/// A client for `source` (no request is made yet).
pub async fn connect(source: &Source) -> anyhow::Result<kube::Client> {
    let cfg = match source {
        Source::Kubeconfig(p) => kubeconfig(p).await?,
        Source::InCluster => kube::Config::incluster()?,
    };
    Ok(kube::Client::try_from(cfg)?)
}

async fn kubeconfig(p: &Path) -> anyhow::Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| anyhow::anyhow!("--k8s-kubeconfig {}: {e}", p.display()))?;
    Ok(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?)
}

impl K8s {
    pub fn new(client: kube::Client, source: Source, watches: &[&'static str]) -> Self {
        Self {
            client,
            policies: Mutex::new(PolicySource::default()),
            health: Mutex::new(watches.iter().map(|w| (*w, Err("not listed yet".to_string()))).collect()),
            source,
        }
    }

    pub fn policies(&self) -> std::sync::MutexGuard<'_, PolicySource> {
        self.policies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A watch listed (or resumed) fine, or failed with `err`.
    pub fn watch_state(&self, watch: &'static str, r: Result<(), String>) {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).insert(watch, r);
    }

    /// "ok (...)", or "degraded: ..." naming the failing watches; with
    /// the objects refused.
    pub fn status(&self) -> String {
        let via = match &self.source {
            Source::Kubeconfig(p) => format!("kubeconfig {}", p.display()),
            Source::InCluster => "in-cluster".to_string(),
        };
        let refused: Vec<String> = self
            .policies()
            .rejected()
            .into_iter()
            .map(|((k, ns, name), _)| {
                format!(
                    "{} {}{name}",
                    k.kind(),
                    if ns.is_empty() { String::new() } else { format!("{ns}/") }
                )
            })
            .collect();
        let refused = match refused.len() {
            0 => String::new(),
            _ => format!("; refused: {}", refused.join(", ")),
        };
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let bad: Vec<String> = h
            .iter()
            .filter_map(|(w, r)| r.as_ref().err().map(|e| format!("{w}: {e}")))
            .collect();
        if bad.is_empty() {
            format!("ok ({} watches, {via}{refused})", h.len())
        } else {
            format!(
                "degraded: {} (the datapath keeps the last known state; retrying){refused}",
                bad.join("; ")
            )
        }
    }
}
