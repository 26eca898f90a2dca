//! The driver: the [`Context`](context::Context), Rdd handles, the DAG scheduler, the map-output
//! tracker, the cleaner, the broadcast registry and the progress bar. It talks to executors only
//! through a [`SchedulerBackend`](backend::SchedulerBackend), so it never knows whether tasks run
//! in this process or on a cluster. Imports `core` and `exec`.

pub(crate) mod backend;
pub(crate) mod cleaner;
pub mod context;
pub mod listener_bus;
pub(crate) mod map_output;
pub mod progress;
pub mod rdd;
pub(crate) mod scheduler;
