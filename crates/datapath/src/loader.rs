//! Loading the eBPF objects and attaching them with pinned TCX links.
use crate::objects;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading eBPF object {object}: {source}")]
    Load { object: &'static str, source: aya::EbpfError },
    #[error("program {program}: {source}")]
    Program {
        program: String,
        source: aya::programs::ProgramError,
    },
    #[error("program {program} not found in {object}")]
    MissingProgram { program: String, object: &'static str },
    #[error("link pin {path}: {msg}")]
    Link { path: PathBuf, msg: String },
    #[error("map {map} (pinned at {path}): {msg}")]
    Map { map: String, path: PathBuf, msg: String },
    /// The map has no room for the entries wanted.
    #[error("policy map is full ({wanted} entries wanted, {max} max; {path}): {source}")]
    MapFull {
        path: PathBuf,
        wanted: usize,
        max: u32,
        source: Box<aya::maps::MapError>,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

type Result<T> = std::result::Result<T, DatapathError>;

impl DatapathError {
    /// A map had no room (a regeneration can succeed once entries go away).
    pub fn is_map_full(&self) -> bool {
        matches!(self, Self::MapFull { .. })
    }
}

/// What attaching an endpoint needs: its id (policy map) and host-side veth.
/// Everything else the program reads from the endpoint's `seta_lxc` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointProgConfig {
    pub ep_id: u16,
    /// host-side veth (lxc*)
    pub ifname: String,
}

pub const PROG_FROM_CONTAINER: &str = "from_container";
pub const PROG_FROM_HOST: &str = "from_host";
pub const PROG_FROM_OVERLAY: &str = "from_overlay";
pub const PROG_FROM_NETDEV: &str = "from_netdev";
/// Socket-LB's programs (bpf_sock.o), one per cgroup hook; the last is a
/// socket program (bind protection), the others socket-address ones.
pub const SOCK_PROGS: [&str; 5] = [
    "sock4_connect",
    "sock4_sendmsg",
    "sock4_recvmsg",
    "sock4_getpeername",
    "sock4_post_bind",
];
/// Bind protection's program (post_bind4), attached only with it on.
pub const SOCK_BIND_PROG: &str = "sock4_post_bind";

/// Sizes of shared maps that come from flags (Cilium's `bpf-lb-map-max`,
/// `bpf-nat-global-max`); the others keep the objects' sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    /// services, backends, rev-NAT, the LB connection table, affinity, source ranges
    pub lb: u32,
    /// the BPF NAT table (both directions of each connection)
    pub nat: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            lb: seta_abi::LB_MAP_SIZE,
            nat: seta_abi::NAT_MAP_SIZE,
        }
    }
}

impl MapSizes {
    /// (map, max entries, the flag that sets it)
    pub fn maps(&self) -> Vec<(&'static str, u32, &'static str)> {
        use crate::maps::*;
        let lb = [
            MAP_LB4_SVC,
            MAP_LB4_BE,
            MAP_LB4_RNAT,
            MAP_LB4_CONN,
            MAP_LB4_AFFINITY,
            MAP_LB4_SRC_RANGE,
            MAP_LB4_REVERSE_SK,
        ];
        lb.into_iter()
            .map(|m| (m, self.lb, "--bpf-lb-map-max"))
            .chain([(MAP_SNAT4, self.nat, "--bpf-nat-global-max")])
            .collect()
    }
}

/// A node's datapath, rooted at its versioned pin directory.
#[derive(Clone)]
pub struct Datapath {
    pin_dir: PathBuf,
    sizes: MapSizes,
    /// the shared endpoint program (pinned; loaded and verified once)
    lxc_prog: Arc<Mutex<Option<SchedClassifier>>>,
    /// `EbpfLoader::new()` reads and parses the kernel's BTF (~20 ms of CPU):
    /// policy maps are created through this one loader instead of a new one each
    map_loader: Arc<Mutex<EbpfLoader<'static>>>,
    /// endpoint ids whose policy map pin is being created or loaded right now
    busy: Arc<Mutex<std::collections::BTreeSet<u16>>>,
}

/// Holds an endpoint id's policy map pin for one user (released on drop).
struct Claim<'a>(&'a Mutex<std::collections::BTreeSet<u16>>, u16);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath").field("pin_dir", &self.pin_dir).finish()
    }
}

/// A content hash of the embedded endpoint object: its program pin is
/// reused across agent restarts only while the object is the same.
fn lxc_object_hash() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    objects::BPF_LXC.hash(&mut h);
    h.finish()
}

fn dir_name(d: TcAttachType) -> &'static str {
    match d {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    }
}

impl Datapath {
    pub fn new(pin_dir: impl Into<PathBuf>) -> Result<Self> {
        Self::with_sizes(pin_dir, MapSizes::default())
    }

    /// A datapath whose shared maps get `sizes` when they are created.
    pub fn with_sizes(pin_dir: impl Into<PathBuf>, sizes: MapSizes) -> Result<Self> {
        let pin_dir = pin_dir.into();
        std::fs::create_dir_all(pin_dir.join("links")).map_err(|source| DatapathError::Io {
            what: format!("create {}", pin_dir.display()),
            source,
        })?;
        let mut ml = EbpfLoader::new();
        ml.btf(None).default_map_pin_directory(&pin_dir);
        Ok(Self {
            pin_dir,
            sizes,
            lxc_prog: Default::default(),
            map_loader: Arc::new(Mutex::new(ml)),
            busy: Default::default(),
        })
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
        l.btf(None).default_map_pin_directory(&self.pin_dir);
        for (map, n, _) in self.sizes.maps() {
            l.map_max_entries(map, n);
        }
        l
    }

    /// Pinned maps keep the size they were created with (aya reuses a pin
    /// as it is): one whose size differs from the flags' is an error that
    /// says how to change it, never a silent mismatch.
    pub fn check_pinned_sizes(&self) -> Result<()> {
        for (map, want, flag) in self.sizes.maps() {
            let path = self.pin_dir.join(map);
            if !path.exists() {
                continue;
            }
            let have = aya::maps::MapInfo::from_pin(&path)
                .map_err(|e| DatapathError::Map {
                    map: map.into(),
                    path: path.clone(),
                    msg: e.to_string(),
                })?
                .max_entries();
            if have != want {
                return Err(DatapathError::Map {
                    map: map.into(),
                    path,
                    msg: format!(
                        "pinned with {have} entries but {flag} asks for {want}; keep {flag} {have}, or stop the agent and run `seta-agent cleanup` (its pods lose connectivity until they are re-created) to rebuild the datapath with the new size"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Load bpf_host (creates and pins every shared map on first use).
    pub fn load_host_object(&self) -> Result<Ebpf> {
        let mut ebpf = self.loader().load(objects::BPF_HOST).map_err(|source| DatapathError::Load {
            object: "bpf_host.o",
            source,
        })?;
        load_prog(&mut ebpf, PROG_FROM_HOST, "bpf_host.o")?;
        Ok(ebpf)
    }

    /// Load bpf_lxc with `from_container` verified, not attached and not
    /// pinned (the template policy map is pinned as `seta_pol_template`).
    pub fn load_lxc_object(&self) -> Result<Ebpf> {
        let mut l = self.loader();
        l.map_pin_path("seta_pol_ep", self.pin_dir.join("seta_pol_template"));
        let mut ebpf = l.load(objects::BPF_LXC).map_err(|source| DatapathError::Load {
            object: "bpf_lxc.o",
            source,
        })?;
        load_prog(&mut ebpf, PROG_FROM_CONTAINER, "bpf_lxc.o")?;
        Ok(ebpf)
    }

    /// Pin of the shared endpoint program for this build's object.
    pub fn lxc_prog_pin(&self) -> PathBuf {
        self.pin_dir
            .join("progs")
            .join(format!("from_container_{:016x}", lxc_object_hash()))
    }

    /// Run `f` on the shared endpoint program: the pinned one of this object
    /// when there (a restart keeps it), else loaded, verified and pinned now.
    fn with_lxc_prog<T>(&self, f: impl FnOnce(&mut SchedClassifier) -> Result<T>) -> Result<T> {
        let mut g = self.lxc_prog.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            let pin = self.lxc_prog_pin();
            let io = |what: String| move |source| DatapathError::Io { what, source };
            if !pin.exists() {
                let dir = pin.parent().expect("progs dir");
                std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
                let mut ebpf = self.load_lxc_object()?;
                let p: &mut SchedClassifier =
                    ebpf.program_mut(PROG_FROM_CONTAINER)
                        .expect("loaded above")
                        .try_into()
                        .map_err(|source| DatapathError::Program {
                            program: PROG_FROM_CONTAINER.into(),
                            source,
                        })?;
                p.pin(&pin).map_err(|e| DatapathError::Link {
                    path: pin.clone(),
                    msg: format!("pin program: {e}"),
                })?;
                // programs of older objects stay alive in the filters that use them
                for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    if e.path() != pin && e.file_name().to_string_lossy().starts_with("from_container_") {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
            let p = SchedClassifier::from_pin(&pin).map_err(|source| DatapathError::Program {
                program: format!("{PROG_FROM_CONTAINER} pinned at {}", pin.display()),
                source,
            })?;
            *g = Some(p);
        }
        f(g.as_mut().expect("set above"))
    }

    /// Kernel id of the shared endpoint program.
    pub fn lxc_prog_id(&self) -> Result<u32> {
        self.with_lxc_prog(|p| {
            p.info().map(|i| i.id()).map_err(|source| DatapathError::Program {
                program: PROG_FROM_CONTAINER.into(),
                source,
            })
        })
    }

    /// Attach `from_host` to the egress of `dev`. An existing pinned link is
    /// updated in place (atomic program swap), so a restart never detaches it.
    pub fn attach_host(&self, dev: &str) -> Result<()> {
        let mut ebpf = self.load_host_object()?;
        self.attach_pinned(&mut ebpf, PROG_FROM_HOST, dev, TcAttachType::Egress, true)
    }

    /// Attach `from_overlay` to the ingress of the tunnel device `dev` (pinned
    /// link, swapped in place like the host program).
    pub fn attach_overlay(&self, dev: &str) -> Result<()> {
        let mut ebpf = self.load_host_object()?;
        load_prog(&mut ebpf, PROG_FROM_OVERLAY, "bpf_host.o")?;
        self.attach_pinned(&mut ebpf, PROG_FROM_OVERLAY, dev, TcAttachType::Ingress, true)
    }

    /// Attach `from_netdev` to the ingress of the node's network device `dev`.
    pub fn attach_netdev(&self, dev: &str) -> Result<()> {
        let mut ebpf = self.load_host_object()?;
        load_prog(&mut ebpf, PROG_FROM_NETDEV, "bpf_host.o")?;
        self.attach_pinned(&mut ebpf, PROG_FROM_NETDEV, dev, TcAttachType::Ingress, true)
    }

    /// Pin path of an endpoint's policy map (`seta_pol_NNNNN`).
    pub fn policy_pin(&self, ep_id: u16) -> PathBuf {
        self.pin_dir.join(format!("seta_pol_{ep_id:05}"))
    }

    /// Give an endpoint's policy map the desired entries and register it in
    /// `seta_policy`, then attach the shared program as the device's filter
    /// (an existing filter is replaced in place, atomically): the endpoint
    /// enforces its policy from its first packet. `policy: None` keeps
    /// whatever the (pinned) policy map holds.
    pub fn attach_endpoint(&self, cfg: &EndpointProgConfig, policy: Option<&crate::maps::PolicyEntries>) -> Result<()> {
        let t = std::time::Instant::now();
        let _claim = self.claim(cfg.ep_id);
        if !self.policy_pin(cfg.ep_id).exists() {
            // no spare was prepared for this id: create its map now
            self.create_policy_map(cfg.ep_id)?;
        }
        let mut pm = crate::maps::PolicyMap::open_pinned(&self.policy_pin(cfg.ep_id))?;
        if let Some(policy) = policy {
            pm.sync(policy)?;
        }
        let mut outer = crate::maps::PolicyOuter::open(&self.pin_dir)?;
        if !outer.contains(cfg.ep_id) {
            // no spare was ready: register now (one RCU grace period)
            outer.register(cfg.ep_id, &pm)?;
        }
        self.with_lxc_prog(|p| attach_tc_filter(p, PROG_FROM_CONTAINER, &cfg.ifname))?;
        // an endpoint attached by an older seta (pinned TCX link) hands over
        // only now that the filter is in place: no gap
        let old = self.link_pin(&cfg.ifname, "ingress");
        if old.exists() {
            let _ = std::fs::remove_file(&old);
        }
        tracing::debug!(ms = t.elapsed().as_secs_f64() * 1e3, "attached ingress");
        Ok(())
    }

    /// Create (and pin) endpoint `ep_id`'s policy map from the template in
    /// bpf_lxc.o; no program is loaded.
    fn create_policy_map(&self, ep_id: u16) -> Result<()> {
        let mut l = self.map_loader.lock().unwrap_or_else(|p| p.into_inner());
        l.map_pin_path("seta_pol_ep", self.policy_pin(ep_id));
        let _maps_only = l.load(objects::BPF_LXC).map_err(|source| DatapathError::Load {
            object: "bpf_lxc.o",
            source,
        })?;
        Ok(())
    }

    /// Make sure endpoint id `ep_id` has an (empty, deny-all) policy map that is
    /// already registered in `seta_policy`. Registering waits for an RCU grace
    /// period in the kernel, so the agent does this ahead of time for the next
    /// free ids and endpoint creation finds the map ready. Only the maps are
    /// created (no program is verified). Returns whether it had to register.
    pub fn ensure_policy_map(&self, ep_id: u16) -> Result<bool> {
        let Some(_claim) = self.try_claim(ep_id) else { return Ok(false) }; // being loaded: not a spare
        let pin = self.policy_pin(ep_id);
        let mut outer = crate::maps::PolicyOuter::open(&self.pin_dir)?;
        if pin.exists() && outer.contains(ep_id) {
            return Ok(false);
        }
        if !pin.exists() {
            self.create_policy_map(ep_id)?;
        }
        let pm = crate::maps::PolicyMap::open_pinned(&pin)?;
        outer.register(ep_id, &pm)?;
        Ok(true)
    }

    fn try_claim(&self, ep_id: u16) -> Option<Claim<'_>> {
        let mut b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        b.insert(ep_id).then(|| Claim(&self.busy, ep_id))
    }

    fn claim(&self, ep_id: u16) -> Claim<'_> {
        loop {
            if let Some(c) = self.try_claim(ep_id) {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Empty an endpoint's policy map (deny-all) and keep it registered as a
    /// spare for the next endpoint that gets this id.
    pub fn recycle_policy_map(&self, ep_id: u16) -> Result<()> {
        match crate::maps::PolicyMap::open_pinned(&self.policy_pin(ep_id)) {
            Ok(mut pm) => pm.sync(&Default::default()).map(|_| ()),
            Err(_) => Ok(()),
        }
    }

    /// Forget an endpoint's policy map (outer-map entry and pin).
    pub fn remove_endpoint_policy(&self, ep_id: u16) -> Result<()> {
        if let Ok(mut outer) = crate::maps::PolicyOuter::open(&self.pin_dir) {
            outer.unregister(ep_id)?;
        }
        let p = self.policy_pin(ep_id);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DatapathError::Io {
                what: format!("unpin {}", p.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Detach an endpoint's programs: its cls_bpf filter (a device that is
    /// gone took it along) and any link pins.
    pub fn detach_endpoint(&self, ifname: &str) -> Result<()> {
        detach_tc_filter(ifname)?;
        self.detach_links(ifname)
    }

    /// Remove a device's link pins (the kernel drops the links once no one
    /// holds them).
    pub fn detach_links(&self, ifname: &str) -> Result<()> {
        for d in ["ingress", "egress"] {
            let p = self.link_pin(ifname, d);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DatapathError::Io {
                        what: format!("unpin {}", p.display()),
                        source,
                    })
                }
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
            .ok_or_else(|| DatapathError::MissingProgram {
                program: prog.into(),
                object: "?",
            })?
            .try_into()
            .map_err(|source| DatapathError::Program {
                program: prog.into(),
                source,
            })?;
        let perr = |source| DatapathError::Program {
            program: format!("{prog} on {ifname} {}", dir_name(dir)),
            source,
        };
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

    /// Pins of the socket-LB links (one per hook), apart from the devices' links.
    pub fn cgroup_link_pin(&self, prog: &str) -> PathBuf {
        self.pin_dir.join("cgroup").join(prog)
    }

    /// Socket-LB: load bpf_sock and attach its programs at the cgroup
    /// `cgroup` (the node's; never the machine's root), each through a
    /// pinned link that outlives the agent. A restart attaches the new
    /// program next to the old one and then drops the old link, so no
    /// connect goes untranslated in between. Without `bind_protection`
    /// (Cilium's node-port-bind-protection) post_bind4 is not attached, and
    /// a link of it from before goes.
    pub fn attach_cgroup(&self, cgroup: &Path, bind_protection: bool) -> Result<()> {
        use aya::programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr};
        let dir = std::fs::File::open(cgroup).map_err(|source| DatapathError::Io {
            what: format!("open cgroup {}", cgroup.display()),
            source,
        })?;
        std::fs::create_dir_all(self.pin_dir.join("cgroup")).map_err(|source| DatapathError::Io {
            what: format!("create {}", self.pin_dir.join("cgroup").display()),
            source,
        })?;
        let mut ebpf = self.loader().load(objects::BPF_SOCK).map_err(|source| DatapathError::Load {
            object: "bpf_sock.o",
            source,
        })?;
        for name in SOCK_PROGS {
            if name == SOCK_BIND_PROG && !bind_protection {
                self.unpin_cgroup_link(name)?;
                continue;
            }
            let perr = |source| DatapathError::Program {
                program: format!("{name} at {}", cgroup.display()),
                source,
            };
            let prog = ebpf.program_mut(name).ok_or_else(|| DatapathError::MissingProgram {
                program: name.to_string(),
                object: "bpf_sock.o",
            })?;
            let pin = self.cgroup_link_pin(name);
            let lerr = |msg: String| DatapathError::Link { path: pin.clone(), msg };
            // through a bpf_link (flags 0: links always allow several programs)
            let fd: FdLink = if name == SOCK_BIND_PROG {
                let p: &mut CgroupSock = prog.try_into().map_err(perr)?;
                p.load().map_err(perr)?;
                let id = p.attach(&dir, CgroupAttachMode::Single).map_err(perr)?;
                let link = p.take_link(id).map_err(perr)?;
                link.try_into().map_err(|e| lerr(format!("not an fd link: {e}")))?
            } else {
                let p: &mut CgroupSockAddr = prog.try_into().map_err(perr)?;
                p.load().map_err(perr)?;
                let id = p.attach(&dir, CgroupAttachMode::Single).map_err(perr)?;
                let link = p.take_link(id).map_err(perr)?;
                link.try_into().map_err(|e| lerr(format!("not an fd link: {e}")))?
            };
            let tmp = self.cgroup_link_pin(&format!("{name}_new"));
            let _ = std::fs::remove_file(&tmp);
            fd.pin(&tmp).map_err(|e| lerr(format!("pin: {e:?}")))?;
            // the old link (if any) goes with its pin: it has no other holder
            std::fs::rename(&tmp, &pin).map_err(|e| lerr(format!("rename: {e}")))?;
        }
        Ok(())
    }

    /// Socket-LB off: drop its links (the programs detach).
    pub fn detach_cgroup(&self) -> Result<()> {
        SOCK_PROGS.iter().try_for_each(|name| self.unpin_cgroup_link(name))
    }

    /// Drop one socket-LB link (its program detaches), if there is one.
    fn unpin_cgroup_link(&self, name: &str) -> Result<()> {
        match std::fs::remove_file(self.cgroup_link_pin(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DatapathError::Io {
                what: format!("remove {}", self.cgroup_link_pin(name).display()),
                source,
            }),
        }
    }

    /// Is socket-LB attached (its address hooks' links pinned)?
    pub fn cgroup_attached(&self) -> bool {
        SOCK_PROGS
            .iter()
            .filter(|p| **p != SOCK_BIND_PROG)
            .all(|p| self.cgroup_link_pin(p).exists())
    }

    /// Remove every pin of this node (maps and links): the datapath goes away.
    pub fn remove_all(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.pin_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DatapathError::Io {
                    what: format!("remove {}", self.pin_dir.display()),
                    source,
                })
            }
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

/// Priority and handle of seta's cls_bpf filter on an endpoint's host-side
/// veth (Cilium uses the same: `tc filter show dev lxc… ingress` shows
/// `pref 1 bpf chain 0 handle 0x1 from_container direct-action`).
pub const ENDPOINT_FILTER_PRIORITY: u16 = 1;
pub const ENDPOINT_FILTER_HANDLE: u32 = 1;

/// Attach `prog` as the direct-action cls_bpf filter on the clsact ingress
/// hook of `ifname` (the legacy tc path: ~0.03 ms, where a TCX link costs an
/// RCU grace period under RTNL). An existing filter is replaced in place,
/// atomically; the filter lives in the kernel, independent of this process,
/// so it survives the agent.
fn attach_tc_filter(program: &mut SchedClassifier, prog: &str, ifname: &str) -> Result<()> {
    use aya::programs::tc::{qdisc_add_clsact, NlOptions, TcError, TcHandle};
    let perr = |source| DatapathError::Program {
        program: format!("{prog} on {ifname} ingress"),
        source,
    };
    let errno = |e: &aya::programs::ProgramError| match e {
        aya::programs::ProgramError::TcError(TcError::NetlinkError(n)) => n.raw_os_error(),
        aya::programs::ProgramError::NetlinkError(n) => n.raw_os_error(),
        _ => None,
    };
    match qdisc_add_clsact(ifname) {
        Ok(()) => {}
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(TcError::AlreadyAttached) => {}
        Err(e) => return Err(perr(e.into())),
    }
    let handle = TcHandle::from(ENDPOINT_FILTER_HANDLE);
    let opts = || {
        TcAttachOptions::Netlink(NlOptions {
            priority: ENDPOINT_FILTER_PRIORITY,
            handle,
            classid: None,
        })
    };
    let id =
        match program.attach_with_options(ifname, TcAttachType::Ingress, opts()) {
            Ok(id) => id,
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                // replace the program inside the existing filter (same priority
                // and handle): packets see the old or the new program, never none
                let existing = SchedClassifierLink::attached(ifname, TcAttachType::Ingress, ENDPOINT_FILTER_PRIORITY, handle, None)
                    .map_err(|source| DatapathError::Io {
                        what: format!("interface {ifname}"),
                        source,
                    })?;
                program.attach_to_link(existing).map_err(perr)?
            }
            Err(e) => return Err(perr(e)),
        };
    // the filter must outlive this process: dropping the link would delete it
    let link = program.take_link(id).map_err(perr)?;
    std::mem::forget(link);
    Ok(())
}

/// Delete seta's filter from an endpoint's device (nothing to do when the
/// device or the filter is gone).
fn detach_tc_filter(ifname: &str) -> Result<()> {
    use aya::programs::links::Link;
    use aya::programs::tc::TcHandle;
    let Ok(link) = SchedClassifierLink::attached(
        ifname,
        TcAttachType::Ingress,
        ENDPOINT_FILTER_PRIORITY,
        TcHandle::from(ENDPOINT_FILTER_HANDLE),
        None,
    ) else {
        return Ok(()); // no such device
    };
    match link.detach() {
        Ok(()) => Ok(()),
        Err(e) => {
            let gone = match &e {
                aya::programs::ProgramError::NetlinkError(n) => {
                    matches!(n.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::EINVAL))
                }
                aya::programs::ProgramError::TcError(aya::programs::tc::TcError::NetlinkError(n)) => {
                    matches!(n.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::EINVAL))
                }
                _ => false,
            };
            if gone {
                Ok(())
            } else {
                Err(DatapathError::Program {
                    program: format!("detach filter on {ifname}"),
                    source: e,
                })
            }
        }
    }
}

fn load_prog(ebpf: &mut Ebpf, name: &str, object: &'static str) -> Result<()> {
    let p: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| DatapathError::MissingProgram {
            program: name.into(),
            object,
        })?
        .try_into()
        .map_err(|source| DatapathError::Program {
            program: name.into(),
            source,
        })?;
    p.load().map_err(|source| DatapathError::Program {
        program: name.into(),
        source,
    })
}

/// Programs attached with TCX to `dev` (bpftool 7.1 cannot show these).
pub fn query_tcx(dev: &str) -> Result<Vec<(String, String, u32)>> {
    let mut out = Vec::new();
    for dir in [TcAttachType::Ingress, TcAttachType::Egress] {
        let (_, progs) = SchedClassifier::query_tcx(dev, dir).map_err(|source| DatapathError::Program {
            program: format!("query tcx {dev}"),
            source,
        })?;
        for p in progs {
            out.push((dir_name(dir).to_string(), p.name_as_str().unwrap_or("?").to_string(), p.id()));
        }
    }
    Ok(out)
}
