//! The bottom layer: what every other layer speaks — typed errors, the codec, the wire form of
//! lineage (plan), task descriptions and results, shuffle keys and events. It knows nothing about
//! threads, tokio, gRPC or where a task runs.

pub mod cancel;
pub mod codec;
pub mod error;
pub mod events;
pub mod key;
pub mod plan;
pub mod process;
pub mod sync;
pub mod task;
