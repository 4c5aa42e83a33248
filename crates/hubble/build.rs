//! Generates the gRPC code (server and client) from `proto/` with protoc.
fn main() {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .compile_protos(
            &[
                "proto/flow/flow.proto",
                "proto/relay/relay.proto",
                "proto/observer/observer.proto",
                "proto/peer/peer.proto",
            ],
            &["proto"],
        )
        .expect("protoc (install protobuf-compiler) could not compile the Hubble protos");
}
