//! diffuse-nn: denoising networks. Each implements [`diffuse_core::Denoiser`].

pub mod diffusers;
pub mod embedding;
pub mod error;
mod fields;
pub mod mlp;
pub mod unet;

pub use error::NnError;
pub use mlp::{Mlp, MlpConfig};
pub use unet::{Unet, UnetConfig};
