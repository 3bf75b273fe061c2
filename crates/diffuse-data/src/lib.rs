//! diffuse-data: datasets and array files. No tensors here: data leaves as plain `Vec<f32>`.

pub mod error;
pub mod npy;
pub mod points;
pub mod toy;

pub use error::DataError;
pub use npy::{NpyArray, read_npy, write_npy};
pub use points::{Points, Standardizer, load_points};
pub use toy::ToyDataset;
