//! The cnn-job driver: validates the input, caches the shards, runs the iterations of every
//! epoch (broadcast, gradient map stage, aggregation, optimiser step on the driver), evaluates
//! on the test set after each epoch and writes `metrics.jsonl`, `model.safetensors` and
//! `confusion.json`.

use super::aggregation::{combine, GradMsg, Gradient, GroupPartitioner, SumGroup};
use super::shards::{shard_specs, Evaluate, LoadShard, PixelMoments, Shard, SplitName, Weights};
use super::{output, Aggregation, DisConfig};
use crate::cifar::{self, CifarError, Split, CLASSES};
use crate::metrics::Confusion;
use crate::model_io::{Model, ModelError};
use crate::network::Network;
use crate::optim::Sgd;
use crate::spec::NetSpec;
use discnn_engine::{Context, EngineError, Event, Listener, Rdd};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("invalid option: {0}")]
    BadOption(String),
    #[error("output already exists: {0} (pass --overwrite to replace it)")]
    OutputExists(PathBuf),
    #[error("cannot write the output {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] CifarError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{failed} of {total} runs failed (their errors are in {report})")]
    RunsFailed {
        failed: usize,
        total: usize,
        report: PathBuf,
    },
}

impl JobError {
    /// Bad options, bad or missing input, an existing output: exit code 2.
    pub fn is_bad_input(&self) -> bool {
        match self {
            JobError::BadOption(_)
            | JobError::OutputExists(_)
            | JobError::Output { .. }
            | JobError::Data(_)
            | JobError::Checkpoint(_)
            | JobError::Model(_) => true,
            JobError::Engine(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One line of `metrics.jsonl`: exactly these keys.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub test_accuracy: f64,
    pub per_class_recall: Vec<f64>,
    pub mean_recall: f64,
    pub wall_s: f64,
    pub images_per_s: f64,
    pub iterations: usize,
    pub driver_messages: u64,
    pub driver_bytes: u64,
    /// Partitions that fell in the low- and high-error groups, summed over the epoch.
    pub group_sizes: [u64; 2],
    /// Feature maps removed per convolution layer so far.
    pub maps_pruned: Vec<usize>,
    pub rss_bytes: u64,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// Accuracy on the held-out validation images (`None` without `--validation`).
    pub validation_accuracy: Option<f64>,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Summary {
    pub epochs: Vec<EpochMetrics>,
    /// Accuracy on the held-out validation images after each epoch (empty without
    /// `--validation`).
    pub validation_accuracy: Vec<f64>,
    pub confusion: Confusion,
    pub model: PathBuf,
}

/// Task results as they reach the driver, counted from the engine's events: in local mode
/// this is what would cross the wire (every result is encoded even there).
#[derive(Default)]
struct ResultTraffic {
    messages: AtomicU64,
    bytes: AtomicU64,
    /// Time tasks spent running (all slots together), for the epoch's compute/overhead split.
    task_micros: AtomicU64,
}

impl Listener for ResultTraffic {
    fn on_event(&self, e: &Event) {
        if let Event::TaskEnd { metrics, .. } = e {
            self.messages.fetch_add(1, Ordering::Relaxed);
            self.bytes
                .fetch_add(metrics.result_bytes, Ordering::Relaxed);
            self.task_micros
                .fetch_add(metrics.run_micros, Ordering::Relaxed);
        }
    }
}

/// Inbound messages and bytes at the driver so far: the gRPC server's own count on a
/// cluster, task results in local mode.
fn driver_traffic(ctx: &Context, local: &ResultTraffic) -> (u64, u64) {
    match ctx.cluster() {
        Some(c) => {
            let t = c.traffic();
            (t.messages, t.bytes)
        }
        None => (
            local.messages.load(Ordering::Relaxed),
            local.bytes.load(Ordering::Relaxed),
        ),
    }
}

/// The largest mini-batch per partition: 65,536 images are 805 MB of f32 input alone.
pub const MAX_BATCH: usize = 1 << 16;

/// Refuses bad options; returns the network spec they name.
fn check(cfg: &DisConfig) -> Result<NetSpec, JobError> {
    let bad = |m: &str| Err(JobError::BadOption(m.to_string()));
    if cfg.epochs == 0 {
        return bad("--epochs must be at least 1");
    }
    if cfg.recipe.batch_size == 0 || cfg.recipe.batch_size > MAX_BATCH {
        return bad(&format!(
            "--batch-size must be between 1 and {MAX_BATCH} images per partition"
        ));
    }
    if cfg.partitions == 0 {
        return bad("--partitions must be at least 1");
    }
    if !(cfg.recipe.lr.is_finite() && cfg.recipe.lr > 0.0) {
        return bad("--lr must be a positive number");
    }
    if !(cfg.recipe.momentum.is_finite() && (0.0..1.0).contains(&cfg.recipe.momentum)) {
        return bad("--momentum must be in [0, 1)");
    }
    if !cfg.group_threshold.is_finite() || cfg.group_weights.iter().any(|w| !w.is_finite()) {
        return bad("--group-threshold and --group-weights must be numbers");
    }
    NetSpec::parse([3, 32, 32], &cfg.spec).map_err(|e| JobError::BadOption(e.to_string()))
}

fn cached_shards(
    ctx: &Context,
    specs: Vec<super::shards::ShardSpec>,
) -> Result<Rdd<Shard>, JobError> {
    let n = specs.len();
    let rdd = ctx.parallelize(specs, n)?.map(LoadShard);
    rdd.cache();
    Ok(rdd)
}

/// The confusion matrix of `weights` over cached or executor-loaded shards.
pub(super) fn evaluate(
    ctx: &Context,
    shards: &Rdd<Shard>,
    weights: Weights,
) -> Result<Confusion, JobError> {
    let bc = ctx.broadcast(weights)?;
    let parts = shards.map(Evaluate(bc.clone())).collect()?;
    bc.destroy();
    let mut total = Confusion::new(CLASSES.len());
    for c in &parts {
        total.merge(c);
    }
    Ok(total)
}

fn conv_maps(spec: &NetSpec) -> Vec<usize> {
    spec.layers
        .iter()
        .filter_map(|l| match l {
            crate::spec::LayerSpec::Conv { out, .. } => Some(*out),
            _ => None,
        })
        .collect()
}

/// Decides and applies the pruning: the map statistics are computed on the executors over a
/// sample of each shard; the new shape reaches them with the next broadcast. Returns the new
/// network, its spec and a log line, or `None` when nothing is redundant.
fn prune(
    ctx: &Context,
    train: &Rdd<Shard>,
    m: &mut DriverModel,
    cfg: &DisConfig,
) -> Result<Option<String>, JobError> {
    use super::prune::{apply, decide, redundant_pairs, MapStats, SimilarityStats};
    let weights = ctx.broadcast(m.weights())?;
    let stats = train
        .map(SimilarityStats {
            weights: weights.clone(),
            images: 64,
            seed: cfg.seed,
        })
        .collect()?
        .iter()
        .fold(MapStats::default(), |a, s| a.merge(s));
    weights.destroy();
    let kept = decide(&stats, cfg.prune_threshold);
    let before = conv_maps(m.net.spec());
    let pairs: Vec<usize> = stats
        .layers
        .iter()
        .map(|st| redundant_pairs(st, cfg.prune_threshold).len())
        .collect();
    if kept.iter().zip(&before).all(|(k, b)| k.len() == *b) {
        return Ok(Some(format!(
            "pruning at A = {}: no pair of maps has H < A ({} pairs per conv layer)",
            cfg.prune_threshold,
            pairs
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("/")
        )));
    }
    let (spec, mut sliced) = apply(&m.net, &kept, &[&m.params, &m.sgd.velocity])
        .map_err(|e| JobError::BadOption(e.to_string()))?;
    m.sgd.velocity = sliced.pop().unwrap_or_default();
    m.params = sliced.pop().unwrap_or_default();
    let removed: Vec<String> = kept
        .iter()
        .zip(&before)
        .enumerate()
        .map(|(l, (k, &b))| {
            let gone: Vec<usize> = (0..b).filter(|x| !k.contains(x)).collect();
            format!(
                "conv{}: {} pairs with H < A, {} of {b} maps removed {gone:?}",
                l + 1,
                pairs.get(l).copied().unwrap_or(0),
                gone.len()
            )
        })
        .collect();
    m.spec_text = spec.to_string();
    m.net = Network::new(spec).map_err(|e| JobError::BadOption(e.to_string()))?;
    Ok(Some(format!(
        "pruned at A = {}: {}; the net is now {}",
        cfg.prune_threshold,
        removed.join(", "),
        m.spec_text
    )))
}

/// What the driver holds between iterations: the network, its weights and the optimiser.
struct DriverModel {
    net: Network,
    spec_text: String,
    params: Vec<f32>,
    sgd: Sgd,
    norm: crate::data::Normalization,
}

impl DriverModel {
    /// The weights as the next broadcast carries them.
    fn weights(&self) -> Weights {
        Weights {
            spec: self.spec_text.clone(),
            params: self.params.clone(),
            norm: self.norm,
        }
    }

    /// One iteration: broadcast, gradients, aggregation, one optimiser step at rate `lr`.
    fn iteration(
        &mut self,
        ctx: &Context,
        train: &Rdd<Shard>,
        cfg: &DisConfig,
        (epoch, iteration): (usize, usize),
        lr: f32,
    ) -> Result<super::aggregation::Update, JobError> {
        let weights = ctx.broadcast(self.weights())?;
        let grads = train.map(Gradient {
            weights: weights.clone(),
            epoch,
            iteration,
            batch: cfg.recipe.batch_size,
            loss: cfg.loss,
            seed: cfg.seed,
            threshold: cfg.group_threshold,
            augment: cfg.recipe.augment,
        });
        let msgs: Vec<GradMsg> = match cfg.aggregation {
            Aggregation::Mean => grads.values().collect()?,
            Aggregation::Dis => grads
                .partition_by_leader(GroupPartitioner)?
                .map_partitions(SumGroup)
                .collect()?,
        };
        weights.destroy();
        let update = combine(
            cfg.aggregation,
            cfg.group_weights,
            cfg.dis_divisor,
            cfg.partitions,
            msgs,
        )
        .ok_or_else(|| EngineError::Codec("an iteration produced no gradient".into()))?;
        self.sgd.step(&mut self.params, &update.grad, lr);
        Ok(update)
    }
}

/// Trains and evaluates as `cfg` says; `log` receives one progress line per epoch. An
/// `--output` on object storage (`s3://…`) is written locally and published there
/// (`object_output`).
pub fn run(
    ctx: &Context,
    cfg: &DisConfig,
    log: &mut dyn FnMut(String),
) -> Result<Summary, JobError> {
    if discnn_engine::objects::is_object_url(&cfg.output) {
        return super::object_output::run(ctx, cfg, log);
    }
    run_local(ctx, cfg, log)
}

/// [`run`] into a local output directory.
pub(crate) fn run_local(
    ctx: &Context,
    cfg: &DisConfig,
    log: &mut dyn FnMut(String),
) -> Result<Summary, JobError> {
    let spec = check(cfg)?;
    // The driver reads the data once to refuse a bad file before any task runs; executors
    // then read only their own shards.
    let n_all = cifar::count(&cfg.data, Split::Train)?;
    let n_test = cifar::count(&cfg.data, Split::Test)?;
    let n_used = cfg.train_limit.map_or(n_all, |l| l.min(n_all));
    if cfg.validation >= n_used {
        return Err(JobError::BadOption(format!(
            "--validation {} leaves no training images (of {n_used})",
            cfg.validation
        )));
    }
    let n_train = n_used - cfg.validation;
    let resumed = if cfg.resume {
        // An interrupted run's checkpoint first, else the finished run's.
        let pending = output::in_progress(&cfg.output);
        let from = if pending.exists() {
            pending
        } else {
            cfg.output.clone()
        };
        let r = super::checkpoint::load(&from, cfg)?;
        if r.state.epoch >= cfg.epochs {
            return Err(JobError::BadOption(format!(
                "the checkpoint in {} is at epoch {}: ask for more --epochs",
                from.display(),
                r.state.epoch
            )));
        }
        Some(r)
    } else {
        None
    };
    let work = output::begin(&cfg.output, cfg.overwrite, cfg.resume)?;
    output::write_run_json(cfg, &work, resumed.as_ref().map(|r| r.state.epoch))?;
    super::watch::training_start(ctx, cfg, resumed.as_ref().map(|r| r.state.epoch));

    let p = cfg.partitions;
    let train = cached_shards(ctx, shard_specs(&cfg.data, SplitName::Train, 0, n_train, p))?;
    let test = cached_shards(ctx, shard_specs(&cfg.data, SplitName::Test, 0, n_test, p))?;
    let validation = if cfg.validation > 0 {
        let specs = shard_specs(&cfg.data, SplitName::Train, n_train, cfg.validation, p);
        Some(cached_shards(ctx, specs)?)
    } else {
        None
    };
    let mut validation_accuracy = Vec::new();
    let (mean, std) = train
        .map(PixelMoments)
        .collect()?
        .iter()
        .fold(cifar::ChannelSums::default(), |a, m| a.merge(m))
        .mean_std();
    let norm = crate::data::Normalization { mean, std };

    let original_maps = conv_maps(&spec);
    let mut maps_pruned = vec![0; original_maps.len()];
    let (mut m, first_epoch) = match resumed {
        Some(r) => {
            let net = Network::new(r.model.meta.spec.clone())
                .map_err(|e| JobError::BadOption(e.to_string()))?;
            let mut sgd = Sgd::new(
                r.model.params.len(),
                cfg.recipe.momentum,
                cfg.recipe.weight_decay,
            );
            sgd.velocity = r.momentum;
            maps_pruned = r.state.maps_pruned.clone();
            log(format!(
                "resuming {} after epoch {}",
                cfg.output.display(),
                r.state.epoch
            ));
            let spec_text = net.spec().to_string();
            let m = DriverModel {
                net,
                spec_text,
                params: r.model.params,
                sgd,
                norm,
            };
            (m, r.state.epoch)
        }
        None => {
            let net = Network::new(spec).map_err(|e| JobError::BadOption(e.to_string()))?;
            let base = Weights {
                spec: cfg.spec.clone(),
                params: Vec::new(),
                norm,
            };
            let (params, report) = super::init::initialize(
                ctx,
                &net,
                &train,
                base,
                super::init::InitOptions::of(cfg),
            )?;
            for line in &report.layers {
                log(format!("init {:?}: {line}", cfg.init));
            }
            let m = DriverModel {
                spec_text: net.spec().to_string(),
                net,
                sgd: Sgd::new(params.len(), cfg.recipe.momentum, cfg.recipe.weight_decay),
                params,
                norm,
            };
            (m, 0)
        }
    };
    let iterations = n_train.div_ceil(p * cfg.recipe.batch_size);

    let traffic = Arc::new(ResultTraffic::default());
    ctx.add_listener(traffic.clone());
    let metrics_path = work.join("metrics.jsonl");
    let mut metrics_file = output::open_metrics(&metrics_path, first_epoch)?;
    let run_start = Instant::now();
    let mut epochs = Vec::new();
    let mut confusion = Confusion::new(CLASSES.len());
    for epoch in first_epoch..cfg.epochs {
        let start = Instant::now();
        let (m0, b0) = driver_traffic(ctx, &traffic);
        let busy0 = traffic.task_micros.load(Ordering::Relaxed);
        let (mut images, mut loss_sum, mut groups) = (0u64, 0.0f64, [0u64; 2]);
        let mut lr = cfg.recipe.lr;
        for it in 0..iterations {
            lr = crate::optim::step_rate(
                cfg.recipe.lr,
                cfg.recipe.schedule == super::LrSchedule::Cosine,
                epoch * iterations + it,
                cfg.recipe.warmup * iterations,
                cfg.epochs * iterations,
            );
            let update = m.iteration(ctx, &train, cfg, (epoch, it), lr)?;
            images += update.images;
            loss_sum += update.loss_sum;
            groups[0] += update.group_sizes[0];
            groups[1] += update.group_sizes[1];
        }
        if cfg.prune_threshold > 0.0 && epoch + 1 == cfg.prune_at {
            if let Some(report) = prune(ctx, &train, &mut m, cfg)? {
                log(report);
            }
            maps_pruned = original_maps
                .iter()
                .zip(conv_maps(m.net.spec()))
                .map(|(a, b)| a - b)
                .collect();
        }
        let wall_s = start.elapsed().as_secs_f64();
        let (m1, b1) = driver_traffic(ctx, &traffic);
        let busy_s = (traffic.task_micros.load(Ordering::Relaxed) - busy0) as f64 / 1e6;
        confusion = evaluate(ctx, &test, m.weights())?;
        let val = match &validation {
            Some(v) => Some(evaluate(ctx, v, m.weights())?.accuracy()),
            None => None,
        };
        validation_accuracy.extend(val);
        let recall = confusion.recall();
        let em = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / images.max(1) as f64,
            test_accuracy: confusion.accuracy(),
            mean_recall: confusion.mean_recall(),
            per_class_recall: recall,
            wall_s,
            images_per_s: images as f64 / wall_s.max(1e-9),
            iterations,
            driver_messages: m1 - m0,
            driver_bytes: b1 - b0,
            group_sizes: groups,
            maps_pruned: maps_pruned.clone(),
            rss_bytes: discnn_engine::process::status_bytes("VmRSS"),
            lr: f64::from(lr),
            validation_accuracy: val,
        };
        let line = serde_json::to_string(&em).map_err(|e| EngineError::Codec(e.to_string()))?;
        writeln!(metrics_file, "{line}").map_err(io(&metrics_path))?;
        // The same line on the listener bus, for whoever watches the run.
        super::watch::epoch_end(ctx, &confusion, line);
        let done = epoch + 1;
        if cfg.checkpoint_every.is_some_and(|n| n > 0 && done % n == 0) {
            super::checkpoint::save(
                &work,
                cfg,
                &m.net,
                &m.params,
                &m.sgd.velocity,
                norm,
                done,
                &maps_pruned,
            )?;
            if let Some(url) = &cfg.object_output {
                super::object_output::mirror(&work, url)?;
            }
        }
        let eta = run_start.elapsed().as_secs_f64() / (done - first_epoch) as f64
            * (cfg.epochs - done) as f64;
        let val_text = val.map_or(String::new(), |v| {
            format!(", validation accuracy {:.2}%", v * 100.0)
        });
        log(format!(
            "epoch {done}/{}: train loss {:.4}, test accuracy {:.2}%{val_text}, lr {lr:.4}, {:.0} images/s, groups {}/{}, {:.2} s (tasks ran {busy_s:.2} s over {} slots), ETA {eta:.0} s",
            cfg.epochs,
            em.train_loss,
            em.test_accuracy * 100.0,
            em.images_per_s,
            groups[0],
            groups[1],
            em.wall_s,
            ctx.default_parallelism(),
        ));
        epochs.push(em);
    }
    let model_path = work.join("model.safetensors");
    Model::new(&m.net, m.params, norm).save(&model_path)?;
    let confusion_path = work.join("confusion.json");
    let c = serde_json::json!({
        "classes": CLASSES,
        "rows": "true class",
        "columns": "predicted class",
        "counts": confusion.counts,
    });
    std::fs::write(&confusion_path, c.to_string() + "\n").map_err(io(&confusion_path))?;
    train.unpersist();
    test.unpersist();
    if let Some(v) = validation {
        v.unpersist();
    }
    output::commit(&work, &cfg.output)?;
    super::watch::training_end(ctx, cfg);
    Ok(Summary {
        epochs,
        validation_accuracy,
        confusion,
        model: cfg.output.join("model.safetensors"),
    })
}
