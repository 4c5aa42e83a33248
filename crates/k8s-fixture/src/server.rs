//! The HTTP side: discovery, list (limit/continue, selectors), watch
//! (resourceVersion, bookmarks, timeoutSeconds, 410 Gone), get, create,
//! update, merge patch, delete and the status subresource, in JSON.
use crate::resources::{find, group_versions, Resource, RESOURCES};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{qualified, ApiError, Change, Store, Write};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

pub struct ApiServer {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    /// how often a watch that allows bookmarks gets one
    bookmark_every: Duration,
    /// requests served, by "METHOD path" (what clients asked, for tests)
    pub requests: Mutex<Vec<String>>,
}

impl ApiServer {
    /// A server with the `default`, `kube-system` and `kube-public` namespaces.
    pub fn new(bookmark_every: Duration, log_cap: usize) -> Arc<Self> {
        let mut store = Store::new(log_cap);
        for ns in ["default", "kube-system", "kube-public"] {
            let o = crate::store::object(
                &RESOURCES[0],
                None,
                ns,
                json!({"metadata": {"labels": {"kubernetes.io/metadata.name": ns}}}),
            );
            store.write(0, "", None, Write::Create(o)).expect("a fresh store");
        }
        Arc::new(Self {
            store: Mutex::new(store),
            changes: broadcast::channel(4096).0,
            bookmark_every,
            requests: Mutex::new(Vec::new()),
        })
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget the change log (as an etcd compaction): watches resuming from
    /// before now get 410 Gone and must list again.
    pub fn compact(&self) {
        self.store().compact();
    }

    pub fn resource_version(&self) -> u64 {
        self.store().rv()
    }

    /// Apply a write as a client would (used by seeding code and tests).
    pub fn write(&self, res: usize, ns: &str, name: Option<&str>, w: Write) -> Result<Value, ApiError> {
        let mut st = self.store();
        let (obj, change) = st.write(res, ns, name, w)?;
        let _ = self.changes.send(change);
        Ok(obj)
    }

    pub fn get(&self, res: usize, ns: &str, name: &str) -> Option<Value> {
        self.store().get(res, ns, name).cloned()
    }

    /// Objects of `res` in `ns` (None: every namespace).
    pub fn list(&self, res: usize, ns: Option<&str>) -> Vec<Value> {
        self.store().list(res, ns).into_iter().cloned().collect()
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new().fallback(handle).with_state(self.clone())
    }
}

/// A kubeconfig for a client of the server at `url` (http, no credentials).
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: seta-lab\n  cluster:\n    server: {url}\ncontexts:\n- name: seta-lab\n  context:\n    cluster: seta-lab\n    user: seta\n    namespace: default\ncurrent-context: seta-lab\nusers:\n- name: seta\n  user: {{}}\n"
    )
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

fn error(e: &ApiError, r: Option<&Resource>, name: Option<&str>) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(r, name),
    )
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Version,
    Api,
    Apis,
    ApiGroup(String),
    Resources(String, String),
    /// a resource's collection (namespace None: every namespace / cluster scope)
    Collection(usize, Option<String>),
    Object {
        res: usize,
        ns: String,
        name: String,
        status: bool,
    },
}

fn target(path: &str) -> Option<Target> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match seg.as_slice() {
        ["version"] => return Some(Target::Version),
        ["api"] => return Some(Target::Api),
        ["apis"] => return Some(Target::Apis),
        ["apis", g] => return Some(Target::ApiGroup(g.to_string())),
        ["api", v] => return Some(Target::Resources(String::new(), v.to_string())),
        ["apis", g, v] => return Some(Target::Resources(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let res = |plural: &str| find(group, version, plural);
    match rest {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" => {
            let r = res(plural)?;
            if !RESOURCES[r].namespaced {
                return None;
            }
            match tail {
                [] => Some(Target::Collection(r, Some(ns.to_string()))),
                [name] => Some(Target::Object {
                    res: r,
                    ns: ns.to_string(),
                    name: name.to_string(),
                    status: false,
                }),
                [name, "status"] => Some(Target::Object {
                    res: r,
                    ns: ns.to_string(),
                    name: name.to_string(),
                    status: true,
                }),
                _ => None,
            }
        }
        [plural] => Some(Target::Collection(res(plural)?, None)),
        [plural, name] => {
            let r = res(plural)?;
            (!RESOURCES[r].namespaced).then(|| Target::Object {
                res: r,
                ns: String::new(),
                name: name.to_string(),
                status: false,
            })
        }
        [plural, name, "status"] => {
            let r = res(plural)?;
            (!RESOURCES[r].namespaced).then(|| Target::Object {
                res: r,
                ns: String::new(),
                name: name.to_string(),
                status: true,
            })
        }
        _ => None,
    }
}

/// A boolean query parameter as Go's strconv.ParseBool reads it (Python sends `True`).
fn flag(q: &BTreeMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding (and `+` as space) of a query component.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(c) => {
                        out.push(c);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// OpenAPI v3 as far as clients need it: the group versions, and each
/// kind's PATCH operation declaring the `fieldValidation` parameter (so
/// kubectl validates on the server side instead of downloading schemas).
fn openapi_v3(path: &str) -> Option<Value> {
    let gv_path = |g: &str, v: &str| {
        if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        }
    };
    if path.trim_end_matches('/') == "/openapi/v3" {
        let paths: serde_json::Map<String, Value> = group_versions()
            .into_iter()
            .map(|(g, v)| {
                let p = gv_path(g, v);
                (p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=seta")}))
            })
            .collect();
        return Some(json!({"paths": paths}));
    }
    let rest = path.strip_prefix("/openapi/v3/")?;
    let (g, v) = group_versions().into_iter().find(|(g, v)| gv_path(g, v) == rest)?;
    let mut paths = serde_json::Map::new();
    for r in RESOURCES.iter().filter(|r| r.group == g && r.version == v) {
        let object = if r.namespaced {
            format!("{}/namespaces/{{namespace}}/{}/{{name}}", r.prefix(), r.plural)
        } else {
            format!("{}/{}/{{name}}", r.prefix(), r.plural)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let param = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}]);
        let op = json!({"x-kubernetes-group-version-kind": gvk, "parameters": param, "responses": {"200": {"description": "OK"}}});
        paths.insert(object, json!({"patch": op, "put": op, "get": op, "delete": op}));
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes (seta fixture)", "version": "v1.33.0"}, "paths": paths, "components": {"schemas": {}}}),
    )
}

fn discovery(t: &Target) -> Option<Value> {
    let gv_doc = |g: &str, v: &str| {
        let gv = if g.is_empty() { v.to_string() } else { format!("{g}/{v}") };
        json!({"groupVersion": gv, "version": v})
    };
    Some(match t {
        Target::Version => json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-seta-fixture", "gitCommit": "0000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"
        }),
        Target::Api => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
        }
        Target::Apis => {
            let groups: Vec<Value> = group_versions()
                .into_iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, v)| json!({"name": g, "versions": [gv_doc(g, v)], "preferredVersion": gv_doc(g, v)}))
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        Target::ApiGroup(g) => {
            let (g, v) = group_versions().into_iter().find(|(x, _)| x == g)?;
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv_doc(g, v)], "preferredVersion": gv_doc(g, v)})
        }
        Target::Resources(g, v) => {
            let rs: Vec<&Resource> = RESOURCES.iter().filter(|r| r.group == g && r.version == v).collect();
            if rs.is_empty() {
                return None;
            }
            let mut list = Vec::new();
            for r in rs {
                let mut verbs = vec!["create", "delete", "get", "list", "patch", "update", "watch"];
                verbs.sort();
                list.push(json!({
                    "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                    "verbs": verbs, "shortNames": r.short_names,
                }));
                if r.status {
                    list.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
                }
            }
            let gv = if g.is_empty() { v.clone() } else { format!("{g}/{v}") };
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
        }
        _ => return None,
    })
}

async fn handle(
    axum::extract::State(s): axum::extract::State<Arc<ApiServer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{method} {}", uri.path_and_query().map_or("", |p| p.as_str())));
    if let Some(doc) = openapi_v3(uri.path()) {
        return json_response(StatusCode::OK, &doc);
    }
    let Some(t) = target(uri.path()) else {
        return error(
            &ApiError::new(404, "NotFound", "the server could not find the requested resource"),
            None,
            None,
        );
    };
    if let Some(doc) = discovery(&t) {
        return json_response(StatusCode::OK, &doc);
    }
    let q = query(&uri);
    let as_table = crate::table::wants_table(headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or(""));
    match t {
        Target::Collection(res, ns) => match method {
            Method::GET if flag(&q, "watch") => watch(&s, res, ns, &q, as_table),
            Method::GET => list(&s, res, ns.as_deref(), &q, as_table),
            Method::POST => {
                let r = &RESOURCES[res];
                let obj = match parse_body(&body, r) {
                    Ok(o) => o,
                    Err(e) => return error(&e, Some(r), None),
                };
                let ns = ns
                    .or_else(|| obj["metadata"]["namespace"].as_str().map(String::from))
                    .unwrap_or_default();
                if r.namespaced && ns.is_empty() {
                    return error(
                        &ApiError::new(400, "BadRequest", "the namespace of the object is required"),
                        Some(r),
                        None,
                    );
                }
                if obj["metadata"]["namespace"].as_str().is_some_and(|n| n != ns) {
                    return error(
                        &ApiError::new(
                            400,
                            "BadRequest",
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ),
                        Some(r),
                        None,
                    );
                }
                match s.write(res, &ns, None, Write::Create(obj)) {
                    Ok(o) => json_response(StatusCode::CREATED, &o),
                    Err(e) => error(&e, Some(r), None),
                }
            }
            _ => error(
                &ApiError::new(405, "MethodNotAllowed", format!("{method} is not supported on a collection")),
                None,
                None,
            ),
        },
        Target::Object { res, ns, name, status } => {
            let r = &RESOURCES[res];
            if status && !r.status {
                return error(
                    &ApiError::new(404, "NotFound", "the server could not find the requested resource"),
                    Some(r),
                    Some(&name),
                );
            }
            let w = match method {
                Method::GET => {
                    return match s.get(res, &ns, &name) {
                        Some(o) if as_table && !status => {
                            let meta = json!({"resourceVersion": s.resource_version().to_string()});
                            let out = crate::table::table(r, std::slice::from_ref(&o), meta).unwrap_or(o);
                            json_response(StatusCode::OK, &out)
                        }
                        Some(o) => json_response(StatusCode::OK, &o),
                        None => error(&ApiError::not_found(r, &name), Some(r), Some(&name)),
                    }
                }
                Method::PUT => match parse_body(&body, r) {
                    Ok(object) => Write::Update {
                        object,
                        status_only: status,
                    },
                    Err(e) => return error(&e, Some(r), Some(&name)),
                },
                Method::PATCH => {
                    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if !ct.starts_with("application/merge-patch+json") && !ct.starts_with("application/strategic-merge-patch+json") {
                        return error(
                            &ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})")),
                            Some(r),
                            Some(&name),
                        );
                    }
                    match serde_json::from_slice::<Value>(&body) {
                        Ok(patch) => Write::MergePatch {
                            patch,
                            status_only: status,
                        },
                        Err(e) => {
                            return error(
                                &ApiError::new(400, "BadRequest", format!("invalid patch: {e}")),
                                Some(r),
                                Some(&name),
                            )
                        }
                    }
                }
                Method::DELETE => Write::Delete,
                _ => {
                    return error(
                        &ApiError::new(405, "MethodNotAllowed", format!("{method} is not supported")),
                        Some(r),
                        Some(&name),
                    )
                }
            };
            match s.write(res, &ns, Some(&name), w) {
                Ok(o) => json_response(StatusCode::OK, &o),
                Err(e) => error(&e, Some(r), Some(&name)),
            }
        }
        _ => error(
            &ApiError::new(404, "NotFound", "the server could not find the requested resource"),
            None,
            None,
        ),
    }
}

fn parse_body(body: &[u8], r: &Resource) -> Result<Value, ApiError> {
    if body.starts_with(b"k8s\0") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "this API server speaks JSON only, not protobuf (use kubectl apply)",
        ));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::new(400, "BadRequest", format!("the body is not a JSON object: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::new(400, "BadRequest", "the body is not a JSON object"));
    }
    let kind = v["kind"].as_str().unwrap_or(r.kind);
    let api = v["apiVersion"].as_str().unwrap_or("");
    if kind != r.kind || (!api.is_empty() && api != r.group_version()) {
        return Err(ApiError::new(
            400,
            "BadRequest",
            format!(
                "the API version in the data ({api}) does not match the expected API version ({}) or kind {kind} is not {}",
                r.group_version(),
                r.kind
            ),
        ));
    }
    Ok(v)
}

fn selectors(q: &BTreeMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let l = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str)).map_err(|e| ApiError::new(400, "BadRequest", e))?;
    let f = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str)).map_err(|e| ApiError::new(400, "BadRequest", e))?;
    Ok((l, f))
}

fn list(s: &ApiServer, res: usize, ns: Option<&str>, q: &BTreeMap<String, String>, as_table: bool) -> Response {
    let r = &RESOURCES[res];
    let (l, f) = match selectors(q) {
        Ok(x) => x,
        Err(e) => return error(&e, Some(r), None),
    };
    let st = s.store();
    let mut items: Vec<Value> = st
        .list(res, ns)
        .into_iter()
        .filter(|o| l.matches(o) && f.matches(o))
        .cloned()
        .collect();
    let offset: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|c| c.parse().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
    let total = items.len();
    items = items.into_iter().skip(offset).take(limit).collect();
    let mut meta = json!({"resourceVersion": st.rv().to_string()});
    if offset + items.len() < total {
        meta["continue"] = json!((offset + items.len()).to_string());
        meta["remainingItemCount"] = json!(total - offset - items.len());
    }
    if as_table {
        if let Some(t) = crate::table::table(r, &items, meta.clone()) {
            return json_response(StatusCode::OK, &t);
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", r.kind), "apiVersion": r.group_version(), "metadata": meta, "items": items}),
    )
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn watch(s: &Arc<ApiServer>, res: usize, ns: Option<String>, q: &BTreeMap<String, String>, as_table: bool) -> Response {
    let r = &RESOURCES[res];
    // `kubectl get -w` (printing): each event's object as a one-row Table
    let shown = move |o: &Value| -> Value {
        match as_table {
            true => crate::table::table(r, std::slice::from_ref(o), json!({})).unwrap_or_else(|| o.clone()),
            false => o.clone(),
        }
    };
    let (l, f) = match selectors(q) {
        Ok(x) => x,
        Err(e) => return error(&e, Some(r), None),
    };
    let bookmarks = flag(q, "allowWatchBookmarks");
    let initial_end = bookmarks && flag(q, "sendInitialEvents");
    let timeout = Duration::from_secs(q.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800));
    let wanted =
        move |c: &Change| c.res == res && ns.as_deref().is_none_or(|n| n == c.namespace) && l.matches(&c.object) && f.matches(&c.object);
    // the starting point and the subscription under one lock: no gap
    let (first, mut rx, mut last) = {
        let st = s.store();
        let rx = s.changes.subscribe();
        // a streaming list (sendInitialEvents) and a watch without a
        // resourceVersion both start with the current state
        let from = match flag(q, "sendInitialEvents") {
            true => None,
            false => q.get("resourceVersion").map(String::as_str),
        };
        let first: Result<Vec<Change>, ()> = match from {
            None | Some("") | Some("0") => Ok(st
                .list(res, None)
                .into_iter()
                .map(|o| Change {
                    rv: st.rv(),
                    res,
                    namespace: o["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
                    kind: "ADDED",
                    object: o.clone(),
                })
                .collect()),
            Some(v) => match v.parse::<u64>().ok().and_then(|v| st.changes_since(v)) {
                Some(c) => Ok(c),
                None => Err(()),
            },
        };
        (first, rx, st.rv())
    };
    let (tx, body_rx) = futures::channel::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(64);
    let kind = r.kind;
    let gv = r.group_version();
    let every = s.bookmark_every;
    tokio::spawn(async move {
        use futures::SinkExt;
        let mut tx = tx;
        let first = match first {
            Ok(f) => f,
            Err(()) => {
                let gone = ApiError::new(410, "Expired", "too old resource version").status(None, None);
                let _ = tx.send(Ok(event_line("ERROR", &gone))).await;
                return;
            }
        };
        for c in first.iter().filter(|c| wanted(c)) {
            if tx.send(Ok(event_line(c.kind, &shown(&c.object)))).await.is_err() {
                return;
            }
        }
        if initial_end {
            // the end of a streaming list's initial events
            let b = json!({"kind": kind, "apiVersion": gv, "metadata": {"resourceVersion": last.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(Ok(event_line("BOOKMARK", &b))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tick.tick(), if bookmarks => {
                    let b = json!({"kind": kind, "apiVersion": gv, "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(Ok(event_line("BOOKMARK", &b))).await.is_err() {
                        return;
                    }
                }
                c = rx.recv() => match c {
                    Ok(c) => {
                        last = last.max(c.rv);
                        if c.rv > 0 && wanted(&c) && tx.send(Ok(event_line(c.kind, &shown(&c.object)))).await.is_err() {
                            return;
                        }
                    }
                    // a slow watcher: end its stream; it resumes from what it saw
                    Err(_) => return,
                },
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(Body::from_stream(body_rx))
        .unwrap()
}

/// Serve on `listener` until the process ends.
pub async fn serve(s: Arc<ApiServer>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, s.router()).await
}

/// `qualified` for other modules' messages.
pub fn resource_name(res: usize) -> String {
    qualified(&RESOURCES[res])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_collections_objects_and_subresources() {
        let pods = find("", "v1", "pods").unwrap();
        let cnp = find("cilium.io", "v2", "ciliumnetworkpolicies").unwrap();
        let ccnp = find("cilium.io", "v2", "ciliumclusterwidenetworkpolicies").unwrap();
        assert_eq!(target("/api/v1/pods"), Some(Target::Collection(pods, None)));
        assert_eq!(
            target("/api/v1/namespaces/default/pods"),
            Some(Target::Collection(pods, Some("default".into())))
        );
        assert_eq!(
            target("/api/v1/namespaces/default/pods/web/status"),
            Some(Target::Object {
                res: pods,
                ns: "default".into(),
                name: "web".into(),
                status: true
            })
        );
        assert_eq!(
            target("/api/v1/namespaces/kube-system"),
            Some(Target::Object {
                res: 0,
                ns: "".into(),
                name: "kube-system".into(),
                status: false
            })
        );
        assert_eq!(
            target("/api/v1/namespaces/x/status"),
            Some(Target::Object {
                res: 0,
                ns: "".into(),
                name: "x".into(),
                status: true
            })
        );
        assert_eq!(
            target("/apis/cilium.io/v2/namespaces/n/ciliumnetworkpolicies/p"),
            Some(Target::Object {
                res: cnp,
                ns: "n".into(),
                name: "p".into(),
                status: false
            })
        );
        assert_eq!(
            target("/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies/c"),
            Some(Target::Object {
                res: ccnp,
                ns: "".into(),
                name: "c".into(),
                status: false
            })
        );
        assert_eq!(
            target("/apis/cilium.io/v2/namespaces/n/ciliumclusterwidenetworkpolicies"),
            None,
            "not namespaced"
        );
        assert_eq!(target("/apis/nope/v1/things"), None);
        assert_eq!(decode("app%3Dweb%2Ctier+in+%28a%29"), "app=web,tier in (a)");
    }
}
