//! Hubble's peer API (`peer.Peer/Notify`): every node's observer address,
//! for Hubble Relay. The peers come from a function (in the agent: this
//! node and the nodes the kvstore knows); a caller first gets them all as
//! PEER_ADDED, then each change, found by comparing the list every `POLL`.
use futures::Stream;
use seta_hubble::peer::peer_server::{Peer, PeerServer};
use seta_hubble::peer::{ChangeNotification, ChangeNotificationType, NotifyRequest};
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Node name → observer address (host:port).
pub type Peers = Arc<dyn Fn() -> BTreeMap<String, String> + Send + Sync>;

const POLL: Duration = Duration::from_secs(1);

pub struct Service {
    peers: Peers,
    poll: Duration,
}

pub type Server = PeerServer<Service>;

pub fn server(peers: Peers) -> Server {
    PeerServer::new(Service { peers, poll: POLL })
}

/// What changed from `old` to `new`, as notifications (added, updated,
/// deleted), by node name.
pub fn changes(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<ChangeNotification> {
    let note = |name: &str, address: &str, t: ChangeNotificationType| ChangeNotification {
        name: name.to_string(),
        address: address.to_string(),
        r#type: t as i32,
        tls: None,
    };
    let mut out = Vec::new();
    for (name, addr) in new {
        match old.get(name) {
            None => out.push(note(name, addr, ChangeNotificationType::PeerAdded)),
            Some(a) if a != addr => out.push(note(name, addr, ChangeNotificationType::PeerUpdated)),
            Some(_) => {}
        }
    }
    for (name, addr) in old {
        if !new.contains_key(name) {
            out.push(note(name, addr, ChangeNotificationType::PeerDeleted));
        }
    }
    out
}

type NotifyStream = Pin<Box<dyn Stream<Item = Result<ChangeNotification, Status>> + Send>>;

#[tonic::async_trait]
impl Peer for Service {
    type NotifyStream = NotifyStream;

    async fn notify(&self, _req: Request<NotifyRequest>) -> Result<Response<NotifyStream>, Status> {
        let (peers, poll) = (self.peers.clone(), self.poll);
        let start = (BTreeMap::new(), VecDeque::new(), true);
        let s = futures::stream::unfold(start, move |(mut known, mut queue, mut first)| {
            let peers = peers.clone();
            async move {
                loop {
                    if let Some(n) = queue.pop_front() {
                        return Some((Ok(n), (known, queue, first)));
                    }
                    if !first {
                        tokio::time::sleep(poll).await;
                    }
                    first = false;
                    let now = peers();
                    queue.extend(changes(&known, &now));
                    known = now;
                }
            }
        });
        Ok(Response::new(Box::pin(s)))
    }
}
