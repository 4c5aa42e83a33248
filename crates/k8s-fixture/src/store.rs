//! The object store: objects by (resource, namespace, name), one global
//! resourceVersion counter, and a bounded log of changes that watches start
//! from (older starting points get 410 Gone, as after an etcd compaction).
use crate::resources::{Resource, RESOURCES};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};

/// A change, as a watch delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub rv: u64,
    pub res: usize,
    pub namespace: String,
    /// ADDED, MODIFIED or DELETED
    pub kind: &'static str,
    pub object: Value,
}

/// An API error: HTTP code, reason and message (rendered as a `Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn not_found(r: &Resource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(r)))
    }

    /// The `Status` object of this error.
    pub fn status(&self, r: Option<&Resource>, name: Option<&str>) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(r) = r {
            s["details"] = json!({"name": name.unwrap_or(""), "group": r.group, "kind": r.plural});
        }
        s
    }
}

pub type Key = (usize, String, String);

/// How the store is asked to change an object.
pub enum Write {
    Create(Value),
    /// replace the object (or only its status)
    Update {
        object: Value,
        status_only: bool,
    },
    /// a JSON merge patch (strategic merge patches are applied as merge
    /// patches without their `$` directives)
    MergePatch {
        patch: Value,
        status_only: bool,
    },
    Delete,
}

pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: VecDeque<Change>,
    /// changes kept for watches
    log_cap: usize,
    uid: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(1000)
    }
}

/// Fields a merge patch must not take from the caller.
const KEEP: [&str; 4] = ["uid", "creationTimestamp", "resourceVersion", "generation"];

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if k.starts_with('$') {
                    continue; // strategic merge directives
                }
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => {
            *t = strip_directives(p);
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        v => v.clone(),
    }
}

fn now() -> String {
    seta_core::time::rfc3339(seta_core::time::unix_now())
}

impl Store {
    pub fn new(log_cap: usize) -> Self {
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            log_cap,
            uid: 0,
        }
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch can start from.
    pub fn oldest(&self) -> u64 {
        self.log.front().map_or(self.rv, |c| c.rv - 1)
    }

    /// Forget the change log up to now (a compaction): watches from an older
    /// resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.log.clear();
    }

    pub fn get(&self, res: usize, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(res, ns.to_string(), name.to_string()))
    }

    /// Objects of `res` (in `ns`, or every namespace when None), in key order.
    pub fn list(&self, res: usize, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .range((res, String::new(), String::new())..)
            .take_while(|((r, _, _), _)| *r == res)
            .filter(|((_, n, _), _)| ns.is_none_or(|want| n == want))
            .map(|(_, v)| v)
            .collect()
    }

    /// Changes after `rv` (None: 410 Gone, the log no longer reaches it).
    pub fn changes_since(&self, rv: u64) -> Option<Vec<Change>> {
        if rv < self.oldest() {
            return None;
        }
        Some(self.log.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    fn record(&mut self, res: usize, namespace: &str, kind: &'static str, object: Value) -> Change {
        let c = Change {
            rv: self.rv,
            res,
            namespace: namespace.to_string(),
            kind,
            object,
        };
        self.log.push_back(c.clone());
        while self.log.len() > self.log_cap {
            self.log.pop_front();
        }
        c
    }

    /// Apply a write to `res`/`ns`/`name` (`name` None for a create, which
    /// takes it from the object). Returns the stored object (for a delete:
    /// the object as it was) and the change.
    pub fn write(&mut self, res: usize, ns: &str, name: Option<&str>, w: Write) -> Result<(Value, Change), ApiError> {
        let r = &RESOURCES[res];
        let ns = if r.namespaced { ns } else { "" };
        if r.namespaced && !ns.is_empty() && !matches!(w, Write::Delete) && self.get(ns_res(), "", ns).is_none() {
            return Err(ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found")));
        }
        match w {
            Write::Create(mut obj) => {
                let meta = obj
                    .get_mut("metadata")
                    .and_then(|m| m.as_object_mut())
                    .ok_or_else(|| ApiError::new(400, "BadRequest", "metadata: required"))?;
                let name = match meta.get("name").and_then(|n| n.as_str()) {
                    Some(n) if !n.is_empty() => n.to_string(),
                    _ => match meta.get("generateName").and_then(|n| n.as_str()) {
                        Some(g) => format!("{g}{:05x}", self.uid + 1),
                        None => {
                            return Err(ApiError::new(
                                422,
                                "Invalid",
                                format!("{} \"\" is invalid: metadata.name: Required value", r.kind),
                            ))
                        }
                    },
                };
                let key = (res, ns.to_string(), name.clone());
                if self.objects.contains_key(&key) {
                    return Err(ApiError::new(
                        409,
                        "AlreadyExists",
                        format!("{} \"{name}\" already exists", qualified(r)),
                    ));
                }
                self.rv += 1;
                self.uid += 1;
                meta.insert("name".into(), json!(name));
                if r.namespaced {
                    meta.insert("namespace".into(), json!(ns));
                }
                meta.insert("uid".into(), json!(format!("00000000-0000-4000-8000-{:012x}", self.uid)));
                meta.insert("creationTimestamp".into(), json!(now()));
                meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
                meta.insert("generation".into(), json!(1));
                set_type(&mut obj, r);
                self.objects.insert(key, obj.clone());
                let c = self.record(res, ns, "ADDED", obj.clone());
                Ok((obj, c))
            }
            Write::Update { object, status_only } => {
                let name = name.ok_or_else(|| ApiError::new(405, "MethodNotAllowed", "update needs a name"))?;
                let key = (res, ns.to_string(), name.to_string());
                let old = self.objects.get(&key).ok_or_else(|| ApiError::not_found(r, name))?.clone();
                if let Some(want) = object["metadata"]["resourceVersion"].as_str() {
                    if !want.is_empty() && Some(want) != old["metadata"]["resourceVersion"].as_str() {
                        return Err(ApiError::new(
                            409,
                            "Conflict",
                            format!(
                                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                                qualified(r)
                            ),
                        ));
                    }
                }
                let new = if status_only {
                    let mut n = old.clone();
                    n["status"] = object.get("status").cloned().unwrap_or(Value::Null);
                    n
                } else {
                    let mut n = object;
                    if let Some(st) = old.get("status").filter(|_| r.status) {
                        n["status"] = st.clone(); // the main resource never writes status
                    }
                    n
                };
                self.replace(res, ns, name, &old, new)
            }
            Write::MergePatch { patch, status_only } => {
                let name = name.ok_or_else(|| ApiError::new(405, "MethodNotAllowed", "patch needs a name"))?;
                let key = (res, ns.to_string(), name.to_string());
                let old = self.objects.get(&key).ok_or_else(|| ApiError::not_found(r, name))?.clone();
                let mut new = old.clone();
                let mut patch = patch;
                if let Some(m) = patch.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    for k in KEEP {
                        m.remove(k);
                    }
                }
                if status_only {
                    merge(&mut new["status"], patch.get("status").unwrap_or(&Value::Null));
                } else {
                    if let Some(p) = patch.as_object_mut() {
                        if r.status {
                            p.remove("status");
                        }
                    }
                    merge(&mut new, &patch);
                }
                self.replace(res, ns, name, &old, new)
            }
            Write::Delete => {
                let name = name.ok_or_else(|| ApiError::new(405, "MethodNotAllowed", "delete needs a name"))?;
                let key = (res, ns.to_string(), name.to_string());
                let mut old = self.objects.remove(&key).ok_or_else(|| ApiError::not_found(r, name))?;
                self.rv += 1;
                old["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                let c = self.record(res, ns, "DELETED", old.clone());
                Ok((old, c))
            }
        }
    }

    fn replace(&mut self, res: usize, ns: &str, name: &str, old: &Value, mut new: Value) -> Result<(Value, Change), ApiError> {
        let r = &RESOURCES[res];
        if new["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            ));
        }
        // what the server owns stays the server's
        let meta = new
            .get_mut("metadata")
            .and_then(|m| m.as_object_mut())
            .ok_or_else(|| ApiError::new(400, "BadRequest", "metadata: required"))?;
        meta.insert("name".into(), json!(name));
        if r.namespaced {
            meta.insert("namespace".into(), json!(ns));
        }
        for k in ["uid", "creationTimestamp"] {
            meta.insert(k.into(), old["metadata"][k].clone());
        }
        let spec_changed = old.get("spec") != new.get("spec");
        let gen = old["metadata"]["generation"].as_i64().unwrap_or(1) + spec_changed as i64;
        new["metadata"]["generation"] = json!(gen);
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        set_type(&mut new, r);
        if &new == old {
            // no change: no new resourceVersion, no event (as the API server)
            let c = Change {
                rv: self.rv,
                res,
                namespace: ns.to_string(),
                kind: "MODIFIED",
                object: new.clone(),
            };
            return Ok((new, c));
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert((res, ns.to_string(), name.to_string()), new.clone());
        let c = self.record(res, ns, "MODIFIED", new.clone());
        Ok((new, c))
    }
}

fn ns_res() -> usize {
    0 // RESOURCES[0] is Namespace
}

/// `plural.group` (core: `plural`), as the API server names a resource in messages.
pub fn qualified(r: &Resource) -> String {
    if r.group.is_empty() {
        r.plural.to_string()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

fn set_type(obj: &mut Value, r: &Resource) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(r.group_version()));
        m.insert("kind".into(), json!(r.kind));
    }
}

/// An empty object of kind `r` named `name` (for tests and seeding).
pub fn object(r: &Resource, ns: Option<&str>, name: &str, rest: Value) -> Value {
    let mut o = Map::new();
    o.insert("apiVersion".into(), json!(r.group_version()));
    o.insert("kind".into(), json!(r.kind));
    let mut meta = json!({"name": name});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    o.insert("metadata".into(), meta);
    let mut v = Value::Object(o);
    merge(&mut v, &rest);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    fn store() -> Store {
        let mut s = Store::new(4);
        let ns = &RESOURCES[0];
        s.write(0, "", None, Write::Create(object(ns, None, "default", json!({})))).unwrap();
        s
    }

    #[test]
    fn writes_number_every_change_and_keep_what_the_server_owns() {
        let mut s = store();
        let pods = find("", "v1", "pods").unwrap();
        let p = object(
            &RESOURCES[pods],
            Some("default"),
            "web",
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"nodeName": "n1"}}),
        );
        let (created, c) = s.write(pods, "default", None, Write::Create(p.clone())).unwrap();
        assert_eq!((c.kind, c.rv), ("ADDED", 3));
        assert_eq!(created["metadata"]["resourceVersion"], "3");
        assert_eq!(created["metadata"]["generation"], 1);
        let uid = created["metadata"]["uid"].clone();
        let e = s.write(pods, "default", None, Write::Create(p)).unwrap_err();
        assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
        assert_eq!(e.message, "pods \"web\" already exists");
        // a merge patch of the labels: a new version, the same uid, same generation
        let (patched, c) = s
            .write(
                pods,
                "default",
                Some("web"),
                Write::MergePatch {
                    patch: json!({"metadata": {"labels": {"app": null, "tier": "fe"}, "uid": "x"}, "$setElementOrder/x": []}),
                    status_only: false,
                },
            )
            .unwrap();
        assert_eq!(c.kind, "MODIFIED");
        assert_eq!(patched["metadata"]["labels"], json!({"tier": "fe"}));
        assert_eq!(patched["metadata"]["uid"], uid);
        assert_eq!(patched["metadata"]["generation"], 1, "metadata only");
        // status only through the subresource
        let (st, _) = s
            .write(
                pods,
                "default",
                Some("web"),
                Write::MergePatch {
                    patch: json!({"status": {"podIP": "10.0.0.5"}, "spec": {"x": 1}}),
                    status_only: true,
                },
            )
            .unwrap();
        assert_eq!(st["status"]["podIP"], "10.0.0.5");
        assert!(st["spec"].get("x").is_none());
        // a stale update conflicts
        let mut stale = st.clone();
        stale["metadata"]["resourceVersion"] = json!("3");
        let e = s
            .write(
                pods,
                "default",
                Some("web"),
                Write::Update {
                    object: stale,
                    status_only: false,
                },
            )
            .unwrap_err();
        assert_eq!(e.code, 409);
        // an update that changes nothing makes no version
        let rv = s.rv();
        s.write(
            pods,
            "default",
            Some("web"),
            Write::Update {
                object: st,
                status_only: false,
            },
        )
        .unwrap();
        assert_eq!(s.rv(), rv);
        let e = s
            .write(
                pods,
                "nope",
                None,
                Write::Create(object(&RESOURCES[pods], Some("nope"), "x", json!({}))),
            )
            .unwrap_err();
        assert_eq!(e.message, "namespaces \"nope\" not found");
    }

    #[test]
    fn watches_start_from_the_log_or_get_gone() {
        let mut s = store();
        let cm = find("", "v1", "configmaps").unwrap();
        for i in 0..6 {
            s.write(
                cm,
                "default",
                None,
                Write::Create(object(&RESOURCES[cm], Some("default"), &format!("c{i}"), json!({}))),
            )
            .unwrap();
        }
        assert_eq!(s.rv(), 8);
        assert!(s.changes_since(2).is_none(), "410: compacted past it");
        let since = s.changes_since(6).unwrap();
        assert_eq!(since.iter().map(|c| c.rv).collect::<Vec<_>>(), [7, 8]);
        s.write(cm, "default", Some("c5"), Write::Delete).unwrap();
        assert_eq!(s.changes_since(8).unwrap()[0].kind, "DELETED");
        assert_eq!(s.list(cm, Some("default")).len(), 5);
        s.compact();
        assert!(s.changes_since(8).is_none());
        assert!(s.changes_since(9).unwrap().is_empty());
    }
}
