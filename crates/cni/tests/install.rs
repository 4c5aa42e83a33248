//! `seta-cni install DIR` (the DaemonSet's init container) copies the plugin
//! into DIR, executable, replacing what is there.
use std::os::unix::fs::PermissionsExt;

#[test]
fn install_copies_the_plugin_atomically() {
    let dir = std::env::temp_dir().join(format!("seta-cni-install-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seta-cni"), b"old").unwrap();
    let bin = env!("CARGO_BIN_EXE_seta-cni");
    let out = std::process::Command::new(bin)
        .args(["install", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("installed {}", dir.join("seta-cni").display())
    );
    let installed = dir.join("seta-cni");
    assert_eq!(std::fs::read(&installed).unwrap(), std::fs::read(bin).unwrap());
    assert_eq!(std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777, 0o755);
    assert!(!dir.join(".seta-cni.new").exists());
    let out = std::process::Command::new(bin).arg("install").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a missing DIR is a usage error");
    let _ = std::fs::remove_dir_all(&dir);
}
