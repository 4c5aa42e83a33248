//! Hand-built frames for BPF_PROG_TEST_RUN (packet tests and the per-packet benchmark).
use std::net::Ipv4Addr;

/// Internet checksum of `data` (0 when a header with its checksum field is valid).
pub fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Ethernet + IPv4 + UDP (12345 -> 53) with a short payload; valid IP checksum.
pub fn udp_packet(dmac: [u8; 6], smac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&dmac);
    p.extend_from_slice(&smac);
    p.extend_from_slice(&[0x08, 0x00]);
    let payload = b"hello seta";
    let total = 20 + 8 + payload.len();
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, ttl, 17, 0, 0];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    let ulen = 8 + payload.len();
    p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, (ulen >> 8) as u8, ulen as u8, 0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Broadcast ARP request "who has `tip`, tell `sip`", padded to 60 bytes.
pub fn arp_request(smac: [u8; 6], sip: Ipv4Addr, tip: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0xff; 6];
    p.extend_from_slice(&smac);
    p.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    p.extend_from_slice(&smac);
    p.extend_from_slice(&sip.octets());
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&tip.octets());
    p.resize(60, 0);
    p
}

/// Ethernet + IPv4 + a 20-byte TCP header with `flags` (FIN=1 SYN=2 RST=4 ACK=16).
pub fn tcp_packet(smac: [u8; 6], dmac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    l4_packet(smac, dmac, src, dst, 6, &{
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t
    })
}

/// Ethernet + IPv4 + ICMP echo request/reply (type 8 / 0) with `id`.
pub fn icmp_echo(smac: [u8; 6], dmac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8, id: u16) -> Vec<u8> {
    let mut h = vec![icmp_type, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
    h.extend_from_slice(b"pingpong");
    let c = csum(&h);
    h[2..4].copy_from_slice(&c.to_be_bytes());
    l4_packet(smac, dmac, src, dst, 1, &h)
}

/// An IPv4 packet of protocol `proto` carrying `l4`, header checksum set.
pub fn l4_packet(smac: [u8; 6], dmac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&dmac);
    p.extend_from_slice(&smac);
    p.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + l4.len();
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, proto, 0, 0];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&ip);
    p.extend_from_slice(l4);
    p
}

/// CRC32c (Castagnoli), as SCTP's checksum (RFC 9260, appendix B).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = (c >> 1) ^ (0x82f6_3b78 & (c & 1).wrapping_neg());
        }
    }
    !c
}

/// Is the SCTP checksum of the SCTP packet `l4` right? (computed with the
/// field zeroed, stored little-endian)
pub fn sctp_crc_ok(l4: &[u8]) -> bool {
    let mut m = l4.to_vec();
    m[8..12].fill(0);
    l4[8..12] == crc32c(&m).to_le_bytes()
}

/// An SCTP packet (`sport` -> `dport`) with one DATA chunk of `len` payload
/// bytes and its CRC32c: what a raw IPPROTO_SCTP socket sends.
pub fn sctp_data(sport: u16, dport: u16, len: usize) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&0x5e7a_0001u32.to_be_bytes()); // verification tag
    s.extend_from_slice(&[0; 4]);
    // DATA: type 0, flags B|E, length, TSN, stream 0, sequence 0, PPID 0
    let clen = 16 + len;
    s.extend_from_slice(&[0, 3, (clen >> 8) as u8, clen as u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    s.extend((0..len).map(|i| (i * 7) as u8));
    s.resize(s.len().next_multiple_of(4), 0);
    let c = crc32c(&s);
    s[8..12].copy_from_slice(&c.to_le_bytes());
    s
}

/// Ethernet + IPv4 + `sctp_data`; valid IP header checksum.
pub fn sctp_packet(smac: [u8; 6], dmac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, len: usize) -> Vec<u8> {
    l4_packet(smac, dmac, src, dst, 132, &sctp_data(sport, dport, len))
}

/// Service maps with one frontend per (protocol, address, port, LB_F_*
/// flags, backend address, backend port), one backend each (rev-NAT index
/// and backend id: its place in the list, from 1).
pub fn one_backend_services(svcs: &[(u8, Ipv4Addr, u16, u8, Ipv4Addr, u16)]) -> crate::maps::LbState {
    use seta_abi::{Lb4Backend, Lb4Key, Lb4ReverseNat, Lb4Service};
    let mut st = crate::maps::LbState::default();
    for (i, &(proto, vip, port, flags, be, bport)) in svcs.iter().enumerate() {
        let (rid, id) = (i as u16 + 1, i as u32 + 1);
        let key = |slot: u16| Lb4Key {
            address: vip.octets(),
            dport: port.to_be_bytes(),
            backend_slot: slot,
            proto,
            ..Default::default()
        };
        st.services.insert(
            key(0),
            Lb4Service {
                count: 1,
                rev_nat_index: rid,
                flags,
                ..Default::default()
            },
        );
        st.services.insert(
            key(1),
            Lb4Service {
                backend_id: id,
                ..Default::default()
            },
        );
        st.revnat.insert(
            rid,
            Lb4ReverseNat {
                address: vip.octets(),
                port: port.to_be_bytes(),
                pad: 0,
            },
        );
        st.backends.insert(
            id,
            Lb4Backend {
                address: be.octets(),
                port: bport.to_be_bytes(),
                proto,
                ..Default::default()
            },
        );
    }
    st
}
