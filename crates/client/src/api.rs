//! Typed methods for every route of the agent's API: callers (CLI, CNI
//! plugin, lab) never spell a `/v1/...` path themselves.
use crate::{Client, ClientError, Method};
use serde_json::Value;
use seta_core::api::{
    Attachment, IdentityEntry, IpamResponse, LabelsBody, NamespaceBody, PolicyChange, PolicyListing, PolicyText, Status, TraceRequest,
};
use seta_core::endpoint::{Endpoint, EndpointChangeRequest, EndpointRef};
use seta_core::policy::trace::TraceResult;
use std::net::Ipv4Addr;

/// Percent-encode a path segment or query value (everything but RFC 3986
/// unreserved characters).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn ep(r: &EndpointRef) -> String {
    format!("/v1/endpoint/{}", enc(&r.to_string()))
}

/// Which policies `policy_delete` removes.
#[derive(Debug, Clone, Default)]
pub struct PolicySelector {
    pub all: bool,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub kind: Option<String>,
}

impl Client {
    pub async fn healthz(&self) -> Result<Value, ClientError> {
        self.get("/v1/healthz").await
    }
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.get("/v1/status").await
    }
    pub async fn config(&self) -> Result<Value, ClientError> {
        self.get("/v1/config").await
    }
    pub async fn ipam_allocate(&self, owner: &str) -> Result<IpamResponse, ClientError> {
        self.post(&format!("/v1/ipam?owner={}", enc(owner)), &serde_json::json!({})).await
    }
    /// Release one address (the one an ADD allocated).
    pub async fn ipam_release(&self, ip: Ipv4Addr) -> Result<Value, ClientError> {
        self.delete(&format!("/v1/ipam/{ip}")).await
    }
    /// Release every address of an owner (DEL, GC).
    pub async fn ipam_release_owner(&self, owner: &str) -> Result<Value, ClientError> {
        self.delete(&format!("/v1/ipam?owner={}", enc(owner))).await
    }
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, ClientError> {
        self.get("/v1/endpoint").await
    }
    pub async fn endpoint(&self, r: &EndpointRef) -> Result<Endpoint, ClientError> {
        self.get(&ep(r)).await
    }
    /// The endpoint, or None when the agent has none by that name.
    pub async fn endpoint_opt(&self, r: &EndpointRef) -> Result<Option<Endpoint>, ClientError> {
        match self.endpoint(r).await {
            Ok(e) => Ok(Some(e)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
    pub async fn endpoint_put(&self, req: &EndpointChangeRequest) -> Result<Endpoint, ClientError> {
        self.put(&ep(&EndpointRef::ContainerId(req.container_id.clone())), req).await
    }
    pub async fn endpoint_delete(&self, r: &EndpointRef) -> Result<Endpoint, ClientError> {
        self.delete(&ep(r)).await
    }
    pub async fn endpoint_labels(&self, r: &EndpointRef, labels: Vec<String>) -> Result<Endpoint, ClientError> {
        self.request(Method::PATCH, &format!("{}/labels", ep(r)), Some(&LabelsBody { labels }))
            .await
    }
    pub async fn attachments(&self) -> Result<Vec<Attachment>, ClientError> {
        self.get("/v1/attachments").await
    }
    pub async fn identities(&self) -> Result<Vec<IdentityEntry>, ClientError> {
        self.get("/v1/identity").await
    }
    pub async fn identity(&self, id: u32) -> Result<IdentityEntry, ClientError> {
        self.get(&format!("/v1/identity/{id}")).await
    }
    pub async fn policy_import(&self, yaml: String) -> Result<PolicyChange, ClientError> {
        self.put("/v1/policy", &PolicyText { yaml }).await
    }
    pub async fn service_import(&self, yaml: String) -> Result<seta_core::api::ServiceChange, ClientError> {
        self.put("/v1/service", &seta_core::api::ServiceText { yaml }).await
    }
    pub async fn service_backend_state(&self, backend: &str, state: &str) -> Result<Value, ClientError> {
        let body = seta_core::api::BackendStateBody {
            backend: backend.into(),
            state: state.into(),
        };
        self.request(Method::PATCH, "/v1/service-backend", Some(&body)).await
    }
    /// The digest of the node's services and whether its maps hold them.
    pub async fn service_state(&self) -> Result<Value, ClientError> {
        self.get("/v1/service-state").await
    }
    pub async fn service_list(&self) -> Result<Vec<seta_core::api::ServiceEntry>, ClientError> {
        self.get("/v1/service").await
    }
    pub async fn service_get(&self, namespace: &str, name: &str) -> Result<Value, ClientError> {
        self.get(&format!("/v1/service/{}/{}", enc(namespace), enc(name))).await
    }
    /// Delete a service (with its EndpointSlices), or everything (`name` None).
    pub async fn service_delete(&self, name: Option<&str>, namespace: &str) -> Result<seta_core::api::ServiceChange, ClientError> {
        match name {
            Some(n) => {
                self.delete(&format!("/v1/service?name={}&namespace={}", enc(n), enc(namespace)))
                    .await
            }
            None => self.delete("/v1/service?all=true").await,
        }
    }
    pub async fn policy_validate(&self, yaml: String) -> Result<PolicyChange, ClientError> {
        self.post("/v1/policy/validate", &PolicyText { yaml }).await
    }
    pub async fn policy_get(&self) -> Result<PolicyListing, ClientError> {
        self.get("/v1/policy").await
    }
    pub async fn policy_delete(&self, sel: &PolicySelector) -> Result<PolicyChange, ClientError> {
        let mut q = Vec::new();
        if sel.all {
            q.push("all=true".to_string());
        }
        for (k, v) in [("name", &sel.name), ("namespace", &sel.namespace), ("kind", &sel.kind)] {
            if let Some(v) = v {
                q.push(format!("{k}={}", enc(v)));
            }
        }
        self.delete(&format!("/v1/policy?{}", q.join("&"))).await
    }
    pub async fn policy_verify(&self) -> Result<Value, ClientError> {
        self.get("/v1/policy/verify").await
    }
    /// Wait until every endpoint of this agent enforces `revision` (the
    /// current one when None); the revision reached.
    pub async fn policy_wait(&self, revision: Option<u64>, timeout_secs: u64) -> Result<u64, ClientError> {
        let q = match revision {
            Some(r) => format!("/v1/policy/wait?revision={r}&timeout={timeout_secs}"),
            None => format!("/v1/policy/wait?timeout={timeout_secs}"),
        };
        let v: Value = self
            .clone()
            .with_timeout(std::time::Duration::from_secs(timeout_secs + 5))
            .get(&q)
            .await?;
        v["revision"]
            .as_u64()
            .ok_or_else(|| ClientError::Decode(format!("policy wait answered {v}")))
    }
    pub async fn policy_trace(&self, req: &TraceRequest) -> Result<TraceResult, ClientError> {
        self.post("/v1/policy/trace", req).await
    }
    pub async fn namespaces(&self) -> Result<Value, ClientError> {
        self.get("/v1/namespace").await
    }
    pub async fn namespace_put(&self, ns: &str, labels: std::collections::BTreeMap<String, String>) -> Result<Value, ClientError> {
        self.put(&format!("/v1/namespace/{}", enc(ns)), &NamespaceBody { labels }).await
    }
    pub async fn events(&self, since: u64) -> Result<Vec<Value>, ClientError> {
        self.get(&format!("/v1/events?since={since}")).await
    }
    pub async fn kvstore_list(&self, prefix: &str) -> Result<Vec<Value>, ClientError> {
        self.get(&format!("/v1/kvstore?prefix={}", enc(prefix))).await
    }
    pub async fn kvstore_get(&self, key: &str) -> Result<Vec<Value>, ClientError> {
        self.get(&format!("/v1/kvstore?key={}", enc(key))).await
    }
    pub async fn nodes(&self) -> Result<Vec<Value>, ClientError> {
        self.get("/v1/nodes").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn paths_are_encoded() {
        assert_eq!(enc("a b/c&d=e%"), "a%20b%2Fc%26d%3De%25");
        let r = EndpointRef::PodName {
            namespace: "prod".into(),
            pod: "web-1".into(),
        };
        assert_eq!(ep(&r), "/v1/endpoint/pod-name:prod%2Fweb-1");
        assert_eq!(EndpointRef::parse(&r.to_string()).unwrap(), r);
    }
}
