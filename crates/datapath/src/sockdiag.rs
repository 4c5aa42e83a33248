//! Closing sockets connected to a removed service backend, as Cilium does
//! for socket-LB: sock_diag lists a namespace's sockets of a protocol and
//! `SOCK_DESTROY` (CONFIG_INET_DIAG_DESTROY) closes the ones socket-LB sent
//! to the backend (their cookie and peer are in `seta_lb4_reverse_sk`, as
//! Cilium checks its sock rev-NAT map), not a socket that names the
//! backend's address itself; their owners see ECONNABORTED and connect
//! again, to a backend that exists. Runs on a thread of its own inside the
//! namespace.
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const HDR: usize = 16;
/// inet_diag_sockid: sport, dport, src[4], dst[4], if, cookie[2]
const SOCKID: usize = 48;

/// inet_diag_req_v2 for IPv4 `proto`, every state, with `id`.
fn request(kind: u16, flags: u16, seq: u32, proto: u8, id: &[u8; SOCKID]) -> Vec<u8> {
    let len = HDR + 8 + SOCKID;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[libc::AF_INET as u8, proto, 0, 0]);
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    m.extend_from_slice(id);
    m
}

/// The netlink messages of one datagram: (type, payload).
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = vec![];
    let mut off = 0;
    while off + HDR <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
        if len < HDR || off + len > buf.len() {
            break;
        }
        out.push((kind, &buf[off + HDR..off + len]));
        off += (len + 3) & !3;
    }
    out
}

fn errno_of(payload: &[u8]) -> i32 {
    payload.get(..4).map(|b| -i32::from_ne_bytes(b.try_into().unwrap())).unwrap_or(0)
}

fn diag_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd nothing else owns
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
    // SAFETY: a valid fd and a timeval of the size given
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

fn send(fd: &OwnedFd, m: &[u8]) -> io::Result<()> {
    // SAFETY: a valid fd and buffer
    let n = unsafe { libc::send(fd.as_raw_fd(), m.as_ptr() as *const libc::c_void, m.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: a valid fd and buffer
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Close the sockets of protocol `proto` in this thread's namespace that
/// are one of `targets` (cookie and peer); how many were closed.
fn destroy_here(proto: u8, targets: &[(u64, SocketAddrV4)]) -> io::Result<usize> {
    let fd = diag_socket()?;
    send(
        &fd,
        &request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, proto, &[0; SOCKID]),
    )?;
    let mut ids: Vec<[u8; SOCKID]> = vec![];
    let mut buf = vec![0u8; 64 * 1024];
    'dump: loop {
        let n = recv(&fd, &mut buf)?;
        for (kind, p) in messages(&buf[..n]) {
            match kind {
                NLMSG_DONE => break 'dump,
                NLMSG_ERROR => return Err(io::Error::from_raw_os_error(errno_of(p))),
                SOCK_DIAG_BY_FAMILY if p.len() >= 4 + SOCKID => {
                    // inet_diag_msg: family, state, timer, retrans, then the id
                    let id: [u8; SOCKID] = p[4..4 + SOCKID].try_into().unwrap();
                    let dport = u16::from_be_bytes([id[2], id[3]]);
                    let dst = Ipv4Addr::new(id[20], id[21], id[22], id[23]);
                    // the cookie: two u32 in host order, the low one first
                    let low = u32::from_ne_bytes(id[40..44].try_into().unwrap());
                    let high = u32::from_ne_bytes(id[44..48].try_into().unwrap());
                    let cookie = u64::from(high) << 32 | u64::from(low);
                    if targets.contains(&(cookie, SocketAddrV4::new(dst, dport))) {
                        ids.push(id);
                    }
                }
                _ => {}
            }
        }
    }
    let mut closed = 0;
    for (i, id) in ids.iter().enumerate() {
        send(&fd, &request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, 2 + i as u32, proto, id))?;
        let n = recv(&fd, &mut buf)?;
        for (kind, p) in messages(&buf[..n]) {
            if kind == NLMSG_ERROR {
                match errno_of(p) {
                    0 => closed += 1,
                    libc::ENOENT => {} // closed meanwhile
                    e => return Err(io::Error::from_raw_os_error(e)),
                }
            }
        }
    }
    Ok(closed)
}

/// Close the sockets of protocol `proto` (IPPROTO_UDP, IPPROTO_TCP) that
/// are one of `targets` (socket cookie and peer), in the network namespace
/// at `netns` (None: the caller's), with one listing of the namespace's
/// sockets; how many were closed.
pub fn destroy_sockets(netns: Option<&Path>, proto: u8, targets: &[(u64, SocketAddrV4)]) -> io::Result<usize> {
    let netns = netns.map(Path::to_path_buf);
    let targets = targets.to_vec();
    std::thread::spawn(move || {
        if let Some(p) = &netns {
            let f = std::fs::File::open(p)?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        }
        destroy_here(proto, &targets)
    })
    .join()
    .map_err(|_| io::Error::other("sock_diag thread panicked"))?
}
