//! Hubble's flow export file (`--hubble-export-file-path`): every flow the
//! observer keeps (and every lost-events notice) as one JSON line, in the
//! format of `hubble observe -o json` (a GetFlowsResponse: `flow`,
//! `node_name`, `time`), rotated by size with a bounded number of backups
//! (`PATH.1` the newest). It follows the observer on a thread of its own,
//! so file writes never run on the async runtime.
use super::{grpc, Live, Observer};
use seta_hubble::flow::{Flow, FlowFilter, LostEventSource};
use seta_hubble::observer::GetFlowsResponse;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where, how much, and which flows.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    pub path: PathBuf,
    /// rotate when the file would grow past this
    pub max_bytes: u64,
    /// rotated files kept (PATH.1 .. PATH.N)
    pub max_backups: usize,
    /// only flows matching one of these (none: every flow) …
    pub allow: Vec<FlowFilter>,
    /// … and none of these (lost-events notices are always written)
    pub deny: Vec<FlowFilter>,
}

/// One line of the file: a flow (of this node), or a lost-events notice.
pub enum Line {
    Flow(Arc<Flow>),
    Other(Box<GetFlowsResponse>),
}

/// The open export file.
pub struct Exporter {
    cfg: ExportConfig,
    file: std::fs::File,
    size: u64,
    json: seta_hubble::json::FlowWriter,
    /// the lines of one write (kept: a batch's buffer is large)
    buf: Vec<u8>,
}

impl Exporter {
    pub fn open(cfg: ExportConfig) -> std::io::Result<Self> {
        if let Some(dir) = cfg.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&cfg.path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            cfg,
            file,
            size,
            json: Default::default(),
            buf: vec![],
        })
    }

    fn backup(&self, i: usize) -> PathBuf {
        let mut p = self.cfg.path.clone().into_os_string();
        p.push(format!(".{i}"));
        p.into()
    }

    /// PATH becomes PATH.1, PATH.1 becomes PATH.2, ...; the oldest goes.
    fn rotate(&mut self) -> std::io::Result<()> {
        if self.cfg.max_backups == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(self.backup(self.cfg.max_backups));
            for i in (1..self.cfg.max_backups).rev() {
                let _ = std::fs::rename(self.backup(i), self.backup(i + 1));
            }
            std::fs::rename(&self.cfg.path, self.backup(1))?;
        }
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.cfg.path)?;
        self.size = 0;
        Ok(())
    }

    /// One JSON line per line (flows of `node`), in as few writes as the
    /// rotation allows.
    pub fn write_all(&mut self, node: &str, lines: &[Line]) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let r = self.write_lines(node, lines, &mut buf);
        self.buf = buf;
        r
    }

    fn write_lines(&mut self, node: &str, lines: &[Line], buf: &mut Vec<u8>) -> std::io::Result<()> {
        for l in lines {
            let start = buf.len();
            match l {
                Line::Flow(f) => self.json.write_flow(buf, node, f)?,
                Line::Other(r) => seta_hubble::json::write_response(buf, r)?,
            }
            buf.push(b'\n');
            let len = (buf.len() - start) as u64;
            if self.size > 0 && self.size + len > self.cfg.max_bytes {
                // what came before this line goes to the file being rotated
                self.file.write_all(&buf[..start])?;
                buf.drain(..start);
                self.rotate()?;
            }
            self.size += len;
        }
        self.file.write_all(buf)
    }

    pub fn path(&self) -> &Path {
        &self.cfg.path
    }
}

/// Follow `obs` into `exporter` on a thread of its own, until the process
/// ends. What arrived together is written together, and the thread pauses
/// briefly between writes, so a busy node costs one wakeup and one write per
/// pause rather than per flow.
pub fn spawn(obs: Arc<Observer>, mut exporter: Exporter) -> std::thread::JoinHandle<()> {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut rx = obs.subscribe();
    let node = obs.node().to_string();
    let (allow, deny) = (exporter.cfg.allow.clone(), exporter.cfg.deny.clone());
    // None: the stream ended; Some(None): a flow the lists leave out
    let line = move |r: Result<Live, RecvError>| match r {
        Ok(Live::Flow(_, f)) => Some(seta_hubble::filter::selected(&allow, &deny, &f).then_some(Line::Flow(f))),
        Ok(Live::Lost(n)) => Some(Some(Line::Other(Box::new(grpc::lost(
            &node,
            LostEventSource::PerfEventRingBuffer,
            n,
        ))))),
        Err(RecvError::Lagged(n)) => Some(Some(Line::Other(Box::new(grpc::lost(
            &node,
            LostEventSource::ObserverEventsQueue,
            n,
        ))))),
        Err(RecvError::Closed) => None,
    };
    std::thread::Builder::new()
        .name("hubble-export".into())
        .spawn(move || {
            // the file yields the CPU to the observer and to the node's
            // workloads: it writes when there is time, and what it could
            // not keep up with is written as a lost-events line
            // SAFETY: setpriority on this thread's own id changes nothing else.
            unsafe { libc::setpriority(libc::PRIO_PROCESS as _, libc::gettid() as _, 19) };
            let mut batch = vec![];
            loop {
                let Some(first) = line(rx.blocking_recv()) else { return };
                batch.extend(first);
                loop {
                    match rx.try_recv() {
                        Ok(l) => batch.extend(line(Ok(l)).flatten()),
                        Err(TryRecvError::Lagged(n)) => batch.extend(line(Err(RecvError::Lagged(n))).flatten()),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => return,
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                if let Err(e) = exporter.write_all(obs.node(), &batch) {
                    tracing::error!(path = %exporter.path().display(), %e, "hubble export file");
                }
                batch.clear();
                std::thread::sleep(EXPORT_PAUSE);
            }
        })
        .expect("spawn the export thread")
}

/// The export thread's pause between writes (the follow queue holds 4096).
const EXPORT_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);
