//! The variational diffusion model (Kingma et al. 2021; `--family vdm`): the run's noise
//! predictor (the MLP on points, the U-Net on images) with a schedule gamma(t) = -log SNR(t)
//! (`diffuse_nn::gamma`: the monotone network with learned gamma(0) and gamma(1), or the fixed
//! linear one), both in `model.safetensors`, trained on the VDM bound
//! (`diffuse_train::elbo::Vdm`, `diffuse_core::vdm`): prior + reconstruction + the
//! continuous-time diffusion loss (or its T-step version, `vdm.loss_steps`), times drawn
//! antithetically. The network is told 999 (gamma - gamma_min) / (gamma_max - gamma_min).
//!
//! Sampling: by default the VDM's ancestral sampler p(z_s | z_t) over `vdm.sample_steps` equal
//! steps of t (`--steps` overrides the count). Every other sampler of the project runs on the
//! run's schedule as a discrete chain of T = 1000 steps ([`Chain`]: alpha-bar_k =
//! sigmoid(-gamma((k + 1) / T)), a network told timestep k reads gamma((k + 1) / T); trailing
//! timestep spacing, so that every sampler's first step is at t = 1), the chain
//! `scheduler/scheduler_config.json` holds as diffusers' `trained_betas`: `--sampler ddpm`,
//! `ddim`, `euler`, `heun`, `dpm-solver++`, `ode`, `sde`.
//!
//! `eval --nll`: the continuous-time bound, its diffusion term averaged over `--t-samples`
//! (default 64) stratified times per example; `--method ode`, the probability-flow ODE's
//! likelihood on the same chain (2-D runs).
//!
//! Written with the run: `schedule.csv` (gamma(t), SNR(t) and alpha_t^2 at 1,001 times),
//! `schedule.png` (log SNR against t beside the fixed linear one, DDPM's linear betas and the
//! cosine schedule) and `scheduler/scheduler_config.json` (the chain above).
//!
//! - `points` / `images` — the family on each kind of data: weights, pictures, sample

pub mod images;
pub mod points;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use diffuse_core::Denoiser;
use diffuse_core::vdm::{DataModel, DiffusionTime, VdmModel, vdm_terms};
use diffuse_eval::plots::lines_plot;
use diffuse_nn::gamma::{Gamma, GammaKind, Vdm as VdmNet};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::args::{EvalArgs, Method, SolverChoice};
use crate::config::{RunConfig, VdmConfig};
use crate::families::bounds::{self, BoundReport, Examples, host};
use crate::progress;
use diffuse_core::ScheduleConfig;
use diffuse_core::discrete::timesteps::TimestepSpacing;
use diffuse_diffusers::SchedulerConfig;

/// The VDM family (see the module docs).
pub struct Vdm;

/// The run's `[vdm]` section (a validated config of this family has one).
pub(crate) fn section(config: &RunConfig) -> Result<&VdmConfig> {
    config
        .vdm
        .as_ref()
        .context("a vdm run config has a [vdm] section")
}

/// The VDM bound of the run's `[vdm]` section, with the decoder `data` (the kind's, or
/// continuous for latents).
pub(crate) fn objective<const D: usize>(
    config: &RunConfig,
    data: DataModel,
) -> Result<diffuse_train::elbo::Vdm<D>> {
    let s = section(config)?;
    Ok(diffuse_train::elbo::Vdm {
        time: s.time(),
        antithetic: s.antithetic,
        data,
        minimize_variance: s.minimize_variance,
    })
}

pub(crate) fn describe(params: usize, gamma: &Gamma, what: &str) -> String {
    format!(
        "a {params}-parameter VDM ({what}, {} schedule)",
        if gamma.is_learned() {
            "learned"
        } else {
            "fixed linear"
        }
    )
}

/// The steps of the VDM's own ancestral sampler (`--steps`, else the run's).
fn sample_steps(choice: &SolverChoice, section: &VdmConfig) -> Result<usize> {
    match choice.steps {
        Some(0) => bail!("--steps must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(section.sample_steps),
    }
}

/// Steps of the chain through which the project's samplers see a VDM.
pub const CHAIN_STEPS: usize = 1000;

/// The run's schedule as a DDPM chain of [`CHAIN_STEPS`] steps, alpha-bar_k =
/// sigmoid(-gamma(t_k)) at t_k = (k + 1) / T, written as diffusers' `trained_betas`; epsilon
/// prediction, x_0 clipped to [-1, 1] for images, trailing timestep spacing.
pub fn scheduler_config(gamma: &Gamma, images: bool, device: &Device) -> Result<SchedulerConfig> {
    let t: Vec<f64> = (1..=CHAIN_STEPS)
        .map(|k| k as f64 / CHAIN_STEPS as f64)
        .collect();
    let abar: Vec<f64> = gamma
        .values(&t, device)
        .into_iter()
        .map(|g| 1.0 / (1.0 + g.exp()))
        .collect();
    let betas: Vec<f64> = (0..CHAIN_STEPS)
        .map(|k| 1.0 - abar[k] / if k == 0 { 1.0 } else { abar[k - 1] })
        .collect();
    let schedule = ScheduleConfig {
        num_train_timesteps: CHAIN_STEPS,
        ..ScheduleConfig::default()
    };
    let mut c = SchedulerConfig::for_trained(
        &schedule,
        diffuse_core::Prediction::Epsilon,
        images.then_some(1.0),
        false,
    );
    c.trained_betas = Some(betas);
    // The first step at t = 1, where the ancestral sampler starts: diffusers' default "leading"
    // spacing starts 50 steps at t = 0.981, which on a latent VDM whose learned log-SNR fell
    // steeply near t = 1 gave DDPM FD_LeNet 238 against its ancestral sampler's 140 (trailing:
    // 140.0, the same; DDIM 302 -> 208; experiments/latent).
    c.timestep_spacing = Some(TimestepSpacing::Trailing);
    c.schedule()
        .context("the run's learned schedule as a chain")?;
    Ok(c)
}

/// A VDM's noise predictor as a network of its chain (see [`scheduler_config`]): told timestep
/// k (fractional for the solvers), it reads gamma((k + 1) / T).
pub struct Chain<'a, N: Module> {
    pub model: &'a VdmNet<N>,
}

impl<const D: usize, N: Module + Denoiser<D>> Denoiser<D> for Chain<'_, N> {
    fn denoise(&self, x_t: Tensor<D>, k: Tensor<1>) -> Tensor<D> {
        let t = k.add_scalar(1.0).div_scalar(CHAIN_STEPS as f32);
        let (gamma, _) = self.model.gamma.forward(t);
        self.model
            .net
            .denoise(x_t, self.model.gamma.condition(gamma))
    }
}

/// Draws from a VDM run: its ancestral sampler without `--sampler`, else that sampler on its
/// chain.
pub(crate) fn draw<const D: usize, N: Module + Denoiser<D>>(
    choice: &SolverChoice,
    section: &VdmConfig,
    model: &VdmNet<N>,
    z: Tensor<D>,
    data: DataModel,
    rng: &mut ChaCha8Rng,
) -> Result<(Tensor<D>, String)> {
    let device = z.device();
    match choice.sampler {
        None => {
            if choice.eta != 0.0
                || choice.karras
                || choice.rtol.is_some()
                || choice.atol.is_some()
                || choice.corrector_steps.is_some()
                || choice.snr.is_some()
            {
                bail!(
                    "--eta, --karras, --rtol, --atol, --corrector-steps and --snr apply to the samplers on the VDM's chain (--sampler ...), not to its ancestral sampler"
                );
            }
            let steps = sample_steps(choice, section)?;
            let x = sample(model, z, steps, data, rng, |_, _| {});
            Ok((x, format!("VDM ancestral, {steps} steps")))
        }
        Some(kind) => {
            let scheduler =
                scheduler_config(&model.gamma, data == DataModel::Discretized, &device)?;
            let solver = crate::families::ddpm::solvers::build::<D>(choice, &scheduler)?;
            let x = crate::families::ddpm::sample::run_solver(
                solver.as_ref(),
                &Chain { model },
                z,
                rng,
            )?;
            let x = match data {
                DataModel::Discretized => x.clamp(-1.0, 1.0),
                DataModel::Continuous => x,
            };
            let steps = crate::families::ddpm::sample::steps_label(choice, CHAIN_STEPS);
            Ok((x, format!("{} on the VDM's chain, {steps}", kind.label())))
        }
    }
}

/// Ancestral sampling with a progress bar.
pub(crate) fn sample<const D: usize, N: Module + Denoiser<D>>(
    model: &VdmNet<N>,
    z: Tensor<D>,
    steps: usize,
    data: DataModel,
    rng: &mut ChaCha8Rng,
    mut observe: impl FnMut(usize, &Tensor<D>),
) -> Tensor<D> {
    let pb = progress::bar(steps, "VDM ancestral sampling");
    let x = diffuse_core::vdm::sample(model, z, steps, data, rng, |i, z| {
        pb.inc(1);
        observe(i, z)
    });
    pb.finish_and_clear();
    x
}

/// gamma(t) at 1,001 times, written as `schedule.csv` and drawn as `schedule.png` (log SNR
/// against t) beside the fixed linear schedule between the same initial endpoints, DDPM's
/// linear betas (1e-4 to 0.02 over 1,000 steps) and the cosine schedule; and the chain of
/// [`scheduler_config`] as `scheduler/scheduler_config.json`.
pub(crate) fn schedule_files(
    dir: &Path,
    gamma: &Gamma,
    images: bool,
    device: &Device,
) -> Result<()> {
    let scheduler = scheduler_config(gamma, images, device)?;
    std::fs::create_dir_all(dir.join("scheduler"))?;
    diffuse_fs::write(
        &dir.join("scheduler").join("scheduler_config.json"),
        serde_json::to_string_pretty(&scheduler)?.as_bytes(),
    )?;
    let n = 1000;
    let t: Vec<f64> = (0..=n).map(|i| i as f64 / n as f64).collect();
    let g = gamma.values(&t, device);
    let mut csv = String::from("t,gamma,log_snr,alpha_sq\n");
    for (t, g) in t.iter().zip(&g) {
        csv += &format!("{t},{g},{},{}\n", -g, 1.0 / (1.0 + g.exp()));
    }
    diffuse_fs::write(&dir.join("schedule.csv"), csv.as_bytes())?;
    let (lo, hi) = gamma.range();
    let linear: Vec<f64> = t.iter().map(|t| -(lo + (hi - lo) * t)).collect();
    let log_snr = |abar: f64| (abar / (1.0 - abar)).ln();
    let mut abar = 1.0;
    let ddpm: Vec<f64> = (0..=n)
        .map(|i| {
            if i > 0 {
                let beta = 1e-4 + (0.02 - 1e-4) * (i - 1) as f64 / (n - 1) as f64;
                abar *= 1.0 - beta;
            }
            log_snr(abar.min(1.0 - 1e-6))
        })
        .collect();
    let f = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    let cosine: Vec<f64> = t
        .iter()
        .map(|&t| log_snr((f(t) / f(0.0)).clamp(1e-6, 1.0 - 1e-6)))
        .collect();
    let series = |name: &str, v: Vec<f64>| {
        (
            name.to_string(),
            t.iter().zip(v).map(|(&t, v)| (t, v)).collect::<Vec<_>>(),
        )
    };
    lines_plot(
        &dir.join("schedule.png"),
        "log SNR(t) = -gamma(t)",
        &[
            series(
                if gamma.is_learned() {
                    "learned"
                } else {
                    "this run (fixed)"
                },
                g.iter().map(|g| -g).collect(),
            ),
            series("fixed linear (VDM)", linear),
            series("DDPM linear betas", ddpm),
            series("cosine", cosine),
        ],
        "t",
        "log SNR",
    )?;
    Ok(())
}

/// `eval --nll` on a VDM run: the continuous-time bound (see the module docs).
fn nll<const D: usize, N: Module + Denoiser<D>>(
    args: &EvalArgs,
    dir: &Path,
    config: &RunConfig,
    model: &VdmNet<N>,
    device: &Device,
) -> Result<()> {
    if args.method == Method::Ode {
        bail!(
            "--method ode on a vdm run is for 2-D runs here; an image run's bound is --method vlb"
        );
    }
    bounds::refuse_chain_flags(args)?;
    if args.iwae_k.is_some() {
        bail!("--iwae-k applies to the vae family");
    }
    let m = args.t_samples.unwrap_or(64).max(1);
    let data = VdmConfig::data_model(config.kind());
    let examples = Examples::of(args, config)?;
    let dims = examples.dims();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x7D3);
    let (mut prior, mut recon, mut diffusion) = (Vec::new(), Vec::new(), Vec::new());
    let per_batch = (args.batch_size / m).max(1);
    let pb = progress::bar(examples.n, "VDM bound");
    for x in examples.batches::<D>(per_batch, device) {
        let b = x.dims()[0];
        // Each example m times, at the stratified times (u + j) / m.
        let mut shape = x.dims();
        let per = dims;
        shape[0] = b * m;
        let flat: Tensor<2> = x.reshape([b, per]);
        let xs: Tensor<D> = flat
            .unsqueeze_dim::<3>(1)
            .repeat_dim(1, m)
            .reshape([b * m, per])
            .reshape(shape);
        let times: Vec<f64> = (0..b)
            .flat_map(|_| {
                let u: f64 = rand::RngExt::random(&mut rng);
                (0..m).map(move |j| (u + j as f64) / m as f64)
            })
            .collect();
        let terms = vdm_terms(model, xs, &times, DiffusionTime::Continuous, data, &mut rng);
        let mean_of = |v: Vec<f64>| -> Vec<f64> {
            v.chunks(m)
                .map(|c| c.iter().sum::<f64>() / m as f64)
                .collect()
        };
        prior.extend(mean_of(host(terms.prior)?));
        recon.extend(mean_of(host(terms.reconstruction)?));
        diffusion.extend(mean_of(host(terms.diffusion)?));
        pb.inc(b as u64);
    }
    pb.finish_and_clear();
    let total: Vec<f64> = (0..prior.len())
        .map(|i| prior[i] + recon[i] + diffusion[i])
        .collect();
    if let Some(bad) = total.iter().find(|v| !v.is_finite()) {
        bail!("the bound is {bad} on some example; the run's weights give no finite likelihood");
    }
    let (bits, ci, nats) = bounds::bits(&total, dims, examples.log_det);
    let terms = vec![
        ("prior".to_string(), prior),
        ("reconstruction".to_string(), recon),
        ("diffusion".to_string(), diffusion),
    ];
    let (g0, g1) = model.gamma_endpoints();
    let mut extra = BTreeMap::new();
    extra.insert("t_samples".into(), m.into());
    extra.insert("gamma_0".into(), host(g0)?[0].into());
    extra.insert("gamma_1".into(), host(g1)?[0].into());
    extra.insert(
        "schedule".into(),
        serde_json::to_value(match model.gamma.is_learned() {
            true => GammaKind::Learned,
            false => GammaKind::FixedLinear,
        })?,
    );
    bounds::write(
        args,
        dir,
        &BoundReport {
            examples: examples.n,
            dims,
            bound: "vdm_continuous".into(),
            bits_per_dim: bits,
            bits_per_dim_ci95: ci,
            nats,
            log_det_standardizer: examples.log_det,
            terms_bits_per_dim: bounds::term_bits(&terms, dims),
            extra,
        },
    )
}
