//! bpffs mount and sysctls.
use std::path::Path;

/// Is a bpf filesystem mounted exactly at `path`?
pub fn bpffs_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = path.to_string_lossy();
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, mp, ty) = (f.next(), f.next(), f.next());
        mp == Some(want.as_ref()) && ty == Some("bpf")
    })
}

/// Mount bpffs at `path` unless one is already there.
pub fn ensure_bpffs(path: &Path) -> std::io::Result<bool> {
    if bpffs_mounted(path) {
        return Ok(false);
    }
    std::fs::create_dir_all(path)?;
    nix::mount::mount(Some("bpffs"), path, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>).map_err(std::io::Error::from)?;
    Ok(true)
}

/// Write an IPv4 sysctl of the *current* network namespace, e.g. ("conf/lxc1/rp_filter", "0").
pub fn set_ipv4_sysctl(key: &str, value: &str) -> std::io::Result<()> {
    let path = Path::new("/proc/sys/net/ipv4").join(key);
    std::fs::write(&path, value).map_err(|e| std::io::Error::new(e.kind(), format!("write {}: {e}", path.display())))
}

/// Read `/proc/sys/net/ipv4/KEY` (of the caller's network namespace).
pub fn ipv4_sysctl(key: &str) -> std::io::Result<String> {
    let path = Path::new("/proc/sys/net/ipv4").join(key);
    std::fs::read_to_string(&path).map_err(|e| std::io::Error::new(e.kind(), format!("read {}: {e}", path.display())))
}
