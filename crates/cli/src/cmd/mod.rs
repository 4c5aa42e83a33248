//! One module per command family.
pub mod bpf;
pub mod endpoint;
pub mod events;
pub mod identity;
pub mod kvstore;
pub mod lab;
pub mod monitor;
pub mod observe;
pub mod policy;
pub mod service;
pub mod status;
