//! The lab's Hubble Relay (`seta-relay`) in the underlay: it learns the
//! nodes from the agents' peer API (their unix sockets) and reaches each
//! node's observer at its underlay address, port 4244. It serves on the
//! underlay gateway's port 4245, as Hubble Relay does, and on a unix socket
//! under the lab's directory for clients on this machine. Its service map
//! is on the gateway's port 12000. Started and ended by pid like etcd.
use crate::*;

/// Hubble Relay's port, on the underlay gateway.
pub const RELAY_PORT: u16 = 4245;
/// The service map's port (the relay's `--ui-listen-address`), on the
/// underlay gateway: `http://172.30.0.254:12000/` from the underlay.
pub const UI_PORT: u16 = 12000;

pub(crate) fn relay_dir(lab: &str) -> PathBuf {
    Path::new(LABS_DIR).join(format!("{lab}-relay"))
}

/// The relay's unix socket (`unix://` + this is a `--server` target).
pub fn relay_socket(lab: &str) -> PathBuf {
    relay_dir(lab).join("relay.sock")
}

/// The lab's relay, by its socket path.
pub(crate) fn relay_pids(dir: &Path) -> Vec<u32> {
    let want = format!("unix://{}", dir.join("relay.sock").display());
    pids_where(|argv| argv.first().is_some_and(|a| a.ends_with(b"seta-relay")) && argv.contains(&want.as_bytes()))
}

impl Lab {
    /// Start the relay in the underlay; returns its pid once it serves.
    pub fn relay_start(&self) -> Result<u32> {
        let ul = self.underlay.clone().context("the relay needs a lab with an underlay")?;
        let dir = relay_dir(&self.name);
        std::fs::create_dir_all(&dir)?;
        let sock = relay_socket(&self.name);
        let _ = std::fs::remove_file(&sock);
        let mut cmd = Command::new(self.bin_dir.join("seta-relay"));
        for n in &self.nodes {
            cmd.arg("--peer-service")
                .arg(format!("unix://{}", n.socket.with_file_name("hubble.sock").display()));
        }
        cmd.args(["--listen-address", &format!("{UNDERLAY_GW}:{RELAY_PORT}")])
            .arg("--listen-address")
            .arg(format!("unix://{}", sock.display()))
            .args(["--ui-listen-address", &format!("{UNDERLAY_GW}:{UI_PORT}")])
            .args(["--dial-timeout", "2s"]);
        let log = dir.with_extension("log");
        let pid = spawn_daemon(cmd, &ul.netns, &log).context("spawn seta-relay (make build)")?;
        let d = wait::Deadline::new(format!("the lab's relay on {}", sock.display()), Duration::from_secs(15))
            .hint(format!("log: {}", log.display()));
        wait::poll(&d, Duration::from_millis(50), || {
            if !agent_alive(pid) {
                return Ok(Err(format!("seta-relay (pid {pid}) exited")));
            }
            match std::os::unix::net::UnixStream::connect(&sock) {
                Ok(_) => Ok(Ok(())),
                Err(e) => Err(e.to_string()),
            }
        })?
        .map_err(|e| anyhow!("{e}; see {}", log.display()))?;
        Ok(pid)
    }
}
