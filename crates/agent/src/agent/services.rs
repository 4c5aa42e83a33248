//! The agent's side of the services subsystem (`crate::services`): import,
//! list, get and delete over the API, persisted in the state dir. The
//! repository has its own lock (never the endpoint lock); parsing runs on
//! a blocking thread; the file is written after the lock is released.
use super::*;
use crate::services::{entry, Repository, Selection};
use seta_core::api::{ServiceChange, ServiceEntry};

impl Agent {
    /// The addresses NodePort frontends listen on: the node's address
    /// (its router address when it has none, as in a one-node lab).
    fn node_port_addrs(&self) -> Vec<Ipv4Addr> {
        vec![self.node_ip.unwrap_or(seta_core::ipam::router_ip(self.cfg.pod_cidr))]
    }

    fn save_services(&self, snapshot: Repository) -> Result<(), ApiError> {
        self.store.save("services.json", &snapshot)?;
        Ok(())
    }

    /// Make the datapath's service maps follow the repository: computed
    /// under the services lock, written on a blocking thread without it.
    pub(super) async fn sync_services(&self) -> Result<(), ApiError> {
        let addrs = self.node_port_addrs();
        let (want, snapshot) = {
            let mut repo = self.services.lock().unwrap();
            let want = repo.lb_state(&self.cfg.node, &addrs);
            (want, repo.clone())
        };
        self.save_services(snapshot)?;
        let k = self.kernel.clone();
        tokio::task::spawn_blocking(move || k.lb_sync(&want))
            .await
            .map_err(|e| ApiError::Internal(format!("service maps: {e}")))?
            .map_err(|e| ApiError::Internal(format!("service maps: {e}")))
    }

    /// Create or replace every Service and EndpointSlice of `text`, all or
    /// nothing.
    pub async fn service_import(&self, text: &str) -> Result<ServiceChange, ApiError> {
        let text = text.to_string();
        let objects = tokio::task::spawn_blocking(move || seta_core::service::parse_file(&text))
            .await
            .map_err(|e| ApiError::Internal(format!("service parser: {e}")))?
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let _order = self.services_io.lock().await;
        let (change, snapshot) = {
            let mut repo = self.services.lock().unwrap();
            let (revision, objects) = repo.import(objects);
            (ServiceChange { revision, objects }, repo.clone())
        };
        self.save_services(snapshot)?;
        self.sync_services().await?;
        tracing::info!(revision = change.revision, objects = change.objects.len(), "services changed");
        Ok(change)
    }

    /// Delete a service (with its EndpointSlices) or everything.
    pub async fn service_delete(&self, name: Option<&str>, namespace: Option<&str>, all: bool) -> Result<ServiceChange, ApiError> {
        let sel = match (name, all) {
            (_, true) => Selection::All,
            (Some(name), false) => Selection::Service {
                namespace: namespace.unwrap_or("default"),
                name,
            },
            (None, false) => return Err(ApiError::BadRequest("give a service name or --all".into())),
        };
        let _order = self.services_io.lock().await;
        let (change, snapshot) = {
            let mut repo = self.services.lock().unwrap();
            let (revision, objects) = repo.delete(sel);
            (ServiceChange { revision, objects }, repo.clone())
        };
        if change.objects.is_empty() && !all {
            return Err(ApiError::NotFound(format!(
                "no service {:?} in namespace {}",
                name.unwrap_or_default(),
                namespace.unwrap_or("default")
            )));
        }
        self.save_services(snapshot)?;
        self.sync_services().await?;
        Ok(change)
    }

    /// Every frontend this node load-balances, with its backends.
    pub fn service_list(&self) -> Vec<ServiceEntry> {
        let addrs = self.node_port_addrs();
        self.services.lock().unwrap().frontends(&addrs).iter().map(entry).collect()
    }

    /// One service: the object and its frontends.
    pub fn service_get(&self, name: &str, namespace: &str) -> Result<serde_json::Value, ApiError> {
        let addrs = self.node_port_addrs();
        let repo = self.services.lock().unwrap();
        let s = repo
            .service(namespace, name)
            .ok_or_else(|| ApiError::NotFound(format!("no service {name:?} in namespace {namespace}")))?;
        let frontends: Vec<ServiceEntry> = seta_core::service::translate(s, &repo.slices_of(s), &addrs)
            .iter()
            .map(entry)
            .collect();
        Ok(serde_json::json!({"service": s, "frontends": frontends}))
    }
}
