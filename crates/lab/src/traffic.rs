//! Traffic helpers for tests and the lab: real sockets opened inside namespaces.
use super::spawn_in_netns;
use crate::wait::RunWithin;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A TCP and UDP responder on `addr` inside a namespace ("ok" to every
/// connection / datagram) until dropped.
pub struct Responder {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Responder {
    pub fn start(ns: &str, addr: SocketAddr) -> Self {
        let (tcp, udp) = spawn_in_netns(ns, move || {
            let t = TcpListener::bind(addr).expect("bind tcp");
            t.set_nonblocking(true).unwrap();
            let u = UdpSocket::bind(addr).expect("bind udp");
            u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            (t, u)
        })
        .join()
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s1 = stop.clone();
        let t1 = std::thread::spawn(move || {
            while !s1.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.write_all(b"ok");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let s2 = stop.clone();
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(b"ok", from);
                }
            }
        });
        Self {
            stop,
            threads: vec![t1, t2],
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Does a TCP connection from namespace `ns` to `addr` get the responder's "ok"?
pub fn tcp_ok(ns: &str, addr: SocketAddr) -> bool {
    spawn_in_netns(ns, move || {
        let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_millis(800)) else {
            return false;
        };
        c.set_read_timeout(Some(Duration::from_millis(800))).unwrap();
        let mut b = [0u8; 2];
        c.read_exact(&mut b).is_ok() && &b == b"ok"
    })
    .join()
    .unwrap()
}

/// Does a UDP datagram from `ns` to `addr` get an "ok" back?
pub fn udp_ok(ns: &str, addr: SocketAddr) -> bool {
    spawn_in_netns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        for _ in 0..2 {
            let _ = s.send_to(b"hi", addr);
            let mut b = [0u8; 16];
            if let Ok((n, _)) = s.recv_from(&mut b) {
                return &b[..n] == b"ok";
            }
        }
        false
    })
    .join()
    .unwrap()
}

/// Does a ping from namespace `ns` reach `ip`? A lost first echo (a
/// neighbour still resolving on a loaded machine) gets one more try, so a
/// "no" means two echoes went unanswered.
pub fn ping_ok(ns: &str, ip: std::net::Ipv4Addr) -> bool {
    let once = || {
        std::process::Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", &ip.to_string()])
            .output_within(std::time::Duration::from_secs(10))
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    once() || once()
}

/// How long a stream may stall before it is ended.
const STALL: Duration = Duration::from_secs(10);

/// A TCP stream for `secs` seconds from namespace `client` to `dial` (an
/// address that leads to `listen` inside `server`, e.g. a ClusterIP in
/// front of it), started now: `finish` says how many bytes were sent and
/// how many the server received. A stream that stalls for 10 s ends there
/// (never a hang): what was received by then is what counts.
pub struct Stream {
    sink: std::thread::JoinHandle<u64>,
    source: std::thread::JoinHandle<u64>,
}

impl Stream {
    pub fn start(client: &str, server: &str, listen: SocketAddr, dial: SocketAddr, secs: u64) -> Self {
        let listener = spawn_in_netns(server, move || TcpListener::bind(listen).expect("bind the stream's sink"))
            .join()
            .unwrap();
        let sink = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("the stream's connection");
            s.set_read_timeout(Some(STALL)).expect("a read timeout");
            let mut buf = vec![0u8; 65536];
            let mut total = 0u64;
            while let Ok(k) = s.read(&mut buf) {
                if k == 0 {
                    break;
                }
                total += k as u64;
            }
            total
        });
        let source = spawn_in_netns(client, move || {
            let mut c = TcpStream::connect_timeout(&dial, Duration::from_secs(3)).expect("connect the stream");
            c.set_write_timeout(Some(STALL)).expect("a write timeout");
            let chunk = vec![7u8; 16384];
            let start = std::time::Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < Duration::from_secs(secs) {
                if c.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len() as u64;
            }
            sent
        });
        Self { sink, source }
    }

    /// (bytes sent, bytes received), once the stream has ended.
    pub fn finish(self) -> (u64, u64) {
        let sent = self.source.join().unwrap();
        (sent, self.sink.join().unwrap())
    }
}
