//! The score SDE family (Song et al. 2021, "Score-based generative modeling through stochastic
//! differential equations"): VP, sub-VP or VE (`[score] sde`, `train --sde`), trained by
//! denoising score matching in continuous time (`diffuse_train::ScoreSde`), the network told
//! c(t) = 999 t and predicting the noise z of x_t = mean(t) x_0 + std(t) z, so that its score
//! is -net / std(t) (`diffuse_core::solver::adapter::NoiseConditional`).
//!
//! Samplers, every one through the same adapter and the SDE as its clock:
//! - `pc` (the default): reverse-diffusion predictor + Langevin corrector
//!   (`diffuse_core::sde::pc`), score.steps steps;
//! - `sde`: the Euler-Maruyama predictor (no corrector unless --corrector-steps);
//! - `ode`: the probability-flow ODE by RK45, then one denoising evaluation;
//! - `euler`, `heun`, `dpm-solver++`: the solvers over noise levels, on Karras et al.'s sigmas
//!   between sigma(sample_eps) and sigma(1).
//!
//! `eval --nll --method ode`: the probability-flow ODE's exact likelihood, with the SDE's
//! clock and prior (`diffuse_core::solver::likelihood`).
//!
//! - `points` / `images` — the family on each kind of data: network, weights, pictures, sample

pub mod images;
pub mod points;

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use diffuse_core::Denoiser;
use diffuse_core::level::Time;
use diffuse_core::sde::pc::{Pc, Predictor};
use diffuse_core::solver::adapter::Adapter;
use diffuse_core::solver::grid::{Grid, karras_sigmas};
use diffuse_core::solver::{DpmOrder, Method, PcSolver, SigmaSolver, Solver};
use diffuse_eval::metrics::max_pairwise_distance;
use rand_chacha::ChaCha8Rng;

use crate::args::{SamplerKind, SolverChoice, tolerance};
use crate::config::{RunConfig, ScoreConfig};
use crate::progress;

/// The score SDE family (see the module docs).
pub struct Score;

/// The run's `[score]` section (a validated config of this family has one).
fn section(config: &RunConfig) -> Result<&ScoreConfig> {
    config
        .score
        .as_ref()
        .context("a score run config has a [score] section")
}

/// The continuous-time objective of the run's SDE.
pub(crate) fn objective<const D: usize>(config: &RunConfig) -> Result<diffuse_train::ScoreSde<D>> {
    let section = section(config)?;
    Ok(diffuse_train::ScoreSde {
        net: section.net()?,
        eps: section.eps,
        likelihood_weighting: section.likelihood_weighting,
    })
}

/// A fresh VE run's sigma_max from its training examples `rows` (model space): their largest
/// pairwise distance (NCSNv2's Technique 1), where the config leaves it unset.
pub(crate) fn prepare(config: &mut RunConfig, rows: &[f32], dim: usize) -> Result<()> {
    let section = config
        .score
        .as_mut()
        .context("a score run config has a [score] section")?;
    if section.sde == crate::config::SdeName::Ve && section.sigma_max.is_none() {
        let max = max_pairwise_distance(rows, dim);
        section.fill(max);
        eprintln!(
            "VE SDE: sigma from {} to {max:.4} (the largest distance between {} training examples)",
            section.sigma_min,
            rows.len() / dim
        );
    }
    section.sde()?;
    Ok(())
}

/// `--sampler` on a score run, with the flags that apply to it.
pub(crate) fn sampler<const D: usize>(
    choice: &SolverChoice,
    section: &ScoreConfig,
) -> Result<(Box<dyn Solver<D>>, String)> {
    let sde = section.sde()?;
    let adapter = Adapter::NoiseConditional(section.net()?);
    let kind = choice.sampler.unwrap_or(SamplerKind::Pc);
    let refuse = |flags: &[&str]| -> Result<()> {
        for flag in choice.given() {
            if !flags.contains(&flag) {
                bail!("{flag} does not apply to --sampler {}", kind_name(kind));
            }
        }
        Ok(())
    };
    if choice.steps == Some(0) {
        bail!("--steps must be at least 1");
    }
    Ok(match kind {
        SamplerKind::Pc | SamplerKind::Sde => {
            refuse(&["--corrector-steps", "--snr"])?;
            let pc_kind = kind == SamplerKind::Pc;
            let pc = Pc {
                predictor: if pc_kind {
                    Predictor::ReverseDiffusion
                } else {
                    Predictor::EulerMaruyama
                },
                corrector_steps: choice.corrector_steps.unwrap_or(if pc_kind {
                    section.corrector_steps
                } else {
                    0
                }),
                snr: choice.snr.unwrap_or(section.snr),
                steps: choice.steps.unwrap_or(section.steps),
                eps: section.sample_eps,
            };
            pc.validate()?;
            sde.check_steps(pc.steps)?;
            let label = format!(
                "{}, {} steps x (1 + {} corrector at snr {})",
                if pc_kind {
                    "PC: reverse diffusion + Langevin"
                } else {
                    "Euler-Maruyama"
                },
                pc.steps,
                pc.corrector_steps,
                pc.snr
            );
            let solver = PcSolver {
                sde,
                pc,
                adapter,
                clock: Box::new(sde),
            };
            (Box::new(solver) as Box<dyn Solver<D>>, label)
        }
        SamplerKind::Ode => {
            refuse(&["--rtol", "--atol"])?;
            if choice.steps.is_some() {
                bail!(
                    "--sampler ode chooses its own steps; set --rtol and --atol instead of --steps"
                );
            }
            let tol = tolerance(choice.rtol, choice.atol)?;
            let ends = [
                sde.sigma(Time(1.0)).0,
                sde.sigma(Time(section.sample_eps)).0,
            ];
            let solver = SigmaSolver {
                method: Method::Ode(tol),
                grid: Grid::from_sigmas(&sde, &ends)?,
                adapter,
                clock: Box::new(sde),
            };
            (
                Box::new(solver) as Box<dyn Solver<D>>,
                format!(
                    "probability-flow ODE, RK45 at rtol {} atol {}",
                    tol.rtol, tol.atol
                ),
            )
        }
        SamplerKind::Euler | SamplerKind::Heun | SamplerKind::DpmSolverPp => {
            refuse(&[])?;
            let (method, default) = match kind {
                SamplerKind::Euler => (Method::Euler, 50),
                SamplerKind::Heun => (Method::Heun, 25),
                _ => (
                    Method::DpmSolverPp(DpmOrder {
                        second_order: true,
                        first_order_last: true,
                    }),
                    20,
                ),
            };
            let n = choice.steps.unwrap_or(default);
            let sigmas =
                karras_sigmas(sde.sigma(Time(section.sample_eps)), sde.sigma(Time(1.0)), n);
            let solver = SigmaSolver {
                method,
                grid: Grid::from_sigmas(&sde, &sigmas)?,
                adapter,
                clock: Box::new(sde),
            };
            (
                Box::new(solver) as Box<dyn Solver<D>>,
                format!("{}, {n} steps on Karras sigmas", kind.label()),
            )
        }
        SamplerKind::Ddpm | SamplerKind::Ddim | SamplerKind::Langevin => bail!(
            "--sampler {} does not apply to score runs; they sample with pc (the default), sde, ode, euler, heun or dpm-solver++",
            kind_name(kind)
        ),
    })
}

/// The flag's spelling of a sampler.
pub(crate) fn kind_name(kind: SamplerKind) -> String {
    use clap::ValueEnum;
    kind.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// Runs a solver from `z` ~ N(0, I) with a progress bar over its network evaluations.
pub(crate) fn run_solver<const D: usize>(
    solver: &dyn Solver<D>,
    net: &dyn Denoiser<D>,
    z: Tensor<D>,
    rng: &mut ChaCha8Rng,
    label: &str,
) -> Result<Tensor<D>> {
    let pb = match solver.model_calls() {
        Some(n) => progress::bar(n, label),
        None => progress::spinner(label),
    };
    let mut observe = |n: usize| pb.set_position(n as u64);
    let out = solver.sample(net, z, rng, &mut observe);
    pb.finish_and_clear();
    let out = out?;
    eprintln!("{} network evaluations ({label})", out.nfe);
    Ok(out.x0)
}

/// The run's own PC sampler from `z` ~ N(0, I), `observe(i, x)` seeing x_mean after each of
/// its steps (the pictures), with a progress bar.
pub(crate) fn pc_with_steps<const D: usize>(
    net: &dyn Denoiser<D>,
    section: &ScoreConfig,
    z: Tensor<D>,
    rng: &mut ChaCha8Rng,
    observe: &mut dyn FnMut(usize, &Tensor<D>),
) -> Result<Tensor<D>> {
    let sde = section.sde()?;
    let pc = section.pc();
    let label = format!(
        "PC: {} steps x (1 + {} corrector at snr {})",
        pc.steps, pc.corrector_steps, pc.snr
    );
    let pb = progress::bar(pc.model_calls(), "predictor-corrector");
    let solver = PcSolver {
        sde,
        pc,
        adapter: Adapter::NoiseConditional(section.net()?),
        clock: Box::new(sde),
    };
    let out = solver.sample_steps(net, z, rng, &mut |n| pb.set_position(n as u64), observe);
    pb.finish_and_clear();
    let out = out?;
    eprintln!("{} network evaluations ({label})", out.nfe);
    Ok(out.x0)
}

/// The noise levels shown in forward pictures: t at 10 points of [eps, 1], with mean(t) and
/// std(t).
fn perturbations(section: &ScoreConfig) -> Result<Vec<crate::families::pictures::Perturbation>> {
    let sde = section.sde()?;
    let panels = crate::families::pictures::PANELS;
    Ok((0..panels)
        .map(|k| {
            let t =
                section.sample_eps + (1.0 - section.sample_eps) * k as f64 / (panels - 1) as f64;
            let (mean, std) = sde.marginal(Time(t));
            crate::families::pictures::Perturbation {
                label: format!("t {t:.2}"),
                mean,
                std,
            }
        })
        .collect())
}

/// The probability-flow ODE of the run's SDE for the likelihood, from t = eps (score_sde's
/// likelihood eps, 1e-5: the training one) to t = 1.
pub(crate) fn ode_process(
    section: &ScoreConfig,
) -> Result<crate::families::likelihood::OdeProcess> {
    let sde = section.sde()?;
    Ok(crate::families::likelihood::OdeProcess {
        adapter: Adapter::NoiseConditional(section.net()?),
        clock: Box::new(sde),
        sigma_min: sde.sigma(Time(section.eps)),
        sigma_max: sde.sigma(Time(1.0)),
    })
}
