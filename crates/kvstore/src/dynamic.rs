//! Any [`KvStore`] as one type: [`AnyStore`] holds a trait object, so the
//! agent takes its kvstore as a dependency (etcd in production, the embedded
//! [`MemoryStore`](crate::memory::MemoryStore) as the fake in unit tests)
//! without a closed list of backends or a type parameter on every subsystem.
use crate::{KvStore, LeaseId, Result, Snapshot, WatchRx};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The object-safe form of [`KvStore`] (boxed futures); every `KvStore` is one.
pub trait DynKvStore: Send + Sync + 'static {
    fn get<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Vec<u8>>>;
    fn list<'a>(&'a self, prefix: &'a str) -> Fut<'a, Vec<(String, Vec<u8>)>>;
    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], lease: LeaseId) -> Fut<'a, ()>;
    fn create_all<'a>(&'a self, kvs: &'a [(String, Vec<u8>)], lease: LeaseId) -> Fut<'a, bool>;
    fn delete<'a>(&'a self, key: &'a str) -> Fut<'a, ()>;
    fn apply<'a>(&'a self, puts: &'a [(String, Vec<u8>)], deletes: &'a [String]) -> Fut<'a, ()>;
    fn grant_lease(&self, ttl: i64) -> Fut<'_, LeaseId>;
    fn keep_alive(&self, lease: LeaseId) -> Fut<'_, ()>;
    fn list_and_watch<'a>(&'a self, prefix: &'a str) -> Fut<'a, (Snapshot, WatchRx)>;
    fn reconnect(&self) -> Fut<'_, ()>;
}

impl<S: KvStore> DynKvStore for S {
    fn get<'a>(&'a self, key: &'a str) -> Fut<'a, Option<Vec<u8>>> {
        Box::pin(KvStore::get(self, key))
    }
    fn list<'a>(&'a self, prefix: &'a str) -> Fut<'a, Vec<(String, Vec<u8>)>> {
        Box::pin(KvStore::list(self, prefix))
    }
    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], lease: LeaseId) -> Fut<'a, ()> {
        Box::pin(KvStore::put(self, key, value, lease))
    }
    fn create_all<'a>(&'a self, kvs: &'a [(String, Vec<u8>)], lease: LeaseId) -> Fut<'a, bool> {
        Box::pin(KvStore::create_all(self, kvs, lease))
    }
    fn delete<'a>(&'a self, key: &'a str) -> Fut<'a, ()> {
        Box::pin(KvStore::delete(self, key))
    }
    fn apply<'a>(&'a self, puts: &'a [(String, Vec<u8>)], deletes: &'a [String]) -> Fut<'a, ()> {
        Box::pin(KvStore::apply(self, puts, deletes))
    }
    fn grant_lease(&self, ttl: i64) -> Fut<'_, LeaseId> {
        Box::pin(KvStore::grant_lease(self, ttl))
    }
    fn keep_alive(&self, lease: LeaseId) -> Fut<'_, ()> {
        Box::pin(KvStore::keep_alive(self, lease))
    }
    fn list_and_watch<'a>(&'a self, prefix: &'a str) -> Fut<'a, (Snapshot, WatchRx)> {
        Box::pin(KvStore::list_and_watch(self, prefix))
    }
    fn reconnect(&self) -> Fut<'_, ()> {
        Box::pin(KvStore::reconnect(self))
    }
}

/// A kvstore of any backend, itself a [`KvStore`].
#[derive(Clone)]
pub struct AnyStore(Arc<dyn DynKvStore>);

impl AnyStore {
    pub fn new(store: Arc<dyn DynKvStore>) -> Self {
        AnyStore(store)
    }
}

impl KvStore for AnyStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.0.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.0.list(prefix).await
    }
    async fn put(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<()> {
        self.0.put(key, value, lease).await
    }
    async fn create_all(&self, kvs: &[(String, Vec<u8>)], lease: LeaseId) -> Result<bool> {
        self.0.create_all(kvs, lease).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key).await
    }
    async fn apply(&self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> Result<()> {
        self.0.apply(puts, deletes).await
    }
    async fn grant_lease(&self, ttl: i64) -> Result<LeaseId> {
        self.0.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.0.keep_alive(lease).await
    }
    async fn list_and_watch(&self, prefix: &str) -> Result<(Snapshot, WatchRx)> {
        self.0.list_and_watch(prefix).await
    }
    async fn reconnect(&self) -> Result<()> {
        self.0.reconnect().await
    }
}

#[cfg(test)]
mod tests {
    use super::AnyStore;
    use crate::memory::MemoryStore;
    use crate::KvStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn any_store_forwards_to_its_backend() {
        let s = AnyStore::new(Arc::new(MemoryStore::default()));
        s.put("/a/1", b"x", 0).await.unwrap();
        s.apply(&[("/a/2".into(), b"y".to_vec())], &["/a/1".into()]).await.unwrap();
        assert_eq!(s.get("/a/2").await.unwrap(), Some(b"y".to_vec()));
        assert_eq!(s.list("/a/").await.unwrap(), vec![("/a/2".to_string(), b"y".to_vec())]);
        assert!(!s.create_all(&[("/a/2".into(), b"z".to_vec())], 0).await.unwrap());
        s.reconnect().await.unwrap();
    }
}
