//! Supervised background tasks: each loop is restarted with exponential
//! backoff when it fails or panics, cancelled on shutdown, and visible in
//! `seta status` (Cilium's "controllers").
use futures::FutureExt;
use seta_core::api::TaskStatus;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next failure starts from the minimum backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Supervisor {
    tasks: Mutex<BTreeMap<&'static str, TaskStatus>>,
    handles: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Supervisor {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Run `make()` as task `name` until shutdown: a returned error, a panic
    /// or an unexpected return restarts it after a backoff.
    pub fn spawn<F, Fut>(self: &Arc<Self>, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.set(name, |t| t.state = "running".into());
        let me = self.clone();
        let h = tokio::spawn(async move {
            let mut backoff = BACKOFF_MIN;
            loop {
                let started = Instant::now();
                let r = AssertUnwindSafe(make()).catch_unwind().await;
                let why = match r {
                    Ok(Ok(())) => "returned".to_string(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(p) => format!(
                        "panicked: {}",
                        p.downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_default()
                    ),
                };
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = BACKOFF_MIN;
                }
                tracing::warn!(task = name, error = %why, backoff_ms = backoff.as_millis() as u64, "background task failed; restarting");
                me.set(name, |t| {
                    t.state = "backoff".into();
                    t.restarts += 1;
                    t.last_error = Some(why.clone());
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                me.set(name, |t| t.state = "running".into());
            }
        });
        self.handles.lock().unwrap().push(h.abort_handle());
    }

    fn set(&self, name: &'static str, f: impl FnOnce(&mut TaskStatus)) {
        let mut g = self.tasks.lock().unwrap();
        let t = g.entry(name).or_insert_with(|| TaskStatus {
            name: name.to_string(),
            ..Default::default()
        });
        f(t);
    }

    pub fn status(&self) -> Vec<TaskStatus> {
        self.tasks.lock().unwrap().values().cloned().collect()
    }

    /// Cancel every task.
    pub fn shutdown(&self) {
        for h in self.handles.lock().unwrap().drain(..) {
            h.abort();
        }
        for t in self.tasks.lock().unwrap().values_mut() {
            t.state = "stopped".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn failing_and_panicking_tasks_restart_with_backoff_and_stop_on_shutdown() {
        let s = Supervisor::new();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        s.spawn("flaky", move || {
            let r = r.clone();
            async move {
                let n = r.fetch_add(1, Ordering::SeqCst);
                match n {
                    0 => anyhow::bail!("first run fails"),
                    1 => panic!("second run panics"),
                    _ => {
                        std::future::pending::<()>().await;
                        Ok(())
                    }
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "restarted twice");
        let st = s.status();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].restarts, 2);
        assert_eq!(st[0].state, "running");
        assert!(st[0].last_error.as_deref().unwrap().contains("second run panics"), "{st:?}");
        s.shutdown();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(s.status()[0].state, "stopped");
    }
}
