//! The agent's own events (Hubble's GetAgentEvents): its start, endpoints
//! created and deleted, policy changes, services upserted and deleted. A
//! bounded log with followers, as the flow ring; the agent tells it what
//! happened, and it turns a new service list into upserts and deletes.
use super::log::EventLog;
use seta_core::api::ServiceEntry;
use seta_hubble::flow::agent_event::Notification;
use seta_hubble::flow::*;
use seta_hubble::observer::GetAgentEventsResponse;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Events kept for readers that come later.
const KEEP: usize = 1024;

pub struct AgentEvents {
    node: String,
    inner: Mutex<Inner>,
    pub log: EventLog<GetAgentEventsResponse>,
    /// the service maps were written since the services were last compared
    services_dirty: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Inner {
    /// frontend -> (service id, as last told)
    services: BTreeMap<String, (u32, ServiceEntry)>,
    /// the ipcache as last told
    ipcache: BTreeMap<ipnet::Ipv4Net, seta_core::ipcache::Entry>,
    next_service_id: u32,
}

use seta_hubble::now;

/// "10.96.0.10:53/UDP" as Hubble's address.
fn addr(a: &str) -> ServiceUpsertNotificationAddr {
    let hostport = a.split('/').next().unwrap_or(a);
    let (ip, port) = hostport.rsplit_once(':').unwrap_or((hostport, "0"));
    ServiceUpsertNotificationAddr {
        ip: ip.to_string(),
        port: port.parse().unwrap_or(0),
    }
}

impl AgentEvents {
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
            inner: Mutex::new(Inner {
                next_service_id: 1,
                ..Default::default()
            }),
            log: EventLog::new(KEEP),
            services_dirty: Default::default(),
        }
    }

    /// The service maps were written (cheap; compared later).
    pub fn services_changed(&self) {
        self.services_dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn take_services_changed(&self) -> bool {
        self.services_dirty.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    fn push(&self, t: AgentEventType, n: Notification) {
        let r = GetAgentEventsResponse {
            agent_event: Some(AgentEvent {
                r#type: t as i32,
                notification: Some(n),
            }),
            node_name: self.node.clone(),
            time: Some(now()),
        };
        self.log.push(r);
    }

    pub fn started(&self) {
        self.push(
            AgentEventType::AgentStarted,
            Notification::AgentStart(TimeNotification { time: Some(now()) }),
        );
    }

    pub fn endpoint(&self, created: bool, id: u16, labels: Vec<String>, namespace: &str, pod: &str) {
        let t = if created {
            AgentEventType::EndpointCreated
        } else {
            AgentEventType::EndpointDeleted
        };
        self.push(
            t,
            Notification::EndpointUpdate(EndpointUpdateNotification {
                id: id as u64,
                labels,
                error: String::new(),
                pod_name: pod.to_string(),
                namespace: namespace.to_string(),
            }),
        );
    }

    pub fn policy(&self, deleted: bool, labels: Vec<String>, revision: u64, rule_count: usize) {
        let t = if deleted {
            AgentEventType::PolicyDeleted
        } else {
            AgentEventType::PolicyUpdated
        };
        self.push(
            t,
            Notification::PolicyUpdate(PolicyUpdateNotification {
                labels,
                revision,
                rule_count: rule_count as i64,
            }),
        );
    }

    /// The ipcache as installed now: an upsert for each new or changed
    /// prefix (with its old identity and host), a delete for each gone;
    /// `pods` names the local pods' addresses (namespace, pod).
    pub fn ipcache(
        &self,
        now: &BTreeMap<ipnet::Ipv4Net, seta_core::ipcache::Entry>,
        pods: &std::collections::HashMap<std::net::Ipv4Addr, (String, String)>,
    ) {
        let mut g = self.inner.lock().unwrap();
        let host = |e: &seta_core::ipcache::Entry| e.tunnel_endpoint.map(|h| h.to_string()).unwrap_or_default();
        let note = |net: &ipnet::Ipv4Net, e: &seta_core::ipcache::Entry, old: Option<&seta_core::ipcache::Entry>| {
            let (namespace, pod_name) = (net.prefix_len() == 32)
                .then(|| pods.get(&net.addr()).cloned())
                .flatten()
                .unwrap_or_default();
            IpCacheNotification {
                cidr: net.to_string(),
                identity: e.identity,
                old_identity: old.map(|o| o.identity),
                host_ip: host(e),
                old_host_ip: old.map(host).unwrap_or_default(),
                encrypt_key: 0,
                namespace,
                pod_name,
            }
        };
        let gone: Vec<_> = g
            .ipcache
            .iter()
            .filter(|(n, _)| !now.contains_key(*n))
            .map(|(n, e)| (*n, *e))
            .collect();
        for (net, e) in gone {
            g.ipcache.remove(&net);
            self.push(AgentEventType::IpcacheDeleted, Notification::IpcacheUpdate(note(&net, &e, None)));
        }
        for (net, e) in now {
            let old = g.ipcache.get(net).copied();
            if old == Some(*e) {
                continue;
            }
            g.ipcache.insert(*net, *e);
            self.push(
                AgentEventType::IpcacheUpserted,
                Notification::IpcacheUpdate(note(net, e, old.as_ref())),
            );
        }
    }

    /// The frontends now load-balanced: an upsert for each new or changed
    /// one, a delete for each gone.
    pub fn services(&self, now: Vec<ServiceEntry>) {
        let mut g = self.inner.lock().unwrap();
        let now: BTreeMap<String, ServiceEntry> = now.into_iter().map(|e| (e.frontend.clone(), e)).collect();
        let gone: Vec<(String, u32)> = g
            .services
            .iter()
            .filter(|(fe, _)| !now.contains_key(*fe))
            .map(|(fe, (id, _))| (fe.clone(), *id))
            .collect();
        for (fe, id) in gone {
            g.services.remove(&fe);
            self.push(
                AgentEventType::ServiceDeleted,
                Notification::ServiceDelete(ServiceDeleteNotification { id }),
            );
        }
        for (fe, e) in now {
            let id = match g.services.get(&fe) {
                Some((_, old)) if *old == e => continue,
                Some((id, _)) => *id,
                None => {
                    g.next_service_id += 1;
                    g.next_service_id - 1
                }
            };
            let (namespace, name) = e.service.split_once('/').unwrap_or(("", &e.service));
            let policy = if e.local { "Local" } else { "Cluster" };
            let n = ServiceUpsertNotification {
                id,
                frontend_address: Some(addr(&e.frontend)),
                backend_addresses: e.backends.iter().map(|b| addr(&b.address)).collect(),
                r#type: e.kind.clone(),
                traffic_policy: String::new(),
                name: name.to_string(),
                namespace: namespace.to_string(),
                ext_traffic_policy: if e.kind == "ClusterIP" { "Cluster".into() } else { policy.into() },
                int_traffic_policy: if e.kind == "ClusterIP" { policy.into() } else { "Cluster".into() },
            };
            g.services.insert(fe, (id, e));
            self.push(AgentEventType::ServiceUpserted, Notification::ServiceUpsert(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seta_core::api::ServiceBackend;

    fn entry(fe: &str, backends: &[&str]) -> ServiceEntry {
        ServiceEntry {
            service: "default/web".into(),
            frontend: fe.into(),
            kind: "ClusterIP".into(),
            local: false,
            backends: backends
                .iter()
                .map(|b| ServiceBackend {
                    address: b.to_string(),
                    state: seta_core::service::BackendState::Active,
                    node: None,
                })
                .collect(),
        }
    }

    fn kinds(a: &AgentEvents) -> Vec<String> {
        a.log
            .held()
            .iter()
            .map(|(_, r)| seta_hubble::agent_events::compact(r, false).split_once(": ").unwrap().1.to_string())
            .collect()
    }

    #[test]
    fn the_ipcache_becomes_upserts_with_the_old_entry_and_deletes() {
        use seta_core::ipcache::Entry;
        let a = AgentEvents::new("n1");
        let net = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap();
        let e = |id: u32, h: Option<[u8; 4]>| Entry {
            identity: id,
            tunnel_endpoint: h.map(std::net::Ipv4Addr::from),
        };
        let pods = [("10.0.1.5".parse().unwrap(), ("default".to_string(), "web".to_string()))].into();
        a.ipcache(
            &[
                (net("10.0.1.5/32"), e(270, None)),
                (net("10.0.2.0/24"), e(6, Some([172, 30, 0, 2]))),
            ]
            .into(),
            &pods,
        );
        a.ipcache(
            &[
                (net("10.0.1.5/32"), e(270, None)),
                (net("10.0.2.0/24"), e(6, Some([172, 30, 0, 2]))),
            ]
            .into(),
            &pods,
        );
        a.ipcache(&[(net("10.0.1.5/32"), e(271, None))].into(), &pods);
        let k = kinds(&a);
        assert_eq!(
            k,
            [
                "IPCACHE_UPSERTED (cidr: 10.0.1.5/32, identity: 270, encrypt key: 0)",
                "IPCACHE_UPSERTED (cidr: 10.0.2.0/24, identity: 6, host ip: 172.30.0.2, encrypt key: 0)",
                "IPCACHE_DELETED (cidr: 10.0.2.0/24, identity: 6, host ip: 172.30.0.2, encrypt key: 0)",
                "IPCACHE_UPSERTED (cidr: 10.0.1.5/32, identity: 271, old identity: 270, encrypt key: 0)",
            ]
        );
        let first = &a.log.held()[0].1;
        let j = seta_hubble::agent_events::json(first);
        assert_eq!(j["agent_event"]["ipcache_update"]["pod_name"], "web", "{j}");
    }

    #[test]
    fn services_become_upserts_and_deletes_and_endpoints_policies_events() {
        let a = AgentEvents::new("n1");
        a.started();
        a.endpoint(true, 12, vec!["k8s:app=web".into()], "default", "web");
        a.policy(false, vec![], 3, 2);
        a.services(vec![entry("10.96.0.10:80/TCP", &["10.0.0.5:8080/TCP"])]);
        a.services(vec![entry("10.96.0.10:80/TCP", &["10.0.0.5:8080/TCP"])]); // unchanged: nothing
        a.services(vec![
            entry("10.96.0.10:80/TCP", &["10.0.0.5:8080/TCP", "10.0.0.6:8080/TCP"]),
            entry("10.96.0.11:53/UDP", &[]),
        ]);
        a.services(vec![entry("10.96.0.11:53/UDP", &[])]);
        let k = kinds(&a);
        assert!(k[0].starts_with("AGENT_STARTED (start time: "), "{k:?}");
        assert_eq!(
            k[1..],
            [
                "ENDPOINT_CREATED (id: 12, labels: [k8s:app=web], namespace: default, pod name: web)",
                "POLICY_UPDATED (labels: [], revision: 3, count: 2)",
                "SERVICE_UPSERTED (id: 1, frontend: 10.96.0.10:80, backends: [10.0.0.5:8080], type: ClusterIP, namespace: default, name: web)",
                "SERVICE_UPSERTED (id: 1, frontend: 10.96.0.10:80, backends: [10.0.0.5:8080,10.0.0.6:8080], type: ClusterIP, namespace: default, name: web)",
                "SERVICE_UPSERTED (id: 2, frontend: 10.96.0.11:53, type: ClusterIP, namespace: default, name: web)",
                "SERVICE_DELETED (id: 1)",
            ]
        );
    }
}
