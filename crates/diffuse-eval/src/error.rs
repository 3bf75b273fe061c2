use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EvalError {
    #[error("cannot draw {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
    #[error(transparent)]
    Fs(#[from] diffuse_fs::FsError),
}
