//! What each experiment runs: its rows (what the paper reports and what separates its ideas)
//! and, per row, one cnn-job run per seed. The plan is a pure function of the experiment's
//! settings, so a report can be rebuilt from `experiment.json` and the runs' files alone.

use super::{ExperimentConfig, Which};
use crate::dis::init::InitMethod;
use crate::dis::{Aggregation, DisConfig};
use crate::layers::Loss;

/// One line of a table: the runs that share everything but the seed.
#[derive(Debug, Clone)]
pub struct Row {
    /// Which table of the report the row belongs to (Table 1 has one per loss).
    pub section: Section,
    pub label: String,
    /// Run by the PyTorch peer, not by the experiment: shown when its files are there.
    pub peer: bool,
    /// The paper's figure for this row, with its own label (epoch and accuracy, or recall).
    pub paper: Option<Paper>,
    pub runs: Vec<PlannedRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Table 1 with the recipe's loss.
    Table1,
    /// Table 1 with the paper's squared loss.
    Table1Squared,
    Table2,
    /// One training-set size of the speedup figure.
    Speedup(usize),
}

#[derive(Debug, Clone, Copy)]
pub struct Paper {
    pub name: &'static str,
    pub epoch: Option<usize>,
    pub figure: f64,
}

#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// The directory under `runs/`; holds the init's name (and `squared` for that loss).
    pub name: String,
    pub seed: u64,
    /// `local-cluster[n,1]` for the speedup runs; the experiment's own context otherwise.
    pub executors: Option<usize>,
    pub config: DisConfig,
}

/// The peer's runs that a Table 1 report shows when they are there: `runs/torch-random-seedS`,
/// written by `bench/peers/pytorch_train.py` with the same recipe.
pub fn peer_run(seed: u64) -> String {
    format!("torch-random-seed{seed}")
}

fn init_name(m: InitMethod) -> &'static str {
    match m {
        InitMethod::Random => "random",
        InitMethod::Kmeans => "kmeans",
        InitMethod::Dis => "dis",
    }
}

impl ExperimentConfig {
    fn base(&self, name: &str, seed: u64) -> DisConfig {
        DisConfig {
            data: self.data.clone(),
            output: self.output.join("runs").join(name),
            overwrite: false,
            epochs: self.epochs,
            recipe: self.recipe,
            loss: self.loss,
            partitions: self.partitions,
            train_limit: self.train_limit,
            validation: self.validation,
            init: self.init,
            aggregation: Aggregation::Mean,
            checkpoint_every: Some(self.checkpoint_every),
            seed,
            ..DisConfig::default()
        }
    }

    fn seeds(
        &self,
        label: String,
        section: Section,
        paper: Option<Paper>,
        f: impl Fn(u64) -> PlannedRun,
    ) -> Row {
        Row {
            section,
            label,
            peer: false,
            paper,
            runs: (0..self.seeds).map(f).collect(),
        }
    }
}

/// The rows of the experiment, in the order the report shows them.
pub fn rows(cfg: &ExperimentConfig) -> Vec<Row> {
    match cfg.which {
        Which::Table1 => table1(cfg),
        Which::Table2 => table2(cfg),
        Which::Speedup => speedup(cfg),
    }
}

/// The runs in the order they are run: seed by seed across the rows, so that a partial
/// experiment already has every row. The peer's rows are not run here.
pub fn runs(rows: &[Row]) -> Vec<&PlannedRun> {
    let most = rows.iter().map(|r| r.runs.len()).max().unwrap_or(0);
    let mut order = Vec::new();
    for section_first in [true, false] {
        for i in 0..most {
            for row in rows.iter().filter(|r| !r.peer) {
                let first = matches!(row.section, Section::Table1 | Section::Table2);
                if first == section_first {
                    order.extend(row.runs.get(i));
                }
            }
        }
    }
    order
}

fn table1(cfg: &ExperimentConfig) -> Vec<Row> {
    let paper = [
        ("Rand-CNN", 212, 70.87),
        ("KMean-CNN", 205, 74.22),
        ("Dis-CNN", 198, 76.25),
    ];
    let mut rows = Vec::new();
    for (m, (name, epoch, figure)) in [InitMethod::Random, InitMethod::Kmeans, InitMethod::Dis]
        .into_iter()
        .zip(paper)
    {
        if m == InitMethod::Kmeans {
            // The peer's row goes right after the random initialisation's.
            rows.push(Row {
                section: Section::Table1,
                label: "random (PyTorch peer)".into(),
                peer: true,
                paper: None,
                runs: (0..cfg.seeds)
                    .map(|seed| PlannedRun {
                        name: peer_run(seed),
                        seed,
                        executors: None,
                        config: cfg.base(&peer_run(seed), seed),
                    })
                    .collect(),
            });
        }
        let init = init_name(m);
        rows.push(cfg.seeds(
            init.into(),
            Section::Table1,
            Some(Paper {
                name,
                epoch: Some(epoch),
                figure,
            }),
            |seed| {
                let name = format!("table1-{init}-seed{seed}");
                PlannedRun {
                    config: DisConfig {
                        init: m,
                        ..cfg.base(&name, seed)
                    },
                    name,
                    seed,
                    executors: None,
                }
            },
        ));
    }
    if cfg.loss != Loss::Squared {
        for &m in &cfg.squared_inits {
            let init = init_name(m);
            rows.push(
                cfg.seeds(init.into(), Section::Table1Squared, None, |seed| {
                    let name = format!("table1-squared-{init}-seed{seed}");
                    PlannedRun {
                        config: DisConfig {
                            init: m,
                            loss: Loss::Squared,
                            ..cfg.base(&name, seed)
                        },
                        name,
                        seed,
                        executors: None,
                    }
                }),
            );
        }
    }
    rows
}

/// One Table 2 row: pruning threshold A (0: none), aggregation (`dis` with group threshold B,
/// or `mean`) and the initialisation.
struct Cell {
    a: f64,
    b: Option<f64>,
    init: InitMethod,
    label: &'static str,
    paper: Option<f64>,
}

fn table2(cfg: &ExperimentConfig) -> Vec<Row> {
    let paper = [
        (0.15, 0.5, 73.5),
        (0.15, 0.8, 75.2),
        (0.20, 0.5, 74.3),
        (0.20, 0.8, 78.5),
        (0.25, 0.5, 78.8),
        (0.25, 0.8, 76.2),
    ];
    let mut cells: Vec<Cell> = paper
        .iter()
        .map(|&(a, b, p)| Cell {
            a,
            b: Some(b),
            init: InitMethod::Dis,
            label: if (a, b) == (0.25, 0.5) {
                "the paper's grid (its best cell)"
            } else {
                "the paper's grid"
            },
            paper: Some(p),
        })
        .collect();
    cells.extend([
        Cell {
            a: 0.0,
            b: Some(0.5),
            init: InitMethod::Dis,
            label: "ablation: no pruning",
            paper: None,
        },
        Cell {
            a: 0.25,
            b: None,
            init: InitMethod::Dis,
            label: "ablation: mean aggregation",
            paper: None,
        },
        Cell {
            a: 0.0,
            b: None,
            init: InitMethod::Dis,
            label: "ablation: dis init only",
            paper: None,
        },
        Cell {
            a: 0.0,
            b: None,
            init: InitMethod::Random,
            label: "the plain CNN",
            paper: Some(75.6),
        },
    ]);
    cells
        .into_iter()
        .map(|c| {
            let init = init_name(c.init);
            let agg = c.b.map_or("mean".to_string(), |b| format!("b{b}"));
            let label = format!(
                "{init} | {} | {} | {}",
                if c.a == 0.0 {
                    "0".to_string()
                } else {
                    c.a.to_string()
                },
                c.b.map_or("— (mean)".to_string(), |b| b.to_string()),
                c.label
            );
            let paper = c.paper.map(|figure| Paper {
                name: if c.a == 0.0 { "plain CNN" } else { "Dis-CNN" },
                epoch: None,
                figure,
            });
            cfg.seeds(label, Section::Table2, paper, |seed| {
                let name = format!("table2-{init}-a{}-{agg}-seed{seed}", c.a);
                PlannedRun {
                    config: DisConfig {
                        init: c.init,
                        prune_threshold: c.a,
                        prune_at: 1,
                        group_threshold: c.b.unwrap_or(DisConfig::default().group_threshold),
                        aggregation: if c.b.is_some() {
                            Aggregation::Dis
                        } else {
                            Aggregation::Mean
                        },
                        ..cfg.base(&name, seed)
                    },
                    name,
                    seed,
                    executors: None,
                }
            })
        })
        .collect()
}

fn speedup(cfg: &ExperimentConfig) -> Vec<Row> {
    let mut rows = Vec::new();
    for size in [5000usize, 45000] {
        let size = cfg.train_limit.map_or(size, |l| size.min(l));
        for n in 1..=cfg.max_executors.max(1) {
            let name = format!("speedup-{size}-n{n}");
            rows.push(Row {
                section: Section::Speedup(size),
                label: n.to_string(),
                peer: false,
                paper: None,
                runs: vec![PlannedRun {
                    config: DisConfig {
                        train_limit: Some(size),
                        validation: 0,
                        aggregation: Aggregation::Dis,
                        ..cfg.base(&name, 0)
                    },
                    name,
                    seed: 0,
                    executors: Some(n),
                }],
            });
        }
    }
    rows
}
