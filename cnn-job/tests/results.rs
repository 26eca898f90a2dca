//! The committed experiment results (`results/` at the repository's root) are what their
//! files say: every finished run's files match its SHA256SUMS (models are not committed),
//! and each report.md and chart is exactly what the committed runs rebuild.

use discnn_cnn::dis::output::verify_digests;
use discnn_cnn::experiment::{report, ExperimentConfig, SETTINGS};
use std::path::Path;

#[test]
fn committed_reports_are_recomputed_from_the_committed_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
    let mut checked = 0;
    for name in ["table1", "table2", "speedup"] {
        let dir = root.join(name);
        if !dir.join(SETTINGS).exists() {
            continue;
        }
        for run in std::fs::read_dir(dir.join("runs")).unwrap().flatten() {
            if run.path().is_dir() && !run.file_name().to_string_lossy().ends_with(".in-progress") {
                verify_digests(&run.path(), &["model.safetensors", "model.pt"])
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        let cfg = ExperimentConfig::load(&dir).unwrap();
        let r = report::render(&cfg).unwrap();
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
        };
        assert!(
            r.report == read("report.md"),
            "results/{name}/report.md is not what its runs give; `driver report results/{name}` rewrites it"
        );
        for (file, svg) in &r.charts {
            assert!(
                *svg == read(file),
                "results/{name}/{file} is not what its runs give"
            );
        }
        checked += 1;
    }
    assert!(checked > 0, "no experiment under {}", root.display());
}
