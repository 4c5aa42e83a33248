//! The embedded backend: one process, state persisted as JSON in the state dir.
//! Leases are accepted and never expire (a single node outlives its keys).
use crate::{KvError, KvStore, LeaseId, Result, Snapshot, WatchEvent, WatchRx, WatchTx};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct MemoryStore {
    data: Mutex<BTreeMap<String, Vec<u8>>>,
    file: Option<PathBuf>,
    /// watchers: prefix and sender (dropped when the receiver is gone)
    watchers: Mutex<Vec<(String, WatchTx)>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            data: Mutex::new(BTreeMap::new()),
            file: None,
            watchers: Mutex::new(Vec::new()),
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Persisted in `file` (loaded now, written after each change).
    pub fn persistent(file: PathBuf) -> Result<Self> {
        let data = match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| KvError::File {
                path: file.display().to_string(),
                msg: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(KvError::File {
                    path: file.display().to_string(),
                    msg: e.to_string(),
                })
            }
        };
        Ok(Self {
            data: Mutex::new(data),
            file: Some(file),
            watchers: Mutex::new(Vec::new()),
        })
    }

    /// Tell watchers (called with the data lock held, so order is kept).
    fn notify(&self, events: Vec<WatchEvent>) {
        let mut w = self.watchers.lock().unwrap();
        w.retain(|(prefix, tx)| {
            let mine: Vec<WatchEvent> = events.iter().filter(|e| e.key.starts_with(prefix.as_str())).cloned().collect();
            if mine.is_empty() {
                return !tx.is_closed();
            }
            // a watcher that cannot keep up is cut off; it lists again
            tx.try_send(Ok(mine)).is_ok()
        });
    }

    fn save(&self, data: &BTreeMap<String, Vec<u8>>) -> Result<()> {
        let Some(f) = &self.file else { return Ok(()) };
        let tmp = f.with_extension("tmp");
        let err = |e: std::io::Error| KvError::File {
            path: f.display().to_string(),
            msg: e.to_string(),
        };
        std::fs::write(&tmp, serde_json::to_vec(data).expect("serialisable")).map_err(err)?;
        std::fs::rename(&tmp, f).map_err(err)
    }
}

impl KvStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.data.lock().unwrap().get(key).cloned())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let d = self.data.lock().unwrap();
        Ok(d.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    async fn put(&self, key: &str, value: &[u8], _lease: LeaseId) -> Result<()> {
        let mut d = self.data.lock().unwrap();
        d.insert(key.to_string(), value.to_vec());
        self.notify(vec![WatchEvent {
            key: key.to_string(),
            value: Some(value.to_vec()),
        }]);
        self.save(&d)
    }
    async fn create_all(&self, kvs: &[(String, Vec<u8>)], _lease: LeaseId) -> Result<bool> {
        let mut d = self.data.lock().unwrap();
        if kvs.iter().any(|(k, _)| d.contains_key(k)) {
            return Ok(false);
        }
        for (k, v) in kvs {
            d.insert(k.clone(), v.clone());
        }
        self.notify(
            kvs.iter()
                .map(|(k, v)| WatchEvent {
                    key: k.clone(),
                    value: Some(v.clone()),
                })
                .collect(),
        );
        self.save(&d)?;
        Ok(true)
    }
    async fn delete(&self, key: &str) -> Result<()> {
        let mut d = self.data.lock().unwrap();
        if d.remove(key).is_some() {
            self.notify(vec![WatchEvent {
                key: key.to_string(),
                value: None,
            }]);
        }
        self.save(&d)
    }
    async fn apply(&self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> Result<()> {
        let mut d = self.data.lock().unwrap();
        let mut events = Vec::new();
        for (k, v) in puts {
            d.insert(k.clone(), v.clone());
            events.push(WatchEvent {
                key: k.clone(),
                value: Some(v.clone()),
            });
        }
        for k in deletes {
            if d.remove(k).is_some() {
                events.push(WatchEvent {
                    key: k.clone(),
                    value: None,
                });
            }
        }
        self.notify(events);
        self.save(&d)
    }
    async fn grant_lease(&self, _ttl: i64) -> Result<LeaseId> {
        Ok(0)
    }
    async fn keep_alive(&self, _lease: LeaseId) -> Result<()> {
        Ok(())
    }
    async fn list_and_watch(&self, prefix: &str) -> Result<(Snapshot, WatchRx)> {
        let d = self.data.lock().unwrap();
        let snap = d
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        self.watchers.lock().unwrap().push((prefix.to_string(), tx));
        Ok((snap, rx))
    }
}
