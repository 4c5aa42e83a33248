//! Kubernetes label selectors in their string form (`a=b, c!=d, e in (f, g),
//! h notin (i), j, !k`; comma = AND): read strictly, as the API server reads
//! them (a service's `service.cilium.io/node-selector`), or leniently, as
//! Hubble's `--label` filters are (keys may carry a label source, `k8s:app`).
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A parsed label selector string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Vec<(String, Op)>);

impl LabelSelector {
    /// Read as written: empty requirements are skipped, keys and values are
    /// not checked, a set's parentheses are optional.
    pub fn lenient(s: &str) -> Self {
        Self(
            split_requirements(s)
                .into_iter()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| {
                    let (k, op, _) = requirement(r);
                    (k.to_string(), op)
                })
                .collect(),
        )
    }

    /// Read as Kubernetes' `labels.Parse` does: balanced parentheses, no
    /// empty requirement, valid keys and values, sets in parentheses; an
    /// error names what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut depth = 0i32;
        for c in s.chars() {
            depth += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            if !(0..=1).contains(&depth) {
                return Err("unbalanced parentheses".into());
            }
        }
        if depth != 0 {
            return Err("unbalanced parentheses".into());
        }
        let mut reqs = Vec::new();
        for r in split_requirements(s).into_iter().map(str::trim) {
            if r.is_empty() {
                return Err("an empty requirement".into());
            }
            let (k, op, set) = requirement(r);
            crate::labels::validate_key(k)?;
            if let Some(set) = set.filter(|v| !(v.starts_with('(') && v.ends_with(')'))) {
                return Err(format!("{set:?}: a set of values must be in parentheses"));
            }
            match &op {
                Op::Eq(v) | Op::NotEq(v) => crate::labels::validate_value(v)?,
                Op::In(vs) | Op::NotIn(vs) => vs.iter().try_for_each(|v| crate::labels::validate_value(v))?,
                Op::Exists | Op::DoesNotExist => {}
            }
            reqs.push((k.to_string(), op));
        }
        Ok(Self(reqs))
    }

    /// Does every requirement hold, `value_of` giving a key's value?
    pub fn matches_by<'a>(&self, value_of: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|(k, op)| {
            let v = value_of(k);
            match op {
                Op::Eq(x) => v == Some(x.as_str()),
                Op::NotEq(x) => v != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }

    /// Do `labels` satisfy every requirement?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_by(|k| labels.get(k).map(String::as_str))
    }
}

/// One requirement (trimmed): its key, its operator, and a set's raw text.
fn requirement(r: &str) -> (&str, Op, Option<&str>) {
    let set = |v: &str| -> Vec<String> {
        v.trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(|x| x.trim().to_string())
            .collect()
    };
    if let Some((k, v)) = r.split_once(" notin ") {
        return (k.trim(), Op::NotIn(set(v)), Some(v.trim()));
    }
    if let Some((k, v)) = r.split_once(" in ") {
        return (k.trim(), Op::In(set(v)), Some(v.trim()));
    }
    if let Some((k, v)) = r.split_once("!=") {
        return (k.trim(), Op::NotEq(v.trim().to_string()), None);
    }
    if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
        return (k.trim(), Op::Eq(v.trim().to_string()), None);
    }
    match r.strip_prefix('!') {
        Some(k) => (k.trim(), Op::DoesNotExist, None),
        None => (r, Op::Exists, None),
    }
}

/// Requirements split on commas outside parentheses.
fn split_requirements(s: &str) -> Vec<&str> {
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
    }
    out.push(&s[start..]);
    out
}
