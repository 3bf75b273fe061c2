//! Checkpoints: weights as safetensors and configs as JSON, each written to a temporary file in
//! the same directory and renamed into place (`diffuse_fs::write`), so a crash never leaves a
//! half-written file; read back as regular files within the memory available.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::Serialize;

use crate::error::TrainError;
use crate::state::TrainState;
use crate::trainer::Checkpoint;

/// Writes the module's weights to `path` (safetensors), atomically. The same weights give the
/// same bytes (no metadata, whose order burn does not fix), and the file gets the mode of any
/// other file the process creates. An enum module's variant is not part of the names (the file
/// of a `Vdm` arm reads as a `Vdm`'s own).
pub fn save_weights<M: Module>(model: &M, path: &Path) -> Result<(), TrainError> {
    let err = |e: String| TrainError::Checkpoint {
        path: path.into(),
        reason: e,
    };
    let mut store = SafetensorsStore::from_bytes(None)
        .clear_metadata()
        .skip_enum_variants(true);
    model
        .clone()
        .save_into(&mut store)
        .map_err(|e| err(e.to_string()))?;
    let bytes = store.get_bytes().map_err(|e| err(e.to_string()))?;
    Ok(diffuse_fs::write(path, &bytes)?)
}

/// Loads weights saved by [`save_weights`] into `model` (which fixes the architecture). A tensor
/// missing from the file, misshapen, or in the file but not in the model is an error.
pub fn load_weights<M: Module>(model: M, path: &Path) -> Result<M, TrainError> {
    let bytes = diffuse_fs::read(path, diffuse_fs::Limit::memory())?;
    let mut model = model;
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).skip_enum_variants(true);
    let result = model.load_from(&mut store).map_err(|e| TrainError::Load {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if !result.missing.is_empty() || !result.unused.is_empty() || !result.errors.is_empty() {
        return Err(TrainError::Load {
            path: path.into(),
            reason: format!("weights do not match the model: {result}"),
        });
    }
    Ok(model)
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn save_json<T: Serialize>(value: &T, path: &Path) -> Result<(), TrainError> {
    let err = |e: String| TrainError::Checkpoint {
        path: path.into(),
        reason: e,
    };
    let text = serde_json::to_string_pretty(value).map_err(|e| err(e.to_string()))?;
    Ok(diffuse_fs::write(path, (text + "\n").as_bytes())?)
}

/// The folder of a run's resume state, inside the run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
const STATE: &str = "state.json";
const MODEL: &str = "model.safetensors";
const MODEL_EMA: &str = "model_ema.safetensors";
const OPTIMIZER: &str = "optimizer.bpk";

/// Writes `checkpoint` as `run_dir/checkpoint/` (weights, EMA, optimizer, `state.json`): built
/// in a temporary folder and swapped in, so the folder on disk is always one whole checkpoint.
pub fn save_checkpoint<M: Module>(
    run_dir: &Path,
    checkpoint: &Checkpoint<M>,
) -> Result<(), TrainError> {
    let target = run_dir.join(CHECKPOINT_DIR);
    let tmp = run_dir.join(format!(".{CHECKPOINT_DIR}.tmp-{}", std::process::id()));
    let old = run_dir.join(format!(".{CHECKPOINT_DIR}.old-{}", std::process::id()));
    let err = |path: &Path, e: std::io::Error| TrainError::Checkpoint {
        path: path.into(),
        reason: e.to_string(),
    };
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| err(&tmp, e))?;
    save_weights(&checkpoint.model, &tmp.join(MODEL))?;
    if let Some(ema) = &checkpoint.ema {
        save_weights(ema, &tmp.join(MODEL_EMA))?;
    }
    diffuse_fs::write(&tmp.join(OPTIMIZER), &checkpoint.optimizer)?;
    save_json(&checkpoint.state, &tmp.join(STATE))?;
    if target.exists() {
        std::fs::rename(&target, &old).map_err(|e| err(&target, e))?;
    }
    std::fs::rename(&tmp, &target).map_err(|e| err(&target, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The checkpoint folder of a run: `checkpoint/`, or the previous one if a process was killed
/// while swapping them.
pub fn find_checkpoint(run_dir: &Path) -> Option<PathBuf> {
    let current = run_dir.join(CHECKPOINT_DIR);
    if current.join(STATE).is_file() {
        return Some(current);
    }
    let prefix = format!(".{CHECKPOINT_DIR}.old-");
    std::fs::read_dir(run_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                && p.join(STATE).is_file()
        })
}

/// Reads a checkpoint's `state.json`: the step, the RNG position, one finite loss per step, and
/// the importance history (checked against the run's chain by the objective,
/// `Objective::check_state`).
pub fn read_state(path: &Path) -> Result<TrainState, TrainError> {
    let text = diffuse_fs::read_to_string(path, diffuse_fs::Limit::memory())?;
    let bad = |reason: String| TrainError::Load {
        path: path.into(),
        reason,
    };
    let state: TrainState = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if state.losses.len() != state.step {
        return Err(bad(format!(
            "step {} but {} losses recorded",
            state.step,
            state.losses.len()
        )));
    }
    // The trainer never saves a non-finite loss; one here would also blind the divergence check.
    if let Some((i, v)) = state
        .losses
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        return Err(bad(format!("the loss of step {} is {v}", i + 1)));
    }
    Ok(state)
}

/// Loads a run's checkpoint into `model` and, where the checkpoint has EMA weights, into a copy
/// of it; both fix the architecture and the device (an autodiff one to train on).
pub fn load_checkpoint<M: Module>(run_dir: &Path, model: M) -> Result<Checkpoint<M>, TrainError> {
    let Some(dir) = find_checkpoint(run_dir) else {
        return Err(TrainError::Load {
            path: run_dir.join(CHECKPOINT_DIR),
            reason: "no checkpoint to resume from (the run wrote none yet)".into(),
        });
    };
    let state = read_state(&dir.join(STATE))?;
    let ema = if dir.join(MODEL_EMA).exists() {
        Some(load_weights(model.clone(), &dir.join(MODEL_EMA))?)
    } else {
        None
    };
    let model = load_weights(model, &dir.join(MODEL))?;
    let optimizer = diffuse_fs::read(&dir.join(OPTIMIZER), diffuse_fs::Limit::memory())?;
    Ok(Checkpoint {
        model,
        ema,
        state,
        optimizer,
    })
}

/// Removes what killed processes left behind in a run directory: `.NAME.tmp-PID` files (here and
/// one folder down) and unfinished checkpoint folders. Returns how many entries it removed.
pub fn clean_temporaries(run_dir: &Path) -> usize {
    let is_temp = |p: &Path| {
        p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            diffuse_fs::is_temporary(&n) || n.starts_with(".checkpoint.old-")
        })
    };
    let mut removed = 0;
    let mut dirs = vec![run_dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(run_dir) {
        dirs.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !is_temp(p)),
        );
    }
    let has_current = find_checkpoint(run_dir).is_some_and(|p| p.ends_with(CHECKPOINT_DIR));
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()).filter(|p| is_temp(p)) {
            // The previous checkpoint is kept while it is the only whole one.
            let old = path.to_string_lossy().contains(".checkpoint.old-");
            if old && !has_current {
                continue;
            }
            let ok = if path.is_dir() {
                std::fs::remove_dir_all(&path).is_ok()
            } else {
                std::fs::remove_file(&path).is_ok()
            };
            removed += usize::from(ok);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Two {
        a: Linear,
        b: Linear,
    }

    #[derive(Module, Debug)]
    struct One {
        a: Linear,
    }

    #[test]
    fn weights_round_trip_and_mismatches_are_errors() {
        let device = Device::default();
        let dir = std::env::temp_dir().join(format!("diffuse-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("two.safetensors");
        let two = Two {
            a: LinearConfig::new(2, 3).init(&device),
            b: LinearConfig::new(3, 1).init(&device),
        };
        save_weights(&two, &path).unwrap();
        let fresh = Two {
            a: LinearConfig::new(2, 3).init(&device),
            b: LinearConfig::new(3, 1).init(&device),
        };
        let loaded = load_weights(fresh, &path).unwrap();
        assert_eq!(
            loaded.b.weight.val().into_data(),
            two.b.weight.val().into_data()
        );
        // Extra tensors in the file (b.*) are an error, as a missing one is.
        let one = One {
            a: LinearConfig::new(2, 3).init(&device),
        };
        let err = load_weights(one, &path).unwrap_err().to_string();
        assert!(err.contains("do not match"), "{err}");
        let one_path = dir.join("one.safetensors");
        save_weights(
            &One {
                a: LinearConfig::new(2, 3).init(&device),
            },
            &one_path,
        )
        .unwrap();
        assert!(load_weights(two, &one_path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
