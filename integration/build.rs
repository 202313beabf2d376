//! Compiles the vendored Kubernetes CRI API (proto/cri-api-v1.proto, from
//! k8s.io/cri-api, Apache-2.0) into a tonic client for the CRI tests. The
//! protoc binary comes from the protoc-bin-vendored crate, so a clean clone
//! builds with plain `cargo build` and no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/cri-api-v1.proto");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/cri-api-v1.proto"], &["proto/"])?;
    Ok(())
}
