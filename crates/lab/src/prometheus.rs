//! A real Prometheus server in the lab's underlay (Debian's `prometheus`),
//! scraping every node's agent metrics each second, for tests that check
//! what a monitoring system sees. Started and ended by pid like etcd.
use crate::*;

/// The API address in the underlay.
const PROM_PORT: u16 = 9090;

pub(crate) fn prometheus_dir(lab: &str) -> PathBuf {
    Path::new(LABS_DIR).join(format!("{lab}-prometheus"))
}

/// The lab's Prometheus, by its data dir.
pub(crate) fn prometheus_pids(dir: &Path) -> Vec<u32> {
    let want = format!("--storage.tsdb.path={}", dir.join("data").display());
    pids_where(|argv| argv.first().is_some_and(|a| a.ends_with(b"prometheus")) && argv.contains(&want.as_bytes()))
}

/// `s` percent-encoded for a URL query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Lab {
    /// Start Prometheus in the underlay, scraping `:9962` of every node
    /// each second; returns once its API answers.
    pub fn prometheus_start(&self) -> Result<u32> {
        let ul = self.underlay.clone().context("prometheus needs a lab with an underlay")?;
        let dir = prometheus_dir(&self.name);
        std::fs::create_dir_all(dir.join("data"))?;
        let targets: Vec<String> = (1..=self.nodes.len()).map(|i| format!("\"{}:9962\"", node_ip(i))).collect();
        let hubble: Vec<String> = (1..=self.nodes.len()).map(|i| format!("\"{}:9965\"", node_ip(i))).collect();
        let conf = dir.join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: seta-agent\n  static_configs:\n  - targets: [{}]\n- job_name: hubble\n  static_configs:\n  - targets: [{}]\n",
                targets.join(", "),
                hubble.join(", ")
            ),
        )?;
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={UNDERLAY_GW}:{PROM_PORT}"));
        let log = dir.with_extension("log");
        let pid = spawn_daemon(cmd, &ul.netns, &log).context("spawn prometheus (install prometheus)")?;
        let d = wait::Deadline::new("the lab's Prometheus to answer", Duration::from_secs(30)).hint(format!("log: {}", log.display()));
        wait::poll(&d, Duration::from_millis(200), || {
            if !agent_alive(pid) {
                return Ok(Err(format!("prometheus (pid {pid}) exited")));
            }
            self.prometheus_get("/-/ready").map(|_| Ok(())).map_err(|e| e.to_string())
        })?
        .map_err(|e| anyhow!("{e}; see {}", log.display()))?;
        Ok(pid)
    }

    /// An instant query through the HTTP API: the `data.result` list.
    pub fn prometheus_query(&self, q: &str) -> Result<Vec<serde_json::Value>> {
        let body = self.prometheus_get(&format!("/api/v1/query?query={}", urlencode(q)))?;
        let v: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("prometheus answered {body:?}"))?;
        anyhow::ensure!(v["status"] == "success", "query {q:?}: {v}");
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// GET `path` from the lab's Prometheus: the body of a 200.
    fn prometheus_get(&self, path: &str) -> Result<String> {
        let ul = self.underlay.clone().context("no underlay")?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n");
        let text = spawn_in_netns(&ul.netns, move || -> std::io::Result<String> {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect_timeout(&(UNDERLAY_GW, PROM_PORT).into(), Duration::from_secs(2))?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            c.write_all(req.as_bytes())?;
            let mut s = String::new();
            c.read_to_string(&mut s)?;
            Ok(s)
        })
        .join()
        .map_err(|_| anyhow!("prometheus probe thread panicked"))??;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        anyhow::ensure!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "GET {path}: {head}"
        );
        Ok(body.to_string())
    }
}
