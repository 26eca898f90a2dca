//! Jobs that `driver submit` runs. Their ops are registered here, in the library both binaries
//! link, so an executor can always decode what a driver sends.

pub mod wordcount;
