//! `report.md` and its charts, rebuilt from files alone: `experiment.json` (the settings and
//! the command) and each run's `metrics.jsonl` and `run.json`. The runner rewrites the report
//! after every run; a test rebuilds the committed reports from the committed runs.

use super::chart::{line_chart, Series};
use super::plan::{self, Row, Section};
use super::record::{self, Finished, Outcome};
use super::{ExperimentConfig, Which};
use crate::dis::job::{EpochMetrics, JobError};
use std::collections::BTreeSet;
use std::fmt::Write as _;

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

fn pm(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let (m, s) = mean_std(v);
    format!("{m:.digits$} ± {s:.digits$}")
}

fn each(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "—".into();
    }
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The index of the first largest value.
fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

/// One finished run's figures under both ways of choosing the epoch.
struct Picked {
    /// By validation accuracy (1-based); the last epoch when the run held none out.
    epoch: usize,
    value: f64,
    /// The paper's way: the epoch of the best test figure.
    test_epoch: usize,
    test_value: f64,
    wall_s: f64,
}

fn pick(epochs: &[EpochMetrics], metric: fn(&EpochMetrics) -> f64) -> Option<Picked> {
    let last = epochs.len().checked_sub(1)?;
    let values: Vec<f64> = epochs.iter().map(metric).collect();
    let val: Option<Vec<f64>> = epochs.iter().map(|e| e.validation_accuracy).collect();
    let by_val = val.map_or(last, |v| argmax(&v));
    let by_test = argmax(&values);
    Some(Picked {
        epoch: by_val + 1,
        value: values[by_val] * 100.0,
        test_epoch: by_test + 1,
        test_value: values[by_test] * 100.0,
        wall_s: epochs.iter().map(|e| e.wall_s).sum(),
    })
}

/// Every planned run's outcome, in plan order, and the peer's runs for Table 1.
struct Gathered {
    rows: Vec<(Row, Vec<Outcome>)>,
}

fn gather(cfg: &ExperimentConfig) -> Result<Gathered, JobError> {
    let mut rows = Vec::new();
    for row in plan::rows(cfg) {
        let outcomes = row
            .runs
            .iter()
            .map(|r| {
                if !row.peer {
                    return record::outcome(&cfg.output, &r.name);
                }
                // The experiment never checked the peer's runs: their digests are checked
                // here, and a bad one is shown rather than stopping the report.
                Ok(match record::outcome(&cfg.output, &r.name) {
                    Ok(Outcome::Finished(f)) => {
                        let dir = record::run_dir(&cfg.output, &r.name);
                        match crate::dis::output::verify_digests(&dir, &["model.pt"]) {
                            Ok(()) => Outcome::Finished(f),
                            Err(e) => Outcome::Failed(e),
                        }
                    }
                    Ok(o) => o,
                    Err(e) => Outcome::Failed(e.to_string()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push((row, outcomes));
    }
    Ok(Gathered { rows })
}

fn finished(outcomes: &[Outcome]) -> Vec<&Finished> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Finished(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// Mean over the finished seeds of a per-epoch figure, as far as all of them went.
fn mean_curve(runs: &[&Finished], metric: fn(&EpochMetrics) -> f64) -> Vec<(f64, f64)> {
    let n = runs.iter().map(|r| r.epochs.len()).min().unwrap_or(0);
    (0..n)
        .map(|e| {
            let v: Vec<f64> = runs.iter().map(|r| metric(&r.epochs[e]) * 100.0).collect();
            ((e + 1) as f64, mean_std(&v).0)
        })
        .collect()
}

/// What a report consists of: its text and its charts (file name, SVG).
pub struct Rendered {
    pub report: String,
    pub charts: Vec<(String, String)>,
}

fn chart(
    charts: &mut Vec<(String, String)>,
    file: &str,
    title: &str,
    y: &str,
    series: &[Series],
) -> Result<(), JobError> {
    let x = if series.iter().any(|s| s.reference) {
        "executors"
    } else {
        "epoch"
    };
    let svg = line_chart(title, x, y, series).map_err(JobError::BadOption)?;
    charts.push((file.to_string(), svg));
    Ok(())
}

fn machine(m: &crate::dis::output::Machine) -> String {
    let kernels = if m.kernels.is_empty() {
        "unrecorded"
    } else {
        &m.kernels
    };
    format!("{} ({} cores, {kernels} kernels)", m.cpu, m.cores)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Rebuilds `DIR/report.md` and the charts from the files under `DIR`; returns the report.
pub fn render(cfg: &ExperimentConfig) -> Result<Rendered, JobError> {
    let mut charts = Vec::new();
    let g = gather(cfg)?;
    let mut out = String::new();
    let planned: usize = g
        .rows
        .iter()
        .filter(|(r, _)| !r.peer)
        .map(|(r, _)| r.runs.len())
        .sum();
    let counts = |pred: fn(&Outcome) -> bool| -> usize {
        g.rows
            .iter()
            .filter(|(r, _)| !r.peer)
            .flat_map(|(_, o)| o.iter())
            .filter(|o| pred(o))
            .count()
    };
    let done = counts(|o| matches!(o, Outcome::Finished(_)));
    let failed = counts(|o| matches!(o, Outcome::Failed(_)));
    let _ = writeln!(out, "{}\n", title(cfg.which));
    if done < planned {
        let _ = writeln!(
            out,
            "**Partial:** {done} of {planned} runs finished, {failed} failed, {} not run yet. Each row shows the seeds finished so far; the same command continues the experiment.\n",
            planned - done - failed
        );
    }
    let _ = writeln!(out, "Command: `{}`\n", cfg.command);
    let _ = writeln!(out, "{}\n", settings(cfg));
    let machines: BTreeSet<String> = g
        .rows
        .iter()
        .flat_map(|(_, o)| finished(o))
        .flat_map(|f| f.machines.iter().map(machine))
        .collect();
    if !machines.is_empty() {
        let _ = writeln!(
            out,
            "Machine{}: {}.\n",
            if machines.len() > 1 { "s" } else { "" },
            machines.into_iter().collect::<Vec<_>>().join("; ")
        );
    }
    match cfg.which {
        Which::Table1 => table1(cfg, &g, &mut out, &mut charts)?,
        Which::Table2 => table2(&g, &mut out, &mut charts)?,
        Which::Speedup => speedup(&g, &mut out, &mut charts)?,
    }
    runs(&g, &mut out);
    Ok(Rendered {
        report: out,
        charts,
    })
}

fn title(which: Which) -> &'static str {
    match which {
        Which::Table1 => "# Table 1: kernel initialisation and overall accuracy",
        Which::Table2 => "# Table 2: pruning threshold A, group threshold B and mean recall",
        Which::Speedup => "# Figure 3: strong-scaling speedup t₁/tₙ",
    }
}

fn settings(cfg: &ExperimentConfig) -> String {
    let images = match (cfg.which, cfg.train_limit) {
        (Which::Speedup, _) => "as in the table, none held out".to_string(),
        (_, Some(n)) => format!(
            "the first {n}, the last {} of them held out for validation",
            cfg.validation
        ),
        (_, None) => format!(
            "all 50,000, the last {} held out for validation",
            cfg.validation
        ),
    };
    format!(
        "Recipe: loss {}, {}, {} partitions (one mini-batch each per iteration), {} epochs, seeds 0–{}, checkpoint every {} epoch(s). Training images: {images}. Network: the paper's (`--spec` default).",
        match cfg.loss {
            crate::layers::Loss::CrossEntropy => "cross-entropy",
            crate::layers::Loss::Squared => "squared (the paper's formula 3)",
        },
        cfg.recipe.describe(),
        cfg.partitions,
        cfg.epochs,
        cfg.seeds.saturating_sub(1),
        cfg.checkpoint_every,
    )
}

/// The cells every accuracy table shares: seeds, the validation-selected epoch and figure per
/// seed and their mean, the paper's way, wall time.
fn figures(outcomes: &[Outcome], metric: fn(&EpochMetrics) -> f64) -> String {
    let picked: Vec<Picked> = finished(outcomes)
        .iter()
        .filter_map(|f| pick(&f.epochs, metric))
        .collect();
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed(_)))
        .count();
    let seeds = format!(
        "{} of {}{}",
        picked.len(),
        outcomes.len(),
        if failed > 0 {
            format!(" ({failed} failed)")
        } else {
            String::new()
        }
    );
    let v = |f: fn(&Picked) -> f64| picked.iter().map(f).collect::<Vec<_>>();
    format!(
        "{seeds} | {} | {} | {} | {} | {} | {}",
        each(&v(|p| p.epoch as f64), 0),
        each(&v(|p| p.value), 2),
        pm(&v(|p| p.value), 2),
        each(&v(|p| p.test_epoch as f64), 0),
        pm(&v(|p| p.test_value), 2),
        each(&v(|p| p.wall_s), 0),
    )
}

const FIGURE_HEAD: &str = "seeds | best epoch by validation | {m} at it, per seed | {m} mean ± std | paper's way: best test epoch | {m} there, mean ± std | wall time (s)";

fn table1(
    cfg: &ExperimentConfig,
    g: &Gathered,
    out: &mut String,
    charts: &mut Vec<(String, String)>,
) -> Result<(), JobError> {
    let _ = writeln!(
        out,
        "Same net, `--aggregation mean`, no pruning. Best epoch = the epoch with the highest validation accuracy; OA = \
         test accuracy (%) at that epoch. The paper's way (the epoch of the highest *test* accuracy, which uses the test set \
         to choose) is shown beside it, labelled. Wall time = training iterations per run, evaluation excluded.\n"
    );
    let head = FIGURE_HEAD.replace("{m}", "OA");
    for (section, name, file) in [
        (Section::Table1, "Cross-entropy", "table1.svg"),
        (
            Section::Table1Squared,
            "The paper's loss (squared, formula 3)",
            "table1-squared.svg",
        ),
    ] {
        let rows: Vec<&(Row, Vec<Outcome>)> = g
            .rows
            .iter()
            .filter(|(r, _)| r.section == section)
            .collect();
        if rows.is_empty()
            || (section == Section::Table1Squared && cfg.loss == crate::layers::Loss::Squared)
        {
            continue;
        }
        let _ = writeln!(out, "## {name}\n");
        let _ = writeln!(out, "| init | {head} | paper: epoch | paper: OA (%) |");
        let _ = writeln!(out, "|{}", "---|".repeat(10));
        let mut series = Vec::new();
        for (row, outcomes) in rows {
            let paper = row.paper.map_or("— | —".to_string(), |p| {
                format!(
                    "{} ({}) | {}",
                    p.epoch.map_or("—".into(), |e| e.to_string()),
                    p.name,
                    p.figure
                )
            });
            let runs = finished(outcomes);
            if row.peer && runs.is_empty() && outcomes.iter().all(|o| matches!(o, Outcome::NotDone))
            {
                let _ = writeln!(
                    out,
                    "| {} | not run: `bench/peers/pytorch_train.py` writes `runs/torch-random-seedS` | | | | | | | — | — |",
                    row.label
                );
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {paper} |",
                row.label,
                figures(outcomes, |e| e.test_accuracy)
            );
            series.push(Series {
                name: row.label.clone(),
                points: mean_curve(&runs, |e| e.test_accuracy),
                reference: false,
            });
        }
        let _ = writeln!(out, "\n![test accuracy per epoch]({file})\n");
        chart(
            charts,
            file,
            "Test accuracy (mean over finished seeds)",
            "test accuracy (%)",
            &series,
        )?;
    }
    Ok(())
}

fn table2(
    g: &Gathered,
    out: &mut String,
    charts: &mut Vec<(String, String)>,
) -> Result<(), JobError> {
    let _ = writeln!(
        out,
        "Pruning decided at the end of epoch 1; `dis` aggregation with group weights 0.55/0.45 (divisor: the weights); \
         B is the group threshold (— : `mean` aggregation). Best epoch = the highest validation accuracy; MR = mean recall \
         (%) on the test set at that epoch; the paper's way (the epoch of the best test MR) beside it. On CIFAR-10's \
         balanced test set (1,000 images per class) mean recall equals overall accuracy. Maps pruned: per conv layer, \
         per seed. Low-error share: the partitions' share in the low-error group over the run, mean over seeds.\n"
    );
    let head = FIGURE_HEAD.replace("{m}", "MR");
    let _ = writeln!(out, "| init | A | B | row | {head} | maps pruned per conv layer | low-error share | paper: MR (%) |");
    let _ = writeln!(out, "|{}", "---|".repeat(14));
    let mut series = Vec::new();
    for (row, outcomes) in &g.rows {
        let runs = finished(outcomes);
        let pruned: Vec<String> = runs
            .iter()
            .filter_map(|f| f.epochs.last().map(|e| format!("{:?}", e.maps_pruned)))
            .collect();
        let share: Vec<f64> = runs
            .iter()
            .map(|f| {
                let (lo, hi) = f.epochs.iter().fold((0u64, 0u64), |a, e| {
                    (a.0 + e.group_sizes[0], a.1 + e.group_sizes[1])
                });
                lo as f64 * 100.0 / (lo + hi).max(1) as f64
            })
            .collect();
        let agg = row.runs.first().map(|r| r.config.aggregation);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.label,
            figures(outcomes, |e| e.mean_recall),
            if pruned.is_empty() {
                "—".into()
            } else {
                pruned.join(" ")
            },
            match agg {
                Some(crate::dis::Aggregation::Dis) if !share.is_empty() =>
                    format!("{:.1} %", mean_std(&share).0),
                _ => "—".into(),
            },
            row.paper.map_or("—".into(), |p| p.figure.to_string()),
        );
        series.push(Series {
            name: row.label.split(" | ").take(3).collect::<Vec<_>>().join(" "),
            points: mean_curve(&runs, |e| e.mean_recall),
            reference: false,
        });
    }
    let _ = writeln!(out, "\n![mean recall per epoch](table2.svg)\n");
    chart(
        charts,
        "table2.svg",
        "Mean recall (mean over finished seeds)",
        "mean recall (%)",
        &series,
    )
}

fn speedup(
    g: &Gathered,
    out: &mut String,
    charts: &mut Vec<(String, String)>,
) -> Result<(), JobError> {
    let _ = writeln!(
        out,
        "`local-cluster[n,1]`: n executor processes of 1 core, the driver in this process; the same data and partitions \
         for every n; `--aggregation dis`; time = the training iterations of all epochs (evaluation excluded). The paper \
         (Fig. 3, no figures in its text): at 5,000 images the speedup is \"almost unchanged\" as nodes are added; at \
         45,000 it rises in proportion.\n"
    );
    let _ = writeln!(
        out,
        "| training images | n | time (s) | speedup t₁/tₙ |\n|---|---|---|---|"
    );
    let mut series: Vec<Series> = Vec::new();
    let mut max_n = 1usize;
    let mut t1 = std::collections::BTreeMap::new();
    for (row, outcomes) in &g.rows {
        let Section::Speedup(size) = row.section else {
            continue;
        };
        let n: usize = row.label.parse().unwrap_or(1);
        max_n = max_n.max(n);
        let Some(f) = finished(outcomes).first().copied() else {
            let _ = writeln!(out, "| {size} | {n} | — | — |");
            continue;
        };
        let t: f64 = f.epochs.iter().map(|e| e.wall_s).sum();
        let speed = t1.get(&size).map(|b: &f64| b / t);
        if n == 1 {
            t1.insert(size, t);
        }
        let s = speed.unwrap_or(1.0);
        let _ = writeln!(
            out,
            "| {size} | {n} | {t:.2} | {} |",
            if n == 1 || speed.is_some() {
                format!("{s:.2}")
            } else {
                "—".into()
            }
        );
        let name = format!("{size} images");
        match series.iter_mut().find(|x| x.name == name) {
            Some(x) => x.points.push((n as f64, s)),
            None => series.push(Series {
                name,
                points: vec![(n as f64, s)],
                reference: false,
            }),
        }
    }
    series.push(Series {
        name: "ideal".into(),
        points: (1..=max_n).map(|n| (n as f64, n as f64)).collect(),
        reference: true,
    });
    let _ = writeln!(out, "\n![speedup](speedup.svg)\n");
    chart(
        charts,
        "speedup.svg",
        "Speedup by number of executors",
        "t1 / tn",
        &series,
    )
}

fn runs(g: &Gathered, out: &mut String) {
    let _ = writeln!(out, "## Runs\n\n| run | status | epochs | wall time (s) | machine | build |\n|---|---|---|---|---|---|");
    for (row, outcomes) in &g.rows {
        for (run, o) in row.runs.iter().zip(outcomes) {
            let line = match o {
                Outcome::Finished(f) => format!(
                    "finished | {} | {:.0} | {} | {} |",
                    f.epochs.len(),
                    f.epochs.iter().map(|e| e.wall_s).sum::<f64>(),
                    cell(
                        &f.machines
                            .iter()
                            .map(|m| format!("{} from epoch {}", machine(m), m.from_epoch + 1))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    cell(&f.build),
                ),
                Outcome::Failed(e) => format!("failed: {} | | | | |", cell(e)),
                Outcome::NotDone if row.peer => continue,
                Outcome::NotDone => "not run yet | | | | |".into(),
            };
            let _ = writeln!(out, "| {} | {line}", run.name);
        }
    }
}

/// Writes `DIR/report.md` (and the charts) from what is on disk now.
pub fn write(cfg: &ExperimentConfig) -> Result<std::path::PathBuf, JobError> {
    let r = render(cfg)?;
    let save = |name: &str, text: &str| {
        let path = cfg.output.join(name);
        std::fs::write(&path, text)
            .map(|()| path.clone())
            .map_err(|source| JobError::Io { path, source })
    };
    for (name, svg) in &r.charts {
        save(name, svg)?;
    }
    save("report.md", &r.report)
}
