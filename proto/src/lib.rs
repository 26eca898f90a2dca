//! The wire contract between a discnn driver and its executors.
//!
//! Cluster mode (the gRPC services) is not built yet; until then this crate only pins the protocol
//! version that every other layer reports, so that the dependency arrow proto → engine exists
//! from the first commit.

/// Bumped whenever a message on the wire changes shape. Part of the build fingerprint.
pub const PROTOCOL_VERSION: u32 = 1;
