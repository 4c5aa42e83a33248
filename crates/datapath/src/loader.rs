//! Loading the eBPF objects and attaching them with pinned TCX links.
use crate::objects;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading eBPF object {object}: {source}")]
    Load { object: &'static str, source: aya::EbpfError },
    #[error("program {program}: {source}")]
    Program { program: String, source: aya::programs::ProgramError },
    #[error("program {program} not found in {object}")]
    MissingProgram { program: String, object: &'static str },
    #[error("link pin {path}: {msg}")]
    Link { path: PathBuf, msg: String },
    #[error("map {map} (pinned at {path}): {msg}")]
    Map { map: String, path: PathBuf, msg: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

type Result<T> = std::result::Result<T, DatapathError>;

/// Per-endpoint load-time constants of bpf_lxc (written to .rodata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointProgConfig {
    pub ep_id: u16,
    /// host-side veth (lxc*)
    pub ifname: String,
    pub ifindex: u32,
    pub ipv4: Ipv4Addr,
    pub sec_id: u32,
    /// MAC of the host-side veth
    pub node_mac: [u8; 6],
}

pub const PROG_FROM_CONTAINER: &str = "from_container";
pub const PROG_TO_CONTAINER: &str = "to_container";
pub const PROG_FROM_HOST: &str = "from_host";

/// A node's datapath, rooted at its versioned pin directory.
#[derive(Debug, Clone)]
pub struct Datapath {
    pin_dir: PathBuf,
}

fn dir_name(d: TcAttachType) -> &'static str {
    match d {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    }
}

impl Datapath {
    pub fn new(pin_dir: impl Into<PathBuf>) -> Result<Self> {
        let pin_dir = pin_dir.into();
        std::fs::create_dir_all(pin_dir.join("links"))
            .map_err(|source| DatapathError::Io { what: format!("create {}", pin_dir.display()), source })?;
        Ok(Self { pin_dir })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// bpffs refuses '.' in names, so links are pinned as `<ifname>_<ingress|egress>`.
    pub fn link_pin(&self, ifname: &str, dir: &str) -> PathBuf {
        self.pin_dir.join("links").join(format!("{ifname}_{dir}"))
    }

    fn loader(&self) -> EbpfLoader<'static> {
        let mut l = EbpfLoader::new();
        l.default_map_pin_directory(&self.pin_dir);
        l
    }

    /// Load bpf_host (creates and pins every shared map on first use).
    pub fn load_host_object(&self) -> Result<Ebpf> {
        let mut ebpf = self
            .loader()
            .load(objects::BPF_HOST)
            .map_err(|source| DatapathError::Load { object: "bpf_host.o", source })?;
        load_prog(&mut ebpf, PROG_FROM_HOST, "bpf_host.o")?;
        Ok(ebpf)
    }

    /// Load bpf_lxc for one endpoint with its constants; nothing is attached yet.
    pub fn load_lxc_object(&self, cfg: &EndpointProgConfig) -> Result<Ebpf> {
        let ep_id = cfg.ep_id as u32;
        let ipv4 = u32::from_ne_bytes(cfg.ipv4.octets());
        let m = cfg.node_mac;
        let mac = u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0]);
        let mut ebpf = self
            .loader()
            .override_global("EP_ID", &ep_id, true)
            .override_global("EP_IFINDEX", &cfg.ifindex, true)
            .override_global("EP_IPV4", &ipv4, true)
            .override_global("EP_SECID", &cfg.sec_id, true)
            .override_global("EP_NODE_MAC", &mac, true)
            .load(objects::BPF_LXC)
            .map_err(|source| DatapathError::Load { object: "bpf_lxc.o", source })?;
        load_prog(&mut ebpf, PROG_FROM_CONTAINER, "bpf_lxc.o")?;
        load_prog(&mut ebpf, PROG_TO_CONTAINER, "bpf_lxc.o")?;
        Ok(ebpf)
    }

    /// Attach `from_host` to the egress of `dev`. An existing pinned link is
    /// updated in place (atomic program swap), so a restart never detaches it.
    pub fn attach_host(&self, dev: &str) -> Result<()> {
        let mut ebpf = self.load_host_object()?;
        self.attach_pinned(&mut ebpf, PROG_FROM_HOST, dev, TcAttachType::Egress, true)
    }

    /// Attach an endpoint's programs to its host-side veth and pin the links.
    pub fn attach_endpoint(&self, cfg: &EndpointProgConfig) -> Result<()> {
        let mut ebpf = self.load_lxc_object(cfg)?;
        self.attach_pinned(&mut ebpf, PROG_FROM_CONTAINER, &cfg.ifname, TcAttachType::Ingress, false)?;
        self.attach_pinned(&mut ebpf, PROG_TO_CONTAINER, &cfg.ifname, TcAttachType::Egress, false)
    }

    /// Are both links of an endpoint pinned?
    pub fn endpoint_attached(&self, ifname: &str) -> bool {
        self.link_pin(ifname, "ingress").exists() && self.link_pin(ifname, "egress").exists()
    }

    /// Detach an endpoint's programs (remove the link pins; the kernel drops
    /// the links once no one holds them).
    pub fn detach_endpoint(&self, ifname: &str) -> Result<()> {
        for d in ["ingress", "egress"] {
            let p = self.link_pin(ifname, d);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(DatapathError::Io { what: format!("unpin {}", p.display()), source }),
            }
        }
        Ok(())
    }

    /// Names of devices that have pinned links.
    pub fn pinned_link_devices(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.pin_dir.join("links"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.rsplit_once('_').map(|(d, _)| d.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }

    fn attach_pinned(&self, ebpf: &mut Ebpf, prog: &str, ifname: &str, dir: TcAttachType, reuse: bool) -> Result<()> {
        let pin = self.link_pin(ifname, dir_name(dir));
        let program: &mut SchedClassifier = ebpf
            .program_mut(prog)
            .ok_or_else(|| DatapathError::MissingProgram { program: prog.into(), object: "?" })?
            .try_into()
            .map_err(|source| DatapathError::Program { program: prog.into(), source })?;
        let perr = |source| DatapathError::Program { program: format!("{prog} on {ifname} {}", dir_name(dir)), source };
        let lerr = |msg: String| DatapathError::Link { path: pin.clone(), msg };

        let mut link_id = None;
        if pin.exists() {
            if reuse {
                // Swap the program inside the existing link: no gap in forwarding.
                if let Ok(old) = PinnedLink::from_pin(&pin) {
                    let fd: FdLink = old.into();
                    if let Ok(link) = SchedClassifierLink::try_from(fd) {
                        link_id = program.attach_to_link(link).ok();
                    }
                }
            }
            std::fs::remove_file(&pin).map_err(|e| lerr(format!("remove stale pin: {e}")))?;
        }
        let link_id = match link_id {
            Some(id) => id,
            None => program
                .attach_with_options(ifname, dir, TcAttachOptions::TcxOrder(LinkOrder::default()))
                .map_err(perr)?,
        };
        let link = program.take_link(link_id).map_err(perr)?;
        let fd: FdLink = link.try_into().map_err(|e| lerr(format!("not an fd link: {e}")))?;
        fd.pin(&pin).map_err(|e| lerr(format!("pin: {e:?}")))?;
        Ok(())
    }

    /// Remove every pin of this node (maps and links): the datapath goes away.
    pub fn remove_all(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.pin_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DatapathError::Io { what: format!("remove {}", self.pin_dir.display()), source }),
        }
        // drop the empty per-node parent (…/seta/<node>) too
        // and the shared …/seta once no node is left in it
        if let Some(parent) = self.pin_dir.parent() {
            let _ = std::fs::remove_dir(parent);
            if let Some(root) = parent.parent() {
                let _ = std::fs::remove_dir(root);
            }
        }
        Ok(())
    }
}

fn load_prog(ebpf: &mut Ebpf, name: &str, object: &'static str) -> Result<()> {
    let p: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| DatapathError::MissingProgram { program: name.into(), object })?
        .try_into()
        .map_err(|source| DatapathError::Program { program: name.into(), source })?;
    p.load().map_err(|source| DatapathError::Program { program: name.into(), source })
}

/// Programs attached with TCX to `dev` (bpftool 7.1 cannot show these).
pub fn query_tcx(dev: &str) -> Result<Vec<(String, String, u32)>> {
    let mut out = Vec::new();
    for dir in [TcAttachType::Ingress, TcAttachType::Egress] {
        let (_, progs) = SchedClassifier::query_tcx(dev, dir)
            .map_err(|source| DatapathError::Program { program: format!("query tcx {dev}"), source })?;
        for p in progs {
            out.push((dir_name(dir).to_string(), p.name_as_str().unwrap_or("?").to_string(), p.id()));
        }
    }
    Ok(out)
}
