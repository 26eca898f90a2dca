//! The RDD operation suite (`suite/ops.rs`) in local mode.

use std::sync::OnceLock;

fn ctx() -> &'static discnn_engine::Context {
    static CTX: OnceLock<discnn_engine::Context> = OnceLock::new();
    CTX.get_or_init(|| discnn_engine::Context::local(2).expect("local context"))
}

const CASES: u32 = 24;

include!("suite/ops.rs");
