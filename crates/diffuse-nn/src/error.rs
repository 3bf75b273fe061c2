use thiserror::Error;

#[derive(Debug, Error)]
pub enum NnError {
    #[error("model config field `{field}` must be at least 1")]
    ZeroSize { field: &'static str },
    #[error("invalid U-Net config: {0}")]
    Config(String),
    #[error("cannot load weights {path}: {reason}")]
    Weights {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("config field `{field}` {reason}")]
    UnsupportedField { field: String, reason: String },
    #[error(transparent)]
    Fs(#[from] diffuse_fs::FsError),
}
