//! `diffuse eval --nll --method ode`: the exact log-likelihood of the probability-flow ODE
//! (`diffuse_core::solver::likelihood`), in bits/dim with a 95% interval over the examples,
//! for every family with a process ([`OdeProcess`]: DDPM's chain, a score SDE).
//!
//! - 2-D runs: the exact divergence (two backward passes per evaluation); the density is in the
//!   data's own units (the standardization's sum_d ln std_d is added, as for the bound).
//! - Image runs: Hutchinson-Skilling's estimate of the divergence with one Gaussian probe per
//!   example, fixed for the solve; pixels are dequantized uniformly, x = (k + u) / 256 mapped to
//!   [-1, 1] with u ~ U(0, 1), and bits/dim adds log2(128) = 7, the log-width of a pixel's bin
//!   (-log2 (2 / 256)), so the figure bounds the 8-bit data's (score_sde's convention).
//!
//! Writes `nll_ode.json` with the fields of `nll.json` that apply to it, and the solver's cost.

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::Denoiser;
use diffuse_core::level::{NoiseClock, Sigma, SigmaTable};
use diffuse_core::solver::Tolerance;
use diffuse_core::solver::adapter::Adapter;
use diffuse_core::solver::likelihood::{Divergence, ode_log_likelihood};
use diffuse_diffusers::SchedulerConfig;
use diffuse_train::checkpoint::save_json;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::args::{EvalArgs, stem};
use crate::config::RunConfig;
use crate::kinds::points::load_mlp as load_run;
use crate::progress;

#[derive(Serialize)]
pub struct OdeReport {
    pub examples: usize,
    pub dims: usize,
    pub method: &'static str,
    /// "exact" (2-D) or "hutchinson" (images).
    pub divergence: &'static str,
    pub rtol: f64,
    pub atol: f64,
    /// Network evaluations, summed over batches (each batch is one ODE solve).
    pub nfe: usize,
    pub bits_per_dim: f64,
    pub bits_per_dim_ci95: Option<f64>,
    /// Mean negative log-likelihood in nats per example.
    pub nats: f64,
    /// 2-D runs: sum_d ln std_d of the standardization, added to every example's nats.
    pub log_det_standardizer: f64,
    /// Images: the dequantization offset in bits/dim (log2 128 = 7); 0 for 2-D data.
    pub dequantization_bits_per_dim: f64,
}

/// The process whose probability-flow ODE is solved: how the network is read, its clock, and
/// the noise levels the solve runs between.
pub struct OdeProcess {
    pub adapter: Adapter,
    pub clock: Box<dyn NoiseClock>,
    pub sigma_min: Sigma,
    pub sigma_max: Sigma,
}

impl OdeProcess {
    /// A DDPM chain's, over its whole table.
    pub fn chain(scheduler: &SchedulerConfig) -> Result<Self> {
        let schedule = scheduler.schedule()?;
        let table = SigmaTable::new(&schedule.alphas_cumprod);
        Ok(Self {
            adapter: Adapter::DiscreteVp(scheduler.adapter(&schedule, None)?),
            sigma_min: table.sigma_min(),
            sigma_max: table.sigma_max(),
            clock: Box::new(table),
        })
    }
}

/// What the likelihood needs besides the network.
pub struct OdeEval {
    pub process: OdeProcess,
    pub tol: Tolerance,
    pub batch_size: usize,
    pub log_det: f64,
    pub seed: u64,
    /// 8-bit images: Hutchinson's divergence and uniform dequantization; else points, with the
    /// exact divergence.
    pub images: bool,
}

/// log2 of the 128 bins per unit of [-1, 1]: -log2 of a pixel bin's width 2 / 256.
const DEQUANTIZATION_BITS: f64 = 7.0;

impl OdeEval {
    /// Negative log-likelihoods in nats per example, batch by batch, for data already in model
    /// space; `shape_of_one` is one example's shape.
    pub fn nats<const D: usize>(
        &self,
        net: &dyn Denoiser<D>,
        data: &[f32],
        shape_of_one: &[usize],
        device: &Device,
    ) -> Result<(Vec<f64>, usize)> {
        let p = &self.process;
        let model = p.adapter.wrap(net);
        let per: usize = shape_of_one.iter().product();
        let n = data.len() / per;
        let pb = progress::spinner("ODE likelihood: network evaluations");
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x0DE);
        let (mut nats, mut nfe) = (Vec::with_capacity(n), 0);
        for start in (0..n).step_by(self.batch_size) {
            let m = self.batch_size.min(n - start);
            let mut shape = [0usize; D];
            shape[0] = m;
            shape[1..].copy_from_slice(shape_of_one);
            let x = Tensor::<D>::from_data(
                TensorData::new(data[start * per..(start + m) * per].to_vec(), shape),
                device,
            );
            let divergence = if self.images {
                Divergence::Hutchinson(diffuse_core::coef::randn(&mut rng, shape, device))
            } else {
                Divergence::Exact
            };
            let done = nfe;
            let got = ode_log_likelihood(
                model.as_ref(),
                p.clock.as_ref(),
                x,
                p.sigma_min,
                p.sigma_max,
                &divergence,
                self.tol,
                &mut |k| pb.set_position((done + k) as u64),
            )?;
            nfe += got.stats.nfe;
            nats.extend(got.log_p.iter().map(|lp| -lp + self.log_det));
        }
        pb.finish_and_clear();
        Ok((nats, nfe))
    }
}

/// The report from per-example nats; written to `path`.
pub fn report(
    nats: &[f64],
    dims: usize,
    nfe: usize,
    eval: &OdeEval,
    path: &std::path::Path,
) -> Result<OdeReport> {
    let n = nats.len();
    if let Some(v) = nats.iter().find(|v| !v.is_finite()) {
        bail!("the ODE likelihood is {v} for some example (nothing was written)");
    }
    let (mean, ci) = diffuse_eval::metrics::mean_and_ci95(nats);
    let to_bits = |nats: f64| nats / (dims as f64 * std::f64::consts::LN_2);
    let dequantization = if eval.images {
        DEQUANTIZATION_BITS
    } else {
        0.0
    };
    let r = OdeReport {
        examples: n,
        dims,
        method: "ode",
        divergence: if eval.images { "hutchinson" } else { "exact" },
        rtol: eval.tol.rtol,
        atol: eval.tol.atol,
        nfe,
        bits_per_dim: to_bits(mean) + dequantization,
        bits_per_dim_ci95: ci.map(to_bits),
        nats: mean,
        log_det_standardizer: eval.log_det,
        dequantization_bits_per_dim: dequantization,
    };
    save_json(&r, path)?;
    Ok(r)
}

/// `eval --nll --method ode` on a run of points, with the process its config gives.
pub fn eval_points(
    args: &EvalArgs,
    device: &Device,
    process: impl FnOnce(&RunConfig) -> Result<OdeProcess>,
) -> Result<OdeReport> {
    let ad = device.clone().autodiff();
    let (config, model) = load_run(&args.run, true, &ad)?;
    let process = process(&config)?;
    eval_points_with(args, &config, &model, process, &ad)
}

/// [`eval_points`] for a network already loaded (on an autodiff device) and its process.
pub fn eval_points_with(
    args: &EvalArgs,
    config: &RunConfig,
    model: &dyn Denoiser<2>,
    process: OdeProcess,
    ad: &Device,
) -> Result<OdeReport> {
    let (held, log_det) = crate::kinds::points::evaluation_points(config, args.data.as_deref())?;
    let n = args.n.unwrap_or(held.len()).min(held.len());
    let eval = ode_eval(args, process, log_det, false)?;
    let (nats, nfe) = eval.nats::<2>(model, &held.data[..n * held.dim], &[held.dim], ad)?;
    report(
        &nats,
        held.dim,
        nfe,
        &eval,
        &args.run.join(format!("{}.json", stem(args))),
    )
}

fn ode_eval(args: &EvalArgs, process: OdeProcess, log_det: f64, images: bool) -> Result<OdeEval> {
    Ok(OdeEval {
        process,
        tol: crate::args::tolerance(args.rtol, args.atol)?,
        batch_size: args.batch_size,
        log_det,
        seed: args.seed,
        images,
    })
}

/// `eval --nll --method ode` on an image run: the first `--n` test images of its dataset,
/// dequantized, under `unet` (on an autodiff device) and the process.
pub fn eval_images<U: Denoiser<4>>(
    args: &EvalArgs,
    config: &RunConfig,
    unet: &U,
    unet_config: &diffuse_nn::UnetConfig,
    process: OdeProcess,
    device: &Device,
) -> Result<OdeReport> {
    let test = crate::kinds::images::load_images(config, diffuse_data::Split::Test)?;
    let n = args.n.unwrap_or(100).min(test.len());
    // Uniform dequantization: (k + u) / 256 in [0, 1], mapped to [-1, 1].
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xDE9);
    let data: Vec<f32> = test.pixels[..n * test.image_size()]
        .iter()
        .map(|&k| ((k as f32 + rng.random::<f32>()) / 256.0) * 2.0 - 1.0)
        .collect();
    let one = [test.channels, test.height, test.width];
    // Each evaluation keeps a backward pass through the U-Net for a whole batch, as training does.
    crate::memory::check_unet_training(unet_config, test.height, args.batch_size.min(n))
        .context("lower --batch-size")?;
    let eval = ode_eval(args, process, 0.0, true)?;
    let (nats, nfe) = eval.nats::<4>(unet, &data, &one, device)?;
    report(
        &nats,
        one.iter().product(),
        nfe,
        &eval,
        &args.run.join(format!("{}.json", stem(args))),
    )
}

/// Prints a likelihood's summary line and where it was written.
pub fn print(args: &EvalArgs, dir: &std::path::Path, r: &OdeReport) -> Result<()> {
    println!(
        "NLL (probability-flow ODE, {} divergence): {:.4} {}; {} network evaluations)",
        r.divergence,
        r.bits_per_dim,
        crate::families::interval(r.bits_per_dim_ci95, r.examples),
        r.nfe
    );
    println!(
        "wrote {}",
        dir.join(format!("{}.json", stem(args))).display()
    );
    Ok(())
}
