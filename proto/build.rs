//! Compiles `neurocloak/v1/*.proto` with protox (pure Rust), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "neurocloak/v1/common.proto",
        "neurocloak/v1/sketch.proto",
        "neurocloak/v1/profile.proto",
        "neurocloak/v1/agent.proto",
        "neurocloak/v1/ingest.proto",
        "neurocloak/v1/query.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        // BTreeMap: a profile always encodes to the same bytes (determinism, DESIGN §2).
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
