//! The kinds this API server serves: the core and networking kinds seta
//! uses, and Cilium's CRDs (served as generic objects, as an API server
//! serves a CRD without a schema).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// "" for the core group
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// has a status subresource
    pub status: bool,
}

impl Resource {
    /// `v1` or `group/version`.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The path prefix of this group version: `/api/v1` or `/apis/g/v`.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

#[allow(clippy::too_many_arguments)]
const fn r(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        status,
    }
}

pub const RESOURCES: &[Resource] = &[
    r("", "v1", "Namespace", "namespaces", "namespace", false, &["ns"], true),
    r("", "v1", "Pod", "pods", "pod", true, &["po"], true),
    r("", "v1", "Node", "nodes", "node", false, &["no"], true),
    r("", "v1", "Service", "services", "service", true, &["svc"], true),
    r("", "v1", "Event", "events", "event", true, &["ev"], false),
    r("", "v1", "ConfigMap", "configmaps", "configmap", true, &["cm"], false),
    r(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        false,
    ),
    r(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
        false,
    ),
    r(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        &["netpol"],
        true,
    ),
    r("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, &[], false),
    r("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, &["ds"], true),
    r("apps", "v1", "Deployment", "deployments", "deployment", true, &["deploy"], true),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        &[],
        false,
    ),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        &[],
        false,
    ),
    r("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, &[], false),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        &[],
        false,
    ),
    r(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "customresourcedefinition",
        false,
        &["crd", "crds"],
        true,
    ),
    r(
        "cilium.io",
        "v2",
        "CiliumNetworkPolicy",
        "ciliumnetworkpolicies",
        "ciliumnetworkpolicy",
        true,
        &["cnp", "ciliumnp"],
        true,
    ),
    r(
        "cilium.io",
        "v2",
        "CiliumClusterwideNetworkPolicy",
        "ciliumclusterwidenetworkpolicies",
        "ciliumclusterwidenetworkpolicy",
        false,
        &["ccnp"],
        true,
    ),
    // (Cilium writes a CiliumEndpoint whole: no status subresource)
    r(
        "cilium.io",
        "v2",
        "CiliumEndpoint",
        "ciliumendpoints",
        "ciliumendpoint",
        true,
        &["cep", "ciliumep"],
        false,
    ),
    r(
        "cilium.io",
        "v2",
        "CiliumIdentity",
        "ciliumidentities",
        "ciliumidentity",
        false,
        &["ciliumid"],
        false,
    ),
    r(
        "cilium.io",
        "v2",
        "CiliumNode",
        "ciliumnodes",
        "ciliumnode",
        false,
        &["cn", "ciliumn"],
        true,
    ),
];

/// The group versions served, in discovery order: (group, version).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// The resource of `group`/`version` named `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES.iter().position(|r| r.group_version() == api_version && r.kind == kind)
}
