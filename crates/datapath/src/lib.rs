//! The one adapter layer between seta and the kernel: the embedded eBPF
//! objects, loading them with per-endpoint constants, TCX attachment with
//! pinned links, typed access to the pinned maps, and netlink.
pub mod loader;
pub mod maps;
pub mod netlink;
pub mod sockdiag;
pub mod sysfs;
pub mod testpkt;

pub use loader::{Datapath, DatapathError, EndpointProgConfig, MapSizes};

/// eBPF objects compiled from `bpf/` by build.rs.
pub mod objects {
    pub static BPF_LXC: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpf_lxc.o"));
    pub static BPF_HOST: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpf_host.o"));
    /// Socket-LB: cgroup connect4/sendmsg4/recvmsg4/getpeername4, and post_bind4 (bind protection).
    pub static BPF_SOCK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpf_sock.o"));
    /// An empty tc program: the baseline of the per-packet benchmark.
    pub static TEST_EMPTY: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tests_empty.o"));
    /// BTF of every struct in `bpf/include/abi.h` (never loaded; for the ABI test).
    pub static TEST_ABI: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tests_abi.o"));
}
