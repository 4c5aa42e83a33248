//! `hubble observe`'s selectors (`--pod`, `--from-ip`, `--verdict`, …) as
//! Hubble FlowFilters: shared by `seta observe` and the relay's service map,
//! so both filter the same way. Pure.
use crate::flow::{EventTypeFilter, FlowFilter, Verdict};

/// The selector flags, by their `hubble observe` names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selectors {
    pub pod: Vec<String>,
    pub from_pod: Vec<String>,
    pub to_pod: Vec<String>,
    pub namespace: Vec<String>,
    pub from_namespace: Vec<String>,
    pub to_namespace: Vec<String>,
    pub label: Vec<String>,
    pub from_label: Vec<String>,
    pub to_label: Vec<String>,
    pub ip: Vec<String>,
    pub from_ip: Vec<String>,
    pub to_ip: Vec<String>,
    pub identity: Vec<u32>,
    pub from_identity: Vec<u32>,
    pub to_identity: Vec<u32>,
    pub verdict: Vec<String>,
    pub kind: Vec<String>,
    pub protocol: Vec<String>,
    pub port: Vec<u16>,
    pub from_port: Vec<u16>,
    pub to_port: Vec<u16>,
    pub node_name: Vec<String>,
    pub service: Vec<String>,
    pub from_service: Vec<String>,
    pub to_service: Vec<String>,
}

/// The names [`Selectors::set`] takes (a flag's name without `--`).
pub const NAMES: &[&str] = &[
    "pod",
    "from-pod",
    "to-pod",
    "namespace",
    "from-namespace",
    "to-namespace",
    "label",
    "from-label",
    "to-label",
    "ip",
    "from-ip",
    "to-ip",
    "identity",
    "from-identity",
    "to-identity",
    "verdict",
    "type",
    "protocol",
    "port",
    "from-port",
    "to-port",
    "node-name",
    "service",
    "from-service",
    "to-service",
];

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("--{key} {value:?}: not a number in range"))
}

/// An identity as `hubble observe --identity` takes it: a number or a
/// reserved identity's name (`world`, `host`, `remote-node`, …).
pub fn identity(value: &str) -> Result<u32, String> {
    value
        .parse()
        .ok()
        .or_else(|| seta_core::identity::reserved_id(value))
        .ok_or_else(|| {
            let names: Vec<&str> = (1..=8).filter_map(seta_core::identity::reserved_name).collect();
            format!("{value:?}: not a number or a reserved identity ({})", names.join(", "))
        })
}

impl Selectors {
    /// One more `--key value`, as a query parameter or a flag gives it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let key = key.trim_start_matches('-');
        match key {
            "pod" => self.pod.push(value.into()),
            "from-pod" => self.from_pod.push(value.into()),
            "to-pod" => self.to_pod.push(value.into()),
            "namespace" | "n" => self.namespace.push(value.into()),
            "from-namespace" => self.from_namespace.push(value.into()),
            "to-namespace" => self.to_namespace.push(value.into()),
            "label" | "l" => self.label.push(value.into()),
            "from-label" => self.from_label.push(value.into()),
            "to-label" => self.to_label.push(value.into()),
            "ip" => self.ip.push(value.into()),
            "from-ip" => self.from_ip.push(value.into()),
            "to-ip" => self.to_ip.push(value.into()),
            "identity" => self.identity.push(identity(value).map_err(|e| format!("--{key} {e}"))?),
            "from-identity" => self.from_identity.push(identity(value).map_err(|e| format!("--{key} {e}"))?),
            "to-identity" => self.to_identity.push(identity(value).map_err(|e| format!("--{key} {e}"))?),
            "verdict" => self.verdict.push(value.into()),
            "type" | "t" => self.kind.push(value.into()),
            "protocol" => self.protocol.push(value.into()),
            "port" => self.port.push(number(key, value)?),
            "from-port" => self.from_port.push(number(key, value)?),
            "to-port" => self.to_port.push(number(key, value)?),
            "node-name" => self.node_name.push(value.into()),
            "service" => self.service.push(value.into()),
            "from-service" => self.from_service.push(value.into()),
            "to-service" => self.to_service.push(value.into()),
            other => return Err(format!("--{other}: not a filter; one of --{}", NAMES.join(", --"))),
        }
        Ok(())
    }

    /// Add another set of selectors to these.
    pub fn extend(&mut self, o: Selectors) {
        self.pod.extend(o.pod);
        self.from_pod.extend(o.from_pod);
        self.to_pod.extend(o.to_pod);
        self.namespace.extend(o.namespace);
        self.from_namespace.extend(o.from_namespace);
        self.to_namespace.extend(o.to_namespace);
        self.label.extend(o.label);
        self.from_label.extend(o.from_label);
        self.to_label.extend(o.to_label);
        self.ip.extend(o.ip);
        self.from_ip.extend(o.from_ip);
        self.to_ip.extend(o.to_ip);
        self.identity.extend(o.identity);
        self.from_identity.extend(o.from_identity);
        self.to_identity.extend(o.to_identity);
        self.verdict.extend(o.verdict);
        self.kind.extend(o.kind);
        self.protocol.extend(o.protocol);
        self.port.extend(o.port);
        self.from_port.extend(o.from_port);
        self.to_port.extend(o.to_port);
        self.node_name.extend(o.node_name);
        self.service.extend(o.service);
        self.from_service.extend(o.from_service);
        self.to_service.extend(o.to_service);
    }

    /// The flags given (non-empty), by name.
    fn given(&self) -> Vec<&'static str> {
        let lens = [
            ("pod", self.pod.len()),
            ("from-pod", self.from_pod.len()),
            ("to-pod", self.to_pod.len()),
            ("namespace", self.namespace.len()),
            ("from-namespace", self.from_namespace.len()),
            ("to-namespace", self.to_namespace.len()),
            ("label", self.label.len()),
            ("from-label", self.from_label.len()),
            ("to-label", self.to_label.len()),
            ("ip", self.ip.len()),
            ("from-ip", self.from_ip.len()),
            ("to-ip", self.to_ip.len()),
            ("identity", self.identity.len()),
            ("from-identity", self.from_identity.len()),
            ("to-identity", self.to_identity.len()),
            ("port", self.port.len()),
            ("from-port", self.from_port.len()),
            ("to-port", self.to_port.len()),
            ("service", self.service.len()),
            ("from-service", self.from_service.len()),
            ("to-service", self.to_service.len()),
        ];
        lens.iter().filter(|(_, n)| *n > 0).map(|(k, _)| *k).collect()
    }

    /// The whitelist, as `hubble observe` makes it: a selector on either
    /// side (`--pod`, `--ip`, …) makes two filters, source or destination;
    /// the rest AND within each. The namespace flags qualify the pod and
    /// service names of their side (`--namespace shop --pod web` is
    /// `shop/web`) or stand alone (`shop/`). Flags that cannot be combined
    /// (`--ip` and `--pod`, `--namespace` and `--to-pod`, …) and names in
    /// another namespace are refused with Hubble's words.
    pub fn whitelist(&self) -> Result<Vec<FlowFilter>, String> {
        let given = self.given();
        for group in CONFLICTS {
            let set: Vec<&&str> = group.iter().filter(|f| given.contains(f)).collect();
            if let [a, b, ..] = set[..] {
                return Err(format!("filters --{a} and --{b} cannot be combined"));
            }
        }
        let mut base = FlowFilter::default();
        for v in &self.verdict {
            let verdict = Verdict::from_str_name(&v.to_ascii_uppercase())
                .ok_or_else(|| format!("--verdict {v}: FORWARDED, DROPPED, ERROR, AUDIT, REDIRECTED or TRACED"))?;
            base.verdict.push(verdict as i32);
        }
        for t in &self.kind {
            let code = match t.as_str() {
                "drop" => 1,
                "trace" => 4,
                "policy-verdict" => 5,
                "trace-sock" | "sock" => 7,
                "agent" => return Err("--type agent: the agent's own events, not a flow filter (seta observe --type agent alone)".into()),
                other => return Err(format!("--type {other}: drop, trace, policy-verdict or trace-sock")),
            };
            base.event_type.push(EventTypeFilter {
                r#type: code,
                ..Default::default()
            });
        }
        for p in &self.protocol {
            if !["tcp", "udp", "icmp", "icmpv4", "icmpv6", "sctp"].contains(&p.to_ascii_lowercase().as_str()) {
                return Err(format!("--protocol {p}: tcp, udp, icmp, icmpv4, icmpv6 or sctp"));
            }
        }
        base.protocol = self.protocol.clone();
        base.node_name = self.node_name.clone();
        base.source_pod = self.from_pod.clone();
        base.destination_pod = self.to_pod.clone();
        base.source_label = self.from_label.clone();
        base.destination_label = self.to_label.clone();
        base.source_ip = self.from_ip.clone();
        base.destination_ip = self.to_ip.clone();
        base.source_identity = self.from_identity.clone();
        base.destination_identity = self.to_identity.clone();
        base.source_port = self.from_port.iter().map(u16::to_string).collect();
        base.destination_port = self.to_port.iter().map(u16::to_string).collect();
        base.source_service = self.from_service.clone();
        base.destination_service = self.to_service.clone();
        // left: either-side selectors as the source; right: as the destination
        let mut left = base.clone();
        left.source_pod.extend(self.pod.clone());
        left.source_label.extend(self.label.clone());
        left.source_ip.extend(self.ip.clone());
        left.source_identity.extend(self.identity.clone());
        left.source_port.extend(self.port.iter().map(u16::to_string));
        left.source_service.extend(self.service.clone());
        let mut right = base;
        right.destination_pod.extend(self.pod.clone());
        right.destination_label.extend(self.label.clone());
        right.destination_ip.extend(self.ip.clone());
        right.destination_identity.extend(self.identity.clone());
        right.destination_port.extend(self.port.iter().map(u16::to_string));
        right.destination_service.extend(self.service.clone());
        // the namespaces, as hubble's flowFilters(): to-, from-, then either
        for f in [&mut left, &mut right] {
            qualify(&self.to_namespace, &mut f.destination_pod, &mut f.destination_service)?;
            qualify(&self.from_namespace, &mut f.source_pod, &mut f.source_service)?;
        }
        qualify(&self.namespace, &mut left.source_pod, &mut left.source_service)?;
        qualify(&self.namespace, &mut right.destination_pod, &mut right.destination_service)?;
        for f in [&left, &right] {
            consistent(&f.source_pod, &f.source_service)?;
            consistent(&f.destination_pod, &f.destination_service)?;
        }
        Ok(if left == right { vec![left] } else { vec![left, right] })
    }

    /// `--namespace default --verdict DROPPED`, split on whitespace, as a
    /// user types the flags of `seta observe`.
    pub fn parse_flags(text: &str) -> Result<Self, String> {
        let mut s = Self::default();
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            let Some(flag) = w.strip_prefix('-') else {
                return Err(format!("{w:?}: expected a flag such as --pod NS/NAME"));
            };
            let (key, value) = match flag.trim_start_matches('-').split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (
                    flag.trim_start_matches('-').to_string(),
                    words.next().ok_or_else(|| format!("{w}: needs a value"))?.to_string(),
                ),
            };
            s.set(&key, &value)?;
        }
        Ok(s)
    }
}

/// Flags `hubble observe` refuses together (its conflict groups, for the
/// flags seta has): one side's address with its pod or namespace, and an
/// either-side flag with its one-side form.
const CONFLICTS: &[&[&str]] = &[
    &["from-ip", "ip", "from-namespace", "namespace"],
    &["from-ip", "ip", "from-pod", "pod"],
    &["to-ip", "ip", "to-namespace", "namespace"],
    &["to-ip", "ip", "to-pod", "pod"],
    &["to-pod", "namespace"],
    &["from-pod", "namespace"],
    &["to-service", "namespace"],
    &["from-service", "namespace"],
    &["label", "from-label"],
    &["label", "to-label"],
    &["service", "from-service"],
    &["service", "to-service"],
    &["port", "to-port"],
    &["port", "from-port"],
    &["identity", "to-identity"],
    &["identity", "from-identity"],
];

/// The namespace part of `ns/name` ("" without one).
fn namespace_of(name: &str) -> &str {
    name.split_once('/').map_or("", |(ns, _)| ns)
}

/// Hubble's namespace modifier on one side: names without a namespace get
/// each of `namespaces` (all of a namespace when the side names none); a
/// name in another namespace is a conflict.
fn qualify(namespaces: &[String], pods: &mut Vec<String>, services: &mut Vec<String>) -> Result<(), String> {
    if namespaces.is_empty() {
        return Ok(());
    }
    for ns in namespaces {
        if let Some(n) = pods
            .iter()
            .chain(services.iter())
            .find(|n| !namespace_of(n).is_empty() && namespace_of(n) != ns)
        {
            return Err(format!("namespace conflict: {ns:?} does not contain {n:?}"));
        }
    }
    if pods.is_empty() && services.is_empty() {
        pods.push(String::new());
    }
    let add = |names: &mut Vec<String>| {
        *names = names
            .iter()
            .flat_map(|n| match n.contains('/') {
                true => vec![n.clone()],
                false => namespaces.iter().map(|ns| format!("{ns}/{n}")).collect(),
            })
            .collect();
    };
    add(pods);
    add(services);
    Ok(())
}

/// A side's pods and services must be in one namespace (hubble's
/// checkInconsistentNamespaces).
fn consistent(pods: &[String], services: &[String]) -> Result<(), String> {
    for pod in pods.iter().map(|p| namespace_of(p)).filter(|n| !n.is_empty()) {
        if let Some(svc) = services.iter().find(|s| namespace_of(s) != pod) {
            return Err(format!("namespace of service {svc:?} conflict with pod {pod:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_side_selectors_make_two_filters() {
        let s = Selectors::parse_flags("--namespace default --verdict dropped --to-port=80").unwrap();
        let w = s.whitelist().unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].source_pod, ["default/"]);
        assert!(w[0].destination_pod.is_empty());
        assert_eq!(w[1].destination_pod, ["default/"]);
        for f in &w {
            assert_eq!(f.verdict, [Verdict::Dropped as i32]);
            assert_eq!(f.destination_port, ["80"]);
        }
        let w = Selectors::parse_flags("--service default/web --to-pod default/db")
            .unwrap()
            .whitelist()
            .unwrap();
        assert_eq!(
            (w[0].source_service.as_slice(), w[0].destination_pod.as_slice()),
            (&["default/web".to_string()][..], &["default/db".to_string()][..])
        );
        assert_eq!(w[1].destination_service, ["default/web"]);
        let one = Selectors::parse_flags("--from-pod x/a -t drop").unwrap().whitelist().unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].event_type[0].r#type, 1);
    }

    /// `hubble observe`'s namespace flags and conflicts.
    #[test]
    fn namespaces_qualify_names_as_hubble_observe_does() {
        let w = |t: &str| Selectors::parse_flags(t).unwrap().whitelist();
        let f = w("--namespace shop --pod web").unwrap();
        assert_eq!(
            (f[0].source_pod.as_slice(), f[1].destination_pod.as_slice()),
            (&["shop/web".to_string()][..], &["shop/web".to_string()][..])
        );
        let f = w("--from-namespace shop --to-namespace db").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].source_pod.as_slice(), f[0].destination_pod.as_slice()),
            (&["shop/".to_string()][..], &["db/".to_string()][..])
        );
        let f = w("--to-namespace shop --to-service web --from-pod default/client").unwrap();
        assert_eq!(
            (f[0].destination_service.as_slice(), f[0].destination_pod.as_slice()),
            (&["shop/web".to_string()][..], &[][..])
        );
        assert_eq!(f[0].source_pod, ["default/client"]);
        let f = w("--from-namespace a --from-namespace b --from-pod x").unwrap();
        assert_eq!(f[0].source_pod, ["a/x", "b/x"]);
        for (t, e) in [
            (
                "--namespace shop --to-pod web",
                "filters --to-pod and --namespace cannot be combined",
            ),
            ("--ip 10.0.0.1 --pod web", "filters --ip and --pod cannot be combined"),
            ("--port 80 --to-port 81", "filters --port and --to-port cannot be combined"),
            (
                "--service web --to-service db",
                "filters --service and --to-service cannot be combined",
            ),
            (
                "--to-namespace shop --to-pod db/web",
                r#"namespace conflict: "shop" does not contain "db/web""#,
            ),
            (
                "--from-pod shop/web --from-service db/web",
                r#"namespace of service "db/web" conflict with pod "shop""#,
            ),
        ] {
            assert_eq!(w(t).unwrap_err(), e, "{t}");
        }
    }

    #[test]
    fn bad_selectors_name_the_flag_and_value() {
        for (text, want) in [
            ("--colour red", "--colour"),
            ("--port 70000", "--port \"70000\""),
            ("--pod", "--pod: needs a value"),
            ("default", "\"default\""),
        ] {
            let e = Selectors::parse_flags(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        // identities by number or reserved name, as hubble's
        let s = Selectors::parse_flags("--identity world --from-identity 300 --to-identity remote-node").unwrap();
        assert_eq!((s.identity[0], s.from_identity[0], s.to_identity[0]), (2, 300, 6));
        let e = Selectors::parse_flags("--to-identity planet").unwrap_err();
        assert!(
            e.starts_with(r#"--to-identity "planet": not a number or a reserved identity (host, world"#),
            "{e}"
        );
        let e = Selectors::parse_flags("--verdict maybe").unwrap().whitelist().unwrap_err();
        assert!(e.contains("--verdict maybe"), "{e}");
        let e = Selectors::parse_flags("--type foo").unwrap().whitelist().unwrap_err();
        assert!(e.contains("--type foo"), "{e}");
    }
}
