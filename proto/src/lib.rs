//! The wire contract between a discnn driver, its executors and its clients
//! (`proto/discnn.proto`), compiled to tonic services and prost messages at build time.

/// Bumped whenever a message on the wire changes shape. Part of the build fingerprint.
pub const PROTOCOL_VERSION: u32 = 3;

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("discnn");
}
