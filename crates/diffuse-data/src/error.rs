use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid .npy file: {reason}")]
    NpyFormat { path: PathBuf, reason: String },
    #[error(
        "{path}: unsupported .npy dtype {dtype}; save float32 or float64 (e.g. `np.save(f, x.astype(np.float32))`)"
    )]
    NpyDtype { path: PathBuf, dtype: String },
    #[error("{path}, line {line}: {reason}")]
    Csv {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: expected a point cloud of shape [N, {dim}], found shape {shape:?}")]
    Shape {
        path: PathBuf,
        dim: usize,
        shape: Vec<usize>,
    },
    #[error("{path}: holds no points")]
    Empty { path: PathBuf },
    #[error("{path}: value {value} at point {index} is not finite; remove NaN/inf rows first")]
    NotFinite {
        path: PathBuf,
        index: usize,
        value: f64,
    },
    #[error("{path}: unsupported file extension; use .npy or .csv")]
    Extension { path: PathBuf },
    #[error("unknown dataset `{name}`; choose one of: {choices}")]
    UnknownDataset { name: String, choices: String },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{dir}: no {what} found (looked for {looked_for})")]
    NotFound {
        dir: PathBuf,
        what: &'static str,
        looked_for: String,
    },
    #[error(
        "image folders are read as gray (1 channel) or RGB (3 channels), not {channels}; set unet.in_channels to 1 or 3"
    )]
    Channels { channels: usize },
    #[error("the run config's standardizer {0}")]
    Standardizer(String),
    #[error(transparent)]
    Fs(#[from] diffuse_fs::FsError),
    #[error(
        "{dir}: {images} images of {channels} x {size} x {size} need {bytes} bytes, more than the {available} bytes of memory this machine has available; use a smaller folder or unet.sample_size"
    )]
    TooLarge {
        dir: PathBuf,
        images: usize,
        channels: usize,
        size: usize,
        bytes: u64,
        available: u64,
    },
}
