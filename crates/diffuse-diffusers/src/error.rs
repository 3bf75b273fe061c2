use thiserror::Error;

#[derive(Debug, Error)]
pub enum DiffusersError {
    #[error("invalid scheduler config: {0}")]
    Scheduler(String),
    #[error("{path}: {reason}")]
    Pipeline {
        path: std::path::PathBuf,
        reason: String,
    },
    /// The U-Net's config or weights, and the field rules both readers share.
    #[error(transparent)]
    Nn(#[from] diffuse_nn::NnError),
    #[error(transparent)]
    Fs(#[from] diffuse_fs::FsError),
}
