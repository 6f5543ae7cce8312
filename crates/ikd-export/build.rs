//! Generates the ONNX protobuf types (`onnx.rs` in `OUT_DIR`) from the vendored
//! `proto/onnx.proto` (ONNX 1.23, Apache-2.0): `protox` parses the file in Rust, `prost-build`
//! writes the types, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"])?;
    // no doc comments: the proto's indented comment text would become doctests
    prost_build::Config::new().disable_comments(["."]).compile_fds(descriptors)?;
    Ok(())
}
