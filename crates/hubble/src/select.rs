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

impl Selectors {
    /// One more `--key value`, as a query parameter or a flag gives it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let key = key.trim_start_matches('-');
        match key {
            "pod" => self.pod.push(value.into()),
            "from-pod" => self.from_pod.push(value.into()),
            "to-pod" => self.to_pod.push(value.into()),
            "namespace" | "n" => self.namespace.push(value.into()),
            "label" | "l" => self.label.push(value.into()),
            "from-label" => self.from_label.push(value.into()),
            "to-label" => self.to_label.push(value.into()),
            "ip" => self.ip.push(value.into()),
            "from-ip" => self.from_ip.push(value.into()),
            "to-ip" => self.to_ip.push(value.into()),
            "identity" => self.identity.push(number(key, value)?),
            "from-identity" => self.from_identity.push(number(key, value)?),
            "to-identity" => self.to_identity.push(number(key, value)?),
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

    /// The whitelist: a selector on either side (`--pod`, `--ip`, …) makes
    /// two filters, source or destination; the rest AND within each.
    pub fn whitelist(&self) -> Result<Vec<FlowFilter>, String> {
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
            if !["tcp", "udp", "icmp", "icmpv4", "sctp"].contains(&p.to_ascii_lowercase().as_str()) {
                return Err(format!("--protocol {p}: tcp, udp, icmp or sctp"));
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
        let pods: Vec<String> = self
            .pod
            .iter()
            .cloned()
            .chain(self.namespace.iter().map(|n| format!("{n}/")))
            .collect();
        let either = !(pods.is_empty()
            && self.label.is_empty()
            && self.ip.is_empty()
            && self.identity.is_empty()
            && self.port.is_empty()
            && self.service.is_empty());
        if !either {
            return Ok(vec![base]);
        }
        let mut src = base.clone();
        src.source_pod.extend(pods.clone());
        src.source_label.extend(self.label.clone());
        src.source_ip.extend(self.ip.clone());
        src.source_identity.extend(self.identity.clone());
        src.source_port.extend(self.port.iter().map(u16::to_string));
        src.source_service.extend(self.service.clone());
        let mut dst = base;
        dst.destination_pod.extend(pods);
        dst.destination_label.extend(self.label.clone());
        dst.destination_ip.extend(self.ip.clone());
        dst.destination_identity.extend(self.identity.clone());
        dst.destination_port.extend(self.port.iter().map(u16::to_string));
        dst.destination_service.extend(self.service.clone());
        Ok(vec![src, dst])
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
        let w = Selectors::parse_flags("--service default/web --to-service shop/db")
            .unwrap()
            .whitelist()
            .unwrap();
        assert_eq!(
            (w[0].source_service.as_slice(), w[0].destination_service.as_slice()),
            (&["default/web".to_string()][..], &["shop/db".to_string()][..])
        );
        assert_eq!(w[1].destination_service, ["shop/db", "default/web"]);
        let one = Selectors::parse_flags("--from-pod x/a -t drop").unwrap().whitelist().unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].event_type[0].r#type, 1);
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
        let e = Selectors::parse_flags("--verdict maybe").unwrap().whitelist().unwrap_err();
        assert!(e.contains("--verdict maybe"), "{e}");
        let e = Selectors::parse_flags("--type foo").unwrap().whitelist().unwrap_err();
        assert!(e.contains("--type foo"), "{e}");
    }
}
