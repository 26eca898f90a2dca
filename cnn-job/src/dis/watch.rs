//! What a training run tells whoever watches it (a UI's Training page, an event log): custom
//! events on the context's listener bus, named as the UI reads them.

use super::DisConfig;
use crate::cifar::CLASSES;
use crate::metrics::Confusion;
use discnn_engine::Context;

/// Where the run's output and model end up: the URL it is published at, else its directory.
fn published(cfg: &DisConfig) -> (String, String) {
    let output = match &cfg.object_output {
        Some(url) => url.clone(),
        None => cfg.output.display().to_string(),
    };
    let model = format!("{}/model.safetensors", output.trim_end_matches('/'));
    (output, model)
}

/// `TrainingStart`: a run began (or resumed after `resumed_after` epochs).
pub fn training_start(ctx: &Context, cfg: &DisConfig, resumed_after: Option<usize>) {
    let (output, model) = published(cfg);
    let body = serde_json::json!({
        "output": output,
        "model": model,
        "epochs": cfg.epochs,
        "resumed_after": resumed_after,
    });
    ctx.post_event("TrainingStart", body.to_string());
}

/// `ConfusionMatrix`, then `EpochEnd` with the epoch's `metrics.jsonl` line: a watcher has both
/// when the epoch ends.
pub fn epoch_end(ctx: &Context, confusion: &Confusion, metrics_line: String) {
    let counts = serde_json::json!({"classes": CLASSES, "counts": confusion.counts});
    ctx.post_event("ConfusionMatrix", counts.to_string());
    ctx.post_event("EpochEnd", metrics_line);
}

/// `TrainingEnd`: the model is written.
pub fn training_end(ctx: &Context, cfg: &DisConfig) {
    let (_, model) = published(cfg);
    ctx.post_event(
        "TrainingEnd",
        serde_json::json!({ "model": model }).to_string(),
    );
}
