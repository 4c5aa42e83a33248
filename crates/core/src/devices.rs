//! Which of a node's interfaces are native devices (Cilium's `devices`):
//! each pattern is an interface name, or a prefix followed by `+` (`eth+`
//! matches eth0, eth1, …), as Cilium's. The agent's own devices (`seta_*`),
//! pods' veths (`lxc*`) and loopback are never native devices, whatever
//! the pattern.

/// A `--devices` entry: 1 to 15 characters, no '/' or blanks; `+` only at
/// the end, after at least one character. The reason when it is not.
pub fn check_pattern(p: &str) -> Result<(), String> {
    let name = p.strip_suffix('+').unwrap_or(p);
    if name.is_empty()
        || name.len() > 15
        || name.contains(['/', '+'])
        || name.chars().any(char::is_whitespace)
        || name == "."
        || name == ".."
    {
        return Err(format!(
            "{p:?}: not an interface name (1 to 15 characters, no '/' or blanks) or a name prefix with '+' (eth+)"
        ));
    }
    Ok(())
}

/// Whether `name` is one of seta's own devices, a pod's veth or loopback.
pub fn is_ours(name: &str) -> bool {
    name == "lo" || name.starts_with("lxc") || name.starts_with("seta_")
}

/// Whether `pattern` selects `name`.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// The interfaces among `names` the patterns select, but `except` (the
/// node IP's device, always native) and the agent's own, in name order.
pub fn selected<'a>(patterns: &[String], names: impl IntoIterator<Item = &'a str>, except: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|n| Some(*n) != except && !is_ours(n) && patterns.iter().any(|p| matches(p, n)))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_prefixes_select_native_devices() {
        let pats: Vec<String> = ["eth+", "bond0"].map(String::from).to_vec();
        let links = ["lo", "eth0", "eth1", "ethx9", "bond0", "bond1", "lxc12ab", "seta_host", "ul0"];
        assert_eq!(selected(&pats, links, None), ["bond0", "eth0", "eth1", "ethx9"]);
        assert_eq!(
            selected(&pats, links, Some("eth0")),
            ["bond0", "eth1", "ethx9"],
            "the node IP's device apart"
        );
        let all: Vec<String> = vec!["l+".into(), "s+".into()];
        assert!(selected(&all, links, None).is_empty(), "never loopback, pods' veths or seta's own");
        assert!(matches("eth0", "eth0") && !matches("eth0", "eth00") && matches("eth+", "eth") && !matches("eth+", "et"));
    }

    #[test]
    fn patterns_are_names_or_prefixes() {
        for ok in ["eth0", "eth+", "e+", "bond0.100", "a23456789012345", "a23456789012345+"] {
            assert!(check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["+", "eth+0", "e++", "a/b", "a b", "a234567890123456", ".", "..", ""] {
            let e = check_pattern(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
