//! Services and EndpointSlices from the Kubernetes API: the objects the
//! watches deliver, decoded as strictly as `seta service import`. A refused
//! object keeps the version accepted before (if any) and is reported once
//! per error. Pure: the agent hands the accepted set to the services
//! subsystem.
use serde_json::Value;
use seta_core::service::{parse_value_with, Object};
use std::collections::BTreeMap;

/// The two watched kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SvcKind {
    Service,
    EndpointSlice,
}

impl SvcKind {
    pub const ALL: [SvcKind; 2] = [SvcKind::Service, SvcKind::EndpointSlice];

    /// (group, version, kind, plural)
    pub fn gvkp(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::Service => ("", "v1", "Service", "services"),
            Self::EndpointSlice => ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::Service => "v1",
            Self::EndpointSlice => "discovery.k8s.io/v1",
        }
    }
}

/// (kind, namespace, name)
pub type SvcKey = (SvcKind, String, String);

/// What happened to one object.
#[derive(Debug, PartialEq)]
pub enum SvcOutcome {
    /// accepted; `changed`: the accepted set is different now
    Accepted { changed: bool },
    /// refused; `new`: an error not reported before
    Rejected { msg: String, new: bool },
}

#[derive(Debug, Default)]
pub struct ServiceSource {
    accepted: BTreeMap<SvcKey, Object>,
    rejected: BTreeMap<SvcKey, String>,
    /// nodePorts outside it are refused (`--node-port-range`)
    pub node_port_range: seta_core::service::NodePortRange,
}

pub fn key(kind: SvcKind, o: &Value) -> SvcKey {
    let m = &o["metadata"];
    (
        kind,
        m["namespace"].as_str().unwrap_or("").to_string(),
        m["name"].as_str().unwrap_or("").to_string(),
    )
}

/// Decode an object of `kind` (list items may come without their type).
fn decode(kind: SvcKind, o: &Value, range: seta_core::service::NodePortRange) -> Result<Object, String> {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.entry("apiVersion").or_insert_with(|| kind.api_version().into());
        m.entry("kind").or_insert_with(|| kind.gvkp().2.into());
    }
    parse_value_with(&o, range).map_err(|e| e.to_string())
}

impl ServiceSource {
    /// An object was added or changed.
    pub fn apply(&mut self, kind: SvcKind, o: &Value) -> SvcOutcome {
        let k = key(kind, o);
        match decode(kind, o, self.node_port_range) {
            Ok(obj) => {
                self.rejected.remove(&k);
                let changed = self.accepted.get(&k) != Some(&obj);
                self.accepted.insert(k, obj);
                SvcOutcome::Accepted { changed }
            }
            Err(msg) => {
                let new = self.rejected.get(&k) != Some(&msg);
                self.rejected.insert(k, msg.clone());
                SvcOutcome::Rejected { msg, new }
            }
        }
    }

    /// An object was deleted; true when the accepted set changed.
    pub fn delete(&mut self, kind: SvcKind, o: &Value) -> bool {
        let k = key(kind, o);
        self.rejected.remove(&k);
        self.accepted.remove(&k).is_some()
    }

    /// A (re)list of every object of `kind`: those not in it are gone.
    /// The outcome of each listed object, and whether the set changed.
    pub fn replace(&mut self, kind: SvcKind, listed: &[Value]) -> (Vec<(SvcKey, SvcOutcome)>, bool) {
        let before: Vec<Object> = self.objects();
        let keys: std::collections::BTreeSet<SvcKey> = listed.iter().map(|o| key(kind, o)).collect();
        self.accepted.retain(|k, _| k.0 != kind || keys.contains(k));
        self.rejected.retain(|k, _| k.0 != kind || keys.contains(k));
        let outcomes = listed.iter().map(|o| (key(kind, o), self.apply(kind, o))).collect();
        let changed = self.objects() != before;
        (outcomes, changed)
    }

    /// Every accepted object.
    pub fn objects(&self) -> Vec<Object> {
        self.accepted.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(name: &str, port: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "resourceVersion": "7", "uid": "u"},
               "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": port, "protocol": "TCP"}]}})
    }

    #[test]
    fn accepted_objects_stay_until_a_valid_version_or_a_delete() {
        let mut s = ServiceSource::default();
        let (out, changed) = s.replace(SvcKind::Service, &[svc("a", 80)]);
        assert!(changed);
        assert_eq!(out[0].1, SvcOutcome::Accepted { changed: true });
        // an invalid version is refused once, with the field, and the valid one stays
        let SvcOutcome::Rejected { msg, new: true } = s.apply(SvcKind::Service, &svc("a", 0)) else {
            panic!("refused")
        };
        assert!(msg.contains("Service default/a") && msg.contains("port"), "{msg}");
        assert!(matches!(
            s.apply(SvcKind::Service, &svc("a", 0)),
            SvcOutcome::Rejected { new: false, .. }
        ));
        assert_eq!(s.objects().len(), 1);
        assert_eq!(s.apply(SvcKind::Service, &svc("a", 80)), SvcOutcome::Accepted { changed: false });
        assert_eq!(s.apply(SvcKind::Service, &svc("a", 81)), SvcOutcome::Accepted { changed: true });
        // a relist without it: gone; a delete of what is not there changes nothing
        let (_, changed) = s.replace(SvcKind::Service, &[]);
        assert!(changed && s.objects().is_empty());
        assert!(!s.delete(SvcKind::Service, &svc("a", 81)));
    }

    /// A Service from the API is held to the agent's `--node-port-range`.
    #[test]
    fn node_ports_from_the_api_follow_the_agents_range() {
        let np = |n: u16| {
            json!({"metadata": {"name": "np", "namespace": "default"},
                   "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "ports": [{"port": 80, "nodePort": n}]}})
        };
        let mut s = ServiceSource::default();
        let SvcOutcome::Rejected { msg, .. } = s.apply(SvcKind::Service, &np(35000)) else {
            panic!("outside the default range")
        };
        assert!(
            msg.contains("spec.ports[0].nodePort: 35000: must be in the NodePort range 30000-32767"),
            "{msg}"
        );
        s.node_port_range = "30000,40000".parse().unwrap();
        assert_eq!(s.apply(SvcKind::Service, &np(35000)), SvcOutcome::Accepted { changed: true });
    }
}
