//! One sampling interface for every method: a [`Solver`] owns its loop and calls the network as
//! often as its method needs; it is chosen at run time (`Box<dyn Solver<D>>`).
//!
//! - [`Stepwise`]: the discrete-chain samplers (DDPM, DDIM) with diffusers' step semantics;
//! - [`SigmaSolver`]: the solvers over noise levels ([`steps`], [`rk45`]) through a model adapter
//!   ([`adapter`]) and a [`grid`].

pub mod adapter;
pub mod grid;
pub mod likelihood;
pub mod rk45;
pub mod steps;

use burn::tensor::Tensor;
use rand::Rng;

use crate::discrete::sampler::{self, Sampler};
use crate::error::CoreError;
use crate::level::{NoiseClock, Sigma};
use crate::model::Denoiser;
use crate::sde::Sde;
use crate::sde::pc::{self, Pc};
use adapter::{Adapter, SigmaDenoiser, check_finite};
use grid::Grid;
pub use rk45::{OdeStats, Tolerance};
pub use steps::{DpmOrder, Observe};

/// What a solver returns: the sample and the network evaluations it cost.
#[derive(Debug, Clone)]
pub struct Sampled<const D: usize> {
    pub x0: Tensor<D>,
    pub nfe: usize,
}

/// A sampling method, ready to run (object-safe).
pub trait Solver<const D: usize> {
    /// Network evaluations it will make, where fixed in advance (not for adaptive solvers).
    fn model_calls(&self) -> Option<usize>;
    /// Draws x_0 from `z`, a standard-normal draw (scaled to the solver's first noise level
    /// here). Noise comes from `rng`; `observe` sees the running count of network evaluations.
    fn sample(
        &self,
        net: &dyn Denoiser<D>,
        z: Tensor<D>,
        rng: &mut dyn Rng,
        observe: Observe,
    ) -> Result<Sampled<D>, CoreError>;
}

/// A discrete-chain sampler (DDPM, DDIM): one network call per timestep; z is x_T itself.
pub struct Stepwise<S>(pub S);

impl<const D: usize, S: Sampler> Solver<D> for Stepwise<S> {
    fn model_calls(&self) -> Option<usize> {
        Some(self.0.timesteps().len())
    }

    fn sample(
        &self,
        net: &dyn Denoiser<D>,
        z: Tensor<D>,
        mut rng: &mut dyn Rng,
        observe: Observe,
    ) -> Result<Sampled<D>, CoreError> {
        let x0 = sampler::sample(net, &self.0, z, &mut rng, |i, _, _| observe(i + 1))?;
        Ok(Sampled {
            x0,
            nfe: self.0.timesteps().len(),
        })
    }
}

/// The methods over noise levels.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Karras Algorithm 1 without the correction.
    Euler,
    /// Karras Algorithm 1.
    Heun,
    /// DPM-Solver++ (Lu et al. 2022), multistep.
    DpmSolverPp(DpmOrder),
    /// The probability-flow ODE with adaptive RK45 between the grid's first and last sigma,
    /// then one denoising evaluation (score_sde's `denoise = True`).
    Ode(Tolerance),
    /// Euler-Maruyama on the reverse SDE.
    Sde,
}

/// A method, its grid, and how the network's output is read.
pub struct SigmaSolver {
    pub method: Method,
    pub grid: Grid,
    pub adapter: Adapter,
    /// The process's clock (a chain's sigma table, a score SDE): the adaptive ODE's clock
    /// between grid points.
    pub clock: Box<dyn NoiseClock>,
}

impl<const D: usize> Solver<D> for SigmaSolver {
    fn model_calls(&self) -> Option<usize> {
        let n = self.grid.len();
        match self.method {
            Method::Heun => Some(2 * n - usize::from(self.grid.final_sigma.0 == 0.0)),
            Method::Ode(_) => None,
            _ => Some(n),
        }
    }

    fn sample(
        &self,
        net: &dyn Denoiser<D>,
        z: Tensor<D>,
        rng: &mut dyn Rng,
        observe: Observe,
    ) -> Result<Sampled<D>, CoreError> {
        let model = self.adapter.wrap(net);
        let model = model.as_ref();
        let y = z.mul_scalar(self.grid.init_sigma as f32);
        check_finite(&y, 0, self.grid.init_sigma).map_err(|_| CoreError::NonFiniteInput)?;
        let mut nfe = 0;
        let mut count = |n: usize| {
            nfe = n;
            observe(n)
        };
        let x0 = match &self.method {
            Method::Euler => steps::euler(model, &self.grid, y, &mut count)?,
            Method::Heun => steps::heun(model, &self.grid, y, &mut count)?,
            Method::DpmSolverPp(order) => {
                steps::dpmpp_2m(model, &self.grid, y, *order, &mut count)?
            }
            Method::Sde => steps::euler_maruyama(model, &self.grid, y, rng, &mut count)?,
            Method::Ode(tol) => {
                let (lo, hi) = (self.grid.sigma(self.grid.len() - 1), self.grid.sigma(0));
                probability_flow(
                    model,
                    self.clock.as_ref(),
                    y,
                    Sigma(hi),
                    Sigma(lo),
                    *tol,
                    &mut count,
                )?
                .0
            }
        };
        Ok(Sampled { x0, nfe })
    }
}

/// Predictor-corrector sampling (`crate::sde::pc`) of any network on an SDE: a score SDE's own
/// network (the adapter [`Adapter::NoiseConditional`], the clock the SDE), or a DDPM network
/// on the VP SDE its linear chain discretizes (the adapter [`Adapter::DiscreteVp`], the clock
/// its sigma table).
pub struct PcSolver {
    pub sde: Sde,
    pub pc: Pc,
    pub adapter: Adapter,
    pub clock: Box<dyn NoiseClock>,
}

impl PcSolver {
    /// x_T = prior_std z, then the PC loop; `observe` sees the network evaluations so far,
    /// `observe_step(i, x)` x_mean after step i (`pc::sample`'s, for pictures).
    pub fn sample_steps<const D: usize>(
        &self,
        net: &dyn Denoiser<D>,
        z: Tensor<D>,
        rng: &mut dyn Rng,
        observe: Observe,
        observe_step: &mut dyn FnMut(usize, &Tensor<D>),
    ) -> Result<Sampled<D>, CoreError> {
        let model = self.adapter.wrap(net);
        let x = z.mul_scalar(self.sde.prior_std() as f32);
        check_finite(&x, 0, self.sde.sigma(crate::level::Time(1.0)).0)
            .map_err(|_| CoreError::NonFiniteInput)?;
        let mut nfe = 0;
        let mut score = |x: Tensor<D>, t| {
            let s = pc::score_through(model.as_ref(), self.clock.as_ref(), &self.sde, x, t);
            nfe += 1;
            observe(nfe);
            s
        };
        let x0 = pc::sample(&mut score, &self.sde, &self.pc, x, rng, observe_step)?;
        Ok(Sampled { x0, nfe })
    }
}

impl<const D: usize> Solver<D> for PcSolver {
    fn model_calls(&self) -> Option<usize> {
        Some(self.pc.model_calls())
    }

    /// x_T = prior_std z.
    fn sample(
        &self,
        net: &dyn Denoiser<D>,
        z: Tensor<D>,
        rng: &mut dyn Rng,
        observe: Observe,
    ) -> Result<Sampled<D>, CoreError> {
        self.sample_steps(net, z, rng, observe, &mut |_, _| {})
    }
}

/// The probability-flow ODE dy/d(log sigma) = y - D(y, sigma) (Karras et al. eq. 4 with
/// s = log sigma) from sigma_max to sigma_min by RK45, then y_0 = D(y, sigma_min).
pub fn probability_flow<const D: usize>(
    model: &dyn SigmaDenoiser<D>,
    clock: &dyn NoiseClock,
    y: Tensor<D>,
    sigma_max: Sigma,
    sigma_min: Sigma,
    tol: Tolerance,
    observe: Observe,
) -> Result<(Tensor<D>, OdeStats), CoreError> {
    let mut f = |s: f64, y: &Tensor<D>| -> Result<Tensor<D>, CoreError> {
        let x0 = model.x0(y.clone(), clock.level(Sigma(s.exp())))?;
        Ok(y.clone() - x0)
    };
    let (y, mut stats) = rk45::rk45(&mut f, sigma_max.0.ln(), sigma_min.0.ln(), y, tol, observe)?;
    let x0 = model.x0(y, clock.level(sigma_min))?;
    stats.nfe += 1;
    observe(stats.nfe);
    check_finite(&x0, stats.accepted, 0.0)?;
    Ok((x0, stats))
}
