//! The Training page: loss and accuracy curves by epoch (SVG drawn on the server, so it needs
//! no script and no external file), the per-epoch table of `metrics.jsonl`, the latest
//! epoch's per-class recall and confusion matrix, and the model's path. An experiment's runs are
//! listed; `?run=N` shows run N.

use super::layout::Place;
use super::{app_page, place};
use crate::format::{bytes, duration_ms, percent};
use crate::store::{AppState, TrainingRun};
use discnn_cnn::experiment::chart::{line_chart, Series};
use maud::{html, Markup, PreEscaped};
use serde_json::Value;

fn num(row: &Value, k: &str) -> f64 {
    row.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn series(run: &TrainingRun, name: &str, key: &str, scale: f64) -> Series {
    Series {
        name: name.into(),
        points: run
            .rows
            .iter()
            .map(|r| (num(r, "epoch"), num(r, key) * scale))
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect(),
        reference: false,
    }
}

fn chart(title: &str, y: &str, s: Series) -> Markup {
    match line_chart(title, "epoch", y, &[s]) {
        Ok(svg) => html! { div.chart { (PreEscaped(svg)) } },
        Err(e) => html! { p { "chart: " (e) } },
    }
}

fn list(row: &Value, k: &str) -> String {
    match row.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        _ => "—".into(),
    }
}

/// The Training page of run `run` (the latest when `None`); `None` if there is no such run.
pub fn training(st: &AppState, run: Option<usize>) -> Option<Markup> {
    let index = run.unwrap_or(st.training.len().checked_sub(1)?);
    let r = st.training.get(index)?;
    let p: Place<'_> = place(st, "training", 0);
    let last = r.rows.last();
    Some(app_page(
        st,
        &format!("Training run {index}"),
        p,
        html! {
            @if st.training.len() > 1 {
                p { "Runs: "
                    @for (i, other) in st.training.iter().enumerate() {
                        a href={ "training?run=" (i) } { (i) } " (" (other.output) ") "
                    }
                }
            }
            table {
                tr { th { "Output" } td { (r.output) } }
                tr { th { "Model" } td { (r.model) } }
                tr { th { "Epochs" } td.n { (r.rows.len()) @if let Some(n) = r.epochs { " of " (n) } } }
                @if let Some(eta) = r.eta_s() { tr { th { "ETA" } td.n { (duration_ms((eta * 1e3) as u64)) } } }
                @if let Some(l) = last {
                    tr { th { "Train loss" } td.n id="loss" { (format!("{:.4}", num(l, "train_loss"))) } }
                    tr { th { "Test accuracy (%)" } td.n id="accuracy" { (percent(num(l, "test_accuracy"))) } }
                }
            }
            div #curves {
                (chart("Train loss", "loss", series(r, "train loss", "train_loss", 1.0)))
                (chart("Test accuracy", "accuracy (%)", series(r, "test accuracy", "test_accuracy", 100.0)))
            }
            h2 { "Epochs" }
            table #epochs {
                tr { th { "Epoch" } th { "Train loss" } th { "Test accuracy (%)" } th { "Mean recall (%)" } th { "Images/s" } th { "Wall" } th { "Groups" } th { "Maps pruned" } th { "Driver messages" } th { "Driver bytes" } th { "LR" } }
                @for row in &r.rows {
                    tr {
                        td.n { (num(row, "epoch")) }
                        td.n { (format!("{:.4}", num(row, "train_loss"))) }
                        td.n { (percent(num(row, "test_accuracy"))) }
                        td.n { (percent(num(row, "mean_recall"))) }
                        td.n { (format!("{:.0}", num(row, "images_per_s"))) }
                        td.n { (format!("{:.2} s", num(row, "wall_s"))) }
                        td.n { (list(row, "group_sizes")) }
                        td.n { (list(row, "maps_pruned")) }
                        td.n { (num(row, "driver_messages")) }
                        td.n { (bytes(num(row, "driver_bytes").max(0.0) as u64)) }
                        td.n { (format!("{:.4}", num(row, "lr"))) }
                    }
                }
            }
            @if !r.confusion.is_empty() {
                h2 { "Latest epoch: recall and confusion (rows: true class, columns: predicted)" }
                table #confusion {
                    tr { th { "" } @for c in &r.classes { th { (c) } } th { "Recall (%)" } }
                    @for (i, row) in r.confusion.iter().enumerate() {
                        @let total: u64 = row.iter().sum();
                        tr {
                            th { (r.classes.get(i).map_or("?", String::as_str)) }
                            @for n in row { td.n { (n) } }
                            td.n { (percent(row.get(i).copied().unwrap_or(0) as f64 / total.max(1) as f64)) }
                        }
                    }
                }
            }
        },
    ))
}
