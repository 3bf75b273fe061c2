//! The NCSN family (Song & Ermon 2019, "Generative modeling by estimating gradients of the data
//! distribution"; NCSNv2, Song & Ermon 2020): a network conditioned on the noise level,
//! trained by denoising score matching over L geometric levels, sampled by annealed Langevin
//! dynamics (`diffuse_core::sde::ncsn`). The network predicts the noise z of x = x_0 + sigma z
//! and is told the level as `NoiseLevels::condition` (0 to 999); its score is
//! s(x, sigma) = -net(x, c(sigma)) / sigma (NCSNv2's 1 / sigma output scaling).
//!
//! The same network is a VE score SDE's (`as_ve`): sigma(t) = sigma_L (sigma_1 / sigma_L)^t
//! passes through every level at the t where NCSN's condition is 999 t, with the same input
//! scale. So besides annealed Langevin (the default), `sample` takes that SDE's samplers (`pc`,
//! `sde`, `ode`, `euler`, `heun`, `dpm-solver++`) and `eval --nll --method ode` its
//! probability-flow ODE's likelihood, through the score family's code.
//!
//! - `points` / `images` — the family on each kind of data: network, weights, pictures, sample

pub mod images;
pub mod points;

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use diffuse_core::Denoiser;
use diffuse_core::sde::ncsn::{NoiseLevels, annealed_langevin, input_scale};
use diffuse_eval::metrics::max_pairwise_distance;
use rand_chacha::ChaCha8Rng;

use crate::args::{EvalArgs, Method, SampleArgs, SamplerKind};
use crate::axes::KindName;
use crate::config::{NcsnConfig, RunConfig, ScoreConfig, SdeName};
use crate::families::likelihood::OdeProcess;
use crate::families::score;
use crate::progress;

/// The NCSN family (see the module docs).
pub struct Ncsn;

/// The run's `[ncsn]` section (a validated config of this family has one).
fn section(config: &RunConfig) -> Result<&NcsnConfig> {
    config
        .ncsn
        .as_ref()
        .context("an NCSN run config has an [ncsn] section")
}

/// NCSN's objective on the run's levels.
fn objective<const D: usize>(config: &RunConfig) -> Result<diffuse_train::Ncsn<D>> {
    let section = section(config)?;
    Ok(diffuse_train::Ncsn {
        levels: section.levels()?,
        sigma_data: section.sigma_data,
    })
}

/// A fresh run's levels from its training examples `rows` (model space): sigma_1 from their
/// largest pairwise distance (Technique 1), L for their dimension (Technique 2), where the
/// config leaves them unset.
fn prepare(config: &mut RunConfig, rows: &[f32], dim: usize) -> Result<()> {
    let max = max_pairwise_distance(rows, dim);
    let section = config
        .ncsn
        .as_mut()
        .context("an NCSN run config has an [ncsn] section")?;
    section.fill(max, dim)?;
    let levels = section.levels()?;
    eprintln!(
        "NCSN: {} noise levels from {:.4} (the largest distance between {} training examples: {max:.4}) to {:.4}, ratio {:.4}",
        levels.len(),
        levels.sigma_max(),
        rows.len() / dim,
        levels.sigma_min(),
        levels.ratio()
    );
    Ok(())
}

/// s_theta(x, sigma_i) = -net(c_in x, c(sigma_i)) / sigma_i for a batch at level `i`.
fn score<const D: usize>(
    net: &dyn Denoiser<D>,
    section: &NcsnConfig,
    levels: &NoiseLevels,
    x: Tensor<D>,
    i: usize,
) -> Tensor<D> {
    let sigma = levels.sigmas()[i];
    let batch = x.dims()[0];
    let c = levels.condition(sigma) as f32;
    let t = Tensor::<1>::from_data(TensorData::new(vec![c; batch], [batch]), &x.device());
    let x = x.mul_scalar(input_scale(sigma, section.sigma_data) as f32);
    net.denoise(x, t).div_scalar(-sigma as f32)
}

/// The VE SDE whose marginals pass through the run's levels (see the module docs), with the
/// score family's defaults for its samplers on this kind of data.
fn as_ve(section: &NcsnConfig, kind: KindName) -> Result<ScoreConfig> {
    let levels = section.levels()?;
    let mut ve = ScoreConfig::for_kind(SdeName::Ve, kind);
    ve.sigma_min = levels.sigma_min();
    ve.sigma_max = Some(levels.sigma_max());
    ve.sigma_data = section.sigma_data;
    ve.validate()?;
    Ok(ve)
}

/// `sample` on an NCSN run from `z` ~ N(0, I): annealed Langevin (the default; `--steps`, its
/// steps per level), or a sampler of the VE SDE of its levels. Returns the samples and what
/// drew them.
fn draw<const D: usize>(
    net: &dyn Denoiser<D>,
    args: &SampleArgs,
    section: &NcsnConfig,
    kind: KindName,
    z: Tensor<D>,
    rng: &mut ChaCha8Rng,
) -> Result<(Tensor<D>, String)> {
    match args.solver.sampler {
        None | Some(SamplerKind::Langevin) => {
            if let Some(flag) = args.solver.given().first() {
                bail!(
                    "{flag} does not apply to annealed Langevin sampling (NCSN runs take --steps, Langevin steps per level)"
                );
            }
            let steps = match args.solver.steps {
                Some(0) => bail!("--steps must be at least 1"),
                Some(steps) => steps,
                None => section.langevin_steps,
            };
            let x = langevin(net, section, steps, z, rng, &mut |_, _| {})?;
            Ok((x, format!("annealed Langevin, {steps} steps per level")))
        }
        Some(kind_of @ (SamplerKind::Ddpm | SamplerKind::Ddim)) => bail!(
            "--sampler {} does not apply to NCSN runs; they sample with langevin (the default), or pc, sde, ode, euler, heun or dpm-solver++ on the VE SDE of their levels",
            score::kind_name(kind_of)
        ),
        Some(_) => {
            let ve = as_ve(section, kind)?;
            let (solver, label) = score::sampler::<D>(&args.solver, &ve)?;
            let x = score::run_solver(solver.as_ref(), net, z, rng, &label)?;
            Ok((x, format!("{label}, on the VE SDE of the levels")))
        }
    }
}

/// `eval --nll` on an NCSN run: the probability-flow ODE of the VE SDE of its levels.
fn ode_process(config: &RunConfig, kind: KindName) -> Result<OdeProcess> {
    score::ode_process(&as_ve(section(config)?, kind)?)
}

/// `eval --nll` takes `--method ode` only.
fn check_method(args: &EvalArgs) -> Result<()> {
    if args.method != Method::Ode {
        bail!(
            "an NCSN run's likelihood is the probability-flow ODE's of the VE SDE of its levels: --method ode (the variational bound --method vlb is DDPM's)"
        );
    }
    Ok(())
}

/// Annealed Langevin from `z` ~ N(0, I), scaled to the first level (the VE prior
/// N(0, sigma_1^2 I)), with a progress bar; `observe(i, x)` sees x after each level's steps.
fn langevin<const D: usize>(
    net: &dyn Denoiser<D>,
    section: &NcsnConfig,
    steps: usize,
    z: Tensor<D>,
    rng: &mut ChaCha8Rng,
    observe: &mut dyn FnMut(usize, &Tensor<D>),
) -> Result<Tensor<D>> {
    let levels = section.levels()?;
    let eps = section.step_size_for(&levels, steps);
    let pb = progress::bar(levels.len() * steps, "annealed Langevin");
    let mut score_at = |x: Tensor<D>, i: usize| {
        pb.inc(1);
        Ok(score(net, section, &levels, x, i))
    };
    let x = z.mul_scalar(levels.sigma_max() as f32);
    let out = annealed_langevin(
        &mut score_at,
        &levels,
        steps,
        eps,
        x,
        rng,
        section.denoise,
        observe,
    );
    pb.finish_and_clear();
    eprintln!(
        "{} network evaluations ({} levels x {steps} Langevin steps, eps {eps:.3e}{})",
        levels.len() * steps + usize::from(section.denoise),
        levels.len(),
        if section.denoise {
            ", then one denoising step"
        } else {
            ""
        }
    );
    Ok(out?)
}
