//! The CNN and the Dis-CNN training job. The layers and the job land with their own issues; this
//! crate exists so the dependency arrow engine → cnn-job → binaries holds from the first commit.

pub mod cifar;

pub use discnn_engine as engine;
