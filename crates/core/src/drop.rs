//! Cilium's drop reason codes and names (`bpf/lib/drop_reasons.h`, `pkg/monitor/api/drop.go`).

pub const FORWARDED: u8 = 0;

const REASONS: &[(u8, &str)] = &[
    (0, "Forwarded"),
    (3, "Plaintext"),
    (4, "Decrypt"),
    (5, "LB, sock cgroup: No backend slot entry found"),
    (6, "No backend"),
    (9, "Fragmented packet"),
    (132, "Invalid source ip"),
    (133, "Policy denied"),
    (134, "Invalid packet"),
    (135, "CT: Truncated or invalid header"),
    (136, "Fragmentation needed"),
    (137, "CT: Unknown L4 protocol"),
    (139, "Unsupported L3 protocol"),
    (140, "Missed tail call"),
    (141, "Error writing to packet"),
    (142, "Unknown L4 protocol"),
    (143, "Unknown ICMPv4 code"),
    (144, "Unknown ICMPv4 type"),
    (147, "Error retrieving tunnel key"),
    (150, "Unknown L3 target address"),
    (151, "Stale or unroutable IP"),
    (153, "Error while correcting L3 checksum"),
    (154, "Error while correcting L4 checksum"),
    (155, "CT: Map insertion failed"),
    (158, "Service backend not found"),
    (160, "No tunnel/encapsulation endpoint (datapath BUG!)"),
    (165, "No configuration available to perform policy decision"),
    (167, "No mapping for NAT masquerade"),
    (175, "First logical datagram fragment not found"),
    (177, "Not in source range"),
    (169, "FIB lookup failed"),
    (171, "Invalid identity"),
    (181, "Policy denied by denylist"),
    (183, "Invalid VNI"),
    (189, "Authentication required"),
    (196, "TTL exceeded"),
    (202, "Host datapath not ready"),
    (203, "Endpoint policy program not available"),
];

/// Human name of a metrics/drop reason code, as Cilium prints it.
pub fn reason_name(code: u8) -> String {
    REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("Unknown reason {code}"))
}

pub fn direction_name(dir: u8) -> &'static str {
    match dir {
        1 => "INGRESS",
        2 => "EGRESS",
        3 => "SERVICE",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bpf/include/drop.h` is the one list of codes the datapath emits:
    /// every one has its Cilium name here.
    #[test]
    fn every_datapath_code_has_a_name() {
        let header = include_str!("../../../bpf/include/drop.h");
        let mut codes = Vec::new();
        for l in header.lines() {
            let mut w = l.split_whitespace();
            if let (Some("#define"), Some(name), Some(v)) = (w.next(), w.next(), w.next()) {
                if name.starts_with("DROP_") || name.starts_with("REASON_") {
                    codes.push((name.to_string(), v.parse::<u8>().expect("numeric code")));
                }
            }
        }
        assert!(codes.len() >= 12, "parsed {codes:?}");
        for (name, code) in &codes {
            assert!(
                REASONS.iter().any(|(c, _)| c == code),
                "{name} = {code} in drop.h has no name in seta-core's reason table"
            );
        }
        // spot checks that the names are Cilium's for the code, not just present
        let by = |n: &str| codes.iter().find(|(x, _)| x == n).unwrap().1;
        assert_eq!(reason_name(by("DROP_POLICY")), "Policy denied");
        assert_eq!(reason_name(by("DROP_POLICY_DENY")), "Policy denied by denylist");
        assert_eq!(reason_name(by("DROP_INVALID_SOURCE_IP")), "Invalid source ip");
        assert_eq!(reason_name(by("DROP_TTL_EXCEEDED")), "TTL exceeded");
        assert_eq!(reason_name(by("DROP_EP_NOT_READY")), "Endpoint policy program not available");
    }

    #[test]
    fn names() {
        assert_eq!(reason_name(133), "Policy denied");
        assert_eq!(reason_name(181), "Policy denied by denylist");
        assert_eq!(reason_name(0), "Forwarded");
        assert_eq!(reason_name(250), "Unknown reason 250");
        assert_eq!(direction_name(2), "EGRESS");
    }
}
