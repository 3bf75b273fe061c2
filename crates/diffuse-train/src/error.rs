use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("training config field `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error(
        "the loss became {value} at step {step}; lower the learning rate or enable grad_clip_norm"
    )]
    NonFiniteLoss { step: usize, value: f32 },
    #[error("cannot write checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("cannot load checkpoint {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error(transparent)]
    Core(#[from] diffuse_core::CoreError),
    #[error("training stopped: {0}")]
    Hook(String),
}
