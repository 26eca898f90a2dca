//! The CNN (ndarray + rayon) and, on top of the engine, the Dis-CNN training job.

pub mod cifar;
pub mod data;
pub mod dis;
pub mod experiment;
pub mod layers;
pub mod metrics;
pub mod model_io;
pub mod network;
pub mod optim;
pub mod rng;
pub mod spec;
pub mod text;
pub mod train;

pub use discnn_engine as engine;
