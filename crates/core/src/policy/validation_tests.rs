//! What the policy parser accepts and rejects, rule by rule, next to what the
//! Kubernetes API server accepts: `ValidateNetworkPolicy` (networking/v1) for
//! NetworkPolicy, the cilium.io/v2 CRD schema for CNP/CCNP, and the strict
//! decoder for both (duplicate keys, unknown fields, types).
use super::parse::parse_file;

const KNP: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\n";
const CNP: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\n";

/// A KNP with one ingress port entry.
fn knp_port(entry: &str) -> String {
    format!("{KNP}spec:\n  podSelector: {{}}\n  ingress:\n  - ports: [{entry}]\n")
}

/// A CNP with one toPorts port entry.
fn cnp_port(entry: &str) -> String {
    format!("{CNP}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts: [{{ports: [{entry}]}}]\n")
}

fn knp_labels(sel: &str) -> String {
    format!("{KNP}spec:\n  podSelector: {sel}\n")
}

fn cnp_selector(sel: &str) -> String {
    format!("{CNP}spec:\n  endpointSelector: {{}}\n  ingress:\n  - fromEndpoints: [{sel}]\n")
}

fn knp_ipblock(block: &str) -> String {
    format!("{KNP}spec:\n  podSelector: {{}}\n  ingress:\n  - from: [{{ipBlock: {block}}}]\n")
}

/// `Ok` when accepted; the error's "path: message" when rejected.
fn check(yaml: &str) -> Result<(), String> {
    parse_file(yaml).map(|_| ()).map_err(|e| format!("{}: {}", e.path, e.msg))
}

/// Each case: input, and None (the API server accepts it) or Some((field
/// path, words of the reason)) (it rejects it).
fn table(cases: &[(String, Option<(&str, &str)>)]) {
    for (yaml, want) in cases {
        let got = check(yaml);
        match (want, &got) {
            (None, Ok(())) => {}
            (Some((path, why)), Err(e)) => {
                assert!(
                    e.starts_with(&format!("{path}: ")),
                    "wrong field for\n{yaml}\ngot: {e}\nwant path {path}"
                );
                assert!(e.contains(why), "wrong reason for\n{yaml}\ngot: {e}\nwant {why:?}");
            }
            _ => panic!("for\n{yaml}\nwant {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn knp_ports_are_1_to_65535_or_a_port_name() {
    let p = "spec.ingress[0].ports[0]";
    let bad_port = format!("{p}.port");
    let bad_end = format!("{p}.endPort");
    table(&[
        (knp_port("{port: 80}"), None),
        (knp_port("{port: 65535}"), None),
        (knp_port("{port: http}"), None),
        (knp_port("{port: http-8080}"), None),
        (knp_port("{protocol: UDP}"), None),
        (knp_port("{port: null}"), None),
        (knp_port("{port: 8000, endPort: 8100}"), None),
        // the security hole: each of these used to mean "every port"
        (knp_port("{port: 0}"), Some((&bad_port, "not a port number"))),
        (knp_port("{port: \"0\"}"), Some((&bad_port, "not a port name"))),
        (knp_port("{port: \"\"}"), Some((&bad_port, "not a port name"))),
        (knp_port("{port: .nan}"), Some((&bad_port, "not a number"))),
        (knp_port("{port: .inf}"), Some((&bad_port, "not a number"))),
        (knp_port("{port: -.inf}"), Some((&bad_port, "not a number"))),
        (knp_port("{port: 65536}"), Some((&bad_port, "not a port number"))),
        (knp_port("{port: -1}"), Some((&bad_port, "not a port number"))),
        (knp_port("{port: 80.5}"), Some((&bad_port, "not a port number"))),
        (knp_port("{port: \"80\"}"), Some((&bad_port, "without quotes"))),
        (knp_port("{port: \"+80\"}"), Some((&bad_port, "not a port name"))),
        (knp_port("{port: true}"), Some((&bad_port, "not a boolean"))),
        // port names: IANA_SVC_NAME
        (knp_port("{port: -http}"), Some((&bad_port, "not a port name"))),
        (knp_port("{port: http-}"), Some((&bad_port, "not a port name"))),
        (knp_port("{port: ht--tp}"), Some((&bad_port, "not a port name"))),
        (knp_port("{port: HTTP}"), Some((&bad_port, "not a port name"))),
        (knp_port("{port: 1234}"), None),
        (knp_port("{port: abcdefghijklmnop}"), Some((&bad_port, "not a port name"))),
        // endPort
        (knp_port("{port: 80, endPort: 0}"), Some((&bad_end, "not a port number"))),
        (knp_port("{port: 80, endPort: 65536}"), Some((&bad_end, "not a port number"))),
        (knp_port("{port: 80, endPort: .nan}"), Some((&bad_end, "not a number"))),
        (knp_port("{port: 90, endPort: 80}"), Some((&bad_end, "below port 90"))),
        (knp_port("{endPort: 80}"), Some((&bad_end, "needs a port"))),
        (knp_port("{port: http, endPort: 90}"), Some((&bad_end, "named port"))),
        (knp_port("{port: 80, endPort: \"90\"}"), Some((&bad_end, "must be a port number"))),
        (
            knp_port("{port: 80, protocol: ICMP}"),
            Some((&format!("{p}.protocol"), "not TCP, UDP or SCTP")),
        ),
    ]);
}

#[test]
fn cnp_ports_follow_the_crd_pattern() {
    let p = "spec.ingress[0].toPorts[0].ports[0]";
    let bad_port = format!("{p}.port");
    let bad_end = format!("{p}.endPort");
    table(&[
        (cnp_port("{port: \"80\"}"), None),
        (cnp_port("{port: \"0\"}"), None), // Cilium: every port
        (cnp_port("{port: \"65535\", protocol: UDP}"), None),
        (cnp_port("{port: http}"), None),
        (cnp_port("{port: \"8000\", endPort: 8100}"), None),
        (cnp_port("{port: \"80\", endPort: 0}"), None), // 0 = no end
        (cnp_port("{protocol: TCP}"), None),
        (cnp_port("{port: \"+80\"}"), Some((&bad_port, "neither a port number"))),
        (cnp_port("{port: \"-80\"}"), Some((&bad_port, "neither a port number"))),
        (cnp_port("{port: \"\"}"), Some((&bad_port, "neither a port number"))),
        (cnp_port("{port: \" 80\"}"), Some((&bad_port, "neither a port number"))),
        (cnp_port("{port: \"65536\"}"), Some((&bad_port, "not a port"))),
        (cnp_port("{port: \"123456\"}"), Some((&bad_port, "neither a port number"))),
        (cnp_port("{port: 80}"), Some((&bad_port, "must be a string"))),
        (cnp_port("{port: .nan}"), Some((&bad_port, "not a number"))),
        (cnp_port("{port: -http}"), Some((&bad_port, "neither a port number"))),
        (cnp_port("{port: ht--tp}"), Some((&bad_port, "neither a port number"))),
        (cnp_port("{port: \"80\", endPort: 70000}"), Some((&bad_end, "not a port number"))),
        (cnp_port("{port: \"80\", endPort: -1}"), Some((&bad_end, "not a port number"))),
        (cnp_port("{port: \"90\", endPort: 80}"), Some((&bad_end, "below port 90"))),
        (cnp_port("{port: \"80\", endPort: .inf}"), Some((&bad_end, "not a number"))),
    ]);
}

#[test]
fn metadata_is_typed_and_closed() {
    let doc =
        |meta: &str| format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {meta}\nspec: {{podSelector: {{}}}}\n");
    table(&[
        (doc("{name: p, namespace: team-a}"), None),
        (
            doc("{name: p, labels: {app: x}, annotations: {note: \"any text at all\"}, uid: abc, resourceVersion: \"7\"}"),
            None,
        ),
        (
            doc("{name: p, namespace: 123}"),
            Some(("metadata.namespace", "must be a string, not a number")),
        ),
        (
            doc("{name: p, namespace: [a]}"),
            Some(("metadata.namespace", "must be a string, not a list")),
        ),
        (
            doc("{name: p, namespace: Bad_NS}"),
            Some(("metadata.namespace", "not a valid namespace name")),
        ),
        (doc("{name: 5}"), Some(("metadata.name", "must be a string"))),
        (doc("{namespace: x}"), Some(("metadata.name", "is required"))),
        (doc("{name: p, nmespace: x}"), Some(("metadata.\"nmespace\"", "unknown field"))),
        (
            doc("{name: p, labels: {\"bad key\": x}}"),
            Some(("metadata.labels.\"bad key\"", "the name part")),
        ),
        (
            doc("{name: p, labels: {app: -x}}"),
            Some(("metadata.labels.\"app\"", "value \"-x\"")),
        ),
        (doc("[p]"), Some(("metadata", "must be a mapping"))),
        (
            format!("{KNP}spec: {{podSelector: {{}}}}\nstatus: {{}}\nextra: 1\n"),
            Some(("\"extra\"", "unknown field")),
        ),
        (
            format!("{KNP}spec: {{podSelector: {{}}}}\nspecs: []\n"),
            Some(("\"specs\"", "unknown field")),
        ),
    ]);
}

#[test]
fn duplicate_keys_are_errors_not_last_wins() {
    table(&[
        (
            format!("{KNP}spec:\n  podSelector: {{}}\n  ingress: []\nspec:\n  podSelector: {{}}\n"),
            Some(("spec", "duplicate key \"spec\"")),
        ),
        (
            format!("{KNP}spec:\n  podSelector: {{matchLabels: {{app: a, app: b}}}}\n"),
            Some(("spec.podSelector.matchLabels.app", "duplicate key"))
        ),
        (
            "{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\", \"metadata\": {\"name\": \"p\", \"name\": \"q\"}, \"spec\": {\"podSelector\": {}}}".to_string(),
            Some(("metadata.name", "duplicate key")),
        ),
    ]);
}

#[test]
fn label_keys_and_values_follow_kubernetes() {
    let sel = "spec.podSelector";
    let long = "a".repeat(64);
    table(&[
        (knp_labels("{matchLabels: {app.kubernetes.io/name: web, tier: \"\"}}"), None),
        (
            knp_labels("{matchExpressions: [{key: app, operator: In, values: [a, b-c, d.e_f]}]}"),
            None,
        ),
        (
            knp_labels("{matchLabels: {\"-app\": web}}"),
            Some(("spec.podSelector.matchLabels.\"-app\"", "the name part")),
        ),
        (
            knp_labels("{matchLabels: {\"a b\": web}}"),
            Some(("spec.podSelector.matchLabels.\"a b\"", "the name part")),
        ),
        (
            knp_labels(&format!("{{matchLabels: {{{long}: web}}}}")),
            Some((&format!("{sel}.matchLabels.\"{long}\""), "1..63")),
        ),
        (
            knp_labels("{matchLabels: {Example.COM/app: web}}"),
            Some(("spec.podSelector.matchLabels.\"Example.COM/app\"", "DNS subdomain")),
        ),
        (
            knp_labels("{matchLabels: {\"k8s:app\": web}}"),
            Some(("spec.podSelector.matchLabels.\"k8s:app\"", "the name part")),
        ),
        (
            knp_labels("{matchLabels: {app: \"web site\"}}"),
            Some(("spec.podSelector.matchLabels.\"app\"", "value \"web site\"")),
        ),
        (
            knp_labels(&format!("{{matchLabels: {{app: {long}}}}}")),
            Some(("spec.podSelector.matchLabels.\"app\"", "at most 63")),
        ),
        (
            knp_labels("{matchExpressions: [{key: app, operator: In, values: [ok, \"not ok\"]}]}"),
            Some(("spec.podSelector.matchExpressions[0].values[1]", "value \"not ok\"")),
        ),
        (
            knp_labels("{matchExpressions: [{key: \"bad/key/x\", operator: Exists}]}"),
            Some(("spec.podSelector.matchExpressions[0].key", "DNS subdomain")),
        ),
        // Cilium selectors may name a label source
        (cnp_selector("{matchLabels: {\"k8s:app\": web, \"any:tier\": db}}"), None),
        (cnp_selector("{matchLabels: {\"reserved:host\": \"\"}}"), None),
        (
            cnp_selector("{matchLabels: {\"k8s:io.kubernetes.pod.namespace\": kube-system}}"),
            None,
        ),
        (
            cnp_selector("{matchLabels: {\"k8s:-app\": web}}"),
            Some(("spec.ingress[0].fromEndpoints[0].matchLabels.\"k8s:-app\"", "the name part")),
        ),
    ]);
}

#[test]
fn cidrs_policy_types_and_empty_input() {
    let from = "spec.ingress[0].from[0].ipBlock";
    table(&[
        (knp_ipblock("{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}"), None),
        (knp_ipblock("{cidr: 010.0.0.0/8}"), Some((&format!("{from}.cidr"), "leading zeros"))),
        (knp_ipblock("{cidr: 10.0.0.0/08}"), Some((&format!("{from}.cidr"), "leading zeros"))),
        (
            knp_ipblock("{cidr: 10.0.0.0/8, except: [10.01.0.0/16]}"),
            Some((&format!("{from}.except[0]"), "leading zeros")),
        ),
        (
            knp_ipblock("{cidr: 10.0.0.0/8, except: [10.0.0.0/8]}"),
            Some((&format!("{from}.except[0]"), "not strictly inside")),
        ),
        (
            knp_ipblock("{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}"),
            Some((&format!("{from}.except[0]"), "not strictly inside")),
        ),
        (knp_ipblock("{cidr: 10.0.0.0/33}"), Some((&format!("{from}.cidr"), "0..32"))),
        (knp_ipblock("{cidr: 10.0.0.1}"), Some((&format!("{from}.cidr"), "not a CIDR"))),
        (
            knp_ipblock("{cidr: 10.0.0.0/8, extra: 1}"),
            Some((&format!("{from}.extra"), "unknown field")),
        ),
        (format!("{KNP}spec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n"), None),
        (
            format!("{KNP}spec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Ingress]\n"),
            Some(("spec.policyTypes[1]", "listed twice")),
        ),
        (
            format!("{CNP}spec:\n  endpointSelector: {{}}\n  egress: [{{toCIDR: [10.0.0.1]}}]\n"),
            None,
        ),
        (
            format!("{CNP}spec:\n  endpointSelector: {{}}\n  egress: [{{toCIDR: [\"1.2.3.04/32\"]}}]\n"),
            Some(("spec.egress[0].toCIDR[0]", "leading zeros")),
        ),
        (String::new(), Some(("(document)", "nothing to import"))),
        (
            "---\n# only a comment\n---\n".to_string(),
            Some(("(document)", "nothing to import")),
        ),
    ]);
}

#[test]
fn errors_never_repeat_a_huge_value_whole() {
    let huge = "a".repeat(1 << 20);
    for yaml in [
        format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {huge}}}\nspec: {{podSelector: {{}}}}\n"),
        format!("{KNP}spec:\n  podSelector: {{}}\n  ingress:\n  - ports:\n    - port: {huge}\n"),
        format!("{KNP}spec:\n  podSelector:\n    matchLabels:\n      app: {huge}\n"),
        format!("{KNP}spec:\n  podSelector:\n    matchLabels:\n      ? {huge}\n      : x\n"),
        format!("{KNP}spec: {{podSelector: {{}}}}\n? {huge}\n: 1\n"),
    ] {
        let e = parse_file(&yaml).unwrap_err().to_string();
        assert!(e.len() < 1200, "error of {} bytes: {}…", e.len(), &e[..200]);
        assert!(e.contains("bytes"), "says how long the value was: {e}");
    }
}
