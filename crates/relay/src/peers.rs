//! The nodes the relay serves: followed from Hubble's peer API
//! (`peer.Peer/Notify`) of any agent, trying the given services in turn and
//! again after a break. A new stream starts with the whole list, so the set
//! is replaced by what that stream says.
use seta_hubble::peer::{peer_client::PeerClient, ChangeNotification, ChangeNotificationType, NotifyRequest};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Node name → observer address.
#[derive(Clone, Default)]
pub struct PeerSet(Arc<Mutex<BTreeMap<String, String>>>);

impl PeerSet {
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, String>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// One notification applied (pure bookkeeping).
    pub fn apply(&self, n: &ChangeNotification) {
        self.with(|m| match ChangeNotificationType::try_from(n.r#type) {
            Ok(ChangeNotificationType::PeerAdded | ChangeNotificationType::PeerUpdated) => {
                m.insert(n.name.clone(), n.address.clone());
            }
            Ok(ChangeNotificationType::PeerDeleted) => {
                m.remove(&n.name);
            }
            _ => {}
        })
    }

    #[cfg(test)]
    pub fn set(&self, peers: BTreeMap<String, String>) {
        self.with(|m| *m = peers)
    }
}

/// Follow the peer services forever (the first one that answers; the next
/// after a failure), keeping `set` as they say.
pub async fn follow(services: Vec<String>, set: PeerSet, dial: Duration) {
    let mut wait = Duration::from_millis(200);
    loop {
        for target in &services {
            match stream_from(target, &set, dial).await {
                Ok(()) => tracing::warn!(%target, "peer service ended its stream"),
                Err(e) => tracing::warn!(%target, %e, "peer service"),
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

async fn stream_from(target: &str, set: &PeerSet, dial: Duration) -> Result<(), String> {
    let ch = seta_hubble::channel(target, dial).await?;
    let mut s = PeerClient::new(ch)
        .notify(NotifyRequest {})
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    let mut fresh = true;
    while let Some(n) = s.message().await.map_err(|e| e.message().to_string())? {
        if fresh {
            // a new stream lists every peer again: forget the old list
            set.with(|m| m.clear());
            fresh = false;
            tracing::info!(%target, "following the peer service");
        }
        set.apply(&n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_add_update_and_delete_peers() {
        let s = PeerSet::default();
        let n = |name: &str, addr: &str, t: ChangeNotificationType| ChangeNotification {
            name: name.into(),
            address: addr.into(),
            r#type: t as i32,
            tls: None,
        };
        s.apply(&n("a", "1.1.1.1:4244", ChangeNotificationType::PeerAdded));
        s.apply(&n("b", "1.1.1.2:4244", ChangeNotificationType::PeerAdded));
        s.apply(&n("a", "1.1.1.9:4244", ChangeNotificationType::PeerUpdated));
        s.apply(&n("b", "", ChangeNotificationType::PeerDeleted));
        s.apply(&n("c", "x", ChangeNotificationType::Unknown));
        assert_eq!(s.snapshot(), BTreeMap::from([("a".to_string(), "1.1.1.9:4244".to_string())]));
    }
}
