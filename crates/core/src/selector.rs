//! Label selectors (Kubernetes `matchLabels` / `matchExpressions`) evaluated
//! against identity label sets.
use crate::labels::LabelSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Requirement {
    /// `key`, or `source:key` to pin the label source (`any:` = any source)
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// A conjunction of requirements; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Selector {
    pub reqs: Vec<Requirement>,
}

fn split_source(key: &str) -> (Option<&str>, &str) {
    match key.split_once(':') {
        Some((src, k)) if !src.is_empty() && !src.contains(['.', '/']) => (if src == "any" { None } else { Some(src) }, k),
        _ => (None, key),
    }
}

fn lookup<'a>(labels: &'a LabelSet, key: &str) -> Option<&'a str> {
    let (src, k) = split_source(key);
    labels
        .iter()
        .find(|l| l.key == k && src.is_none_or(|s| s == l.source))
        .map(|l| l.value.as_str())
}

impl Selector {
    pub fn all() -> Self {
        Self::default()
    }

    pub fn from_match_labels(m: &BTreeMap<String, String>) -> Self {
        Self {
            reqs: m
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    op: Op::In,
                    values: vec![v.clone()],
                })
                .collect(),
        }
    }

    pub fn with(mut self, r: Requirement) -> Self {
        self.reqs.push(r);
        self.reqs.sort();
        self.reqs.dedup();
        self
    }

    pub fn eq(key: &str, value: &str) -> Requirement {
        Requirement {
            key: key.into(),
            op: Op::In,
            values: vec![value.into()],
        }
    }

    pub fn mentions(&self, key: &str) -> bool {
        self.reqs.iter().any(|r| split_source(&r.key).1 == key)
    }

    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.reqs.iter().all(|r| {
            let v = lookup(labels, &r.key);
            match r.op {
                Op::In => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::NotIn => v.is_none_or(|v| !r.values.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reqs.is_empty() {
            return f.write_str("{}");
        }
        let parts: Vec<String> = self
            .reqs
            .iter()
            .map(|r| match r.op {
                Op::In if r.values.len() == 1 => format!("{}={}", r.key, r.values[0]),
                Op::In => format!("{} in ({})", r.key, r.values.join(",")),
                Op::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
            })
            .collect();
        write!(f, "{{{}}}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::parse_list;

    #[test]
    fn matching() {
        let l = parse_list("app=web,tier=fe,k8s:io.kubernetes.pod.namespace=prod", "k8s").unwrap();
        assert!(Selector::all().matches(&l));
        assert!(Selector::all().with(Selector::eq("app", "web")).matches(&l));
        assert!(Selector::all().with(Selector::eq("k8s:app", "web")).matches(&l));
        assert!(Selector::all().with(Selector::eq("any:app", "web")).matches(&l));
        assert!(!Selector::all().with(Selector::eq("container:app", "web")).matches(&l));
        assert!(!Selector::all().with(Selector::eq("app", "db")).matches(&l));
        let ex = |op, vals: &[&str]| Requirement {
            key: "tier".into(),
            op,
            values: vals.iter().map(|s| s.to_string()).collect(),
        };
        assert!(Selector::all().with(ex(Op::In, &["fe", "be"])).matches(&l));
        assert!(!Selector::all().with(ex(Op::NotIn, &["fe"])).matches(&l));
        assert!(Selector::all().with(ex(Op::Exists, &[])).matches(&l));
        assert!(!Selector::all().with(ex(Op::DoesNotExist, &[])).matches(&l));
        assert!(Selector::all()
            .with(Requirement {
                key: "zone".into(),
                op: Op::NotIn,
                values: vec!["a".into()]
            })
            .matches(&l));
        assert!(Selector::all()
            .with(Selector::eq("io.kubernetes.pod.namespace", "prod"))
            .mentions("io.kubernetes.pod.namespace"));
    }
}
