//! Samplers: each a short `step` over the same model interface, and one loop that drives them.
//!
//! A sampler maps (network output at x_t, t, x_t, noise) to x_{t_prev}, as diffusers' schedulers'
//! `step()` does; [`sample`] runs the reverse process from x_T over the sampler's timesteps.

mod ddim;
mod ddpm;

pub use ddim::{DdimConfig, DdimSampler};
pub use ddpm::{DdpmConfig, DdpmSampler, VarianceType};

use burn::tensor::Tensor;
use rand::Rng;

use crate::coef::{is_finite, randn};
use crate::error::CoreError;
use crate::model::{Denoiser, TimeInput, check_time_input};

/// What one reverse step produces.
#[derive(Clone, Debug)]
pub struct StepOutput<const D: usize> {
    /// x at the previous (less noisy) timestep.
    pub prev_sample: Tensor<D>,
    /// The model's estimate of x_0 at this step (after clipping, where enabled).
    pub pred_x0: Tensor<D>,
}

/// The contract every sampler keeps (checked by the sampler contract suite in tests/).
pub trait Sampler {
    /// The timesteps visited, strictly decreasing, each in 0..T.
    fn timesteps(&self) -> &[usize];
    /// Whether the step at `t` adds noise (and so needs a noise tensor).
    fn needs_noise(&self, t: usize) -> bool;
    /// One reverse step from x_t. `noise` must be `Some` when [`Self::needs_noise`] says so.
    fn step<const D: usize>(
        &self,
        output: Tensor<D>,
        t: usize,
        x_t: Tensor<D>,
        noise: Option<Tensor<D>>,
    ) -> Result<StepOutput<D>, CoreError>;
}

/// The reverse process: starting from `x_T`, applies the sampler's step at each of its timesteps.
/// Noise comes from `rng` (host-side, so a seed replays bit for bit). `observe(i, t, &step)` sees
/// every step, for progress bars and progressive-generation pictures.
///
/// A non-finite value in `x_T` or in any step's x_{t-1} is an error naming the first step where
/// it appeared ([`CoreError::NonFiniteSample`]), so no NaN or inf is ever returned as a sample.
pub fn sample<const D: usize, M, S>(
    model: &M,
    sampler: &S,
    x_T: Tensor<D>,
    rng: &mut impl Rng,
    mut observe: impl FnMut(usize, usize, &StepOutput<D>),
) -> Result<Tensor<D>, CoreError>
where
    M: Denoiser<D> + ?Sized,
    S: Sampler + ?Sized,
{
    let device = x_T.device();
    let shape: [usize; D] = x_T.dims();
    check_time_input(model, TimeInput::Timesteps)?;
    if !is_finite(&x_T) {
        return Err(CoreError::NonFiniteInput);
    }
    let mut x = x_T;
    for (i, &t) in sampler.timesteps().iter().enumerate() {
        let t_batch = Tensor::<1>::full([shape[0]], t as f32, &device);
        let output = model.denoise(x.clone(), t_batch);
        let noise = sampler.needs_noise(t).then(|| randn(rng, shape, &device));
        let out = sampler.step(output, t, x, noise)?;
        if !is_finite(&out.prev_sample) {
            return Err(CoreError::NonFiniteSample { step: i + 1, t });
        }
        observe(i, t, &out);
        x = out.prev_sample;
    }
    Ok(x)
}

/// Clamps the x_0 estimate to [-range, range] when clipping is on.
pub(crate) fn clip<const D: usize>(x0: Tensor<D>, range: Option<f64>) -> Tensor<D> {
    match range {
        Some(r) => x0.clamp(-r as f32, r as f32),
        None => x0,
    }
}

pub(crate) fn check_clip(range: Option<f64>) -> Result<(), CoreError> {
    match range {
        Some(r) if !(r > 0.0 && r.is_finite()) => Err(CoreError::InvalidClipRange(r)),
        _ => Ok(()),
    }
}
