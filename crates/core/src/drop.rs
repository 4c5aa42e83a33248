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
    (155, "CT: Map insertion failed"),
    (158, "Service backend not found"),
    (160, "No tunnel/encapsulation endpoint (datapath BUG!)"),
    (165, "No configuration available to perform policy decision"),
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
    #[test]
    fn names() {
        assert_eq!(reason_name(133), "Policy denied");
        assert_eq!(reason_name(181), "Policy denied by denylist");
        assert_eq!(reason_name(0), "Forwarded");
        assert_eq!(reason_name(250), "Unknown reason 250");
        assert_eq!(direction_name(2), "EGRESS");
    }
}
