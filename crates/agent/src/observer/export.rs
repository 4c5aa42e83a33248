//! Hubble's flow export file (`--hubble-export-file-path`): every flow the
//! observer keeps (and every lost-events notice) as one JSON line, in the
//! format of `hubble observe -o json` (a GetFlowsResponse: `flow`,
//! `node_name`, `time`), rotated by size with a bounded number of backups
//! (`PATH.1` the newest). It follows the observer on a thread of its own,
//! so file writes never run on the async runtime.
use super::{grpc, Live, Observer};
use seta_hubble::flow::LostEventSource;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    pub path: PathBuf,
    /// rotate when the file would grow past this
    pub max_bytes: u64,
    /// rotated files kept (PATH.1 .. PATH.N)
    pub max_backups: usize,
}

/// The open export file.
pub struct Exporter {
    cfg: ExportConfig,
    file: std::fs::File,
    size: u64,
}

impl Exporter {
    pub fn open(cfg: ExportConfig) -> std::io::Result<Self> {
        if let Some(dir) = cfg.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&cfg.path)?;
        let size = file.metadata()?.len();
        Ok(Self { cfg, file, size })
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

    /// One JSON line.
    pub fn write(&mut self, v: &serde_json::Value) -> std::io::Result<()> {
        let mut line = v.to_string();
        line.push('\n');
        if self.size > 0 && self.size + line.len() as u64 > self.cfg.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.size += line.len() as u64;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.cfg.path
    }
}

/// Follow `obs` into `exporter` on a thread of its own, until the process ends.
pub fn spawn(obs: Arc<Observer>, mut exporter: Exporter) -> std::thread::JoinHandle<()> {
    let mut rx = obs.subscribe();
    std::thread::Builder::new()
        .name("hubble-export".into())
        .spawn(move || loop {
            let r = match rx.blocking_recv() {
                Ok(Live::Flow(_, f)) => grpc::response(obs.node(), f),
                Ok(Live::Lost(n)) => grpc::lost(obs.node(), LostEventSource::PerfEventRingBuffer, n),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => grpc::lost(obs.node(), LostEventSource::ObserverEventsQueue, n),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if let Err(e) = exporter.write(&seta_hubble::json::response(&r)) {
                tracing::error!(path = %exporter.path().display(), %e, "hubble export file");
            }
        })
        .expect("spawn the export thread")
}
