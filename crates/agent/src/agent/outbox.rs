//! This node's endpoint IPs on their way to the kvstore: endpoint create,
//! delete and relabel queue the latest entry per IP (no I/O under their
//! locks); the IP publisher drains the queue, and a write that fails marks a
//! full republish for the announce loop.
use seta_kvstore::ipcache::IpEntry;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct IpOutbox {
    /// IP -> the entry to publish (Some) or withdraw (None); later wins
    pending: Mutex<BTreeMap<Ipv4Addr, Option<IpEntry>>>,
    due: tokio::sync::Notify,
    /// this node's entries must all be written again (a write failed, the
    /// kvstore was away, the lease was renewed)
    republish: AtomicBool,
}

impl IpOutbox {
    pub fn push(&self, ip: Ipv4Addr, entry: Option<IpEntry>) {
        self.pending.lock().unwrap().insert(ip, entry);
        self.due.notify_one();
    }

    /// Everything queued, once there is something.
    pub async fn wait_take(&self) -> BTreeMap<Ipv4Addr, Option<IpEntry>> {
        loop {
            let batch = std::mem::take(&mut *self.pending.lock().unwrap());
            if !batch.is_empty() {
                return batch;
            }
            self.due.notified().await;
        }
    }

    pub fn republish_due(&self) {
        self.republish.store(true, Ordering::Relaxed);
    }

    pub fn take_republish(&self) -> bool {
        self.republish.swap(false, Ordering::Relaxed)
    }

    /// Changes queued and not taken yet.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ip: Ipv4Addr, identity: u32) -> IpEntry {
        IpEntry {
            ip,
            identity,
            node: "n1".into(),
            host_ip: Ipv4Addr::new(172, 30, 0, 1),
        }
    }

    #[tokio::test]
    async fn the_latest_change_per_ip_wins_and_taking_empties_the_queue() {
        let o = IpOutbox::default();
        let a = Ipv4Addr::new(10, 0, 0, 2);
        let b = Ipv4Addr::new(10, 0, 0, 3);
        o.push(a, Some(entry(a, 100)));
        o.push(b, Some(entry(b, 100)));
        o.push(a, Some(entry(a, 200))); // relabelled
        o.push(b, None); // deleted
        assert_eq!(o.len(), 2);
        let got = o.wait_take().await;
        assert_eq!(got[&a].as_ref().unwrap().identity, 200);
        assert_eq!(got[&b], None);
        assert_eq!(o.len(), 0);
        // a waiter wakes for the next push
        let o = std::sync::Arc::new(o);
        let w = tokio::spawn({
            let o = o.clone();
            async move { o.wait_take().await }
        });
        tokio::task::yield_now().await;
        o.push(a, None);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), w).await.unwrap().unwrap();
        assert_eq!(got.len(), 1);
        assert!(!o.take_republish());
        o.republish_due();
        assert!(o.take_republish() && !o.take_republish(), "taken once");
    }
}
