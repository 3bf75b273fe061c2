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
//! over the latent values (VQ-VAE's equation 3). An optional perceptual term
//! ([`perceptual_distance`]: a fixed network's activations of x and D(z), LDM's LPIPS in spirit)
//! is added by the objective; no adversarial term.
//!
//! Instead of the codebook term, the codebook can follow exponential moving averages of the
//! encoder outputs assigned to each entry ([`CodebookEma`]; VQ-VAE's appendix A.1):
//!
//! ```text
//! N_i <- g N_i + (1 - g) n_i,   m_i <- g m_i + (1 - g) sum_{j: k_j = i} z_e,j,   e_i = m_i / N_i
//! ```

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::elbo::{kl_to_standard_normal, reparameterize};
use crate::gaussian::sum_per_example;

/// What the encoder gives for a batch of images.
// One per batch, matched at once: the quantized arm's third tensor handle is not worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Posterior {
    /// A diagonal Gaussian over the latents.
    Gaussian { mean: Tensor<4>, logvar: Tensor<4> },
    /// The encoder's latents z_e, their nearest codebook entries z_q (the codebook's gradient
    /// flows through z_q), and those entries' indices, [B * H * W] in (b, h, w) order.
    Quantized {
        z_e: Tensor<4>,
        z_q: Tensor<4>,
        entries: Tensor<1, Int>,
    },
}

/// An autoencoder as its loss sees it: the posterior of images and the decoder of latents.
pub trait Autoencoding: Sized {
    fn posterior(&self, x: Tensor<4>) -> Posterior;
    /// The image of latents as the decoder receives them (after any quantization).
    fn decode_latents(&self, z: Tensor<4>) -> Tensor<4>;
    /// A quantized model's codebook, [entries, width].
    fn codebook(&self) -> Option<Tensor<2>> {
        None
    }
    /// The model with its codebook replaced (for [`CodebookEma`]); unchanged without one.
    fn with_codebook(self, _codebook: Tensor<2>) -> Self {
        self
    }
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
    /// Whether the codebook term |sg(z_e) - z_q|^2 is in the loss (VQ-reg.); false when the
    /// codebook follows moving averages instead.
    pub codebook_term: bool,
}

/// The loss of one batch, per example.
pub struct AutoencoderTerms {
    pub reconstruction: Tensor<1>,
    /// The weighted KL, or the codebook plus the weighted commitment term.
    pub regularizer: Tensor<1>,
    /// The decoder's output.
    pub x_hat: Tensor<4>,
    /// The encoder's latents: a draw from a Gaussian posterior, or z_e before the codebook.
    pub latents: Tensor<4>,
    /// A quantized posterior's codebook entries (see [`Posterior::Quantized`]).
    pub entries: Option<Tensor<1, Int>>,
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
    let (z, regularizer, latents, entries) = match model.posterior(x.clone()) {
        Posterior::Gaussian { mean, logvar } => {
            let eps = eps(mean.dims());
            let kl = kl_to_standard_normal(mean.clone(), logvar.clone());
            let z = reparameterize(mean, logvar, eps);
            (z.clone(), kl.mul_scalar(loss.kl_weight as f32 / d), z, None)
        }
        Posterior::Quantized { z_e, z_q, entries } => {
            let [_, zc, zh, zw] = z_e.dims();
            let n = (zc * zh * zw) as f32;
            let commitment = sum_per_example((z_e.clone() - z_q.clone().detach()).powi_scalar(2))
                .mul_scalar(loss.commitment as f32);
            let regularizer = if loss.codebook_term {
                sum_per_example((z_e.clone().detach() - z_q.clone()).powi_scalar(2)) + commitment
            } else {
                commitment
            };
            let z = z_e.clone() + (z_q - z_e.clone()).detach();
            (z, regularizer.div_scalar(n), z_e, Some(entries))
        }
    };
    let x_hat = model.decode_latents(z);
    AutoencoderTerms {
        reconstruction: reconstruction_error(loss.reconstruction, x, x_hat.clone()),
        regularizer,
        x_hat,
        latents,
        entries,
    }
}

/// A perceptual distance per example: the mean squared difference of a fixed network's
/// activations of the two images, summed over its layers (each a [B, features] tensor).
pub fn perceptual_distance(a: &[Tensor<2>], b: &[Tensor<2>]) -> Tensor<1> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let [batch, features] = x.dims();
            (x.clone() - y.clone())
                .powi_scalar(2)
                .sum_dim(1)
                .reshape([batch])
                .div_scalar(features as f32)
        })
        .reduce(|s, t| s + t)
        .expect("a perceptual network with at least one layer")
}

/// A codebook kept by exponential moving averages (see the module docs), in f64 on the host.
/// Every entry starts with count 1 and sum its initial value, so an entry no latent has chosen
/// keeps its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodebookEma {
    /// g, the averages' decay.
    pub decay: f64,
    pub width: usize,
    /// N_i, one per entry.
    pub counts: Vec<f64>,
    /// m_i, rows of `width`.
    pub sums: Vec<f64>,
}

impl CodebookEma {
    pub fn new(decay: f64, codebook: &[f32], width: usize) -> Self {
        Self {
            decay,
            width,
            counts: vec![1.0; codebook.len() / width.max(1)],
            sums: codebook.iter().map(|&v| f64::from(v)).collect(),
        }
    }

    /// Whether it keeps `entries` entries of `width`.
    pub fn fits(&self, entries: usize, width: usize) -> bool {
        self.width == width && self.counts.len() == entries && self.sums.len() == entries * width
    }

    /// One update with a batch's latent vectors (rows of `width`) and their entries; returns the
    /// new codebook m_i / N_i.
    pub fn update(&mut self, z: &[f32], assignments: &[usize]) -> Vec<f32> {
        let (g, w) = (self.decay, self.width);
        let mut n = vec![0.0f64; self.counts.len()];
        let mut s = vec![0.0f64; self.sums.len()];
        for (v, &k) in z.chunks_exact(w).zip(assignments) {
            n[k] += 1.0;
            for (acc, &x) in s[k * w..(k + 1) * w].iter_mut().zip(v) {
                *acc += f64::from(x);
            }
        }
        for (i, count) in self.counts.iter_mut().enumerate() {
            *count = g * *count + (1.0 - g) * n[i];
            let row = &mut self.sums[i * w..(i + 1) * w];
            for (m, add) in row.iter_mut().zip(&s[i * w..(i + 1) * w]) {
                *m = g * *m + (1.0 - g) * add;
            }
            // An entry unchosen for thousands of steps: both decay alike; rescale before they
            // underflow, keeping their ratio.
            if *count < 1e-100 {
                row.iter_mut().for_each(|m| *m /= *count);
                *count = 1.0;
            }
        }
        self.counts
            .iter()
            .enumerate()
            .flat_map(|(i, &c)| {
                self.sums[i * w..(i + 1) * w]
                    .iter()
                    .map(move |m| (m / c) as f32)
            })
            .collect()
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
                Posterior::Quantized { z_e, z_q, entries } => Posterior::Quantized {
                    z_e: z_e.clone(),
                    z_q: z_q.clone(),
                    entries: entries.clone(),
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
            codebook_term: true,
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
            entries: Tensor::zeros([2], &device),
        });
        let loss = AutoencoderLoss {
            reconstruction: Reconstruction::L2,
            kl_weight: 0.0,
            commitment: 0.25,
            codebook_term: true,
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

    #[test]
    fn perceptual_distance_sums_layer_means() {
        let device = Device::default();
        let m = |v: &[f32], f: usize| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), [v.len() / f, f]), &device)
        };
        let a = [m(&[0.0, 0.0, 1.0, 1.0], 2), m(&[2.0, 0.0], 1)];
        let b = [m(&[1.0, 1.0, 1.0, 3.0], 2), m(&[0.0, 0.0], 1)];
        let d: Vec<f32> = perceptual_distance(&a, &b)
            .into_data()
            .try_to_vec()
            .unwrap();
        // Example 0: (1 + 1) / 2 + 4 = 5; example 1: (0 + 4) / 2 + 0 = 2.
        assert_eq!(d, vec![5.0, 2.0]);
    }

    /// The averages by hand for two steps; an unchosen entry keeps its value.
    #[test]
    fn codebook_ema_follows_the_assigned_latents() {
        let book = [0.0f32, 0.0, 10.0, 10.0, -5.0, 5.0];
        let z = [1.0f32, 0.0, 0.0, 1.0, 9.0, 9.0];
        // The nearest entries (the quantizer's choice, `VectorQuantizer::nearest`).
        let k = vec![0, 0, 1];
        let mut ema = CodebookEma::new(0.5, &book, 2);
        let new = ema.update(&z, &k);
        // Entry 0: N = 0.5 + 0.5 * 2 = 1.5, m = 0 + 0.5 (1, 1) -> (1/3, 1/3).
        // Entry 1: N = 0.5 + 0.5 = 1, m = 0.5 (10, 10) + 0.5 (9, 9) -> (9.5, 9.5).
        // Entry 2: unchosen: (-5, 5).
        let expect = [1.0 / 3.0, 1.0 / 3.0, 9.5, 9.5, -5.0, 5.0];
        for (a, b) in new.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{new:?}");
        }
        // Thousands of steps unchosen: no underflow, the same value.
        for _ in 0..5000 {
            ema.update(&z[..2], &[0]);
        }
        let last = ema.update(&z[..2], &[0]);
        assert_eq!((last[4], last[5]), (-5.0, 5.0));
        assert!(last.iter().all(|v| v.is_finite()));
    }
}
