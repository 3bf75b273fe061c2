//! Exact likelihood through the probability-flow ODE (Song et al. 2021, section 4.3 and
//! appendix D.2; Chen et al. 2018's instantaneous change of variables).
//!
//! In sigma coordinates y = x / alpha and s = log sigma the ODE is dy/ds = f(y, s) = y - D(y, e^s),
//! and along a solution d/ds log p_s(y(s)) = -div f = -(n - tr dD/dy), n the dimension. Solving
//! from the data (s_min) to the prior (s_max) together with l(s) = int div f ds gives
//!
//!   log p_0(x) = log N(y(s_max); 0, (prior_std / alpha_max)^2 I) + l(s_max) - n log alpha_min,
//!
//! with y(s_min) = x / alpha_min (the last term converts the density back to x), alpha the
//! process's scale x = alpha y and prior_std its prior's ([`NoiseClock`]): for a discrete VP
//! chain alpha = 1 / sqrt(1 + sigma^2) and the prior N(0, I), so y(s_max) is compared with
//! N(0, (1 + sigma_max^2) I); for a score SDE, its mean(t) and its prior (VE: N(0, sigma_max^2 I)). The trace is
//! exact (one backward pass per dimension, for 2-D data) or Hutchinson-Skilling's unbiased
//! estimate eps^T (dD/dy) eps with a probe eps fixed for the whole solve (for images).
//! The model must run on an autodiff device.

use burn::tensor::Tensor;

use crate::error::CoreError;
use crate::level::{NoiseClock, Sigma};
use crate::solver::adapter::SigmaDenoiser;
use crate::solver::rk45::{OdeState, OdeStats, Tolerance, rk45};

/// How tr(dD/dy) is computed.
#[allow(clippy::large_enum_variant)] // one per likelihood run
pub enum Divergence<const D: usize> {
    /// One backward pass per coordinate of a [B, d] input: exact.
    Exact,
    /// Hutchinson-Skilling with this probe (Gaussian or Rademacher, the shape of the data).
    Hutchinson(Tensor<D>),
}

/// Per-item log-densities and what the solve cost.
pub struct Likelihood {
    /// log p(x) per item, in nats.
    pub log_p: Vec<f64>,
    pub stats: OdeStats,
}

/// The ODE's state with its running divergence integral, one per item.
#[derive(Clone)]
struct Augmented<const D: usize>(Tensor<D>, Tensor<1>);

impl<const D: usize> OdeState for Augmented<D> {
    fn add_scaled(&self, terms: &[(f64, &Self)]) -> Self {
        let ys: Vec<(f64, &Tensor<D>)> = terms.iter().map(|(c, v)| (*c, &v.0)).collect();
        let ls: Vec<(f64, &Tensor<1>)> = terms.iter().map(|(c, v)| (*c, &v.1)).collect();
        Augmented(self.0.add_scaled(&ys), self.1.add_scaled(&ls))
    }

    fn abs_max(&self, other: &Self) -> Self {
        Augmented(self.0.abs_max(&other.0), self.1.abs_max(&other.1))
    }

    fn scaled_sum(&self, by: &Self, rtol: f64, atol: f64) -> (f64, usize) {
        let (a, n) = self.0.scaled_sum(&by.0, rtol, atol);
        let (b, m) = self.1.scaled_sum(&by.1, rtol, atol);
        (a + b, n + m)
    }
}

/// log p(x) under the probability-flow ODE of `model` between sigma_min and sigma_max.
#[allow(clippy::too_many_arguments)]
pub fn ode_log_likelihood<const D: usize>(
    model: &dyn SigmaDenoiser<D>,
    clock: &dyn NoiseClock,
    x: Tensor<D>,
    sigma_min: Sigma,
    sigma_max: Sigma,
    divergence: &Divergence<D>,
    tol: Tolerance,
    observe: &mut dyn FnMut(usize),
) -> Result<Likelihood, CoreError> {
    let dims = x.dims();
    let (batch, n) = (dims[0], dims[1..].iter().product::<usize>());
    let alpha_min = clock.alpha(sigma_min);
    let y0 = x.mul_scalar((1.0 / alpha_min) as f32);
    let l0 = Tensor::<1>::zeros([batch], &y0.device());
    let mut f = |s: f64, state: &Augmented<D>| -> Result<Augmented<D>, CoreError> {
        let level = clock.level(Sigma(s.exp()));
        let y = state.0.clone().detach();
        let (x0, trace) = denoise_with_trace(model, y.clone(), level, divergence)?;
        Ok(Augmented(y - x0, trace.neg().add_scalar(n as f32)))
    };
    let (end, stats) = rk45(
        &mut f,
        sigma_min.0.ln(),
        sigma_max.0.ln(),
        Augmented(y0, l0),
        tol,
        observe,
    )?;
    let prior_sd = clock.init_sigma(sigma_max);
    let var = prior_sd * prior_sd;
    let y_sq: Vec<f64> = to_f64(
        end.0
            .clone()
            .mul(end.0)
            .reshape([batch, n])
            .sum_dim(1)
            .reshape([batch]),
    );
    let l: Vec<f64> = to_f64(end.1);
    let log_p = y_sq
        .iter()
        .zip(&l)
        .map(|(ysq, l)| {
            let prior = -0.5 * n as f64 * (2.0 * std::f64::consts::PI * var).ln() - 0.5 * ysq / var;
            prior + l - n as f64 * alpha_min.ln()
        })
        .collect::<Vec<_>>();
    if let Some(i) = log_p.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::NonFiniteAtSigma {
            step: i,
            sigma: sigma_max.0,
        });
    }
    Ok(Likelihood { log_p, stats })
}

/// D(y, sigma) and tr(dD/dy) per item.
fn denoise_with_trace<const D: usize>(
    model: &dyn SigmaDenoiser<D>,
    y: Tensor<D>,
    level: crate::level::Level,
    divergence: &Divergence<D>,
) -> Result<(Tensor<D>, Tensor<1>), CoreError> {
    let batch = y.dims()[0];
    match divergence {
        Divergence::Exact => {
            let d = y.dims()[1];
            assert!(
                D == 2,
                "the exact trace is for [B, d] data; use Hutchinson for images"
            );
            let mut trace = Tensor::<1>::zeros([batch], &y.device());
            let mut x0 = None;
            for j in 0..d {
                let y = y.clone().require_grad();
                let out = model.x0(y.clone(), level)?;
                let grads = out.clone().narrow(1, j, 1).sum().backward();
                let g = y.grad(&grads).expect("y requires a gradient");
                trace = trace + g.narrow(1, j, 1).reshape([batch]);
                x0.get_or_insert(out.detach());
            }
            Ok((x0.expect("d >= 1"), trace))
        }
        Divergence::Hutchinson(eps) => {
            let y = y.require_grad();
            let out = model.x0(y.clone(), level)?;
            let grads = out.clone().mul(eps.clone()).sum().backward();
            let g = y.grad(&grads).expect("y requires a gradient");
            let n: usize = eps.dims()[1..].iter().product();
            let trace = g
                .mul(eps.clone())
                .reshape([batch, n])
                .sum_dim(1)
                .reshape([batch]);
            Ok((out.detach(), trace))
        }
    }
}

fn to_f64(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("a float tensor")
}
