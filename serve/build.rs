//! Compiles E2B's envd protos (vendored in `spec/e2b/`) into Connect RPC services with protox (a
//! protobuf compiler in Rust, so no `protoc` is needed) and connectrpc-build.

use std::path::PathBuf;

use prost::Message as _;

fn main() {
    let protos = ["process.proto", "filesystem.proto"];
    let spec = PathBuf::from("spec/e2b");
    let descriptors = match protox::compile(protos.map(|p| spec.join(p)), [&spec]) {
        Ok(d) => d,
        Err(e) => panic!("cannot compile E2B's protos in spec/e2b: {e}"),
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let set = out.join("envd_descriptors.bin");
    std::fs::write(&set, descriptors.encode_to_vec()).expect("write the descriptor set");
    connectrpc_build::Config::new()
        .files(&protos)
        .descriptor_set(&set)
        .include_file("_connectrpc.rs")
        .compile()
        .expect("generate the envd services");
    for p in protos {
        println!("cargo::rerun-if-changed=spec/e2b/{p}");
    }
}
