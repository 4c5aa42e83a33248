//! Compiles the C datapath in `bpf/` with clang-19 and embeds the objects in
//! the binaries (an installed binary needs no compiler).
use std::path::PathBuf;
use std::process::Command;

const OBJECTS: &[&str] = &["bpf_lxc", "bpf_host", "bpf_sock", "tests/empty", "tests/abi"];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../bpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let clang = std::env::var("SETA_CLANG").unwrap_or_else(|_| "clang-19".into());
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=SETA_CLANG");
    for obj in OBJECTS {
        let src = root.join(format!("{obj}.c"));
        let dst = out.join(format!("{}.o", obj.replace('/', "_")));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-mcpu=v3", "-target", "bpf", "-Wall", "-Werror"])
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg("-I")
            .arg(&root)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&dst)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {clang} (install clang-19, llvm-19, libbpf-dev): {e}"));
        assert!(status.success(), "{clang} failed to compile {}", src.display());
    }
}
