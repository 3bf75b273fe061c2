//! diffuse-nn: denoising networks. Each implements [`diffuse_core::Denoiser`].

pub mod autoencoder;
pub mod embedding;
pub mod error;
pub mod fields;
pub mod gamma;
pub mod inception;
pub mod lenet;
pub mod mlp;
pub mod unet;
pub mod vae;

pub use autoencoder::{Autoencoder, AutoencoderConfig};
pub use error::NnError;
pub use mlp::{Mlp, MlpConfig};
pub use unet::{Unet, UnetConfig};

/// The module with every float parameter converted to float32 (no-op for float32 ones).
pub fn cast_to_f32<M: burn::module::Module>(module: M) -> M {
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::{DType, Tensor};
    struct ToF32;
    impl ModuleMapper for ToF32 {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.val().dtype() == DType::F32 {
                return param;
            }
            param.map(|t| t.cast(DType::F32))
        }
    }
    module.map(&mut ToF32)
}
