//! The etcd backend (etcd v3 API through etcd-client).
use crate::{KvError, KvStore, LeaseId, Result, WatchEvent, WatchRx};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use std::sync::Arc;

#[derive(Clone)]
pub struct EtcdStore {
    client: Arc<std::sync::RwLock<Client>>,
    endpoints: Vec<String>,
    /// when the connection was last replaced (reconnects are rate-limited)
    dialed: Arc<std::sync::Mutex<std::time::Instant>>,
    /// the open keep-alive stream (lease, sender, responses)
    keeper: Arc<tokio::sync::Mutex<Option<(LeaseId, etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>>>,
    /// bumped when the connection is replaced: watches on the old one end
    /// at once (their stream may sit on a dead connection that HTTP/2
    /// keep-alives take many seconds to give up) and are listed again
    redials: Arc<tokio::sync::watch::Sender<u64>>,
}

/// An error of a request that carries `lease`: etcd answers NotFound only
/// for a lease it does not know (any more), i.e. one that expired.
fn lease_err(op: &str, lease: LeaseId, e: etcd_client::Error) -> KvError {
    match &e {
        etcd_client::Error::GRpcStatus(s) if lease != 0 && s.code() == tonic::Code::NotFound => KvError::LeaseExpired(lease),
        _ => err(op, e),
    }
}

fn err(op: &str, e: etcd_client::Error) -> KvError {
    KvError::Etcd {
        op: op.to_string(),
        source: Box::new(e),
    }
}

/// An error of our own making (no client error underneath).
fn err_msg(op: &str, msg: String) -> KvError {
    KvError::Etcd {
        op: op.to_string(),
        source: msg.into(),
    }
}

impl EtcdStore {
    /// Connect to `endpoints` (e.g. ["http://127.0.0.1:2379"]).
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let client = Self::dial(endpoints).await?;
        Ok(Self {
            client: Arc::new(std::sync::RwLock::new(client)),
            endpoints: endpoints.to_vec(),
            dialed: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
            keeper: Default::default(),
            redials: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    async fn dial(endpoints: &[String]) -> Result<Client> {
        // HTTP/2 keep-alives notice a dead etcd within seconds (watches break
        // instead of hanging); requests time out instead of waiting forever
        let opts = ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(2))
            .with_timeout(std::time::Duration::from_secs(5))
            .with_keep_alive(std::time::Duration::from_secs(2), std::time::Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        Client::connect(endpoints, Some(opts))
            .await
            .map_err(|e| err(&format!("connect {}", endpoints.join(",")), e))
    }

    fn client(&self) -> Client {
        self.client.read().unwrap().clone()
    }

    /// Replace the connection: a request that got no answer may sit on a
    /// stalled HTTP/2 connection, and waiting for its keep-alive to give up
    /// takes seconds. Watches on the old one end and are re-established.
    pub async fn reconnect(&self) -> Result<()> {
        {
            let mut d = self.dialed.lock().unwrap();
            if d.elapsed() < std::time::Duration::from_secs(2) {
                return Ok(());
            }
            *d = std::time::Instant::now();
        }
        let c = Self::dial(&self.endpoints).await?;
        *self.client.write().unwrap() = c;
        *self.keeper.lock().await = None;
        self.redials.send_modify(|n| *n += 1);
        tracing::info!(endpoints = %self.endpoints.join(","), "reconnected to etcd");
        Ok(())
    }

    /// Campaign for leadership of `name` (etcd's election API) with `value`
    /// under `lease`; returns once this campaigner is the leader. A lost lease
    /// ends the leadership.
    pub async fn campaign(&self, name: &str, value: &str, lease: LeaseId) -> Result<()> {
        let mut e = self.client().election_client();
        e.campaign(name, value, lease)
            .await
            .map_err(|e| lease_err(&format!("campaign {name}"), lease, e))?;
        Ok(())
    }

    /// The current leader's value of election `name`, if any: the
    /// campaigner key under `name/` with the lowest create revision (what
    /// etcd's election API answers, read directly, so "no leader" is simply
    /// no key rather than an error to recognise).
    pub async fn leader(&self, name: &str) -> Result<Option<String>> {
        use etcd_client::{SortOrder, SortTarget};
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let r = self
            .read(&format!("{name}/"), Some(opts))
            .await
            .map_err(|e| err(&format!("leader {name}"), e))?;
        Ok(r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// A read, retried on transport errors (reads are idempotent): a
    /// connection that died quietly is replaced instead of failing the caller.
    async fn read(&self, key: &str, opts: Option<GetOptions>) -> std::result::Result<etcd_client::GetResponse, etcd_client::Error> {
        let mut attempt = 0;
        loop {
            let mut kv = self.client().kv_client();
            let r = tokio::time::timeout(std::time::Duration::from_secs(2), kv.get(key, opts.clone())).await;
            match r {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if attempt >= 2 || !matches!(e, etcd_client::Error::GRpcStatus(_) | etcd_client::Error::TransportError(_)) => {
                    return Err(e)
                }
                Err(_) if attempt >= 2 => return Err(etcd_client::Error::Internal("no answer within 2 s (3 attempts)".into())),
                Err(_) => {
                    tracing::warn!(key, attempt, "etcd read got no answer within 2 s; reconnecting");
                    let _ = self.reconnect().await;
                    attempt += 1;
                }
                other => {
                    tracing::debug!(key, attempt, ?other, "etcd read failed; retrying");
                    attempt += 1;
                }
            }
        }
    }

    fn put_opts(lease: LeaseId) -> Option<PutOptions> {
        (lease != 0).then(|| PutOptions::new().with_lease(lease))
    }
}

impl KvStore for EtcdStore {
    async fn reconnect(&self) -> Result<()> {
        EtcdStore::reconnect(self).await
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let r = self.read(key, None).await.map_err(|e| err(&format!("get {key}"), e))?;
        Ok(r.kvs().first().map(|k| k.value().to_vec()))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let r = self
            .read(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| err(&format!("list {prefix}"), e))?;
        Ok(r.kvs()
            .iter()
            .map(|k| (String::from_utf8_lossy(k.key()).into_owned(), k.value().to_vec()))
            .collect())
    }
    async fn put(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<()> {
        let mut kv = self.client().kv_client();
        kv.put(key, value, Self::put_opts(lease))
            .await
            .map_err(|e| lease_err(&format!("put {key}"), lease, e))?;
        Ok(())
    }
    async fn create_all(&self, kvs: &[(String, Vec<u8>)], lease: LeaseId) -> Result<bool> {
        let mut kv = self.client().kv_client();
        let when: Vec<Compare> = kvs
            .iter()
            .map(|(k, _)| Compare::create_revision(k.as_str(), CompareOp::Equal, 0))
            .collect();
        let then: Vec<TxnOp> = kvs
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.clone(), Self::put_opts(lease)))
            .collect();
        let r = kv
            .txn(Txn::new().when(when).and_then(then))
            .await
            .map_err(|e| lease_err("txn create", lease, e))?;
        Ok(r.succeeded())
    }
    async fn delete(&self, key: &str) -> Result<()> {
        let mut kv = self.client().kv_client();
        kv.delete(key, None).await.map_err(|e| err(&format!("delete {key}"), e))?;
        Ok(())
    }
    async fn apply(&self, puts: &[(String, Vec<u8>)], deletes: &[String]) -> Result<()> {
        let mut kv = self.client().kv_client();
        let ops: Vec<TxnOp> = puts
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.clone(), None))
            .chain(deletes.iter().map(|k| TxnOp::delete(k.as_str(), None)))
            .collect();
        kv.txn(Txn::new().and_then(ops)).await.map_err(|e| err("txn apply", e))?;
        Ok(())
    }
    async fn grant_lease(&self, ttl: i64) -> Result<LeaseId> {
        let mut l = self.client().lease_client();
        Ok(l.grant(ttl, None).await.map_err(|e| err("lease grant", e))?.id())
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        // one long-lived keep-alive stream per lease, opened again after errors
        let mut slot = self.keeper.lock().await;
        if slot.as_ref().is_none_or(|(id, _, _)| *id != lease) {
            let mut l = self.client().lease_client();
            let (keeper, stream) = match l.keep_alive(lease).await {
                Ok(ks) => ks,
                // the client reports a lease the server answered with TTL <= 0
                // as a keep-alive error; ask the server whether it still exists
                Err(e @ etcd_client::Error::LeaseKeepAliveError(_)) => {
                    return match l.time_to_live(lease, None).await {
                        Ok(t) if t.ttl() <= 0 => Err(KvError::LeaseExpired(lease)),
                        Err(t) => Err(lease_err("lease time-to-live", lease, t)),
                        Ok(_) => Err(err("lease keep-alive", e)),
                    };
                }
                Err(e) => return Err(lease_err("lease keep-alive", lease, e)),
            };
            *slot = Some((lease, keeper, stream));
        }
        let (_, keeper, stream) = slot.as_mut().unwrap();
        let r = async {
            keeper.keep_alive().await.map_err(|e| lease_err("lease keep-alive", lease, e))?;
            match stream.message().await.map_err(|e| lease_err("lease keep-alive", lease, e))? {
                Some(r) if r.ttl() > 0 => Ok(()),
                Some(_) => Err(KvError::LeaseExpired(lease)),
                None => Err(err_msg("lease keep-alive", "stream closed".into())),
            }
        }
        .await;
        if r.is_err() {
            *slot = None;
        }
        r
    }
    async fn list_and_watch(&self, prefix: &str) -> Result<(crate::Snapshot, WatchRx)> {
        let mut kv = self.client().kv_client();
        let r = kv
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| err(&format!("list {prefix}"), e))?;
        let rev = r.header().map(|h| h.revision()).unwrap_or(0);
        let snap = r
            .kvs()
            .iter()
            .map(|k| (String::from_utf8_lossy(k.key()).into_owned(), k.value().to_vec()))
            .collect();
        let mut w = self.client().watch_client();
        let stream = w
            .watch(
                prefix,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(rev + 1)
                        .with_progress_notify(),
                ),
            )
            .await
            .map_err(|e| err(&format!("watch {prefix}"), e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let what = format!("watch {prefix}");
        let mut redialed = self.redials.subscribe();
        tokio::spawn(async move {
            let (_sender, mut stream) = stream.split(); // the sender keeps the watch open
            loop {
                let msg = tokio::select! {
                    m = stream.message() => m,
                    _ = tx.closed() => return,
                    _ = redialed.changed() => {
                        let _ = tx.send(Err(err_msg(&what, "the etcd connection was replaced; listing again".into()))).await;
                        return;
                    }
                };
                let events = match msg {
                    Ok(Some(r)) if r.canceled() => Err(err_msg(
                        &what,
                        format!("canceled: {} (compacted at {})", r.cancel_reason(), r.compact_revision()),
                    )),
                    Ok(Some(r)) => Ok(r
                        .events()
                        .iter()
                        .filter_map(|e| {
                            let kv = e.kv()?;
                            Some(WatchEvent {
                                key: String::from_utf8_lossy(kv.key()).into_owned(),
                                value: (e.event_type() == EventType::Put).then(|| kv.value().to_vec()),
                            })
                        })
                        .collect::<Vec<_>>()),
                    Ok(None) => Err(err_msg(&what, "stream closed".into())),
                    Err(e) => Err(err(&what, e)),
                };
                let stop = events.is_err();
                if matches!(&events, Ok(v) if v.is_empty()) {
                    continue;
                }
                if tx.send(events).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok((snap, rx))
    }
}
