//! Gaussian math every likelihood bound shares (DDPM's, the VAE's, the VDM's): the KL
//! divergence between diagonal Gaussians, the decoders -log p(x_0 | ...) (the discretized
//! Gaussian over 256 bins for 8-bit images in [-1, 1], DDPM section 3.3, or the Gaussian
//! density for continuous data), per-example sums, and nats to bits/dim.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats.
pub fn normal_kl<const D: usize>(
    mean1: Tensor<D>,
    logvar1: Tensor<D>,
    mean2: Tensor<D>,
    logvar2: Tensor<D>,
) -> Tensor<D> {
    let diff = logvar1.clone() - logvar2.clone();
    (diff.clone().neg().sub_scalar(1.0)
        + diff.exp()
        + (mean1 - mean2).powi_scalar(2) * logvar2.neg().exp())
    .mul_scalar(0.5)
}

/// The standard normal CDF, Phi(x) = (1 + erf(x / sqrt 2)) / 2.
pub fn standard_normal_cdf<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.mul_scalar(std::f32::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5)
}

/// Smallest probability a log is taken of (as improved DDPM's code), so that empty bins give a
/// large finite penalty rather than -inf.
const MIN_PROB: f32 = 1e-12;

/// log P(x) for 8-bit data mapped to [-1, 1] (bins of width 2/255 centred on the pixel values)
/// under N(mean, exp(2 log_scale)): the mass of x's bin, with the outermost bins extended to
/// -inf and +inf (DDPM eq. 13). Elementwise, in nats.
pub fn discretized_gaussian_log_likelihood<const D: usize>(
    x: Tensor<D>,
    mean: Tensor<D>,
    log_scale: Tensor<D>,
) -> Tensor<D> {
    let half_bin = 1.0 / 255.0;
    let centered = x.clone() - mean;
    let inv_std = log_scale.neg().exp();
    let cdf_plus = standard_normal_cdf((centered.clone().add_scalar(half_bin)) * inv_std.clone());
    let cdf_min = standard_normal_cdf(centered.sub_scalar(half_bin) * inv_std);
    let log_cdf_plus = cdf_plus.clone().clamp_min(MIN_PROB).log();
    let log_one_minus_cdf_min = cdf_min
        .clone()
        .neg()
        .add_scalar(1.0)
        .clamp_min(MIN_PROB)
        .log();
    let log_delta = (cdf_plus - cdf_min).clamp_min(MIN_PROB).log();
    let lowest = x.clone().lower_elem(-0.999);
    let highest = x.greater_elem(0.999);
    log_delta
        .mask_where(lowest, log_cdf_plus)
        .mask_where(highest, log_one_minus_cdf_min)
}

/// log N(x; mean, exp(2 log_scale)), elementwise, in nats: the decoder for continuous data.
pub fn gaussian_log_density<const D: usize>(
    x: Tensor<D>,
    mean: Tensor<D>,
    log_scale: Tensor<D>,
) -> Tensor<D> {
    let z = (x - mean) * log_scale.clone().neg().exp();
    (z.powi_scalar(2).mul_scalar(0.5) + log_scale)
        .add_scalar(0.5 * (2.0 * std::f64::consts::PI).ln() as f32)
        .neg()
}

/// Sums all but the batch dimension: [B, ...] -> [B].
pub fn sum_per_example<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let batch = x.dims()[0];
    x.reshape([batch as i64, -1]).sum_dim(1).reshape([batch])
}

/// What the data is, for a decoder term -log p(x_0 | ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoder {
    /// 8-bit images in [-1, 1]: the discretized Gaussian over 256 bins.
    Discretized,
    /// Continuous data: the Gaussian density (a density, so the "NLL" can be negative).
    Continuous,
}

/// -log p(x_0 | x_1) per example (nats): the decoder term L_0.
pub fn decoder_nll<const D: usize>(
    x0: Tensor<D>,
    mean: Tensor<D>,
    log_variance: Tensor<D>,
    decoder: Decoder,
) -> Tensor<1> {
    let log_scale = log_variance.mul_scalar(0.5);
    let log_p = match decoder {
        Decoder::Discretized => discretized_gaussian_log_likelihood(x0, mean, log_scale),
        Decoder::Continuous => gaussian_log_density(x0, mean, log_scale),
    };
    sum_per_example(log_p).neg()
}

/// Nats per example to bits per dimension.
pub fn bits_per_dim(nats: f64, dims: usize) -> f64 {
    nats / (dims as f64 * std::f64::consts::LN_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_dim_is_nats_over_dims_ln2() {
        assert!((bits_per_dim(784.0 * std::f64::consts::LN_2, 784) - 1.0).abs() < 1e-12);
    }
}
