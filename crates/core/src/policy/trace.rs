//! `seta policy trace`: would a connection be allowed, and which rule decides?
//! It uses the same resolution and lookup that program the datapath's maps.
use super::resolve::{entries_for_identity, lookup_peer, wildcard_entries, Decision, EndpointPolicy, IdentityInfo};
use super::Rule;
use serde::{Deserialize, Serialize};

/// One side of a traced connection.
#[derive(Debug, Clone)]
pub struct Side {
    pub description: String,
    pub identity: IdentityInfo,
    /// the per-IP identity when the side is a pod IP under a Kubernetes ipBlock
    pub ip_identity: Option<IdentityInfo>,
    /// the endpoint's policy when the side is a local endpoint (or labels that
    /// describe one); None for the host, the world, CIDRs
    pub policy: Option<EndpointPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionVerdict {
    /// "egress of <src>" / "ingress of <dst>"
    pub direction: String,
    pub enforced: bool,
    pub allowed: bool,
    /// drop reason code when denied (133 or 181)
    pub drop_code: Option<u8>,
    pub decided_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceResult {
    pub source: String,
    pub source_identity: u32,
    pub destination: String,
    pub destination_identity: u32,
    pub protocol: String,
    pub port: u16,
    pub verdicts: Vec<DirectionVerdict>,
    pub allowed: bool,
}

fn explain(d: Decision, enforced: bool, rules: &[Rule], remote: u32) -> String {
    match d.cookie() {
        Some(0 | super::resolve::COOKIE_NOT_ENFORCED) if !enforced => {
            "no policy selects the endpoint in this direction: default allow".into()
        }
        Some(0) if remote == crate::identity::ID_HOST => "the host is always allowed ingress".into(),
        Some(0) => "built-in entry".into(),
        Some(c) => rules
            .get(c as usize - 1)
            .map(|r| r.describe())
            .unwrap_or_else(|| format!("rule #{c}")),
        None => "no rule allows it (default deny)".into(),
    }
}

fn verdict(p: &EndpointPolicy, remote: &Side, egress: bool, proto: u8, port: u16, rules: &[Rule], what: String) -> DirectionVerdict {
    let mut state = wildcard_entries(p);
    state.extend(entries_for_identity(p, &remote.identity));
    if let Some(ipid) = &remote.ip_identity {
        state.extend(entries_for_identity(p, ipid));
    }
    let d = lookup_peer(
        &state,
        remote.identity.id,
        remote.ip_identity.as_ref().map(|i| i.id),
        egress,
        proto,
        port,
    );
    let remote = &remote.identity;
    let enforced = if egress { p.egress_enforced } else { p.ingress_enforced };
    DirectionVerdict {
        direction: what,
        enforced,
        allowed: d.allowed(),
        drop_code: d.drop_code(),
        decided_by: explain(d, enforced, rules, remote.id),
    }
}

pub fn trace(rules: &[Rule], src: &Side, dst: &Side, proto: u8, port: u16) -> TraceResult {
    let mut verdicts = Vec::new();
    if let Some(p) = &src.policy {
        verdicts.push(verdict(p, dst, true, proto, port, rules, format!("egress of {}", src.description)));
    }
    if let Some(p) = &dst.policy {
        verdicts.push(verdict(
            p,
            src,
            false,
            proto,
            port,
            rules,
            format!("ingress of {}", dst.description),
        ));
    }
    TraceResult {
        source: src.description.clone(),
        source_identity: src.identity.id,
        destination: dst.description.clone(),
        destination_identity: dst.identity.id,
        protocol: super::proto_name(proto).into(),
        port,
        allowed: verdicts.iter().all(|v| v.allowed),
        verdicts,
    }
}
