//! `/metrics` in Prometheus' text format. Gauges and counters are read off the application
//! stores when scraped; job and stage durations are recorded as they end (a summary per
//! application). One recorder per UI server, not the process-global one, so two servers in one
//! process (tests) never mix their figures.

use crate::store::AppStore;
use metrics::{counter, gauge, histogram, with_local_recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use std::sync::Arc;

/// A UI server's Prometheus recorder.
pub struct Metrics {
    recorder: PrometheusRecorder,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            recorder: PrometheusBuilder::new().build_recorder(),
        }
    }
}

impl Metrics {
    /// Records that a job or a stage (`what`) of `app` took `secs`.
    pub fn record_duration(&self, app: &str, what: &'static str, secs: f64) {
        let name = match what {
            "job" => "discnn_job_duration_seconds",
            _ => "discnn_stage_duration_seconds",
        };
        with_local_recorder(&self.recorder, || {
            histogram!(name, "app" => app.to_string()).record(secs);
        });
    }

    /// The text exposition of every application's figures now.
    pub fn render(&self, apps: &[Arc<AppStore>]) -> String {
        with_local_recorder(&self.recorder, || {
            for store in apps {
                observe(store);
            }
        });
        self.recorder.handle().render()
    }
}

fn observe(store: &AppStore) {
    let st = store.state();
    let app = st.id.clone();
    gauge!("discnn_application_running", "app" => app.clone()).set(if st.running() {
        1.0
    } else {
        0.0
    });
    for state in ["alive", "draining", "lost", "exited"] {
        let n = st.executors.iter().filter(|e| e.state == state).count();
        gauge!("discnn_executors", "app" => app.clone(), "state" => state).set(n as f64);
    }
    let running: usize = st.stages.values().map(|s| s.active_tasks).sum();
    gauge!("discnn_tasks_running", "app" => app.clone()).set(running as f64);
    let t = st.totals;
    counter!("discnn_tasks_finished_total", "app" => app.clone()).absolute(t.tasks_finished);
    counter!("discnn_tasks_failed_total", "app" => app.clone()).absolute(t.tasks_failed);
    counter!("discnn_jobs_total", "app" => app.clone(), "status" => "succeeded")
        .absolute(t.jobs_succeeded);
    counter!("discnn_jobs_total", "app" => app.clone(), "status" => "failed")
        .absolute(t.jobs_failed);
    counter!("discnn_shuffle_read_bytes_total", "app" => app.clone())
        .absolute(t.shuffle_read_bytes);
    counter!("discnn_shuffle_write_bytes_total", "app" => app.clone())
        .absolute(t.shuffle_write_bytes);
    for e in &st.executors {
        let (memory, disk, _) = st.executor_storage(&e.id);
        let labels = [("app", app.clone()), ("executor", e.id.clone())];
        gauge!("discnn_block_manager_memory_bytes", &labels).set(memory as f64);
        gauge!("discnn_block_manager_disk_bytes", &labels).set(disk as f64);
    }
    for (i, run) in st.training.iter().enumerate() {
        let labels = [("app", app.clone()), ("run", i.to_string())];
        let field = |k: &str| run.last(k).and_then(|v| v.as_f64());
        if let Some(v) = field("epoch") {
            gauge!("discnn_training_epoch", &labels).set(v);
        }
        if let Some(v) = field("train_loss") {
            gauge!("discnn_training_loss", &labels).set(v);
        }
        if let Some(v) = field("test_accuracy") {
            gauge!("discnn_training_test_accuracy", &labels).set(v);
        }
        if let Some(v) = field("images_per_s") {
            gauge!("discnn_training_images_per_second", &labels).set(v);
        }
    }
}
