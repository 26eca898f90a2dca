//! `--resume` as a user runs it: a resumed run computes only the remaining epochs and ends bit
//! for bit where an uninterrupted one does; a checkpoint that is missing, from other options or
//! corrupt (its state included) is refused, naming why.

mod common;

use common::submit_cnn as submit;
use discnn_cnn::cifar;
use std::path::Path;
use std::process::Command;

#[test]
fn a_resumed_run_computes_only_the_remaining_epochs_and_ends_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, 16, 10, 11).unwrap();
    // Pruning at epoch 2 checks that the checkpoint follows the new shape. A constant rate, so
    // that a run may be extended (under cosine every rate depends on --epochs).
    let common = [
        "--master",
        "local[2]",
        "cnn-job",
        "--schedule",
        "constant",
        "--batch-size",
        "4",
        "--prune-threshold",
        "0.9",
        "--prune-at",
        "2",
        "--checkpoint-every",
        "1",
    ];
    let whole = dir.path().join("whole");
    let o = submit(&[&common[..], &["--epochs", "3"]].concat(), &data, &whole);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let part = dir.path().join("part");
    let o = submit(&[&common[..], &["--epochs", "2"]].concat(), &data, &part);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resume = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_driver"))
            .args(["submit", "--no-progress"])
            .args(common)
            .args(extra)
            .arg("--data")
            .arg(&data)
            .arg("--resume")
            .arg(&part)
            .output()
            .unwrap()
    };
    let o = resume(&["--epochs", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("epoch 3/3") && !err.contains("epoch 2/3"),
        "{err}"
    );

    let load = |d: &Path| discnn_cnn::model_io::Model::load(&d.join("model.safetensors")).unwrap();
    let (a, b) = (load(&whole), load(&part));
    assert_eq!(a.meta.spec, b.meta.spec);
    assert_ne!(
        a.meta.spec,
        discnn_cnn::spec::NetSpec::paper(),
        "pruned at epoch 2"
    );
    assert!(a
        .params
        .iter()
        .zip(&b.params)
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_eq!(a.params.len(), b.params.len());
    let lines = |d: &Path| {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((lines(&whole), lines(&part)), (3, 3));

    // No checkpoint, other options, and a corrupt checkpoint are refused (exit 2) naming the
    // cause.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(["submit", "cnn-job", "--epochs", "2", "--resume"])
        .arg(&empty)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no checkpoint in"));
    let o = resume(&["--epochs", "4", "--lr", "0.02"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lr was"));
    // One bit of the state's epoch: the state is covered by its own digest.
    let state = part.join("checkpoint/state.json");
    let good = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, good.replace("\"epoch\": 3", "\"epoch\": 2")).unwrap();
    let o = resume(&["--epochs", "4"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("state.json") && err.contains("SHA-256"),
        "{err}"
    );
    std::fs::write(&state, good).unwrap();
    let m = part.join("checkpoint/momentum.safetensors");
    let mut bytes = std::fs::read(&m).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&m, bytes).unwrap();
    let o = resume(&["--epochs", "4"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("momentum.safetensors") && err.contains("SHA-256"),
        "{err}"
    );
}
