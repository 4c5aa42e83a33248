//! Which labels are security-relevant (part of the identity). Cilium's default
//! prefixes; the longest matching prefix decides; a user include list turns
//! the filter into an allowlist.
use crate::labels::{Label, LabelSet};

#[derive(Debug, Clone)]
pub struct LabelFilter {
    /// (prefix, include?) — prefixes are matched against `key` (or `source:key`)
    rules: Vec<(String, bool)>,
    allowlist: bool,
}

const DEFAULT_INCLUDE: &[&str] = &[
    "io.kubernetes.pod.namespace",
    "io.cilium.k8s.namespace.labels",
    "app.kubernetes.io",
    "io.cilium.k8s.policy.cluster",
    "io.cilium.k8s.policy.serviceaccount",
];
const DEFAULT_EXCLUDE: &[&str] = &[
    "io.kubernetes",
    "kubernetes.io",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/job-completion-index",
    "batch.kubernetes.io/controller-uid",
    "beta.kubernetes.io",
    "k8s.io",
    "pod-template-generation",
    "pod-template-hash",
    "controller-revision-hash",
    "controller-uid",
    "annotation",
    "etcd_node",
    "topology.kubernetes.io",
];

impl Default for LabelFilter {
    fn default() -> Self {
        let mut rules: Vec<(String, bool)> = DEFAULT_INCLUDE.iter().map(|p| (p.to_string(), true)).collect();
        rules.extend(DEFAULT_EXCLUDE.iter().map(|p| (p.to_string(), false)));
        Self { rules, allowlist: false }
    }
}

impl LabelFilter {
    /// Build from `--label-prefix` style entries: `prefix` includes, `!prefix`
    /// excludes. Any include makes it an allowlist (only included labels count).
    pub fn from_prefixes(entries: &[String]) -> Result<Self, String> {
        let mut f = Self::default();
        let mut user_include = false;
        for e in entries {
            let (p, inc) = match e.strip_prefix('!') {
                Some(p) => (p, false),
                None => (e.as_str(), true),
            };
            if p.is_empty() {
                return Err(format!("label prefix {e:?} is empty"));
            }
            user_include |= inc;
            f.rules.retain(|(q, _)| q != p);
            f.rules.push((p.to_string(), inc));
        }
        f.allowlist = user_include;
        if user_include {
            // the defaults' includes are no longer implied, except the namespace
            f.rules
                .retain(|(p, inc)| !*inc || entries.iter().any(|e| e == p) || p == "io.kubernetes.pod.namespace");
        }
        Ok(f)
    }

    /// Is `l` part of the identity?
    pub fn relevant(&self, l: &Label) -> bool {
        if l.source == "reserved" || l.source == "cidr" {
            return true;
        }
        let full = format!("{}:{}", l.source, l.key);
        let best = self
            .rules
            .iter()
            .filter(|(p, _)| l.key.starts_with(p.as_str()) || full.starts_with(p.as_str()) || l.key.contains(&format!(".{p}")))
            .max_by_key(|(p, _)| p.len());
        match best {
            Some((_, inc)) => *inc,
            None => !self.allowlist,
        }
    }

    pub fn filter(&self, labels: &LabelSet) -> LabelSet {
        labels.iter().filter(|l| self.relevant(l)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> Label {
        Label::parse(s, "k8s").unwrap()
    }

    #[test]
    fn defaults_keep_app_labels_and_drop_noise() {
        let f = LabelFilter::default();
        assert!(f.relevant(&l("app=web")));
        assert!(f.relevant(&l("io.kubernetes.pod.namespace=default")));
        assert!(f.relevant(&l("io.cilium.k8s.namespace.labels.team=a")));
        assert!(f.relevant(&l("app.kubernetes.io/name=x")));
        assert!(!f.relevant(&l("pod-template-hash=abc")));
        assert!(!f.relevant(&l("controller-revision-hash=1")));
        assert!(!f.relevant(&l("io.kubernetes.container.name=x")));
        assert!(!f.relevant(&l("topology.kubernetes.io/zone=a")));
        assert!(!f.relevant(&l("statefulset.kubernetes.io/pod-name=w-0")));
        assert!(f.relevant(&l("reserved:host")));
    }

    #[test]
    fn longest_prefix_wins_and_user_includes_make_an_allowlist() {
        let f = LabelFilter::from_prefixes(&["!app".into()]).unwrap();
        assert!(!f.relevant(&l("app=web")));
        assert!(f.relevant(&l("app.kubernetes.io/name=x")), "longer include beats shorter exclude");
        assert!(f.relevant(&l("tier=fe")), "not an allowlist");
        let f = LabelFilter::from_prefixes(&["tier".into()]).unwrap();
        assert!(f.relevant(&l("tier=fe")));
        assert!(!f.relevant(&l("app=web")), "allowlist: only included labels");
        assert!(f.relevant(&l("io.kubernetes.pod.namespace=x")));
        assert!(LabelFilter::from_prefixes(&["!".into()]).is_err());
    }
}
