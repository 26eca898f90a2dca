//! Watching discnn applications (Spark's web UI, REST API, event log and history server): a
//! store folds each application's events (`store`), pages and a JSON API show it (`pages`,
//! `api`), Prometheus scrapes it (`metrics`), and event logs (`eventlog`) replay it after the
//! application ended (`apps::HistoryApps`).

pub mod api;
pub mod apps;
pub mod eventlog;
pub mod format;
pub mod metrics;
pub mod pages;
pub mod server;
pub mod store;

pub use apps::{Applications, HistoryApps, LiveApps};
pub use server::{UiError, UiServer};
