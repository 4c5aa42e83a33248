//! Cluster state shared between nodes, behind one interface with two
//! backends: an embedded store (single node, persisted in the state dir) and
//! etcd (leases, transactions, prefix reads). Cluster-wide identity allocation
//! is built on it (`identity`).
pub mod dynamic;
pub mod etcd;
pub mod identity;
pub mod ipam;
pub mod ipcache;
pub mod memory;
pub mod nodes;
pub mod reflector;
pub mod testing;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// An etcd request failed; `source` is the client's error.
    #[error("etcd {op}: {source}")]
    Etcd {
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("kvstore file {path}: {msg}")]
    File { path: String, msg: String },
    #[error("lease {0:x} expired")]
    LeaseExpired(LeaseId),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, KvError>;

/// A lease id (0 = no lease).
pub type LeaseId = i64;

/// What the cluster state needs from a key-value store.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl std::future::Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// Every key under `prefix`, sorted.
    fn list(&self, prefix: &str) -> impl std::future::Future<Output = Result<Vec<(String, Vec<u8>)>>> + Send;
    fn put(&self, key: &str, value: &[u8], lease: LeaseId) -> impl std::future::Future<Output = Result<()>> + Send;
    /// Create every key, all or none, only if none of them exists yet
    /// (returns false when one already existed).
    fn create_all(&self, kvs: &[(String, Vec<u8>)], lease: LeaseId) -> impl std::future::Future<Output = Result<bool>> + Send;
    fn delete(&self, key: &str) -> impl std::future::Future<Output = Result<()>> + Send;
    /// Put and delete several keys in one transaction (all or nothing).
    fn apply(&self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> impl std::future::Future<Output = Result<()>> + Send;
    /// A lease that expires `ttl` seconds after its last keep-alive.
    fn grant_lease(&self, ttl: i64) -> impl std::future::Future<Output = Result<LeaseId>> + Send;
    fn keep_alive(&self, lease: LeaseId) -> impl std::future::Future<Output = Result<()>> + Send;
    /// Everything under `prefix` now, and every change after that snapshot
    /// (no gap, no duplicate). The receiver ends or yields an error when the
    /// watch breaks; callers list again (see [`reflector`]).
    fn list_and_watch(&self, prefix: &str) -> impl std::future::Future<Output = Result<(Snapshot, WatchRx)>> + Send;
    /// Replace the connection after a request got no answer (a no-op where
    /// there is none).
    fn reconnect(&self) -> impl std::future::Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// One change under a watched prefix: a put (value) or a delete (None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

pub type WatchRx = tokio::sync::mpsc::Receiver<Result<Vec<WatchEvent>>>;
pub type WatchTx = tokio::sync::mpsc::Sender<Result<Vec<WatchEvent>>>;
/// A snapshot of a prefix: (key, value) pairs, sorted by key.
pub type Snapshot = Vec<(String, Vec<u8>)>;
