//! Which nodes expose a service (Cilium's selective service node exposure):
//! `service.cilium.io/node: VALUE` (the node's label `service.cilium.io/node`
//! equals VALUE) or `service.cilium.io/node-selector: SELECTOR` (a
//! Kubernetes label selector string, matched against the node's labels; it
//! wins over the other). Without either, every node exposes the service.
use std::collections::BTreeMap;

/// The node label `service.cilium.io/node` is compared with.
pub const LABEL_SERVICE_NODE: &str = "service.cilium.io/node";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A parsed label selector string (`a=b, c!=d, e in (f, g), h notin (i), j, !k`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Vec<(String, Op)>);

impl LabelSelector {
    /// Parse Kubernetes' label selector syntax (`labels.Parse`); an error
    /// names what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_terms(s)? {
            let term = term.trim();
            if term.is_empty() {
                return Err("an empty requirement".into());
            }
            let key_ok = |k: &str| crate::labels::validate_key(k).map(|_| k.to_string());
            let values = |v: &str| -> Result<Vec<String>, String> {
                let inner = v
                    .trim()
                    .strip_prefix('(')
                    .and_then(|v| v.strip_suffix(')'))
                    .ok_or_else(|| format!("{v:?}: a set of values must be in parentheses"))?;
                inner
                    .split(',')
                    .map(|x| {
                        let x = x.trim();
                        crate::labels::validate_value(x).map(|_| x.to_string())
                    })
                    .collect()
            };
            let (key, op) = if let Some(k) = term.strip_prefix('!') {
                (key_ok(k.trim())?, Op::DoesNotExist)
            } else if let Some((k, v)) = term.split_once("!=") {
                (key_ok(k.trim())?, Op::NotEq(value(v)?))
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (key_ok(k.trim())?, Op::Eq(value(v)?))
            } else if let Some((k, v)) = term.split_once(" notin ") {
                (key_ok(k.trim())?, Op::NotIn(values(v)?))
            } else if let Some((k, v)) = term.split_once(" in ") {
                (key_ok(k.trim())?, Op::In(values(v)?))
            } else {
                (key_ok(term)?, Op::Exists)
            };
            reqs.push((key, op));
        }
        Ok(Self(reqs))
    }

    /// Do `labels` satisfy every requirement?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, op)| {
            let v = labels.get(k);
            match op {
                Op::Eq(x) => v == Some(x),
                Op::NotEq(x) => v != Some(x),
                Op::In(xs) => v.is_some_and(|v| xs.contains(v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    crate::labels::validate_value(v)?;
    Ok(v.to_string())
}

/// The comma-separated requirements, commas inside parentheses kept.
fn split_terms(s: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    out.push(&s[start..]);
    Ok(out)
}

/// Is a service with these exposure annotations exposed on a node with
/// `labels`? The selector wins over the node value.
pub fn exposed(node: Option<&str>, selector: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
    match (selector, node) {
        // validated when the service was parsed
        (Some(s), _) => LabelSelector::parse(s).is_ok_and(|s| s.matches(labels)),
        (None, Some(v)) => labels.get(LABEL_SERVICE_NODE).map(String::as_str) == Some(v),
        (None, None) => true,
    }
}
