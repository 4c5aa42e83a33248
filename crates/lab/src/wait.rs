//! Every wait ends: deadlines that name what they waited for, and external
//! programs run with a time limit.
//!
//! A poll loop in the lab, the tests or the bench gives up at its deadline
//! with what it waited for, for how long, and the last state it saw (and a
//! hint, e.g. where the agent's log is). A program the tests or the bench start
//! (ping, iperf3, sockperf, etcd clients, podman, python) is killed at its
//! deadline, with its process group, and the error says so.
use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The default limit for a program a test starts (ping, ip, podman, python):
/// long enough for any of them on a loaded machine, short of a hang.
pub const PROGRAM_TIMEOUT: Duration = Duration::from_secs(120);

/// A wait that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    pub what: String,
    pub waited: Duration,
    pub last: String,
    pub hint: Option<String>,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:.1} s waiting for {}; last seen: {}",
            self.waited.as_secs_f64(),
            self.what,
            if self.last.is_empty() { "nothing" } else { &self.last }
        )?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Timeout {}

/// A named deadline.
#[derive(Debug, Clone)]
pub struct Deadline {
    what: String,
    start: Instant,
    limit: Duration,
    hint: Option<String>,
}

impl Deadline {
    pub fn new(what: impl Into<String>, limit: Duration) -> Self {
        Self {
            what: what.into(),
            start: Instant::now(),
            limit,
            hint: None,
        }
    }

    /// Where to look when it expires (a log file, a command).
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn expired(&self) -> bool {
        self.start.elapsed() >= self.limit
    }

    /// Time left (zero once expired).
    pub fn left(&self) -> Duration {
        self.limit.saturating_sub(self.start.elapsed())
    }

    /// The error for giving up now, with the last state seen.
    pub fn timeout(&self, last: impl fmt::Display) -> Timeout {
        Timeout {
            what: self.what.clone(),
            waited: self.start.elapsed(),
            last: last.to_string(),
            hint: self.hint.clone(),
        }
    }
}

/// Call `check` every `every` until it returns `Ok`; `Err(state)` means "not
/// yet" and describes what it saw. Gives up at the deadline with that state.
pub fn poll<T>(deadline: &Deadline, every: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, Timeout> {
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(last) if deadline.expired() => return Err(deadline.timeout(last)),
            Err(_) => std::thread::sleep(every.min(deadline.left()).max(Duration::from_millis(1))),
        }
    }
}

/// [`poll`] for async checks (sleeps on the runtime's timer).
pub async fn poll_async<T, F>(deadline: &Deadline, every: Duration, mut check: impl FnMut() -> F) -> Result<T, Timeout>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(last) if deadline.expired() => return Err(deadline.timeout(last)),
            Err(_) => tokio::time::sleep(every.min(deadline.left()).max(Duration::from_millis(1))).await,
        }
    }
}

/// A program that did not finish in time (it was killed) or could not start.
#[derive(Debug)]
pub enum RunError {
    Spawn { cmd: String, source: std::io::Error },
    Killed { cmd: String, limit: Duration, output: String },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn { cmd, source } => write!(f, "cannot run `{cmd}`: {source}"),
            RunError::Killed { cmd, limit, output } => write!(
                f,
                "`{cmd}` did not finish within {:.0} s and was killed; its output so far: {}",
                limit.as_secs_f64(),
                if output.trim().is_empty() { "(none)" } else { output.trim() }
            ),
        }
    }
}

impl std::error::Error for RunError {}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 300 {
        s.truncate(300);
        s.push('…');
    }
    s
}

/// Kill a child that leads its own process group: `ip netns exec … sh -c …`
/// and whatever it started go too.
fn kill_group(pid: u32) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
}

/// Wait for `child` on a thread: the exit status arrives the moment the
/// child exits (no polling, so timing measurements stay exact).
fn waiter(mut child: Child) -> std::sync::mpsc::Receiver<std::io::Result<ExitStatus>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx
}

/// The exit status, or None when `limit` passed first (then the child was
/// killed with `kill` and reaped).
fn finish(rx: &std::sync::mpsc::Receiver<std::io::Result<ExitStatus>>, limit: Duration, kill: impl FnOnce()) -> Option<ExitStatus> {
    match rx.recv_timeout(limit) {
        Ok(r) => r.ok(),
        Err(_) => {
            kill();
            let _ = rx.recv_timeout(Duration::from_secs(5));
            None
        }
    }
}

/// Reads a pipe to its end on a thread; [`collect`] gets what it read.
fn reader(r: Option<impl Read + Send + 'static>) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// What a reader got. A descendant that outlives the program (a daemon, or
/// one that left the process group) may keep the pipe open, so this waits a
/// bounded moment after the program ended.
fn collect(rx: &std::sync::mpsc::Receiver<Vec<u8>>, killed: bool) -> Vec<u8> {
    rx.recv_timeout(Duration::from_secs(if killed { 2 } else { 10 }))
        .unwrap_or_default()
}

/// Time limits for external programs.
pub trait RunWithin {
    /// Like `output()`, but the program (and its process group) is killed
    /// at `limit` and that is an error naming the command.
    fn output_within(&mut self, limit: Duration) -> Result<Output, RunError>;
    /// [`RunWithin::output_within`] with `input` written to the program's stdin.
    fn output_with_input_within(&mut self, input: &[u8], limit: Duration) -> Result<Output, RunError>;
    /// Like `status()` (output inherited), killed at `limit`.
    fn status_within(&mut self, limit: Duration) -> Result<ExitStatus, RunError>;
}

impl RunWithin for Command {
    fn output_within(&mut self, limit: Duration) -> Result<Output, RunError> {
        run(self, None, limit)
    }

    fn output_with_input_within(&mut self, input: &[u8], limit: Duration) -> Result<Output, RunError> {
        run(self, Some(input.to_vec()), limit)
    }

    fn status_within(&mut self, limit: Duration) -> Result<ExitStatus, RunError> {
        let cmd = describe(self);
        let child = self.spawn().map_err(|source| RunError::Spawn { cmd: cmd.clone(), source })?;
        let pid = child.id();
        let rx = waiter(child);
        finish(&rx, limit, || {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        })
        .ok_or(RunError::Killed {
            cmd,
            limit,
            output: String::new(),
        })
    }
}

fn run(c: &mut Command, input: Option<Vec<u8>>, limit: Duration) -> Result<Output, RunError> {
    let cmd = describe(c);
    let mut child = c
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| RunError::Spawn { cmd: cmd.clone(), source })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // a writer thread: a program that does not read must not block us
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let (out, err) = (reader(child.stdout.take()), reader(child.stderr.take()));
    let pid = child.id();
    let status = finish(&waiter(child), limit, || kill_group(pid));
    let (stdout, stderr) = (collect(&out, status.is_none()), collect(&err, status.is_none()));
    match status {
        Some(status) => Ok(Output { status, stdout, stderr }),
        None => Err(RunError::Killed {
            cmd,
            limit,
            output: tail(&(String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr))),
        }),
    }
}

/// The last ~2 KB of a program's output.
fn tail(s: &str) -> String {
    const MAX: usize = 2048;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut start = s.len() - MAX;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_deadline_names_what_it_waited_for_and_the_last_state() {
        let d =
            Deadline::new("the agent socket /run/seta/x/agent.sock", Duration::from_millis(50)).hint("agent log: /run/seta/x/agent.log");
        let mut polls = 0;
        let err = poll(&d, Duration::from_millis(10), || -> Result<(), String> {
            polls += 1;
            Err(format!("connection refused (poll {polls})"))
        })
        .unwrap_err();
        assert_eq!(err.what, "the agent socket /run/seta/x/agent.sock");
        assert!(err.waited >= Duration::from_millis(50), "{:?}", err.waited);
        assert!(polls >= 2);
        assert_eq!(err.last, format!("connection refused (poll {polls})"));
        let text = err.to_string();
        assert!(text.starts_with("timed out after 0."), "{text}");
        assert!(text.contains("waiting for the agent socket /run/seta/x/agent.sock"), "{text}");
        assert!(text.contains("last seen: connection refused"), "{text}");
        assert!(text.ends_with("(agent log: /run/seta/x/agent.log)"), "{text}");
    }

    #[test]
    fn a_poll_that_succeeds_returns_its_value() {
        let d = Deadline::new("three polls", Duration::from_secs(5));
        let mut n = 0;
        let v = poll(&d, Duration::from_millis(1), || {
            n += 1;
            if n == 3 {
                Ok(n)
            } else {
                Err(format!("{n}"))
            }
        })
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn async_poll_gives_up_at_its_deadline() {
        let d = Deadline::new("etcd to elect itself", Duration::from_millis(30));
        let err = poll_async(&d, Duration::from_millis(5), || async { Err::<(), _>("no leader".to_string()) })
            .await
            .unwrap_err();
        assert_eq!(err.to_string().split(';').nth(1).unwrap().trim(), "last seen: no leader");
    }

    #[test]
    fn a_program_past_its_limit_is_killed_with_its_children_and_named() {
        let t = Instant::now();
        let err = Command::new("sh")
            .args(["-c", "echo started; sleep 30 & sleep 30"])
            .output_within(Duration::from_millis(300))
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10), "killed at its limit, not after sleep");
        let text = err.to_string();
        assert!(
            text.starts_with("`sh -c echo started; sleep 30 & sleep 30` did not finish within 0 s"),
            "{text}"
        );
        assert!(text.ends_with("its output so far: started"), "{text}");
    }

    #[test]
    fn a_program_within_its_limit_gives_its_output() {
        let out = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output_within(Duration::from_secs(10))
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert!(matches!(
            Command::new("/nonexistent/prog").output_within(Duration::from_secs(1)),
            Err(RunError::Spawn { .. })
        ));
    }
}
