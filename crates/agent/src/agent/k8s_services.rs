//! Services and EndpointSlices from the Kubernetes API (under
//! `--k8s-kubeconfig`): each kind is watched (list, then watch, relist and
//! backoff as for policies); the accepted objects become the services
//! subsystem's set and the maps follow. A refused object keeps the version
//! accepted before and is reported in the log and as a Warning Event
//! (`ServiceRejected`).
use super::k8s::{next_change, resource, watch_all, Change};
use super::*;
use crate::k8s::services::{SvcKind, SvcOutcome};

impl Agent {
    pub(super) async fn k8s_service_watch(self: Arc<Self>, kind: SvcKind) -> anyhow::Result<()> {
        let k = self.k8s.clone().expect("Kubernetes is configured");
        let (g, v, kname, plural) = kind.gvkp();
        let ar = resource(g, v, kname, plural);
        let api_version = if g.is_empty() { v.to_string() } else { format!("{g}/{v}") };
        let mut s = watch_all(&k, &ar);
        while let Some(ch) = next_change(&k, &mut s, plural).await {
            let (outcomes, changed) = {
                let mut src = k.services.lock().unwrap_or_else(|e| e.into_inner());
                match ch {
                    Change::Listed(listed) => src.replace(kind, &listed),
                    Change::Apply(o) => {
                        let out = src.apply(kind, &o);
                        let changed = matches!(out, SvcOutcome::Accepted { changed: true });
                        (vec![(crate::k8s::services::key(kind, &o), out)], changed)
                    }
                    Change::Delete(o) => (vec![], src.delete(kind, &o)),
                }
            };
            for ((_, ns, name), out) in outcomes {
                if let SvcOutcome::Rejected { msg, new: true } = out {
                    tracing::error!(kind = kname, namespace = %ns, name = %name, error = %msg, "service object refused; the version accepted before (if any) stays");
                    self.k8s_warning(&api_version, kname, &ns, &name, "ServiceRejected", &msg).await;
                }
            }
            if changed {
                self.k8s_services_changed().await;
            }
        }
        anyhow::bail!("the {plural} watch ended")
    }

    /// The accepted Services and EndpointSlices become the services set.
    /// Their snapshot is taken under the services order, so the last writer
    /// writes the latest set: taken before it, the Service watcher's older
    /// set (without a slice the other watcher had just applied) could come
    /// second and stay, a frontend without its backends until the next
    /// change.
    async fn k8s_services_changed(&self) {
        let Some(k) = &self.k8s else { return };
        let _order = self.services_io.lock().await;
        let objs = k.services.lock().unwrap_or_else(|e| e.into_inner()).objects();
        let n = objs.len();
        if !self.services.lock().unwrap().replace_all(objs) {
            return;
        }
        match self.sync_services().await {
            Ok(()) => tracing::info!(objects = n, "Kubernetes services applied"),
            Err(e) => tracing::error!(%e, "applying the Kubernetes services"),
        }
    }
}
