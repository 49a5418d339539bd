//! With the `grpc` feature, compiles `proto/optimizer.proto` into the gRPC service and client
//! (tonic, prost). Needs `protoc` (Debian's protobuf-compiler, or `$PROTOC`). Without the
//! feature it does nothing.

fn main() {
    #[cfg(feature = "grpc")]
    {
        let proto = "../../proto/optimizer.proto";
        println!("cargo:rerun-if-changed={proto}");
        if let Err(error) =
            tonic_prost_build::configure().compile_protos(&[proto], &["../../proto"])
        {
            panic!(
                "compiling {proto}: {error}\n(the `grpc` feature needs protoc: \
                 `apt-get install protobuf-compiler`, or set $PROTOC)"
            );
        }
    }
}
