//! Checkpoints: weights as safetensors and configs as JSON, each written to a temporary file in
//! the same directory and renamed into place, so a crash never leaves a half-written file.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::Serialize;

use crate::error::TrainError;

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn rename_into_place(tmp: &Path, path: &Path) -> Result<(), TrainError> {
    std::fs::rename(tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        TrainError::Checkpoint {
            path: path.into(),
            reason: e.to_string(),
        }
    })
}

/// Writes the module's weights to `path` (safetensors), atomically.
pub fn save_weights<M: Module>(model: &M, path: &Path) -> Result<(), TrainError> {
    let tmp = temp_path(path);
    let mut store = SafetensorsStore::from_file(&tmp);
    model.clone().save_into(&mut store).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::Checkpoint {
            path: path.into(),
            reason: e.to_string(),
        }
    })?;
    rename_into_place(&tmp, path)
}

/// Loads weights saved by [`save_weights`] into `model` (which fixes the architecture). A tensor
/// missing from the file, misshapen, or in the file but not in the model is an error.
pub fn load_weights<M: Module>(model: M, path: &Path) -> Result<M, TrainError> {
    if !path.exists() {
        return Err(TrainError::Load {
            path: path.into(),
            reason: "file not found".into(),
        });
    }
    let mut model = model;
    let mut store = SafetensorsStore::from_file(path);
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
    let tmp = temp_path(path);
    std::fs::write(&tmp, text + "\n").map_err(|e| err(e.to_string()))?;
    rename_into_place(&tmp, path)
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
