//! Compiles `proto/` with protox (no protoc needed): Rust types and the gRPC service's server through
//! tonic-prost-build, and the encoded descriptor set that prost-reflect needs to parse and convert
//! messages (Triton's config.pbtxt text format, the configuration's JSON) at run time.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &["proto/model_config.proto", "proto/grpc_service.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().build_client(false).compile_fds(descriptors)?;
    Ok(())
}
