//! Labels in Cilium's `source:key=value` form.
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    pub source: String,
    pub key: String,
    pub value: String,
}

impl Label {
    pub fn new(source: &str, key: &str, value: &str) -> Self {
        Self {
            source: source.into(),
            key: key.into(),
            value: value.into(),
        }
    }

    /// Parse `[source:]key[=value]`; the source defaults to `default_source`.
    /// A source is only recognised when the part before the first `:` has no
    /// `=` or `/` (label keys may contain `/`).
    pub fn parse(s: &str, default_source: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty label".into());
        }
        let (source, rest) = match s.split_once(':') {
            Some((src, rest)) if !src.is_empty() && !src.contains(['=', '/', '.']) => (src, rest),
            _ => (default_source, s),
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        if source != "reserved" && source != "cidr" {
            validate_key(key).map_err(|e| format!("label {}: {e}", quote(s)))?;
            validate_value(value).map_err(|e| format!("label {}: {e}", quote(s)))?;
        } else if key.is_empty() {
            return Err(format!("label {} has an empty key", quote(s)));
        }
        Ok(Self::new(source, key, value))
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.source, self.key)
        } else {
            write!(f, "{}:{}={}", self.source, self.key, self.value)
        }
    }
}

/// `{:?}` of a value the user gave, cut to 64 characters: an error never
/// repeats a huge value whole.
pub fn quote(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &s[..end], s.len())
}

fn name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 label (names of namespaces, services, ports; the one rule for
/// namespace names in policies, CNI_ARGS and the agent's API): 1..63 lowercase
/// letters, digits and '-', starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    !s.contains('.') && is_dns_subdomain(s) && s.len() <= 63
}

/// A DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253,
/// starting and ending with a letter or digit, no empty label.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// A label key as Kubernetes accepts it (a qualified name): an optional
/// DNS-subdomain prefix and `/`, then a name of 1..63 characters
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
pub fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Err(format!(
                "key {}: the prefix {} must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)",
                quote(key),
                quote(p)
            ));
        }
    }
    if !name_part_ok(name) {
        return Err(format!(
            "key {}: the name part must be 1..63 characters, letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            quote(key)
        ));
    }
    Ok(())
}

/// A label value as Kubernetes accepts it: empty, or at most 63 characters
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
pub fn validate_value(v: &str) -> Result<(), String> {
    if v.is_empty() || name_part_ok(v) {
        return Ok(());
    }
    Err(format!(
        "value {}: must be empty or at most 63 characters, letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        quote(v)
    ))
}

/// A sorted set of labels; its string form is the identity key.
pub type LabelSet = BTreeSet<Label>;

pub fn labels_key(set: &LabelSet) -> String {
    set.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(";")
}

/// Parse a comma-separated `k=v,k2=v2` list (as given on command lines).
pub fn parse_list(s: &str, default_source: &str) -> Result<LabelSet, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| Label::parse(p, default_source))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_follow_kubernetes() {
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "a_b.c-d",
            "x/y",
            "A9",
            "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name",
        ] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        let long63 = "a".repeat(63);
        assert!(validate_key(&long63).is_ok());
        for bad in [
            "",
            "-app",
            "app-",
            "a b",
            "a/",
            "/a",
            "Upper.Case/x",
            "a..b/c",
            "ä",
            "a/b/c",
            &"a".repeat(64),
            &format!("{}/x", "a".repeat(254)),
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        for ok in ["", "web", "v1.2_3-x", &long63] {
            assert!(validate_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-web", "web-", "a b", "a/b", &"a".repeat(64)] {
            assert!(validate_value(bad).is_err(), "{bad:?}");
        }
        assert!(Label::parse("app=-bad", "k8s").unwrap_err().contains("value \"-bad\""));
        assert!(Label::parse("bad key=x", "k8s").is_err());
        assert!(parse_list("app=web,tier=a b", "k8s").is_err());
        let e = Label::parse(&format!("app={}", "v".repeat(100_000)), "k8s").unwrap_err();
        assert!(e.len() < 400, "a huge value is not repeated whole: {} bytes", e.len());
    }

    #[test]
    fn parse_forms() {
        assert_eq!(Label::parse("app=web", "k8s").unwrap(), Label::new("k8s", "app", "web"));
        assert_eq!(Label::parse("reserved:host", "k8s").unwrap(), Label::new("reserved", "host", ""));
        assert_eq!(
            Label::parse("app.kubernetes.io/name=x", "k8s").unwrap(),
            Label::new("k8s", "app.kubernetes.io/name", "x")
        );
        assert_eq!(
            Label::parse("k8s:io.kubernetes.pod.namespace=default", "x").unwrap().to_string(),
            "k8s:io.kubernetes.pod.namespace=default"
        );
        assert!(Label::parse("=v", "k8s").is_err());
        assert_eq!(parse_list("a=1, b=2", "k8s").unwrap().len(), 2);
    }
}

#[cfg(test)]
mod dns_label_tests {
    #[test]
    fn namespace_names_are_dns_labels() {
        for ok in ["default", "kube-system", "a", "team-1", &"a".repeat(63)] {
            assert!(super::is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!super::is_dns_label(bad), "{bad}");
        }
    }
}
