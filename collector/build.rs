//! Builds the kernel programs (`ebpf-probes/probes`) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, so that `cargo build` and `cargo test` need no extra step once
//! `cargo xtask setup` has installed those two.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    let probes = Path::new(&manifest).join("../ebpf-probes/probes");
    let abi = Path::new(&manifest).join("../ebpf-probes/probes-abi");
    println!("cargo:rerun-if-changed={}", abi.display());
    println!("cargo:rerun-if-env-changed=PATH");

    // Only look for it: it runs under `rustup run nightly`, which puts the nightly's libLLVM on
    // the library path; run from here it may not find that library.
    let linker_ok = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("bpf-linker").is_file()));
    if !linker_ok {
        anyhow::bail!(
            "bpf-linker is not installed (or not on PATH): the eBPF probes cannot be built. \
             Run `cargo xtask setup` once; it builds bpf-linker against the nightly toolchain's own LLVM."
        );
    }
    let probes = probes.canonicalize()?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "sandwatch-probes",
            root_dir: probes.to_str().expect("utf-8 path"),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .map_err(|e| anyhow::anyhow!("building the eBPF probes failed ({e}); `cargo xtask setup` installs what they need (nightly rust-src, bpf-linker)"))
}
