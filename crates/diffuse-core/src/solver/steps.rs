//! The fixed-grid sigma solvers, each a loop over a [`Grid`] that calls the denoiser as often as
//! its method needs. Notation (Karras et al. 2022): y = x_0 + sigma eps, D(y, sigma) the
//! denoiser, d = (y - D) / sigma the probability-flow ODE's slope dy/dsigma (eq. 4 with
//! sigma(t) = t).
//!
//! - [`euler`]: Karras Algorithm 1 without its second-order correction.
//! - [`heun`]: Karras Algorithm 1 (deterministic, S_churn = 0): an Euler step, then the trapezoid
//!   rule with the slope at its end; the last step, to sigma = 0, stays Euler.
//! - [`dpmpp_2m`]: DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), in lambda = -log sigma, with
//!   k-diffusion's form: first and last steps first order.
//! - [`euler_maruyama`]: the reverse SDE dy = -d[sigma^2] score + sqrt(d[sigma^2]) dW
//!   (Song et al. 2021, eq. 6, for a VP chain in y = x / alpha, where it is the VE SDE),
//!   discretized on the grid; the last step adds no noise.
//!
//! `observe(calls)` sees the running number of model evaluations.

use burn::tensor::Tensor;
use rand::Rng;

use super::adapter::{SigmaDenoiser, check_finite};
use super::grid::Grid;
use crate::coef::randn;
use crate::error::CoreError;

/// Model evaluations reported to a progress bar.
pub type Observe<'a> = &'a mut dyn FnMut(usize);

pub fn euler<const D: usize>(
    model: &dyn SigmaDenoiser<D>,
    grid: &Grid,
    mut y: Tensor<D>,
    observe: Observe,
) -> Result<Tensor<D>, CoreError> {
    for (i, &level) in grid.levels.iter().enumerate() {
        let (sigma, sigma_next) = (level.sigma.0, grid.sigma(i + 1));
        let d = slope(model.x0(y.clone(), level)?, y.clone(), sigma);
        y = euler_step(y, d, sigma, sigma_next);
        observe(i + 1);
        check_finite(&y, i + 1, sigma_next)?;
    }
    Ok(y)
}

pub fn heun<const D: usize>(
    model: &dyn SigmaDenoiser<D>,
    grid: &Grid,
    mut y: Tensor<D>,
    observe: Observe,
) -> Result<Tensor<D>, CoreError> {
    let mut calls = 0;
    for (i, &level) in grid.levels.iter().enumerate() {
        let (sigma, sigma_next) = (level.sigma.0, grid.sigma(i + 1));
        let d = slope(model.x0(y.clone(), level)?, y.clone(), sigma);
        calls += 1;
        observe(calls);
        let y_euler = euler_step(y.clone(), d.clone(), sigma, sigma_next);
        y = match grid.levels.get(i + 1) {
            Some(&next) if sigma_next > 0.0 => {
                let d_next = slope(model.x0(y_euler.clone(), next)?, y_euler, sigma_next);
                calls += 1;
                observe(calls);
                euler_step(y, (d + d_next).div_scalar(2.0), sigma, sigma_next)
            }
            _ => y_euler,
        };
        check_finite(&y, i + 1, sigma_next)?;
    }
    Ok(y)
}

pub fn dpmpp_2m<const D: usize>(
    model: &dyn SigmaDenoiser<D>,
    grid: &Grid,
    mut y: Tensor<D>,
    order: DpmOrder,
    observe: Observe,
) -> Result<Tensor<D>, CoreError> {
    let mut previous: Option<Tensor<D>> = None;
    let n = grid.len();
    for (i, &level) in grid.levels.iter().enumerate() {
        let (sigma, sigma_next) = (level.sigma.0, grid.sigma(i + 1));
        let x0 = model.x0(y.clone(), level)?;
        observe(i + 1);
        let last = i + 1 == n && (order.first_order_last || sigma_next == 0.0);
        let history = match (&previous, last || !order.second_order) {
            (Some(x0_prev), false) => Some((x0_prev.clone(), grid.sigma(i - 1))),
            _ => None,
        };
        y = dpmpp_2m_step(y, x0.clone(), history, sigma, sigma_next);
        previous = Some(x0);
        check_finite(&y, i + 1, sigma_next)?;
    }
    Ok(y)
}

pub fn euler_maruyama<const D: usize>(
    model: &dyn SigmaDenoiser<D>,
    grid: &Grid,
    mut y: Tensor<D>,
    rng: &mut dyn Rng,
    observe: Observe,
) -> Result<Tensor<D>, CoreError> {
    let shape = y.dims();
    let device = y.device();
    for (i, &level) in grid.levels.iter().enumerate() {
        let (sigma, sigma_next) = (level.sigma.0, grid.sigma(i + 1));
        let g2 = sigma * sigma - sigma_next * sigma_next;
        y = y.clone() + model.score(y, level)?.mul_scalar(g2 as f32);
        if i + 1 < grid.len() {
            y = y + randn(&mut &mut *rng, shape, &device).mul_scalar(g2.sqrt() as f32);
        }
        observe(i + 1);
        check_finite(&y, i + 1, sigma_next)?;
    }
    Ok(y)
}

/// Which DPM-Solver++ steps are of second order (diffusers' `solver_order`,
/// `lower_order_final`, `euler_at_final`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpmOrder {
    /// `solver_order = 2`; false: every step first order.
    pub second_order: bool,
    /// The last step is first order even when it does not end at sigma = 0.
    pub first_order_last: bool,
}

/// d = (y - D) / sigma: the ODE's slope dy/dsigma.
pub fn slope<const D: usize>(x0: Tensor<D>, y: Tensor<D>, sigma: f64) -> Tensor<D> {
    (y - x0).div_scalar(sigma as f32)
}

/// y + d (sigma_next - sigma).
pub fn euler_step<const D: usize>(
    y: Tensor<D>,
    d: Tensor<D>,
    sigma: f64,
    sigma_next: f64,
) -> Tensor<D> {
    y + d.mul_scalar((sigma_next - sigma) as f32)
}

/// One DPM-Solver++ step from sigma to sigma_next, of second order when `history` holds the
/// previous step's x_0 estimate and sigma:
/// h = lambda_next - lambda, D' = (1 + 1/(2r)) D - 1/(2r) D_prev with r = h_prev / h,
/// y_next = (sigma_next / sigma) y - (e^(-h) - 1) D'.
pub fn dpmpp_2m_step<const D: usize>(
    y: Tensor<D>,
    x0: Tensor<D>,
    history: Option<(Tensor<D>, f64)>,
    sigma: f64,
    sigma_next: f64,
) -> Tensor<D> {
    let lambda = |s: f64| -s.ln();
    let h = lambda(sigma_next) - lambda(sigma);
    let denoised = match history {
        Some((x0_prev, sigma_prev)) => {
            let r = (lambda(sigma) - lambda(sigma_prev)) / h;
            x0.mul_scalar((1.0 + 1.0 / (2.0 * r)) as f32)
                - x0_prev.mul_scalar((1.0 / (2.0 * r)) as f32)
        }
        None => x0,
    };
    y.mul_scalar((sigma_next / sigma) as f32) - denoised.mul_scalar((-h).exp_m1() as f32)
}
