//! Latent diffusion's first stage: an autoencoder trained on images by its reconstruction error
//! and a KL or VQ regularizer (`diffuse_core::autoencoder`), the mean over the batch.

use burn::tensor::Tensor;
use diffuse_core::autoencoder::{AutoencoderLoss, Autoencoding, autoencoder_terms};
use diffuse_core::coef::randn;
use rand_chacha::ChaCha8Rng;

use crate::objective::Objective;

/// The autoencoder's loss; a Gaussian posterior's noise comes from the run's RNG.
pub struct FirstStage {
    pub loss: AutoencoderLoss,
}

impl<M: Autoencoding> Objective<M> for FirstStage {
    type Batch = Tensor<4>;

    fn loss(&mut self, model: &M, x: Tensor<4>, rng: &mut ChaCha8Rng) -> Tensor<1> {
        let device = x.device();
        autoencoder_terms(model, &self.loss, x, |shape| randn(rng, shape, &device))
            .total()
            .mean()
    }
}
