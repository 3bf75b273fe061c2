//! Predictor-corrector sampling (Song et al. 2021, section 4.2 and Algorithms 2-3; score_sde's
//! `sampling.py`), in x coordinates on the SDE's own clock.
//!
//! With N steps on t_i = linspace(1, eps, N) and s(x, t) the score:
//!
//!   x ~ prior
//!   for i = 0..N-1:
//!     corrector, `corrector_steps` times (Langevin at signal-to-noise ratio r):
//!       g = s(x, t_i); z ~ N(0, I)
//!       step = 2 alpha_i (r ||z|| / ||g||)^2          alpha_i: `Sde::corrector_alpha`
//!       (the norms per example, averaged over the batch)
//!       x <- x + step g + sqrt(2 step) z
//!     predictor, one of
//!       reverse diffusion (`Sde::discretize`'s f, G):  x_mean = x - f + G^2 s(x, t_i)
//!       Euler-Maruyama (dt = -1/N):                   x_mean = x - [f(t) x - g(t)^2 s] / N
//!     x <- x_mean + G z   (Euler-Maruyama: g(t) sqrt(1/N) z)
//!   return x_mean (the last step's noise not added: score_sde's `noise_removal`)
//!
//! As in score_sde, the corrector's norms are averaged over the batch, so an example's path
//! depends on the others drawn with it (the same seed and `--n` give the same bits). Each
//! example's own norms would free it of that, but in low dimensions they fail: measured on
//! the swiss roll (a VP model after 3,000 steps, 2,000 samples), a point near a mode has ||g||
//! near 0, its step explodes, and the samples ended at 42x the data-vs-data distance, against
//! 2.2x with the batch's averages and 1.3x without the corrector.

use burn::tensor::Tensor;
use rand::Rng;

use crate::coef::{is_finite, randn};
use crate::error::CoreError;
use crate::level::{NoiseClock, Time};
use crate::sde::Sde;
use crate::solver::adapter::SigmaDenoiser;

/// The predictor of a PC step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictor {
    /// The reverse of the SDE's own discretization (score_sde's `ReverseDiffusionPredictor`;
    /// for VE it is SMLD's, for VP DDPM's ancestral step to first order).
    ReverseDiffusion,
    /// Euler-Maruyama on the reverse SDE (score_sde's `EulerMaruyamaPredictor`).
    EulerMaruyama,
}

/// A predictor-corrector sampler's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Pc {
    pub predictor: Predictor,
    /// Langevin corrector steps per time step (0: the predictor alone).
    pub corrector_steps: usize,
    /// The corrector's signal-to-noise ratio r (score_sde: 0.16 for VE on CIFAR-10).
    pub snr: f64,
    /// N, the time steps.
    pub steps: usize,
    /// The last time, t_{N-1} = eps (score_sde: 1e-3).
    pub eps: f64,
}

impl Pc {
    /// Network evaluations of one run.
    pub fn model_calls(&self) -> usize {
        self.steps * (self.corrector_steps + 1)
    }

    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |why: String| Err(CoreError::InvalidSolver(why));
        if self.steps < 2 {
            return bad(format!("PC needs at least 2 steps, got {}", self.steps));
        }
        if !(self.snr.is_finite() && self.snr > 0.0) {
            return bad(format!(
                "the corrector's snr must be positive, got {}",
                self.snr
            ));
        }
        if !(self.eps > 0.0 && self.eps < 1.0) {
            return bad(format!("eps must be in (0, 1), got {}", self.eps));
        }
        Ok(())
    }

    /// t_i = linspace(1, eps, N).
    pub fn times(&self) -> Vec<f64> {
        crate::discrete::schedule::linspace(1.0, self.eps, self.steps)
    }
}

/// Runs `pc` on `sde` from `x`, a draw of the prior. `score(x, t)` is the score in x
/// coordinates; `observe(i, x)` sees x after step i. Fails naming the step when x stops
/// being finite.
pub fn sample<const D: usize>(
    score: &mut dyn FnMut(Tensor<D>, Time) -> Result<Tensor<D>, CoreError>,
    sde: &Sde,
    pc: &Pc,
    mut x: Tensor<D>,
    mut rng: &mut dyn Rng,
    observe: &mut dyn FnMut(usize, &Tensor<D>),
) -> Result<Tensor<D>, CoreError> {
    pc.validate()?;
    sde.check_steps(pc.steps)?;
    let shape: [usize; D] = x.dims();
    let device = x.device();
    let mut x_mean = x.clone();
    for (i, &t) in pc.times().iter().enumerate() {
        let t = Time(t);
        for _ in 0..pc.corrector_steps {
            let g = score(x.clone(), t)?;
            let z = randn(&mut rng, shape, &device);
            x = corrector_step(sde, pc, t, x, g, z);
        }
        let s = score(x.clone(), t)?;
        let z = randn(&mut rng, shape, &device);
        (x, x_mean) = predictor_step(sde, pc, t, x, s, z);
        if !is_finite(&x) {
            return Err(CoreError::NonFiniteAtSigma {
                step: i + 1,
                sigma: sde.sigma(t).0,
            });
        }
        observe(i, &x_mean);
    }
    Ok(x_mean)
}

/// One Langevin corrector step at t from x, with score g = s(x, t) and noise z (score_sde's
/// `LangevinCorrector.update_fn`, one of its `n_steps`).
pub fn corrector_step<const D: usize>(
    sde: &Sde,
    pc: &Pc,
    t: Time,
    x: Tensor<D>,
    g: Tensor<D>,
    z: Tensor<D>,
) -> Tensor<D> {
    let ratio = mean_norm(&z) / mean_norm(&g).max(f64::MIN_POSITIVE);
    let alpha = sde.corrector_alpha(t, pc.steps);
    let step = 2.0 * alpha * (pc.snr * ratio).powi(2);
    x + g.mul_scalar(step as f32) + z.mul_scalar((2.0 * step).sqrt() as f32)
}

/// One predictor step at t from x, with score s = s(x, t) and noise z: (x, x_mean), the
/// mean being x before the noise is added (score_sde's `ReverseDiffusionPredictor` and
/// `EulerMaruyamaPredictor.update_fn`).
pub fn predictor_step<const D: usize>(
    sde: &Sde,
    pc: &Pc,
    t: Time,
    x: Tensor<D>,
    s: Tensor<D>,
    z: Tensor<D>,
) -> (Tensor<D>, Tensor<D>) {
    let n = pc.steps;
    let (mean, noise) = match pc.predictor {
        Predictor::ReverseDiffusion => {
            let (f, big_g) = sde.discretize(t, n);
            let mean = x.clone() - x.mul_scalar(f as f32) + s.mul_scalar((big_g * big_g) as f32);
            (mean, big_g)
        }
        Predictor::EulerMaruyama => {
            let dt = 1.0 / n as f64;
            let drift = sde.reverse_drift(x.clone(), t, s, false);
            (
                x - drift.mul_scalar(dt as f32),
                sde.coefficients(t).1 * dt.sqrt(),
            )
        }
    };
    (mean.clone() + z.mul_scalar(noise as f32), mean)
}

/// The score in x coordinates at time t of `sde`, from any network through its adapter and
/// clock: with alpha = mean(t), sigma = std(t) / mean(t) and y = x / alpha, s(x, t) =
/// s_y(y, sigma) / alpha, s_y the adapter's ([`SigmaDenoiser::score`]: Tweedie's
/// (D(y, sigma) - y) / sigma^2, or -eps / sigma for a noise-predicting network, which makes
/// this -net / std(t) on the SDE's own clock). A DDPM network is read on the chain at the sigma
/// of t, which is how a discrete VP model is sampled by PC (score_sde samples DDPM checkpoints
/// this way).
pub fn score_through<const D: usize>(
    model: &dyn SigmaDenoiser<D>,
    clock: &dyn NoiseClock,
    sde: &Sde,
    x: Tensor<D>,
    t: Time,
) -> Result<Tensor<D>, CoreError> {
    let sigma = sde.sigma(t);
    let alpha = sde.marginal(t).0;
    let y = x.div_scalar(alpha as f32);
    Ok(model.score(y, clock.level(sigma))?.div_scalar(alpha as f32))
}

/// The mean over the batch of each example's ||v||.
fn mean_norm<const D: usize>(v: &Tensor<D>) -> f64 {
    let dims = v.dims();
    let (b, n) = (dims[0], dims[1..].iter().product::<usize>());
    let norms: f32 = v
        .clone()
        .reshape([b, n])
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .mean()
        .into_scalar();
    norms as f64
}
