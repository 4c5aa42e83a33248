//! On-disk state under the state dir: endpoints/<id>.json, ipam.json, identities.json.
use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use seta_core::endpoint::Endpoint;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// content hash of what each file last received
    last: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

/// Write via a temp file and rename, so a crash never leaves half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("endpoints")).with_context(|| format!("create {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            last: Default::default(),
        })
    }

    pub fn load<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        let p = self.dir.join(name);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parse {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
        }
    }

    /// Persist `v` as `name`; a file whose content would not change is not
    /// written again (endpoint churn leaves identities and policies alone).
    pub fn save<T: Serialize>(&self, name: &str, v: &T) -> Result<()> {
        self.save_at(name, &self.dir.join(name), v)
    }

    fn save_at<T: Serialize>(&self, key: &str, path: &Path, v: &T) -> Result<()> {
        use std::hash::{Hash, Hasher};
        let bytes = serde_json::to_vec_pretty(v)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        let sum = h.finish();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.get(key) == Some(&sum) {
            return Ok(());
        }
        write_atomic(path, &bytes)?;
        last.insert(key.to_string(), sum);
        Ok(())
    }

    fn ep_path(&self, id: u16) -> PathBuf {
        self.dir.join("endpoints").join(format!("{id}.json"))
    }

    pub fn save_endpoint(&self, ep: &Endpoint) -> Result<()> {
        self.save_at(&format!("endpoints/{}", ep.id), &self.ep_path(ep.id), ep)
    }

    pub fn remove_endpoint(&self, id: u16) -> Result<()> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&format!("endpoints/{id}"));
        match std::fs::remove_file(self.ep_path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Endpoints saved by a previous run; unreadable files are reported and skipped.
    pub fn load_endpoints(&self) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.dir.join("endpoints")) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                let _ = std::fs::remove_file(&p); // leftover temp file of an interrupted write
                continue;
            }
            match std::fs::read(&p)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<Endpoint>(&b)?))
            {
                Ok(ep) => out.push(ep),
                Err(err) => tracing::warn!("skipping unreadable endpoint state {}: {err}", p.display()),
            }
        }
        out.sort_by_key(|e| e.id);
        out
    }
}
