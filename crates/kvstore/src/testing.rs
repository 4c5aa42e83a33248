//! A real etcd for tests and benchmarks: started on loopback with free ports
//! and a temporary data dir, killed and removed on drop (also on panic).
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdServer {
    child: Option<Child>,
    dir: PathBuf,
    bin: &'static str,
    peer: String,
    pub endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl EtcdServer {
    /// None when no etcd binary is installed (tests decide whether that is fatal).
    pub fn start(tag: &str) -> Option<Self> {
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let (cp, pp) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("seta-etcd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut me = Self {
            child: None,
            dir,
            bin,
            peer: format!("http://127.0.0.1:{pp}"),
            endpoint: format!("http://127.0.0.1:{cp}"),
        };
        me.resume().then_some(me)
    }

    /// Kill the server (its data stays): clients see etcd go away.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze the server (SIGSTOP): connections stay open and nothing
    /// answers, as when etcd is cut off by the network. `thaw` resumes it.
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// Start it again on the same ports and data; true once it accepts connections.
    pub fn resume(&mut self) -> bool {
        self.stop();
        let Ok(child) = Command::new(self.bin)
            .args(["--name", "seta-test", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.endpoint, "--advertise-client-urls", &self.endpoint])
            .args(["--listen-peer-urls", &self.peer, "--initial-advertise-peer-urls", &self.peer])
            .args(["--initial-cluster", &format!("seta-test={}", self.peer), "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(self.endpoint.trim_start_matches("http://")).is_err() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// For tests that need etcd: Some(server), or None after printing SKIP; under CI=true a missing etcd is a failure.
pub fn etcd_or_skip(test: &str) -> Option<EtcdServer> {
    match EtcdServer::start(test) {
        Some(s) => Some(s),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: etcd could not be started under CI=true (install etcd-server)"
            );
            eprintln!("SKIP {test}: no etcd");
            None
        }
    }
}
