//! Checkpoints: `DIR/checkpoint/` holds the model (`model.safetensors`), the momentum buffers
//! laid out like the parameters (`momentum.safetensors`) and `state.json` (the epoch, the
//! training options, maps pruned, and a SHA-256 of each tensor file). No RNG state: every
//! random stream is keyed by seed and position, so epoch e+1 needs nothing but the weights.
//! A new checkpoint is written beside the old one and swapped in by renames; a resumed run
//! refuses a checkpoint whose files do not match their digests or whose options differ.

use super::DisConfig;
use crate::data::Normalization;
use crate::model_io::Model;
use crate::network::Network;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {file}: {why}")]
    Corrupt { file: PathBuf, why: String },
    #[error("--resume: {0}")]
    Mismatch(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Epochs completed.
    pub epoch: usize,
    /// The options that shape training (all but output, overwrite and epochs).
    pub options: serde_json::Value,
    pub maps_pruned: Vec<usize>,
    pub model_sha256: String,
    pub momentum_sha256: String,
}

/// What a resumed run starts from.
pub struct Resumed {
    pub state: State,
    pub model: Model,
    pub momentum: Vec<f32>,
}

/// The options that must be the same for a run to continue another. The epoch count may grow
/// on resume, except under a cosine schedule, whose every rate depends on it. Where the data
/// lies may change (a run may span machines); the job checks the data set itself.
pub fn options(cfg: &DisConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        for k in ["data", "output", "overwrite", "checkpoint_every", "resume"] {
            o.remove(k);
        }
        if cfg.recipe.schedule != super::LrSchedule::Cosine {
            o.remove("epochs");
        }
    }
    v
}

/// The options that differ between what a run was made with and what is asked for now, as
/// `lr was 0.05, now 0.02`.
pub fn differences(had: &serde_json::Value, want: &serde_json::Value) -> String {
    let null = serde_json::Value::Null;
    match (had.as_object(), want.as_object()) {
        (Some(a), Some(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| {
                    format!(
                        "{k} was {}, now {}",
                        a.get(k).unwrap_or(&null),
                        b.get(k).unwrap_or(&null)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        _ => "the options".into(),
    }
}

/// The SHA-256 of `bytes` in lower-case hex, as `sha256sum` prints it.
pub fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(file: &Path, why: impl Into<String>) -> CheckpointError {
    CheckpointError::Corrupt {
        file: file.to_path_buf(),
        why: why.into(),
    }
}

/// The SHA-256 of `state.json`, beside it.
const STATE_DIGEST: &str = "state.json.sha256";

pub fn dir(output: &Path) -> PathBuf {
    output.join("checkpoint")
}

#[allow(clippy::too_many_arguments)]
pub fn save(
    output: &Path,
    cfg: &DisConfig,
    net: &Network,
    params: &[f32],
    momentum: &[f32],
    norm: Normalization,
    epoch: usize,
    maps_pruned: &[usize],
) -> Result<(), CheckpointError> {
    let fresh = output.join("checkpoint.new");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(io(&fresh))?;
    }
    std::fs::create_dir_all(&fresh).map_err(io(&fresh))?;
    let bytes = |p: &[f32], name: &str| {
        Model::new(net, p.to_vec(), norm)
            .to_bytes()
            .map_err(|why| corrupt(&fresh.join(name), why))
    };
    let model = bytes(params, "model.safetensors")?;
    let mom = bytes(momentum, "momentum.safetensors")?;
    let state = State {
        epoch,
        options: options(cfg),
        maps_pruned: maps_pruned.to_vec(),
        model_sha256: hex(&model),
        momentum_sha256: hex(&mom),
    };
    for (name, b) in [
        ("model.safetensors", &model),
        ("momentum.safetensors", &mom),
    ] {
        let p = fresh.join(name);
        std::fs::write(&p, b).map_err(io(&p))?;
    }
    let p = fresh.join("state.json");
    let json = serde_json::to_vec_pretty(&state).map_err(|e| corrupt(&p, e.to_string()))?;
    std::fs::write(&p, &json).map_err(io(&p))?;
    // The state names the other files' digests; this one covers the state itself.
    let d = fresh.join(STATE_DIGEST);
    std::fs::write(&d, hex(&json) + "\n").map_err(io(&d))?;
    super::swap::replace(&fresh, &dir(output)).map_err(swap_failed)
}

fn swap_failed((path, source): super::swap::Failure) -> CheckpointError {
    CheckpointError::Io { path, source }
}

/// Whether `output` holds a checkpoint, after finishing a swap a killed run left half done.
pub fn exists(output: &Path) -> Result<bool, CheckpointError> {
    let d = dir(output);
    super::swap::recover(&d).map_err(swap_failed)?;
    Ok(d.join("state.json").exists())
}

/// Loads and verifies `output`'s checkpoint for a run configured as `cfg`.
pub fn load(output: &Path, cfg: &DisConfig) -> Result<Resumed, CheckpointError> {
    let d = dir(output);
    let state_path = d.join("state.json");
    if !exists(output)? {
        return Err(CheckpointError::Mismatch(format!(
            "no checkpoint in {} (a run saves one with --checkpoint-every N)",
            output.display()
        )));
    }
    let text = std::fs::read(&state_path).map_err(io(&state_path))?;
    let digest_path = d.join(STATE_DIGEST);
    let digest = std::fs::read_to_string(&digest_path).map_err(io(&digest_path))?;
    if digest.trim() != hex(&text) {
        return Err(corrupt(
            &state_path,
            format!("its SHA-256 does not match {STATE_DIGEST}"),
        ));
    }
    let state: State =
        serde_json::from_slice(&text).map_err(|e| corrupt(&state_path, e.to_string()))?;
    let read = |name: &str, digest: &str| -> Result<Model, CheckpointError> {
        let p = d.join(name);
        let b = std::fs::read(&p).map_err(io(&p))?;
        if hex(&b) != digest {
            return Err(corrupt(&p, "its SHA-256 does not match state.json"));
        }
        Model::from_bytes(&p.display().to_string(), &b).map_err(|e| corrupt(&p, e.to_string()))
    };
    let model = read("model.safetensors", &state.model_sha256)?;
    let momentum = read("momentum.safetensors", &state.momentum_sha256)?.params;
    let want = options(cfg);
    if state.options != want {
        return Err(CheckpointError::Mismatch(format!(
            "the run in {} used other options: {}",
            output.display(),
            differences(&state.options, &want)
        )));
    }
    if state.epoch > 0 && momentum.len() != model.params.len() {
        return Err(corrupt(&d, "momentum and model sizes differ"));
    }
    Ok(Resumed {
        state,
        model,
        momentum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosine_run_cannot_be_extended_but_a_constant_one_can() {
        let constant = DisConfig::default();
        let longer = DisConfig {
            epochs: constant.epochs + 5,
            ..constant.clone()
        };
        assert_eq!(options(&constant), options(&longer));
        let cosine = DisConfig {
            recipe: super::super::Recipe {
                schedule: super::super::LrSchedule::Cosine,
                ..constant.recipe
            },
            ..constant
        };
        let longer = DisConfig {
            epochs: cosine.epochs + 5,
            ..cosine.clone()
        };
        assert_ne!(options(&cosine), options(&longer));
    }

    mod untrusted {
        use super::super::*;
        use crate::spec::NetSpec;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
            /// A checkpoint with any of its files' bytes flipped or cut is refused, never a
            /// panic (and the digests catch every change that still parses).
            #[test]
            fn mutated_checkpoints_are_refused_not_panicked_on(
                file in 0usize..4,
                flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4),
                cut in any::<prop::sample::Index>(),
            ) {
                let dir = tempfile::tempdir().unwrap();
                let cfg = DisConfig::default();
                let net = Network::new(NetSpec::paper()).unwrap();
                let params = net.init_params(3);
                let norm = Normalization { mean: [0.5; 3], std: [0.25; 3] };
                save(dir.path(), &cfg, &net, &params, &params, norm, 1, &[0, 0, 0]).unwrap();
                let names = ["state.json", STATE_DIGEST, "model.safetensors", "momentum.safetensors"];
                let path = super::super::dir(dir.path()).join(names[file]);
                let original = std::fs::read(&path).unwrap();
                let mut bytes = original.clone();
                for (at, v) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] ^= v;
                }
                let keep = bytes.len() - cut.index(bytes.len() / 4 + 1);
                bytes.truncate(keep);
                std::fs::write(&path, &bytes).unwrap();
                // Whitespace around the digest's hex is not part of it.
                let same = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
                prop_assume!(file != 1 || same(&bytes) != same(&original));
                prop_assert!(load(dir.path(), &cfg).is_err());
            }
        }
    }
}
