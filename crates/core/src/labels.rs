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
        if key.is_empty() {
            return Err(format!("label {s:?} has an empty key"));
        }
        if key.len() > 317 || value.len() > 63 {
            return Err(format!("label {s:?} is too long (key ≤ 317, value ≤ 63 characters)"));
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
