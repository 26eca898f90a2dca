//! `driver submit cnn-job` as a user runs it (outputs, metrics keys, refusals), the same job on
//! a 3-executor cluster, and the leader placement of the grouped aggregation seen in the task
//! events.

mod common;

use common::submit_cnn as submit;
use discnn_cnn::cifar;
use discnn_cnn::dis::aggregation::{GradMsg, Gradient, GroupPartitioner, SumGroup};
use discnn_cnn::dis::shards::{shard_specs, LoadShard, SplitName, Weights};
use discnn_cnn::layers::Loss;
use discnn_cnn::network::WeightInit;
use discnn_cnn::spec::PAPER;
use discnn_engine::{Event, EventLog};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const KEYS: [&str; 15] = [
    "epoch",
    "train_loss",
    "test_accuracy",
    "per_class_recall",
    "mean_recall",
    "wall_s",
    "images_per_s",
    "iterations",
    "driver_messages",
    "driver_bytes",
    "group_sizes",
    "maps_pruned",
    "rss_bytes",
    "lr",
    "validation_accuracy",
];

fn check_outputs(out: &Path, epochs: usize, test_images: u64) {
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), epochs);
    for (i, m) in lines.iter().enumerate() {
        let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        let mut want = KEYS.to_vec();
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(m["epoch"], i + 1);
        assert_eq!(m["per_class_recall"].as_array().unwrap().len(), 10);
        let acc = m["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(m["driver_messages"].as_u64().unwrap() > 0);
        assert!(m["rss_bytes"].as_u64().unwrap() > 0);
        assert!(m["lr"].as_f64().unwrap() >= 0.0);
        assert!(m["validation_accuracy"].is_null(), "no --validation");
    }
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert!(run["options"]["lr"].as_f64().is_some(), "{run}");
    assert!(run["recipe"].as_str().unwrap().contains("weight decay"));
    assert!(run["build"].as_str().unwrap().starts_with("discnn "));
    let model = discnn_cnn::model_io::Model::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(model.params.len(), 12_448);
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("confusion.json")).unwrap())
            .unwrap();
    let total: u64 = c["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(total, test_images);
}

#[test]
fn cnn_job_writes_its_outputs_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 40, 30, 3).unwrap();
    let out = dir.path().join("run");
    let o = submit(
        &[
            "--master",
            "local[2]",
            "--json",
            "cnn-job",
            "--epochs",
            "2",
            "--batch-size",
            "8",
        ],
        &data,
        &out,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["epochs"], 2);
    check_outputs(&out, 2, 30);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("epoch 2/2"),
        "one progress line per epoch: {err}"
    );
    eval_and_predict_agree_with_the_run(&out, &data);

    // An existing output is refused, unless --overwrite.
    let o = submit(&["cnn-job"], &data, &out);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--overwrite"));
    let o = submit(
        &["cnn-job", "--overwrite", "--batch-size", "16"],
        &data,
        &out,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A truncated batch and a label above 9: exit 2 naming the file and offset.
    let bad = dir.path().join("bad");
    cifar::write_synthetic_folder(&bad, 4, 2, 4).unwrap();
    let f = bad.join("data_batch_3.bin");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&f, &bytes).unwrap();
    let o = submit(&["cnn-job"], &bad, &dir.path().join("x"));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("data_batch_3.bin") && err.contains("offset 9219"),
        "{err}"
    );
    cifar::write_synthetic_folder(&bad, 4, 2, 4).unwrap();
    let mut bytes = std::fs::read(bad.join("test_batch.bin")).unwrap();
    bytes[cifar::RECORD_BYTES] = 12;
    std::fs::write(bad.join("test_batch.bin"), &bytes).unwrap();
    let o = submit(&["cnn-job"], &bad, &dir.path().join("y"));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("test_batch.bin") && err.contains("3073"),
        "{err}"
    );
    // A missing batch and a bad option.
    std::fs::remove_file(bad.join("data_batch_5.bin")).unwrap();
    let o = submit(&["cnn-job"], &bad, &dir.path().join("z"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("data_batch_5"));
    let o = submit(
        &["cnn-job", "--partitions", "0"],
        &data,
        &dir.path().join("w"),
    );
    assert_eq!(o.status.code(), Some(2));
    let o = submit(
        &["cnn-job", "--batch-size", "18446744073709551615"],
        &data,
        &dir.path().join("w"),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--batch-size must be between"), "{err}");
    // The form --help shows for the group weights, and the spaced form.
    for weights in [&["0.55,0.45"][..], &["0.6", "0.4"]] {
        let o = submit(
            &[&["cnn-job", "--overwrite", "--group-weights"], weights].concat(),
            &data,
            &dir.path().join("gw"),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

fn final_accuracy(out: &Path) -> f64 {
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    last["test_accuracy"].as_f64().unwrap()
}

/// The learning check: one epoch on 5,000 images (20 iterations of 4 × 64 images) with the
/// defaults but no augmentation, in local mode; and the defaults (crop and flip drawn on the
/// executors) on a 3-executor cluster, bit for bit what local mode trains. The suite needs no
/// dataset, so the images are made here, each class a stripe pattern under noise
/// (`write_patterned_folder`). Augmentation is left out of the learning check because it is a
/// regulariser that pays over epochs: in 20 steps, on stripes whose phase a crop moves, it
/// leaves this data near chance. On the real CIFAR-10 see BENCHMARKS.md.
#[test]
fn one_epoch_on_5000_images_learns_locally_and_trains_the_same_on_three_executors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_patterned_folder(&data, 1000, 1000, 3).unwrap();

    let local = dir.path().join("local");
    let o = submit(&["cnn-job", "--augment", "none"], &data, &local);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_outputs(&local, 1, 1000);
    let trained = final_accuracy(&local);
    assert!(trained > 0.30, "1 epoch without augmentation: {trained}");

    // Barely trained, the same network stays near chance: the 30 % above is learnt.
    let still = dir.path().join("still");
    let o = submit(
        &["cnn-job", "--augment", "none", "--lr", "1e-9"],
        &data,
        &still,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let untrained = final_accuracy(&still);
    assert!(untrained < 0.2, "lr 1e-9: {untrained}");

    let defaults = dir.path().join("defaults");
    let o = submit(&["cnn-job"], &data, &defaults);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cluster = dir.path().join("cluster");
    let o = submit(
        &["--master", "local-cluster[3,1]", "cnn-job"],
        &data,
        &cluster,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_outputs(&cluster, 1, 1000);
    // Where a task runs never changes its bits, augmentation included.
    let model = |d: &Path| discnn_cnn::model_io::Model::load(&d.join("model.safetensors")).unwrap();
    let (a, b) = (model(&defaults), model(&cluster));
    assert!(a
        .params
        .iter()
        .zip(&b.params)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn each_group_is_summed_on_its_leaders_executor() {
    let dir = tempfile::tempdir().unwrap();
    cifar::write_synthetic_folder(dir.path(), 24, 4, 6).unwrap();
    let ctx = common::cluster(3, Duration::from_secs(10), Duration::from_secs(30));
    let log = Arc::new(EventLog::default());
    ctx.add_listener(log.clone());
    common::with_logs(&ctx, || {
        let parts = 6;
        let shards = ctx
            .parallelize(
                shard_specs(dir.path(), SplitName::Train, 0, 120, parts),
                parts,
            )
            .unwrap()
            .map(LoadShard);
        shards.cache();
        let net = discnn_cnn::dis::shards::network(PAPER);
        let weights = ctx
            .broadcast(Weights {
                spec: PAPER.into(),
                params: net.init_params_with(WeightInit::Uniform, 1),
                norm: discnn_cnn::data::Normalization {
                    mean: [0.5; 3],
                    std: [0.25; 3],
                },
            })
            .unwrap();
        let gradient = |threshold| Gradient {
            weights: weights.clone(),
            epoch: 0,
            iteration: 0,
            batch: 8,
            loss: Loss::CrossEntropy,
            seed: 1,
            threshold,
            augment: discnn_cnn::data::Augment::NONE,
        };
        // A threshold at the median error splits the partitions into two groups.
        let mut errors: Vec<f64> = shards
            .map(gradient(0.0))
            .values()
            .collect()
            .unwrap()
            .iter()
            .map(|m| m.errors[0])
            .collect();
        errors.sort_by(f64::total_cmp);
        let threshold = errors[parts / 2 - 1];

        let from = log.events().len();
        let sums: Vec<GradMsg> = shards
            .map(gradient(threshold))
            .partition_by_leader(GroupPartitioner)
            .unwrap()
            .map_partitions(SumGroup)
            .collect()
            .unwrap();
        assert_eq!(sums.len(), 2, "both groups are present");
        let events = log.events()[from..].to_vec();
        let stage_of = |map: bool| {
            events
                .iter()
                .find_map(|e| match e {
                    Event::StageSubmitted {
                        stage, shuffle_map, ..
                    } if *shuffle_map == map => Some(*stage),
                    _ => None,
                })
                .unwrap()
        };
        let (map_stage, reduce_stage) = (stage_of(true), stage_of(false));
        let ends = |stage_id: u64| -> Vec<(usize, String)> {
            events
                .iter()
                .filter_map(|e| match e {
                    Event::TaskEnd {
                        stage,
                        partition,
                        executor,
                        failure: None,
                        ..
                    } if *stage == stage_id => Some((*partition, executor.clone())),
                    _ => None,
                })
                .collect()
        };
        let map_ends = ends(map_stage);
        for s in &sums {
            let leader = map_ends
                .iter()
                .find(|(p, _)| s.partitions.contains(&(*p as u32)))
                .map(|(_, e)| e.clone())
                .unwrap();
            let ran_on = ends(reduce_stage)
                .into_iter()
                .find(|(p, _)| *p == usize::from(s.group))
                .map(|(_, e)| e)
                .unwrap();
            assert_eq!(ran_on, leader, "group {} ({:?})", s.group, s.partitions);
        }
    });
}

#[test]
fn dis_sends_the_driver_two_gradients_an_iteration_and_mean_one_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 32, 8, 7).unwrap();
    let grad_bytes = 12_448 * 4;
    for n in [4u64, 8] {
        let mut dis_traffic = Vec::new();
        // Every partition in the low group (E ≤ 2 always), so both divisors' runs shuffle the
        // same group sizes whatever their steps do to the errors; then the default grouping.
        for (aggregation, divisor, b) in [
            ("dis", "weights", "2"),
            ("dis", "n", "2"),
            ("dis", "weights", "0.8"),
            ("mean", "n", "0.8"),
        ] {
            let out = dir.path().join(format!("{aggregation}-{divisor}-{b}-{n}"));
            let o = submit(
                &[
                    "--master",
                    "local[2]",
                    "cnn-job",
                    "--aggregation",
                    aggregation,
                    "--dis-divisor",
                    divisor,
                    "--group-threshold",
                    b,
                    "--partitions",
                    &n.to_string(),
                    "--batch-size",
                    "4",
                ],
                &data,
                &out,
            );
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let m: serde_json::Value = serde_json::from_str(
                std::fs::read_to_string(out.join("metrics.jsonl"))
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap(),
            )
            .unwrap();
            let per_iteration =
                m["driver_bytes"].as_u64().unwrap() / m["iterations"].as_u64().unwrap();
            if aggregation == "dis" {
                assert!(
                    per_iteration <= 2 * grad_bytes + n * 1024,
                    "dis at {n}: {per_iteration} bytes an iteration"
                );
                dis_traffic.push((m["driver_messages"].clone(), m["driver_bytes"].clone()));
            } else {
                assert!(
                    per_iteration >= n * grad_bytes,
                    "mean at {n}: {per_iteration} bytes an iteration"
                );
            }
        }
        // The divisor travels with the group sums: not one message or byte more.
        assert_eq!(
            dis_traffic[0], dis_traffic[1],
            "divisor weights vs n at {n}"
        );
    }
}

/// cnn-eval of the saved model gives the run's last test accuracy; cnn-predict's classes add
/// up to the confusion matrix's columns; a file that is not a model is refused.
fn eval_and_predict_agree_with_the_run(out: &Path, data: &Path) {
    let model = out.join("model.safetensors");
    let run = |args: &[&str], model: &Path| {
        Command::new(env!("CARGO_BIN_EXE_driver"))
            .args(["submit", "--master", "local[2]"])
            .args(args)
            .arg("--model")
            .arg(model)
            .arg("--data")
            .arg(data)
            .output()
            .unwrap()
    };
    let o = run(&["--json", "cnn-eval"], &model);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(e["accuracy"], last["test_accuracy"]);
    assert_eq!(e["per_class_recall"], last["per_class_recall"]);
    let o = run(&["cnn-predict"], &model);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let predicted: Vec<usize> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let confusion = e["confusion"].as_array().unwrap();
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(predicted.len() as u64, total);
    for class in 0..10 {
        let column: u64 = confusion.iter().map(|r| r[class].as_u64().unwrap()).sum();
        assert_eq!(
            predicted.iter().filter(|&&p| p == class).count() as u64,
            column
        );
    }
    let o = run(&["cnn-eval"], &out.join("metrics.jsonl"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("metrics.jsonl"));
}

/// Kills the executor that ran the `after`-th successful task, once.
struct KillAfter {
    after: usize,
    seen: std::sync::atomic::AtomicUsize,
    executors: Vec<(String, u32)>,
    killed: std::sync::Mutex<Option<String>>,
}

impl discnn_engine::Listener for KillAfter {
    fn on_event(&self, e: &Event) {
        if let Event::TaskEnd {
            executor,
            failure: None,
            ..
        } = e
        {
            let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let mut killed = self.killed.lock().unwrap();
            if n >= self.after && killed.is_none() {
                if let Some((id, pid)) = self.executors.iter().find(|(id, _)| id == executor) {
                    common::kill9(*pid);
                    *killed = Some(id.clone());
                }
            }
        }
    }
}

#[test]
fn the_job_survives_an_executor_lost_mid_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 24, 12, 12).unwrap();
    let ctx = common::cluster(3, Duration::from_secs(2), Duration::from_secs(30));
    let executors = ctx
        .executors()
        .iter()
        .map(|e| (e.id.clone(), e.pid))
        .collect();
    let log = Arc::new(EventLog::default());
    ctx.add_listener(log.clone());
    common::with_logs(&ctx, || {
        let cfg = discnn_cnn::dis::DisConfig {
            data: data.clone(),
            output: dir.path().join("run"),
            epochs: 2,
            recipe: discnn_cnn::dis::Recipe {
                batch_size: 4,
                ..Default::default()
            },
            partitions: 6,
            init: discnn_cnn::dis::init::InitMethod::Random,
            ..Default::default()
        };
        // Past loading, normalisation and the first iterations of epoch 1.
        let killer = Arc::new(KillAfter {
            after: 40,
            seen: Default::default(),
            executors,
            killed: Default::default(),
        });
        ctx.add_listener(killer.clone());
        let summary = discnn_cnn::dis::job::run(&ctx, &cfg, &mut |_| {}).unwrap();
        let killed = killer
            .killed
            .lock()
            .unwrap()
            .clone()
            .expect("an executor was killed");
        assert_eq!(summary.epochs.len(), 2);
        // The killed executor was declared lost — at once if its task channel broke between
        // tasks (no task fails then), else with its running tasks failing as ExecutorLost — and
        // nothing ran on it afterwards.
        let events = log.events();
        let removed = events
            .iter()
            .position(|e| {
                matches!(e, Event::ExecutorRemoved { executor, lost: true, .. } if *executor == killed)
            })
            .unwrap_or_else(|| panic!("the loss of {killed} was declared"));
        let ran_after = events[removed..]
            .iter()
            .filter(|e| matches!(e, Event::TaskEnd { executor, failure: None, .. } if *executor == killed))
            .count();
        assert_eq!(ran_after, 0, "tasks succeeded on {killed} after its loss");
        let model = discnn_cnn::model_io::Model::load(&summary.model).unwrap();
        assert!(model.params.iter().all(|p| p.is_finite()));
        assert_eq!(summary.confusion.total(), 12);
    });
}
