//! Compiles `proto/` with protox (no protoc needed): Rust types through prost-build, and the encoded
//! descriptor set that prost-reflect needs to parse protobuf text format at run time.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &["proto/model_config.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptors.bin"), descriptors.encode_to_vec())?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
