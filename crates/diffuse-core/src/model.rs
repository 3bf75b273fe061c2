//! The one thing the core knows about a network (ARCHITECTURE.md, invariant 1).

use burn::tensor::Tensor;

use crate::error::CoreError;

pub use crate::level::TimeInput;

/// A denoiser: maps x_t and its time to the parameterization's output (eps, x_0 or v).
///
/// # Shapes
/// - `x_t`: [B, ...] (e.g. [B, 2] for points, [B, C, H, W] for images)
/// - `t`: [B], the time each example is at, on the clock [`Self::time_input`] names: discrete
///   timesteps 0..T as floats unless the network says otherwise
/// - output: the shape of `x_t` (twice its channels along dimension 1 for a model that learns its
///   variance: see `discrete::bound::split_output`)
pub trait Denoiser<const D: usize> {
    fn denoise(&self, x_t: Tensor<D>, t: Tensor<1>) -> Tensor<D>;

    /// The clock `t` is read on. Every network of a discrete chain (the MLP, diffusers'
    /// U-Net, closures in tests) reads timesteps, the default.
    fn time_input(&self) -> TimeInput {
        TimeInput::Timesteps
    }
}

impl<const D: usize, F: Fn(Tensor<D>, Tensor<1>) -> Tensor<D>> Denoiser<D> for F {
    fn denoise(&self, x_t: Tensor<D>, t: Tensor<1>) -> Tensor<D> {
        self(x_t, t)
    }
}

/// A closure on continuous time, t in [0, 1]: `ContinuousTime(|x, t| ...)` is a [`Denoiser`] whose
/// [`Denoiser::time_input`] says so (a bare closure reads timesteps).
pub struct ContinuousTime<F>(pub F);

impl<const D: usize, F: Fn(Tensor<D>, Tensor<1>) -> Tensor<D>> Denoiser<D> for ContinuousTime<F> {
    fn denoise(&self, x_t: Tensor<D>, t: Tensor<1>) -> Tensor<D> {
        (self.0)(x_t, t)
    }

    fn time_input(&self) -> TimeInput {
        TimeInput::Continuous
    }
}

/// An error unless `model` reads the clock a caller is about to give it.
pub fn check_time_input<const D: usize, M: Denoiser<D> + ?Sized>(
    model: &M,
    given: TimeInput,
) -> Result<(), CoreError> {
    let network = model.time_input();
    if network == given {
        Ok(())
    } else {
        Err(CoreError::TimeInputMismatch { network, given })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_on_continuous_time_is_refused_timesteps() {
        use crate::discrete::sampler::{DdimConfig, DdimSampler, sample};
        let device = burn::tensor::Device::default();
        let schedule = crate::ScheduleConfig::default().build().unwrap();
        let ddim = DdimSampler::new(&schedule, DdimConfig::default()).unwrap();
        let x = Tensor::<2>::zeros([3, 2], &device);
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        // A network on continuous time, as the score models of score_sde are.
        let continuous = ContinuousTime(|x: Tensor<2>, _t: Tensor<1>| x);
        let err = sample(&continuous, &ddim, x.clone(), &mut rng, |_, _, _| {}).unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::TimeInputMismatch {
                    network: TimeInput::Continuous,
                    given: TimeInput::Timesteps
                }
            ),
            "{err}"
        );
        // Nor does a sigma solver's adapter tell it a timestep.
        use crate::level::{Clock, Level, Sigma, Timestep};
        use crate::solver::adapter::{DiscreteVp, SigmaDenoiser};
        let how = DiscreteVp {
            prediction: crate::Prediction::Epsilon,
            learned_variance: false,
            clip_sample: None,
            alphas_cumprod: vec![0.5; 20],
        };
        let at = Level {
            sigma: Sigma(1.0),
            clock: Clock::Discrete(Timestep(3.0)),
        };
        let err = how.wrap(&continuous).x0(x, at).unwrap_err();
        assert!(matches!(err, CoreError::TimeInputMismatch { .. }), "{err}");
        // Closures read timesteps, and pass.
        let net = |x: Tensor<2>, _t: Tensor<1>| x;
        assert!(check_time_input(&net, TimeInput::Timesteps).is_ok());
        assert!(check_time_input(&net, TimeInput::Continuous).is_err());
    }
}
