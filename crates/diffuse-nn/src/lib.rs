//! diffuse-nn: denoising networks. Each implements [`diffuse_core::Denoiser`].

pub mod embedding;
pub mod error;
pub mod mlp;

pub use error::NnError;
pub use mlp::{Mlp, MlpConfig};
