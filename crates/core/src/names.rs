//! Naming rules shared by the agent, the CNI plugin, the CLI and the lab.
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Host-side veth name: `lxc` + the first 12 hex chars of sha256("<container id>:<ifname>"),
/// the same rule as Cilium's connector.
pub fn lxc_name(container_id: &str, ifname: &str) -> String {
    let digest = Sha256::digest(format!("{container_id}:{ifname}").as_bytes());
    format!("lxc{}", &hex::encode(digest)[..12])
}

pub const HOST_DEV: &str = "seta_host";
pub const NET_DEV: &str = "seta_net";

/// Default runtime directory of a node's agent (socket, delete queue, CNI conf in the lab).
pub fn run_dir(node: &str) -> PathBuf {
    PathBuf::from("/run/seta").join(node)
}

pub fn socket_path(node: &str) -> PathBuf {
    run_dir(node).join("agent.sock")
}

pub fn state_dir(node: &str) -> PathBuf {
    PathBuf::from("/var/lib/seta").join(node)
}

/// Versioned pin directory: `<bpffs>/seta/<node>/v<ABI>`.
pub fn pin_dir(bpffs: &std::path::Path, node: &str, abi: u32) -> PathBuf {
    bpffs.join("seta").join(node).join(format!("v{abi}"))
}

/// Valid node names make safe path components and stay short enough for pins.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!("node name {name:?} must be 1..63 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') || name.starts_with('.') {
        return Err(format!("node name {name:?} may only contain letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lxc_name_is_stable_and_short() {
        let a = lxc_name("abc", "eth0");
        assert_eq!(a, lxc_name("abc", "eth0"));
        assert_ne!(a, lxc_name("abc", "eth1"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("lxc"));
        // sha256("abc:eth0") starts with these 12 hex chars
        let d = hex::encode(Sha256::digest(b"abc:eth0"));
        assert_eq!(&a[3..], &d[..12]);
    }

    #[test]
    fn node_names() {
        assert!(validate_node_name("lab-node1").is_ok());
        assert!(validate_node_name("../x").is_err());
        assert!(validate_node_name("").is_err());
    }
}
