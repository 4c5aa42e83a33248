//! A small in-memory Kubernetes API server for seta's tests and lab (no
//! kube-apiserver can run on these machines). It serves discovery, list
//! (limit/continue, label and field selectors), watch (resourceVersion,
//! bookmarks, timeoutSeconds, 410 Gone after a compaction), get, create,
//! update, merge patch (strategic merge patches as merge patches), delete
//! and the status subresource for the core and networking kinds seta uses
//! and Cilium's CRDs as generic objects. It is proven against real clients
//! (kubectl, the Python client) and is never part of the product.
pub mod resources;
pub mod selector;
pub mod server;
pub mod store;
pub mod table;

pub use server::{kubeconfig, ApiServer};
