use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("training config field `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error(
        "the loss became {value} at step {step}; the last checkpoint written before it is kept. \
         Lower the learning rate or enable grad_clip_norm"
    )]
    NonFiniteLoss { step: usize, value: f32 },
    #[error(
        "the weights became non-finite (NaN or inf) at step {step}; the last checkpoint written \
         before it is kept. Lower the learning rate or enable grad_clip_norm"
    )]
    NonFiniteWeights { step: usize },
    #[error(
        "training diverged at step {step}: the loss is {value:e}, more than {factor:e} times the \
         first step's {first}; the last checkpoint written before it is kept. Lower the learning \
         rate or enable grad_clip_norm (train.divergence_factor = null turns this check off)"
    )]
    Diverged {
        step: usize,
        value: f32,
        first: f32,
        factor: f64,
    },
    #[error("cannot resume: {reason}")]
    Resume { reason: String },
    #[error("cannot write checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("cannot load checkpoint {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error(transparent)]
    Core(#[from] diffuse_core::CoreError),
    #[error("training stopped: {0}")]
    Hook(String),
    #[error(transparent)]
    Fs(#[from] diffuse_fs::FsError),
}
