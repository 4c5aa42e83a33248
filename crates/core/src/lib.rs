//! seta's pure core: everything here is deterministic and free of I/O, so it
//! is unit-tested without root. Kernel, netlink and file effects live in
//! `seta-datapath`, `seta-agent` and `seta-cni`.
pub mod api;
pub mod cni;
pub mod devices;
pub mod drop;
pub mod endpoint;
pub mod identity;
pub mod ipam;
pub mod ipcache;
pub mod ipmasq;
pub mod labelfilter;
pub mod labels;
pub mod labelselector;
pub mod mode;
pub mod names;
pub mod policy;
pub mod selector;
pub mod service;
pub mod time;
