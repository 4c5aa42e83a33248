//! How subsystems share the agent: each one's state behind its own lock,
//! and writes to maps and files kept off the async runtime.

/// Run `f`, which writes maps or files, off the async runtime: on the
/// multi-threaded runtime the worker hands its other tasks to another
/// thread first (`block_in_place`), so API requests and watches go on while
/// a regeneration writes; elsewhere (single-threaded unit tests) it just runs.
pub(crate) fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A subsystem's state behind its own lock. It is held only to compute or
/// to write a map entry, never across an await, and never together with
/// another subsystem's: the endpoint lock (async) is the only one held
/// while others are taken.
pub(crate) struct Owned<T>(std::sync::Mutex<T>);

impl<T> Owned<T> {
    pub(crate) fn new(t: T) -> Self {
        Self(std::sync::Mutex::new(t))
    }

    pub(crate) fn get(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
