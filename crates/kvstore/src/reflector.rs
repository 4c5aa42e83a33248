//! Keep a local copy of a prefix in step with the store: list, then watch;
//! when the watch breaks (etcd down, compaction, slow consumer), back off, list
//! again and hand the consumer a full snapshot (it diffs, so nothing is lost
//! and nothing is applied twice). Health is shared with the agent's status.
use crate::{KvStore, WatchEvent};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Everything under the prefix now: replaces what the consumer had.
    Reset(Vec<(String, Vec<u8>)>),
    /// Changes since the last update, in order.
    Changes(Vec<WatchEvent>),
}

/// Connectivity of one reflector, for `seta status`.
#[derive(Debug, Default)]
pub struct Health {
    connected: AtomicBool,
    /// full re-lists after the first one
    resyncs: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }
    /// Listed (again, when `resync`): for reflectors fed from elsewhere.
    pub fn set_connected(&self, resync: bool) {
        if resync {
            self.resyncs.fetch_add(1, Ordering::Relaxed);
        }
        self.connected.store(true, Ordering::Relaxed);
    }
    /// Not connected: why.
    pub fn set_failed(&self, e: String) {
        self.connected.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap() = Some(e);
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Reflect `prefix` into the returned channel until the receiver is dropped.
pub fn spawn<S: KvStore>(store: Arc<S>, prefix: String, health: Arc<Health>) -> tokio::sync::mpsc::Receiver<Update> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            match store.list_and_watch(&prefix).await {
                Ok((snap, mut events)) => {
                    if !first {
                        health.resyncs.fetch_add(1, Ordering::Relaxed);
                    }
                    first = false;
                    health.connected.store(true, Ordering::Relaxed);
                    backoff = BACKOFF_MIN;
                    if tx.send(Update::Reset(snap)).await.is_err() {
                        return;
                    }
                    loop {
                        match events.recv().await {
                            Some(Ok(ev)) => {
                                if tx.send(Update::Changes(ev)).await.is_err() {
                                    return;
                                }
                            }
                            Some(Err(e)) => {
                                tracing::warn!(%prefix, %e, "kvstore watch broke; listing again");
                                health.set_failed(e.to_string());
                                break;
                            }
                            None => {
                                health.set_failed("watch ended".into());
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(%prefix, %e, "kvstore list failed; retrying");
                    health.set_failed(e.to_string());
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
    rx
}

/// A consumer-side copy of a prefix: applies updates and reports what changed
/// (key, old value, new value), so callers only touch what differs.
#[derive(Debug, Default)]
pub struct Mirror {
    pub data: std::collections::BTreeMap<String, Vec<u8>>,
}

pub type Change = (String, Option<Vec<u8>>, Option<Vec<u8>>);

impl Mirror {
    pub fn apply(&mut self, u: Update) -> Vec<Change> {
        let mut out = Vec::new();
        match u {
            Update::Reset(snap) => {
                let new: std::collections::BTreeMap<String, Vec<u8>> = snap.into_iter().collect();
                for (k, old) in &self.data {
                    if !new.contains_key(k) {
                        out.push((k.clone(), Some(old.clone()), None));
                    }
                }
                for (k, v) in &new {
                    let old = self.data.get(k);
                    if old != Some(v) {
                        out.push((k.clone(), old.cloned(), Some(v.clone())));
                    }
                }
                self.data = new;
            }
            Update::Changes(evs) => {
                for e in evs {
                    let old = match &e.value {
                        Some(v) => self.data.insert(e.key.clone(), v.clone()),
                        None => self.data.remove(&e.key),
                    };
                    if old != e.value {
                        out.push((e.key, old, e.value));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    fn ev(k: &str, v: Option<&str>) -> WatchEvent {
        WatchEvent {
            key: k.into(),
            value: v.map(|v| v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn mirror_diffs_resets_and_changes() {
        let mut m = Mirror::default();
        let c = m.apply(Update::Reset(vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]));
        assert_eq!(c.len(), 2);
        // a re-list that lost b, changed a and gained c
        let c = m.apply(Update::Reset(vec![("a".into(), b"9".to_vec()), ("c".into(), b"3".to_vec())]));
        assert_eq!(
            c,
            vec![
                ("b".into(), Some(b"2".to_vec()), None),
                ("a".into(), Some(b"1".to_vec()), Some(b"9".to_vec())),
                ("c".into(), None, Some(b"3".to_vec())),
            ]
        );
        // replayed events that change nothing report nothing
        assert!(m.apply(Update::Changes(vec![ev("a", Some("9"))])).is_empty());
        assert_eq!(m.apply(Update::Changes(vec![ev("a", None)])).len(), 1);
        assert!(m.apply(Update::Changes(vec![ev("zz", None)])).is_empty());
    }

    #[tokio::test]
    async fn memory_reflector_sees_snapshot_then_changes() {
        let s = Arc::new(MemoryStore::new());
        s.put("/p/a", b"1", 0).await.unwrap();
        s.put("/q/x", b"1", 0).await.unwrap();
        let h = Arc::new(Health::default());
        let mut rx = spawn(s.clone(), "/p/".into(), h.clone());
        assert_eq!(rx.recv().await.unwrap(), Update::Reset(vec![("/p/a".into(), b"1".to_vec())]));
        assert!(h.connected());
        s.put("/q/y", b"1", 0).await.unwrap(); // other prefix: not seen
        s.put("/p/b", b"2", 0).await.unwrap();
        s.delete("/p/a").await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), Update::Changes(vec![ev("/p/b", Some("2"))]));
        assert_eq!(rx.recv().await.unwrap(), Update::Changes(vec![ev("/p/a", None)]));
    }
}
