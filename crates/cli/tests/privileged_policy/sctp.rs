//! SCTP through services. This kernel has no SCTP sockets, so raw
//! IPPROTO_SCTP sockets send and receive the packets whole: what the
//! datapath changed (addresses, ports) and whether the CRC32c still holds
//! is seen as it arrives.
use super::*;
use seta_datapath::testpkt::{sctp_crc_ok, sctp_data};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// A raw IPPROTO_SCTP socket (sends the SCTP packet, receives it with its
/// IPv4 header), as a std socket for its send_to/recv_from.
fn raw_sctp() -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(132))).unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    s
}

/// An SCTP packet as a raw socket received it: source, destination, ports,
/// CRC right.
#[derive(Debug, PartialEq)]
struct Seen {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    crc_ok: bool,
}

fn seen(p: &[u8]) -> Option<Seen> {
    let hl = usize::from(p.first()? & 0xf) * 4;
    let l4 = p.get(hl..)?;
    if l4.len() < 12 {
        return None;
    }
    Some(Seen {
        src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        crc_ok: sctp_crc_ok(l4),
    })
}

/// The next SCTP packet to `dport` within `within`.
fn recv_sctp(s: &UdpSocket, dport: u16, within: Duration) -> Option<Seen> {
    let t = Instant::now();
    let mut buf = [0u8; 2048];
    while t.elapsed() < within {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if let Some(x) = seen(&buf[..n]).filter(|x| x.dport == dport) {
                return Some(x);
            }
        }
    }
    None
}

/// A backend in `ns` answering every SCTP packet to `port` (a DATA of the
/// same size) from that port, to the sender's address and port, while the
/// guard lives; it reports what it received.
struct SctpEcho {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    got: std::sync::mpsc::Receiver<Seen>,
}

impl SctpEcho {
    fn start(ns: &str, port: u16) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, got) = std::sync::mpsc::channel();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let halt = stop.clone();
        seta_lab::spawn_in_netns(ns, move || {
            let s = raw_sctp();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, _)) = s.recv_from(&mut buf) else { continue };
                let Some(x) = seen(&buf[..n]).filter(|x| x.dport == port) else {
                    continue;
                };
                let len = n - usize::from(buf[0] & 0xf) * 4 - 28;
                let _ = s.send_to(&sctp_data(port, x.sport, len), SocketAddr::new(x.src.into(), 0));
                let _ = tx.send(x);
            }
        });
        ready.recv_timeout(Duration::from_secs(5)).unwrap();
        Self { stop, got }
    }
}

impl Drop for SctpEcho {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// From `ns`, one SCTP DATA of `len` bytes from port `sport` to `to`: the
/// answer, as received (several tries: the first packet of a new
/// neighbour may be lost to ARP).
fn sctp_ask(ns: &str, to: SocketAddr, sport: u16, len: usize) -> Option<Seen> {
    seta_lab::spawn_in_netns(ns, move || {
        let s = raw_sctp();
        for _ in 0..5 {
            s.send_to(&sctp_data(sport, to.port(), len), SocketAddr::new(to.ip(), 0)).unwrap();
            if let Some(x) = recv_sctp(&s, sport, Duration::from_secs(1)) {
                return Some(x);
            }
        }
        None
    })
    .join()
    .unwrap()
}

/// SCTP services, with a targetPort other than the port, as kube-proxy
/// serves them (Cilium drops those): a pod on the backend's node and one on
/// the other node reach the ClusterIP (7777, backend web:7778), and the
/// external host reaches the NodePort through every node (SNAT through
/// the node without the backend). The backend receives each request on its
/// own port with a valid CRC32c, and each client gets the answer from the
/// frontend it asked, to its own port, with a valid CRC32c.
async fn privileged_policy_service_sctp_ports_are_translated(p: P) {
    let web = p.ip("web");
    services_import(
        &p,
        &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: sc, namespace: default}}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.192\n  ports: [{{name: s, protocol: SCTP, port: 7777, targetPort: 7778, nodePort: 30192}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: sc-a, namespace: default, labels: {{kubernetes.io/service-name: sc}}}}\naddressType: IPv4\nports: [{{name: s, protocol: SCTP, port: 7778}}]\nendpoints:\n- {{addresses: [{web}], conditions: {{ready: true}}}}\n"),
    );
    let listed = common::seta(&p.node(), &["service", "list"]);
    assert!(
        listed.as_array().unwrap().iter().any(|e| e["frontend"] == "10.96.0.192:7777/SCTP"),
        "{listed}"
    );
    let ext = p.lab().external.clone().unwrap();
    let vip: SocketAddr = "10.96.0.192:7777".parse().unwrap();
    let mut asks: Vec<(String, String, SocketAddr)> = vec![];
    for pod in ["other", "client"] {
        asks.push((format!("{pod} -> ClusterIP"), p.ns(pod), vip));
    }
    for i in 0..p.nodes().len() {
        asks.push((
            format!("external -> NodePort of node {i}"),
            ext.netns.clone(),
            SocketAddr::new(p.node_addr(i).into(), 30192),
        ));
    }
    let echo = SctpEcho::start(&p.ns("web"), 7778);
    for (k, (who, ns, to)) in asks.iter().enumerate() {
        for len in [8, 1000] {
            let sport = 41000 + k as u16;
            let got = sctp_ask(ns, *to, sport, len).map(|g| (std::net::IpAddr::V4(g.src), g.sport, g.dport, g.crc_ok));
            assert_eq!(
                got,
                Some((to.ip(), to.port(), sport, true)),
                "{who}, {len} bytes: the answer from the frontend (source, ports, CRC32c right)"
            );
            let req = echo.got.recv_timeout(Duration::from_secs(1)).unwrap();
            assert_eq!(
                (req.dst, req.dport, req.crc_ok),
                (web, 7778, true),
                "{who}: the request at the backend"
            );
            while echo.got.try_recv().is_ok() {}
        }
    }
}

mod privileged_policy_service_sctp_ports_are_translated {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one() {
        if !privileged("privileged_policy_service_sctp_ports_are_translated::one") {
            return;
        }
        super::privileged_policy_service_sctp_ports_are_translated(P::new("scone", Topo::OneUnderlay).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tunnel() {
        if !privileged("privileged_policy_service_sctp_ports_are_translated::tunnel") {
            return;
        }
        super::privileged_policy_service_sctp_ports_are_translated(P::new("sctun", Topo::Tunnel).await).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native() {
        if !privileged("privileged_policy_service_sctp_ports_are_translated::native") {
            return;
        }
        super::privileged_policy_service_sctp_ports_are_translated(P::new("scnat", Topo::Native).await).await;
    }
}
