//! The training loss of latent diffusion's first stage (Rombach et al. 2022, section 3 and
//! appendix G): an autoencoder whose latents are kept near a standard normal (KL-reg., a
//! diagonal Gaussian posterior) or on a codebook (VQ-reg., van den Oord et al. 2017).
//!
//! ```text
//! KL:  z = mu + exp(logvar / 2) eps,   L = rec(x, D(z)) + w_KL KL(q(z | x) || N(0, I)) / d
//! VQ:  z_q = e_k, k = argmin_j |z_e - e_j|,   decoder input z_e + sg(z_q - z_e) (straight through)
//!      L = rec(x, D(.)) + |sg(z_e) - z_q|^2 + beta |z_e - sg(z_q)|^2
//! ```
//!
//! rec is the mean absolute (LDM's L1) or squared error over the d values of an image; the KL
//! is summed over the latents and divided by d, so that `kl_weight` weighs it against the summed
//! reconstruction error as LDM's `kl_weight` does; the codebook and commitment terms are means
//! over the latent values (VQ-VAE's equation 3). No perceptual or adversarial term.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::elbo::{kl_to_standard_normal, reparameterize};
use crate::gaussian::sum_per_example;

/// What the encoder gives for a batch of images.
pub enum Posterior {
    /// A diagonal Gaussian over the latents.
    Gaussian { mean: Tensor<4>, logvar: Tensor<4> },
    /// The encoder's latents z_e and their nearest codebook entries z_q (the codebook's
    /// gradient flows through z_q).
    Quantized { z_e: Tensor<4>, z_q: Tensor<4> },
}

/// An autoencoder as its loss sees it: the posterior of images and the decoder of latents.
pub trait Autoencoding {
    fn posterior(&self, x: Tensor<4>) -> Posterior;
    /// The image of latents as the decoder receives them (after any quantization).
    fn decode_latents(&self, z: Tensor<4>) -> Tensor<4>;
}

/// The reconstruction error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reconstruction {
    /// Mean absolute error (LDM's autoencoders, before their perceptual term).
    L1,
    /// Mean squared error.
    L2,
}

/// The loss's weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoencoderLoss {
    pub reconstruction: Reconstruction,
    /// Weight of the KL term against the summed reconstruction error (KL-reg.).
    pub kl_weight: f64,
    /// beta, the commitment term's weight (VQ-reg.; 0.25 in VQ-VAE).
    pub commitment: f64,
}

/// The loss of one batch, per example.
pub struct AutoencoderTerms {
    pub reconstruction: Tensor<1>,
    /// The weighted KL, or the codebook plus the weighted commitment term.
    pub regularizer: Tensor<1>,
    /// The decoder's output.
    pub x_hat: Tensor<4>,
}

impl AutoencoderTerms {
    pub fn total(&self) -> Tensor<1> {
        self.reconstruction.clone() + self.regularizer.clone()
    }
}

/// The error of `x_hat` against `x`, per example, averaged over its values.
pub fn reconstruction_error(kind: Reconstruction, x: Tensor<4>, x_hat: Tensor<4>) -> Tensor<1> {
    let [_, c, h, w] = x.dims();
    let diff = x - x_hat;
    let per_value = match kind {
        Reconstruction::L1 => diff.abs(),
        Reconstruction::L2 => diff.powi_scalar(2),
    };
    sum_per_example(per_value).div_scalar((c * h * w) as f32)
}

/// The loss terms of a batch `x`; `eps` is the standard-normal draw of a Gaussian posterior's
/// reparameterization (the latents' shape; unused by a quantized one).
pub fn autoencoder_terms(
    model: &impl Autoencoding,
    loss: &AutoencoderLoss,
    x: Tensor<4>,
    eps: impl FnOnce([usize; 4]) -> Tensor<4>,
) -> AutoencoderTerms {
    let [_, c, h, w] = x.dims();
    let d = (c * h * w) as f32;
    let (z, regularizer) = match model.posterior(x.clone()) {
        Posterior::Gaussian { mean, logvar } => {
            let eps = eps(mean.dims());
            let kl = kl_to_standard_normal(mean.clone(), logvar.clone());
            let z = reparameterize(mean, logvar, eps);
            (z, kl.mul_scalar(loss.kl_weight as f32 / d))
        }
        Posterior::Quantized { z_e, z_q } => {
            let [_, zc, zh, zw] = z_e.dims();
            let n = (zc * zh * zw) as f32;
            let codebook = sum_per_example((z_e.clone().detach() - z_q.clone()).powi_scalar(2));
            let commitment = sum_per_example((z_e.clone() - z_q.clone().detach()).powi_scalar(2));
            let z = z_e.clone() + (z_q - z_e).detach();
            let regularizer =
                (codebook + commitment.mul_scalar(loss.commitment as f32)).div_scalar(n);
            (z, regularizer)
        }
    };
    let x_hat = model.decode_latents(z);
    AutoencoderTerms {
        reconstruction: reconstruction_error(loss.reconstruction, x, x_hat.clone()),
        regularizer,
        x_hat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// The identity "autoencoder" with a fixed posterior: the terms are what the formulas say.
    struct Fixed(Posterior);

    impl Autoencoding for Fixed {
        fn posterior(&self, _: Tensor<4>) -> Posterior {
            match &self.0 {
                Posterior::Gaussian { mean, logvar } => Posterior::Gaussian {
                    mean: mean.clone(),
                    logvar: logvar.clone(),
                },
                Posterior::Quantized { z_e, z_q } => Posterior::Quantized {
                    z_e: z_e.clone(),
                    z_q: z_q.clone(),
                },
            }
        }
        fn decode_latents(&self, z: Tensor<4>) -> Tensor<4> {
            z
        }
    }

    fn t(values: &[f32], device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [1, 1, 1, values.len()]),
            device,
        )
    }

    fn scalar(x: Tensor<1>) -> f32 {
        x.into_scalar()
    }

    #[test]
    fn kl_terms_follow_the_formulas() {
        let device = Device::default();
        let x = t(&[0.5, -1.0], &device);
        let model = Fixed(Posterior::Gaussian {
            mean: t(&[0.5, 0.0], &device),
            logvar: t(&[0.0, 2f32.ln()], &device),
        });
        let loss = AutoencoderLoss {
            reconstruction: Reconstruction::L1,
            kl_weight: 0.1,
            commitment: 0.25,
        };
        let terms = autoencoder_terms(&model, &loss, x, |s| Tensor::zeros(s, &device));
        // eps = 0: z = mean, |x - z| = (0, 1), mean 0.5.
        assert!((scalar(terms.reconstruction) - 0.5).abs() < 1e-6);
        // KL = ((1 + 0.25 - 1 - 0) + (2 + 0 - 1 - ln 2)) / 2, times 0.1 / 2 values.
        let kl = (0.25 + 1.0 - 2f32.ln()) / 2.0;
        assert!((scalar(terms.regularizer) - kl * 0.05).abs() < 1e-6);
    }

    #[test]
    fn vq_terms_follow_the_formulas_and_pass_gradients_straight_through() {
        let device = Device::default().autodiff();
        let x = t(&[1.0, 1.0], &device);
        let z_e = t(&[0.5, 2.0], &device).require_grad();
        let z_q = t(&[0.0, 1.0], &device);
        let model = Fixed(Posterior::Quantized {
            z_e: z_e.clone(),
            z_q,
        });
        let loss = AutoencoderLoss {
            reconstruction: Reconstruction::L2,
            kl_weight: 0.0,
            commitment: 0.25,
        };
        let terms = autoencoder_terms(&model, &loss, x, |_| unreachable!());
        // The decoder sees z_q's values: (1 - 0)^2 and (1 - 1)^2, mean 0.5.
        assert!((scalar(terms.reconstruction.clone()) - 0.5).abs() < 1e-6);
        // |z_e - z_q|^2 = 0.25 + 1: codebook + 0.25 commitment, over 2 values.
        assert!((scalar(terms.regularizer.clone()) - 1.25 * 1.25 / 2.0).abs() < 1e-6);
        // d rec / d z_e = d rec / d z_q (straight through) = -(x - z_q) = (-1, 0); the
        // commitment term adds 0.25 (z_e - z_q) = (0.125, 0.25) (sums over 2 values each).
        let grads = terms.total().sum().backward();
        let g: Vec<f32> = z_e.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        assert!((g[0] - (-1.0 + 0.125)).abs() < 1e-6, "{g:?}");
        assert!((g[1] - 0.25).abs() < 1e-6, "{g:?}");
    }
}
