//! diffuse-data: datasets and array files. No tensors here: data leaves as plain `Vec<f32>` or
//! 8-bit [`ImageSet`]s.

pub mod cifar;
pub mod error;
pub mod folder;
pub mod idx;
pub mod images;
pub mod npy;
pub mod npz;
pub mod points;
pub mod toy;

pub use cifar::{load_cifar10, read_cifar_batch};
pub use error::DataError;
pub use folder::load_image_folder;
pub use idx::{Split, load_mnist, read_idx};
pub use images::ImageSet;
pub use npy::{NpyArray, read_npy, write_npy};
pub use points::{Points, Standardizer, load_points};
pub use toy::ToyDataset;
