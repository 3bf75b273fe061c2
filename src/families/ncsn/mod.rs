//! The NCSN family (Song & Ermon 2019, "Generative modeling by estimating gradients of the data
//! distribution"; NCSNv2, Song & Ermon 2020): a network conditioned on the noise level,
//! trained by denoising score matching over L geometric levels, sampled by annealed Langevin
//! dynamics (`diffuse_core::sde::ncsn`). The network predicts the noise z of x = x_0 + sigma z
//! and is told the level as `NoiseLevels::condition` (0 to 999); its score is
//! s(x, sigma) = -net(x, c(sigma)) / sigma (NCSNv2's 1 / sigma output scaling).
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

use crate::args::{SampleArgs, SamplerKind};
use crate::config::{NcsnConfig, RunConfig};
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

/// `sample`'s sampler for an NCSN run: annealed Langevin, and the flags that apply to it.
/// Returns the steps per level.
fn langevin_steps(args: &SampleArgs, section: &NcsnConfig) -> Result<usize> {
    match args.solver.sampler {
        None | Some(SamplerKind::Langevin) => {}
        Some(other) => bail!(
            "--sampler {} does not apply to NCSN runs, which sample by annealed Langevin dynamics (--sampler langevin)",
            other.label()
        ),
    }
    if let Some(flag) = args.solver.given().first() {
        bail!(
            "{flag} does not apply to annealed Langevin sampling (NCSN runs take --steps, Langevin steps per level)"
        );
    }
    match args.solver.steps {
        Some(0) => bail!("--steps must be at least 1"),
        Some(steps) => Ok(steps),
        None => Ok(section.langevin_steps),
    }
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
