//! Small tensor helpers shared by the forward process, parameterizations and samplers: a
//! coefficient that is either one scalar for the whole batch or one value per batch item, and
//! seeded Gaussian noise drawn on the host.

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;

/// A schedule coefficient broadcast over x: one value for the batch (sampling) or one per item
/// (training, where t differs across the batch).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // built once per step, never stored in bulk
pub enum Coef<const D: usize> {
    Scalar(f64),
    /// Shape [B, 1, ..., 1].
    PerItem(Tensor<D>),
}

impl<const D: usize> Coef<D> {
    /// `values[t[i]]` for each batch item, as a [B, 1, ..., 1] tensor.
    pub fn gather(values: &[f64], t: &[usize], device: &Device) -> Self {
        Coef::PerItem(per_item(t, |ti| values[ti], device))
    }

    pub fn mul(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Coef::Scalar(c) => x.mul_scalar(*c as f32),
            Coef::PerItem(c) => x.mul(c.clone()),
        }
    }

    pub fn div(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Coef::Scalar(c) => x.div_scalar(*c as f32),
            Coef::PerItem(c) => x.div(c.clone()),
        }
    }
}

/// `f(t[i])` for each batch item (a timestep, a level's index, a continuous time), as a
/// [B, 1, ..., 1] tensor that broadcasts over x.
pub fn per_item<const D: usize, T: Copy>(
    t: &[T],
    f: impl Fn(T) -> f64,
    device: &Device,
) -> Tensor<D> {
    let data: Vec<f32> = t.iter().map(|&ti| f(ti) as f32).collect();
    let mut shape = [1usize; D];
    shape[0] = t.len();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Standard normal noise of the given shape, drawn from `rng` on the host so that the same seed
/// gives the same bits on every backend.
pub fn randn<const D: usize>(rng: &mut impl Rng, shape: [usize; D], device: &Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Whether every value of `x` is finite (one host read: x - x is 0 for finite values, NaN for NaN
/// and inf).
pub fn is_finite<const D: usize>(x: &Tensor<D>) -> bool {
    !(x.clone() - x.clone()).is_nan().any().into_scalar::<bool>()
}

/// A [B] tensor holding the discrete timestep `t` for every item, as the model expects it.
pub fn timestep_tensor(t: &[usize], device: &Device) -> Tensor<1> {
    let data: Vec<f32> = t.iter().map(|&ti| ti as f32).collect();
    Tensor::from_data(TensorData::new(data, [t.len()]), device)
}
