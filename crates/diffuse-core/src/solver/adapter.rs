//! Model adapters, in the manner of k-diffusion's `external.py`: whatever a network outputs
//! (eps, x_0, v, the posterior mean) becomes a denoiser D(y, sigma), the estimate of x_0 from
//! y = x_0 + sigma eps, which is all a sigma solver needs. Tweedie's formula gives the score from
//! it: grad log p_sigma(y) = (D(y, sigma) - y) / sigma^2.
//!
//! Two readings of a network, one [`Adapter`]:
//!
//! - [`DiscreteVp`]: a network trained on a discrete variance-preserving chain sees
//!   x = alpha y with alpha = 1 / sqrt(1 + sigma^2) and its own clock (a fractional timestep
//!   between the chain's steps, see [`crate::level::SigmaTable::timestep_of`]);
//! - [`NoiseConditional`]: a network conditioned on a continuous noise level, predicting the
//!   noise z of x_t = mean(t) x_0 + std(t) z: the score SDEs (VP, sub-VP, VE; `crate::sde`)
//!   and NCSN's levels (the VE SDE between its smallest and largest sigma, on which NCSN's
//!   conditioning is the same 999 t).

use burn::tensor::Tensor;

use crate::coef::is_finite;
use crate::discrete::param::{NoiseLevel, Prediction};
use crate::error::CoreError;
use crate::level::{Clock, Level, Sigma, Time};
use crate::model::{Denoiser, TimeInput, check_time_input};
use crate::sde::Sde;

/// How any network of the project is read as a denoiser (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Adapter {
    DiscreteVp(DiscreteVp),
    NoiseConditional(NoiseConditional),
}

impl Adapter {
    pub fn wrap<'a, const D: usize>(
        &'a self,
        net: &'a dyn Denoiser<D>,
    ) -> Box<dyn SigmaDenoiser<D> + 'a> {
        match self {
            Adapter::DiscreteVp(how) => Box::new(how.wrap(net)),
            Adapter::NoiseConditional(how) => Box::new(how.wrap(net)),
        }
    }
}

/// A network told c(t) = 999 t on its timestep input (as score_sde's DDPM-architecture
/// models are: labels = 999 t), with its input scaled by [`Sde::input_scale`], predicting the
/// noise: the score is s(x, t) = -net(c_in x, 999 t) / std(t), and in sigma coordinates
/// D(y, sigma) = y - sigma net(..).
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseConditional {
    pub sde: Sde,
    /// The data's standard deviation where the input is scaled to unit variance.
    pub sigma_data: Option<f64>,
}

impl NoiseConditional {
    /// What the network's time input is told at t.
    pub fn condition(t: Time) -> f64 {
        999.0 * t.0
    }

    pub fn wrap<'a, const D: usize>(&'a self, net: &'a dyn Denoiser<D>) -> ConditionedNet<'a, D> {
        ConditionedNet { net, how: self }
    }

    /// The network's noise estimate for x_t (x coordinates) at t.
    pub fn noise<const D: usize>(
        &self,
        net: &dyn Denoiser<D>,
        x: Tensor<D>,
        t: Time,
    ) -> Result<Tensor<D>, CoreError> {
        check_time_input(net, TimeInput::Timesteps)?;
        let batch = x.dims()[0];
        let c = Tensor::<1>::full([batch], Self::condition(t) as f32, &x.device());
        let scale = self.sde.input_scale(t, self.sigma_data);
        Ok(net.denoise(x.mul_scalar(scale as f32), c))
    }

    /// s(x, t) = -net(..) / std(t), in x coordinates.
    pub fn score<const D: usize>(
        &self,
        net: &dyn Denoiser<D>,
        x: Tensor<D>,
        t: Time,
    ) -> Result<Tensor<D>, CoreError> {
        let std = self.sde.marginal(t).1;
        Ok(self.noise(net, x, t)?.div_scalar(-std as f32))
    }
}

/// A network wrapped by [`NoiseConditional`].
pub struct ConditionedNet<'a, const D: usize> {
    pub net: &'a dyn Denoiser<D>,
    pub how: &'a NoiseConditional,
}

impl<const D: usize> ConditionedNet<'_, D> {
    /// The network's noise estimate for y at a level on the SDE's clock.
    fn noise_at(&self, y: Tensor<D>, at: Level) -> Result<Tensor<D>, CoreError> {
        let Clock::Continuous(t) = at.clock else {
            return Err(CoreError::TimeInputMismatch {
                network: TimeInput::Continuous,
                given: TimeInput::Timesteps,
            });
        };
        let mean = self.how.sde.marginal(t).0;
        self.how.noise(self.net, y.mul_scalar(mean as f32), t)
    }
}

impl<const D: usize> SigmaDenoiser<D> for ConditionedNet<'_, D> {
    fn x0(&self, y: Tensor<D>, at: Level) -> Result<Tensor<D>, CoreError> {
        let z = self.noise_at(y.clone(), at)?;
        Ok(y - z.mul_scalar(at.sigma.0 as f32))
    }

    /// -eps / sigma, without forming D - y.
    fn score(&self, y: Tensor<D>, at: Level) -> Result<Tensor<D>, CoreError> {
        Ok(self.noise_at(y, at)?.div_scalar(-at.sigma.0 as f32))
    }
}

/// D(y, sigma): the x_0 estimate at a noise level, in sigma coordinates (y = x_0 + sigma eps).
pub trait SigmaDenoiser<const D: usize> {
    fn x0(&self, y: Tensor<D>, at: Level) -> Result<Tensor<D>, CoreError>;

    /// The score grad log p_sigma(y) = (D(y, sigma) - y) / sigma^2 (Tweedie's formula). A
    /// network that predicts the noise overrides it with -eps / sigma: at small sigma, D - y
    /// is sigma^2 times the score, below float32's resolution of y (measured: sub-VP's PC,
    /// whose sigma reaches 1e-4, drew its data's variance 4x too large through D - y).
    fn score(&self, y: Tensor<D>, at: Level) -> Result<Tensor<D>, CoreError> {
        let s = at.sigma.0;
        Ok((self.x0(y.clone(), at)? - y).div_scalar((s * s) as f32))
    }
}

/// How a discrete-chain network's output is read (the fields of a run's or a diffusers
/// scheduler's config).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteVp {
    pub prediction: Prediction,
    /// The network outputs twice x's channels; the second half (a variance) is dropped.
    pub learned_variance: bool,
    /// Clamp the x_0 estimate to [-r, r] (diffusers' Heun `clip_sample`).
    pub clip_sample: Option<f64>,
    /// The chain's alpha-bars: mean prediction needs the chain's posterior coefficients.
    pub alphas_cumprod: Vec<f64>,
}

/// A network wrapped by [`DiscreteVp`].
pub struct Wrapped<'a, const D: usize> {
    pub net: &'a dyn Denoiser<D>,
    pub how: &'a DiscreteVp,
}

impl DiscreteVp {
    pub fn wrap<'a, const D: usize>(&'a self, net: &'a dyn Denoiser<D>) -> Wrapped<'a, D> {
        Wrapped { net, how: self }
    }
}

impl<const D: usize> SigmaDenoiser<D> for Wrapped<'_, D> {
    fn x0(&self, y: Tensor<D>, at: Level) -> Result<Tensor<D>, CoreError> {
        let Sigma(s) = at.sigma;
        let (alpha, sigma_vp) = at.sigma.alpha_sigma_vp();
        // A discrete-chain network knows timesteps only: a continuous SDE time is refused, not
        // passed through as if it were one, and so is a network on continuous time.
        check_time_input(self.net, TimeInput::Timesteps)?;
        let Clock::Discrete(timestep) = at.clock else {
            return Err(CoreError::TimeInputMismatch {
                network: TimeInput::Timesteps,
                given: TimeInput::Continuous,
            });
        };
        let batch = y.dims()[0];
        let t = Tensor::<1>::full([batch], timestep.0 as f32, &y.device());
        let mut out = self.net.denoise(y.clone().mul_scalar(alpha as f32), t);
        if self.how.learned_variance {
            let (c, got) = (y.dims()[1], out.dims()[1]);
            if got != 2 * c {
                return Err(CoreError::LearnedVarianceShape {
                    expected: 2 * c,
                    got,
                });
            }
            out = out.narrow(1, 0, c);
        }
        let x0 = match self.how.prediction {
            Prediction::Epsilon => y - out.mul_scalar(s as f32),
            Prediction::Sample => out,
            // x_0 = alpha x - sigma_vp v, with x = alpha y.
            Prediction::VPrediction => {
                y.mul_scalar((alpha * alpha) as f32) - out.mul_scalar(sigma_vp as f32)
            }
            Prediction::Mean => {
                let t = match at.clock {
                    Clock::Discrete(t) if t.0.fract() == 0.0 => t.0 as usize,
                    clock => return Err(CoreError::MeanPredictionOffChain(clock.value())),
                };
                let level = NoiseLevel::<D>::from_chain(&self.how.alphas_cumprod, t);
                level.x0_from_mean(y.mul_scalar(alpha as f32), out)
            }
        };
        Ok(match self.how.clip_sample {
            Some(r) => x0.clamp(-r as f32, r as f32),
            None => x0,
        })
    }
}

/// Errors out when a solver's state is no longer finite, naming the step and noise level.
pub(crate) fn check_finite<const D: usize>(
    y: &Tensor<D>,
    step: usize,
    sigma: f64,
) -> Result<(), CoreError> {
    if is_finite(y) {
        Ok(())
    } else {
        Err(CoreError::NonFiniteAtSigma { step, sigma })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::{Time, Timestep};
    use burn::tensor::Device;

    /// eps, x_0 and v outputs of the same exact network give the same x_0; a continuous clock is
    /// refused.
    #[test]
    fn every_prediction_type_gives_the_same_x0() {
        let device = Device::default();
        let (x0, eps, sigma) = (0.3f32, -1.2f32, 2.0f64);
        let (alpha, sigma_vp) = Sigma(sigma).alpha_sigma_vp();
        let y = Tensor::<2>::full([1, 1], x0 + sigma as f32 * eps, &device);
        let at = Level {
            sigma: Sigma(sigma),
            clock: Clock::Discrete(Timestep(10.0)),
        };
        for (prediction, out) in [
            (Prediction::Epsilon, eps),
            (Prediction::Sample, x0),
            (
                Prediction::VPrediction,
                (alpha as f32) * eps - (sigma_vp as f32) * x0,
            ),
        ] {
            let net = move |x: Tensor<2>, _t: Tensor<1>| x.zeros_like().add_scalar(out);
            let how = DiscreteVp {
                prediction,
                learned_variance: false,
                clip_sample: None,
                alphas_cumprod: vec![0.5; 20],
            };
            let got: f32 = how.wrap(&net).x0(y.clone(), at).unwrap().into_scalar();
            assert!((got - x0).abs() < 1e-5, "{prediction:?}: {got}");
        }
        let net = |x: Tensor<2>, _t: Tensor<1>| x;
        let how = DiscreteVp {
            prediction: Prediction::Epsilon,
            learned_variance: false,
            clip_sample: None,
            alphas_cumprod: vec![0.5; 20],
        };
        let continuous = Level {
            sigma: Sigma(1.0),
            clock: Clock::Continuous(Time(0.5)),
        };
        assert!(how.wrap(&net).x0(y, continuous).is_err());
    }
}
