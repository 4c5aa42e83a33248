//! Strict, bounded decoding of policy input (YAML or JSON) into JSON values,
//! as strict as the Kubernetes API server's decoder and bounded in time and
//! memory whatever the input:
//!
//! - a mapping with the same key twice is an error (the API server's strict
//!   decoding), never "the last one wins";
//! - nesting deeper than [`MAX_DEPTH`] is refused by a linear pre-scan of the
//!   text, before the YAML parser sees it, and again while decoding (aliases
//!   can nest what the text does not);
//! - YAML aliases may expand the input to at most [`MAX_EXPANSION`] times its
//!   size: decoding counts every node and byte it produces and stops there;
//! - `.nan`/`.inf` and YAML tags are refused (the API server has no such values);
//! - a cancel flag (the request's client went away) stops the work.
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Deepest nesting of mappings and sequences a policy file may have (a real
/// policy needs about 12).
pub const MAX_DEPTH: usize = 64;
/// Decoded size (nodes plus scalar bytes) allowed per input byte: plain input
/// stays well under 2; only YAML aliases can go beyond.
pub const MAX_EXPANSION: usize = 4;

/// Why decoding failed: where (1-based document, field path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub doc: usize,
    pub path: String,
    pub msg: String,
}

/// Decode every document of `text`. Empty documents (a trailing `---`) are
/// skipped. `cancel`, when set by another thread, stops decoding.
pub fn documents(text: &str, cancel: Option<&AtomicBool>) -> Result<Vec<Value>, DecodeError> {
    if let Some((line, depth)) = too_deep(text, MAX_DEPTH) {
        return Err(DecodeError {
            doc: doc_of_line(text, line),
            path: "(document)".into(),
            msg: format!("nesting deeper than {MAX_DEPTH} levels (at least {depth} at line {line}); policies are never this deep"),
        });
    }
    let st = State {
        budget: Cell::new(MAX_EXPANSION.saturating_mul(text.len()).saturating_add(4096)),
        limit: MAX_EXPANSION.saturating_mul(text.len()).saturating_add(4096),
        nodes: Cell::new(0),
        cancel,
        error: RefCell::new(None),
    };
    let mut out = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let r = Node {
            st: &st,
            path: String::new(),
            depth: 0,
        }
        .deserialize(de);
        match r {
            Ok(v) => {
                if !v.is_null() {
                    out.push(v);
                }
            }
            Err(e) => {
                let (path, msg) = st.error.borrow_mut().take().unwrap_or_else(|| {
                    (
                        "(document)".into(),
                        format!("not valid YAML: {}", super::parse::clip(&e.to_string())),
                    )
                });
                return Err(DecodeError { doc, path, msg });
            }
        }
    }
    Ok(out)
}

/// 1-based document number that holds 1-based `line` (documents start after `---` lines).
fn doc_of_line(text: &str, line: usize) -> usize {
    let mut doc = 1;
    let mut seen_content = false;
    for l in text.lines().take(line.saturating_sub(1)) {
        if l.starts_with("---") {
            if seen_content {
                doc += 1;
            }
            seen_content = false;
        } else if !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            seen_content = true;
        }
    }
    doc
}

/// A linear pre-scan: `Some((line, depth))` where the nesting of block
/// indentation, `- ` entries and flow brackets first exceeds `max`. It never
/// undercounts a real nesting (each level needs an indent, a dash or a bracket),
/// so nothing deeper reaches the parser.
pub fn too_deep(text: &str, max: usize) -> Option<(usize, usize)> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut i = 0;
        if flow == 0 {
            let col = bytes.iter().take_while(|b| **b == b' ').count();
            let rest = line[col..].trim_end();
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            while indents.last().is_some_and(|t| *t >= col) {
                indents.pop();
            }
            indents.push(col);
            i = col;
            // compact nested sequences: "- - - x" opens a level per dash
            while i + 1 < bytes.len() && bytes[i] == b'-' && bytes[i + 1] == b' ' {
                i += 2;
                while i < bytes.len() && bytes[i] == b' ' {
                    i += 1;
                }
                indents.push(i);
            }
        }
        let (mut sq, mut dq) = (false, false);
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'\\' if dq => i += 1,
                // a quote opens a scalar only where a scalar can start (`it's` is plain)
                b'"' if !sq && (dq || opens(bytes, i)) => dq = !dq,
                b'\'' if !dq && (sq || opens(bytes, i)) => sq = !sq,
                b'#' if !sq && !dq && (i == 0 || bytes[i - 1] == b' ') => break,
                b'[' | b'{' if !sq && !dq => {
                    flow += 1;
                    if indents.len() + flow > max {
                        return Some((n + 1, indents.len() + flow));
                    }
                }
                b']' | b'}' if !sq && !dq => flow = flow.saturating_sub(1),
                _ => {}
            }
            i += 1;
        }
        if indents.len() + flow > max {
            return Some((n + 1, indents.len() + flow));
        }
    }
    None
}

/// Whether a quote at `i` can start a scalar.
fn opens(bytes: &[u8], i: usize) -> bool {
    i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'[' | b'{' | b',' | b':' | b'-' | b'?')
}

struct State<'a> {
    budget: Cell<usize>,
    limit: usize,
    nodes: Cell<usize>,
    cancel: Option<&'a AtomicBool>,
    /// the first error with its field path (serde's own errors carry only text)
    error: RefCell<Option<(String, String)>>,
}

impl State<'_> {
    fn fail<E: de::Error>(&self, path: &str, msg: String) -> E {
        let path = if path.is_empty() {
            "(document)".to_string()
        } else {
            path.to_string()
        };
        let text = format!("{path}: {msg}");
        self.error.borrow_mut().get_or_insert((path, msg));
        E::custom(text)
    }

    /// Account for one node of `bytes` scalar bytes.
    fn spend<E: de::Error>(&self, path: &str, bytes: usize) -> Result<(), E> {
        let cost = 1 + bytes;
        match self.budget.get().checked_sub(cost) {
            Some(left) => self.budget.set(left),
            None => {
                return Err(self.fail(
                    path,
                    format!(
                        "the input expands to more than {MAX_EXPANSION}× its size ({} units) through YAML aliases; write the values out instead of using aliases",
                        self.limit
                    ),
                ))
            }
        }
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n.is_multiple_of(4096) && self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(self.fail(path, "cancelled: the request's client went away".into()));
        }
        Ok(())
    }
}

/// One node of the document at `path`, `depth` levels deep.
struct Node<'s, 'a> {
    st: &'s State<'a>,
    path: String,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(self.st.fail(&self.path, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.st.spend(&self.path, 0)?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.st.spend(&self.path, 0)?;
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.st.spend(&self.path, 0)?;
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.st.spend(&self.path, 0)?;
        match serde_json::Number::from_f64(v) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(self.st.fail(
                &self.path,
                format!("{v} is not a number the API accepts (.nan and .inf are not values)"),
            )),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.st.spend(&self.path, v.len())?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.st.spend(&self.path, v.len())?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.st.spend(&self.path, 0)?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(self.st.fail(&self.path, "binary values are not allowed".into()))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(self
            .st
            .fail(&self.path, "YAML tags (!tag value) are not allowed in policies".into()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.st.spend(&self.path, 0)?;
        let mut out = Vec::new();
        loop {
            let child = Node {
                st: self.st,
                path: format!("{}[{}]", self.path, out.len()),
                depth: self.depth + 1,
            };
            match seq.next_element_seed(child)? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.st.spend(&self.path, 0)?;
        let mut out = Map::new();
        loop {
            let key = map.next_key_seed(Key {
                st: self.st,
                path: &self.path,
            })?;
            let Some(key) = key else { return Ok(Value::Object(out)) };
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if out.contains_key(&key) {
                return Err(self.st.fail(
                    &path,
                    format!(
                        "duplicate key {}: a mapping may hold each key once (the API server rejects it)",
                        super::parse::quote(&key)
                    ),
                ));
            }
            let v = map.next_value_seed(Node {
                st: self.st,
                path,
                depth: self.depth + 1,
            })?;
            out.insert(key, v);
        }
    }
}

/// A mapping key: a string (YAML's plain scalars such as `80` or `true` count
/// as their text, as the API server's YAML-to-JSON conversion does).
struct Key<'s, 'a, 'p> {
    st: &'s State<'a>,
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_, '_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, '_, '_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.st.spend(self.path, v.len())?;
        Ok(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.st.spend(self.path, v.len())?;
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.visit_string(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(self.st.fail(self.path, "a mapping key is null".into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(self.st.fail(self.path, "a mapping key must be a string, not a sequence".into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(self.st.fail(self.path, "a mapping key must be a string, not a mapping".into()))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(self.st.fail(self.path, "YAML tags (!tag value) are not allowed in policies".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn err(text: &str) -> DecodeError {
        documents(text, None).unwrap_err()
    }

    #[test]
    fn duplicate_keys_are_rejected_with_their_path() {
        let e = err("kind: X\nspec:\n  a: 1\nspec:\n  b: 2\n");
        assert_eq!((e.doc, e.path.as_str()), (1, "spec"));
        assert!(e.msg.starts_with("duplicate key \"spec\""), "{e:?}");
        let e = err("a: 1\n---\nspec:\n  ingress:\n  - from: []\n    from: [x]\n");
        assert_eq!((e.doc, e.path.as_str()), (2, "spec.ingress[0].from"));
        // JSON too
        let e = err(r#"{"spec": {"x": 1, "x": 2}}"#);
        assert_eq!(e.path, "spec.x");
    }

    #[test]
    fn non_finite_numbers_and_tags_are_refused() {
        for (text, path) in [("port: .nan\n", "port"), ("a: [1, .inf]\n", "a[1]"), ("port: -.inf\n", "port")] {
            let e = err(text);
            assert_eq!(e.path, path, "{text}");
            assert!(e.msg.contains("not a number"), "{e:?}");
        }
        assert!(err("port: !custom 80\n").msg.contains("tags"));
    }

    #[test]
    fn deep_input_is_refused_in_linear_time() {
        for n in [65usize, 40_000, 400_000] {
            for text in [
                "[".repeat(n) + &"]".repeat(n),
                "{a: ".repeat(n) + &"}".repeat(n),
                (0..n.min(20_000)).map(|i| format!("{}a:\n", " ".repeat(i))).collect::<String>(),
                "- ".repeat(n) + "x\n",
            ] {
                let t = Instant::now();
                let e = err(&text);
                assert!(e.msg.starts_with("nesting deeper than 64 levels"), "{e:?}");
                // a linear scan: far below the quadratic seconds of before
                assert!(t.elapsed().as_secs_f64() < 2.0, "{n}: {:?}", t.elapsed());
            }
        }
        // 60 levels are fine
        let ok = "[".repeat(60) + &"]".repeat(60);
        assert_eq!(documents(&ok, None).unwrap().len(), 1);
    }

    #[test]
    fn alias_expansion_is_bounded() {
        // each level doubles: 2^30 leaves from a few hundred bytes
        let mut text = String::from("a0: &a0 [x, x]\n");
        for i in 1..30 {
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n", p = i - 1));
        }
        let t = Instant::now();
        let e = err(&text);
        assert!(e.msg.contains("through YAML aliases"), "{e:?}");
        assert!(t.elapsed().as_secs_f64() < 2.0, "{:?}", t.elapsed());
        // a small, honest alias is fine
        let v = documents("base: &b {app: web}\nother: *b\n", None).unwrap();
        assert_eq!(v[0]["other"]["app"], "web");
    }

    #[test]
    fn documents_values_and_keys() {
        let v = documents("---\na: 1\n---\n---\n[1, 2.5, true, null, \"s\"]\n", None).unwrap();
        assert_eq!(v.len(), 2, "the empty document is skipped");
        assert_eq!(v[1], serde_json::json!([1, 2.5, true, null, "s"]));
        assert_eq!(
            documents("80: x\ntrue: y\n", None).unwrap()[0],
            serde_json::json!({"80": "x", "true": "y"})
        );
        assert!(documents("", None).unwrap().is_empty());
    }

    #[test]
    fn a_cancelled_decode_stops() {
        let flag = AtomicBool::new(true);
        let text = format!("[{}]", vec!["1"; 10_000].join(","));
        let e = documents(&text, Some(&flag)).unwrap_err();
        assert!(e.msg.starts_with("cancelled"), "{e:?}");
    }
}
