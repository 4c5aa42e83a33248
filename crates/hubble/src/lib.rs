//! Hubble's flow API as seta serves it: the generated `flow`, `relay`,
//! `observer` and `peer` packages (gRPC server and client), and the pure
//! parts of an observer and a relay — flow filters ([`filter`]), the flow
//! ring buffer ([`ring`]), Hubble's compact line ([`compact`]) and the
//! merge of several nodes' flows by time ([`merge`]).
pub mod flow {
    tonic::include_proto!("flow");
}
pub mod relay {
    tonic::include_proto!("relay");
}
pub mod observer {
    tonic::include_proto!("observer");
}
pub mod peer {
    tonic::include_proto!("peer");
}

pub mod compact;

/// Bytes as lowercase hex, `sep` between bytes (`02:00:…` for a MAC, none
/// for a packet). Digit by digit: it is on every drop's way.
pub fn hex(b: &[u8], sep: Option<char>) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if let (Some(c), true) = (sep, i > 0) {
            s.push(c);
        }
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// A flow's L4 source and destination ports (TCP, UDP, SCTP), if any.
pub fn l4_ports(f: &flow::Flow) -> (Option<u32>, Option<u32>) {
    use flow::layer4::Protocol;
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => (Some(t.source_port), Some(t.destination_port)),
        Some(Protocol::Udp(u)) => (Some(u.source_port), Some(u.destination_port)),
        Some(Protocol::Sctp(s)) => (Some(s.source_port), Some(s.destination_port)),
        _ => (None, None),
    }
}

/// The TCP flags that are set, in the order Hubble prints them.
pub fn tcp_flag_names(fl: &flow::TcpFlags) -> Vec<&'static str> {
    [
        (fl.syn, "SYN"),
        (fl.ack, "ACK"),
        (fl.fin, "FIN"),
        (fl.rst, "RST"),
        (fl.psh, "PSH"),
        (fl.urg, "URG"),
        (fl.ece, "ECE"),
        (fl.cwr, "CWR"),
        (fl.ns, "NS"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n)
    .collect()
}
pub mod agent_events;

/// The wall clock as a protobuf timestamp.
pub fn now() -> prost_types::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A client of a Hubble observer (a node's or a relay's).
pub type Client = observer::observer_client::ObserverClient<tonic::transport::Channel>;
pub mod debug;
pub mod decode;
pub mod filter;
pub mod json;
pub mod merge;
pub mod monitor;
pub mod ring;
pub mod select;
pub mod servicemap;

/// A gRPC channel to `target`: `unix:///path/hubble.sock` or `host:port`
/// (plain gRPC), connected at once, giving up after `timeout`.
pub async fn channel(target: &str, timeout: std::time::Duration) -> Result<tonic::transport::Channel, String> {
    let channel = if let Some(path) = target.strip_prefix("unix://") {
        let path = path.to_string();
        tonic::transport::Endpoint::from_static("http://observer.local")
            .connect_timeout(timeout)
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
    } else {
        tonic::transport::Endpoint::from_shared(format!("http://{target}"))
            .map_err(|e| format!("{target}: {e}"))?
            .connect_timeout(timeout)
            .connect()
            .await
    };
    channel.map_err(|e| format!("connecting to {target}: {e}"))
}

/// A client of an observer (or a relay) at `target`, as [`channel`].
pub async fn connect(target: &str) -> Result<observer::observer_client::ObserverClient<tonic::transport::Channel>, String> {
    channel(target, std::time::Duration::from_secs(5))
        .await
        .map(observer::observer_client::ObserverClient::new)
        .map_err(|e| format!("the observer: {e}"))
}
