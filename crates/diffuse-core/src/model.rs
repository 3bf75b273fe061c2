//! The one thing the core knows about a network (ARCHITECTURE.md, invariant 1).

use burn::tensor::Tensor;

/// A denoiser: maps x_t and its timesteps to the parameterization's output (eps, x_0 or v).
///
/// # Shapes
/// - `x_t`: [B, ...] (e.g. [B, 2] for points, [B, C, H, W] for images)
/// - `t`: [B], discrete timesteps 0..T as floats
/// - output: the shape of `x_t` (twice its channels along dimension 1 for a model that learns its
///   variance: see `objective::split_output`)
pub trait Denoiser<const D: usize> {
    fn denoise(&self, x_t: Tensor<D>, t: Tensor<1>) -> Tensor<D>;
}

impl<const D: usize, F: Fn(Tensor<D>, Tensor<1>) -> Tensor<D>> Denoiser<D> for F {
    fn denoise(&self, x_t: Tensor<D>, t: Tensor<1>) -> Tensor<D> {
        self(x_t, t)
    }
}
