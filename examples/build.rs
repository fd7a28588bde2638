//! Compiles `proto/chat.proto` with prost-build, using the `protoc` that
//! `protoc-bin-vendored` ships (no system install needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/chat.proto");
    prost_build::Config::new()
        .protoc_executable(protoc_bin_vendored::protoc_bin_path()?)
        .compile_protos(&["proto/chat.proto"], &["proto"])?;
    Ok(())
}
