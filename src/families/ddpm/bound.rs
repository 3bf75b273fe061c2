//! `diffuse eval --nll` for the DDPM family: the variational bound on held-out data (DDPM eq.
//! 5), term by term, in bits/dim with a 95% confidence interval over the examples, or with
//! `--method ode` the probability-flow ODE's exact likelihood (`crate::families::likelihood`).
//!
//! - 2-D runs: the held-out points of the run (regenerated from its config and seed), the
//!   Gaussian-density decoder; the NLL is a density in the data's own units, so it adds
//!   sum_d ln std_d of the run's standardization to the model-space bound.
//! - Image runs: the first `--n` test images (MNIST / Fashion-MNIST / CIFAR-10 test sets), the
//!   discretized decoder over 256 bins (DDPM section 3.3): the bound is on the 8-bit data itself,
//!   so no dequantization noise is added.
//!
//! Writes `nll.json`, `nll_per_t.csv` and `nll_per_t.png` into the run directory; with
//! `--clip-x0 R` (the x_0 estimate clamped to [-R, R], as a sampler with `clip_sample` does) the
//! same files are named `nll_clip_x0.*`, so both evaluations can sit side by side.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::discrete::bound::{BoundEstimate, ReverseProcess, evaluate_bound};
use diffuse_core::gaussian::{Decoder, bits_per_dim};
use diffuse_data::images::to_model_space;
use diffuse_eval::plots::line_plot;
use diffuse_train::checkpoint::save_json;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::args::{EvalArgs, Method, stem};
use crate::config::RunConfig;
use crate::families::interval;
use crate::families::likelihood::{self, OdeProcess};
use crate::kinds::points::evaluation_points;
use crate::kinds::points::load_mlp as load_run;
use crate::progress;
use diffuse_eval::metrics::mean_and_ci95;

#[derive(Serialize)]
struct NllReport {
    examples: usize,
    dims: usize,
    /// Timesteps visited, of the chain's `timesteps` (fewer: an estimate, `--t-samples`).
    t_evaluated: usize,
    timesteps: usize,
    decoder: Decoder,
    /// The clamp on the x_0 estimate (`--clip-x0`), if any.
    clip_x0: Option<f64>,
    /// Mean bound, bits/dim, and the half-width of its 95% interval over examples (null for
    /// one example, from which no interval can be estimated).
    bits_per_dim: f64,
    bits_per_dim_ci95: Option<f64>,
    /// Mean bound in nats per example.
    nats: f64,
    /// Mean of each term in bits/dim: prior L_T, decoder L_0, and the sum of the KL terms.
    prior_bits_per_dim: f64,
    decoder_bits_per_dim: f64,
    kl_terms_bits_per_dim: f64,
    /// Added to every example's nats for 2-D runs: sum_d ln std_d of the standardization.
    log_det_standardizer: f64,
    /// The bound's terms summed over ranges of t (0-based; t = 0 is the decoder), bits/dim,
    /// scaled like the total where only some t were visited.
    per_t_ranges: Vec<(String, f64)>,
}

/// The timesteps visited and the weight of each term in the total: every t with weight 1, or
/// (with `k`) a stratified estimate: the decoder t = 0 and the first k / 2 KL terms exactly (they
/// are the largest and change fastest with t), and k - k / 2 of the rest drawn uniformly without
/// replacement, each weighted by (the rest's size) / (k - k / 2).
fn visited_timesteps(big_t: usize, k: Option<usize>, seed: u64) -> Vec<(usize, f64)> {
    use rand::seq::SliceRandom;
    let Some(k) = k.filter(|&k| k + 1 < big_t) else {
        return (0..big_t).map(|t| (t, 1.0)).collect();
    };
    let exact = k / 2;
    let mut rest: Vec<usize> = (exact + 1..big_t).collect();
    let drawn = (k - exact).max(1);
    let weight = rest.len() as f64 / drawn as f64;
    rest.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7157));
    rest.truncate(drawn);
    rest.sort_unstable();
    (0..=exact)
        .map(|t| (t, 1.0))
        .chain(rest.into_iter().map(|t| (t, weight)))
        .collect()
}

/// Runs the bound over `batches` and merges the estimates (example-weighted means per t).
fn bound_in_batches<const D: usize, M: diffuse_core::Denoiser<D>>(
    model: &M,
    schedule: &diffuse_core::NoiseSchedule,
    process: ReverseProcess,
    batches: Vec<Tensor<D>>,
    timesteps: &[(usize, f64)],
    seed: u64,
) -> Result<BoundEstimate> {
    let pb = progress::bar(timesteps.len() * batches.len(), "evaluating the bound");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut merged: Option<(BoundEstimate, usize)> = None;
    for x0 in batches {
        let n = x0.dims()[0];
        let est = evaluate_bound(model, schedule, process, x0, timesteps, &mut rng, |_| {
            pb.inc(1)
        })?;
        merged = Some(match merged {
            None => (est, n),
            Some((mut acc, count)) => {
                acc.per_example.extend(est.per_example);
                for (a, v) in acc.per_t.iter_mut().zip(est.per_t) {
                    *a = (*a * count as f64 + v * n as f64) / (count + n) as f64;
                }
                acc.prior = (acc.prior * count as f64 + est.prior * n as f64) / (count + n) as f64;
                (acc, count + n)
            }
        });
    }
    pb.finish_and_clear();
    merged.map(|m| m.0).context("no examples to evaluate")
}

/// Splits row-major examples of `per_example` values each into tensors of at most `batch` rows.
fn batches<const D: usize>(
    data: &[f32],
    shape_of_one: &[usize],
    n: usize,
    batch: usize,
    device: &Device,
) -> Vec<Tensor<D>> {
    let per: usize = shape_of_one.iter().product();
    (0..n)
        .step_by(batch.max(1))
        .map(|start| {
            let m = batch.min(n - start);
            let mut shape = [0usize; D];
            shape[0] = m;
            shape[1..].copy_from_slice(shape_of_one);
            Tensor::from_data(
                TensorData::new(data[start * per..(start + m) * per].to_vec(), shape),
                device,
            )
        })
        .collect()
}

fn report(
    dir: &Path,
    stem: &str,
    est: &BoundEstimate,
    dims: usize,
    process: &ReverseProcess,
    log_det: f64,
    timesteps: &[(usize, f64)],
) -> Result<NllReport> {
    let t_evaluated = timesteps.len();
    // A bound that is NaN or inf is not a result: say which term, write nothing.
    if let Some(t) = timesteps
        .iter()
        .map(|&(t, _)| t)
        .find(|&t| !est.per_t[t].is_finite())
    {
        bail!(
            "the bound's term at t = {t} is {}; the model's output is not finite there (nothing was written)",
            est.per_t[t]
        );
    }
    if !est.prior.is_finite() || est.per_example.iter().any(|v| !v.is_finite()) {
        bail!("the bound is not finite for every example (nothing was written)");
    }
    let mut weight = vec![0.0; est.per_t.len()];
    for &(t, w) in timesteps {
        weight[t] = w;
    }
    // sum over t in [start, end] of weight_t * mean L_t.
    let weighted = |start: usize, end: usize| -> f64 {
        (start..=end)
            .filter(|&t| weight[t] > 0.0)
            .map(|t| weight[t] * est.per_t[t])
            .sum()
    };
    let n = est.per_example.len();
    let nats: Vec<f64> = est.per_example.iter().map(|v| v + log_det).collect();
    let (mean, ci) = mean_and_ci95(&nats);
    let big_t = est.per_t.len();
    let kl_sum = weighted(1, big_t - 1);
    let mut per_t_ranges = Vec::new();
    let mut start = 0;
    for end in [0, 1, 10, 100, big_t - 1] {
        if end < start || end >= big_t {
            continue;
        }
        let label = if start == end {
            format!("{{{start}}}")
        } else {
            format!("{start}..={end}")
        };
        per_t_ranges.push((label, bits_per_dim(weighted(start, end), dims)));
        start = end + 1;
    }
    let r = NllReport {
        examples: n,
        dims,
        t_evaluated,
        timesteps: big_t,
        decoder: process.decoder,
        clip_x0: process.clip_x0,
        bits_per_dim: bits_per_dim(mean, dims),
        bits_per_dim_ci95: ci.map(|ci| bits_per_dim(ci, dims)),
        nats: mean,
        prior_bits_per_dim: bits_per_dim(est.prior, dims),
        decoder_bits_per_dim: bits_per_dim(est.per_t[0], dims),
        kl_terms_bits_per_dim: bits_per_dim(kl_sum, dims),
        log_det_standardizer: log_det,
        per_t_ranges,
    };
    save_json(&r, &dir.join(format!("{stem}.json")))?;
    let mut csv = String::from("t,mean_term_nats,mean_term_bits_per_dim\n");
    let mut points = Vec::new();
    for (t, v) in est.per_t.iter().enumerate().filter(|(_, v)| v.is_finite()) {
        csv.push_str(&format!("{t},{v},{}\n", bits_per_dim(*v, dims)));
        points.push((t as f64, bits_per_dim(*v, dims)));
    }
    diffuse_fs::write(&dir.join(format!("{stem}_per_t.csv")), csv.as_bytes())?;
    line_plot(
        &dir.join(format!("{stem}_per_t.png")),
        "terms of the bound: L_0 (t = 0) and L_t = KL(q || p) per t",
        &points,
        "t",
        "bits/dim",
        points.iter().all(|p| p.1 > 0.0),
    )?;
    Ok(r)
}

/// `eval --nll` on a DDPM run of points: its held-out split, or `--data`.
pub fn nll_points(args: &EvalArgs, dir: &Path, _: &RunConfig) -> Result<()> {
    let device = crate::device::device();
    match args.method {
        Method::Ode => likelihood::print(
            args,
            dir,
            &likelihood::eval_points(args, &device, |c| OdeProcess::chain(&c.scheduler_config()))?,
        ),
        Method::Vlb => print_bound(args, dir, &eval_points(args, &device)?),
    }
}

/// `eval --nll` on a DDPM run of images: the first `--n` images of its dataset's test split.
pub fn nll_images(args: &EvalArgs, dir: &Path, _: &RunConfig) -> Result<()> {
    if args.data.is_some() {
        bail!("--data applies to 2-D runs; an image run evaluates its dataset's test split");
    }
    let device = crate::device::device();
    match args.method {
        Method::Ode => {
            let ad = device.clone().autodiff();
            let config = RunConfig::load_run(&args.run)?;
            let pipeline = crate::memory::load_pipeline(&args.run, &ad)?;
            let process = OdeProcess::chain(&pipeline.scheduler)?;
            let unet_config = &pipeline.unet_config;
            let r =
                likelihood::eval_images(args, &config, &pipeline.unet, unet_config, process, &ad)?;
            likelihood::print(args, dir, &r)
        }
        Method::Vlb => print_bound(args, dir, &eval_images(args, &device)?),
    }
}

fn print_bound(args: &EvalArgs, dir: &Path, r: &NllReport) -> Result<()> {
    println!(
        "NLL bound: {:.4} {}; {} of T timesteps{}{})",
        r.bits_per_dim,
        interval(r.bits_per_dim_ci95, r.examples),
        r.t_evaluated,
        match r.clip_x0 {
            Some(c) => format!("; x_0 estimate clamped to [-{c}, {c}]"),
            None => String::new(),
        },
        // --t-samples K >= T - 1 visits every t: the bound itself, not an estimate.
        if r.t_evaluated < r.timesteps {
            ", an estimate: the interval does not cover the draw of t"
        } else {
            ""
        }
    );
    println!(
        "  prior L_T {:.5}, decoder L_0 {:.4}, KL terms {:.4} bits/dim",
        r.prior_bits_per_dim, r.decoder_bits_per_dim, r.kl_terms_bits_per_dim
    );
    for (range, bits) in &r.per_t_ranges {
        println!("  t in {range}: {bits:.4} bits/dim");
    }
    println!(
        "wrote {}",
        dir.join(format!("{}.json", stem(args))).display()
    );
    Ok(())
}

fn eval_points(args: &EvalArgs, device: &Device) -> Result<NllReport> {
    let (config, model) = load_run(&args.run, true, device)?;
    let schedule = config.schedule.build()?;
    let (held, log_det) = evaluation_points(&config, args.data.as_deref())?;
    let n = args.n.unwrap_or(held.len()).min(held.len());
    crate::memory::check_mlp_sampling(config.mlp()?, args.batch_size.min(n))
        .context("lower --batch-size")?;
    let dim = held.dim;
    let ts = visited_timesteps(schedule.num_timesteps(), args.t_samples, args.seed);
    let process = ReverseProcess {
        prediction: config.prediction,
        variance: config.train.loss.variance,
        decoder: Decoder::Continuous,
        clip_x0: args.clip_x0,
    };
    let est = bound_in_batches::<2, _>(
        &model,
        &schedule,
        process,
        batches(&held.data, &[dim], n, args.batch_size, device),
        &ts,
        args.seed,
    )?;
    report(&args.run, &stem(args), &est, dim, &process, log_det, &ts)
}

fn eval_images(args: &EvalArgs, device: &Device) -> Result<NllReport> {
    let dir = &args.run;
    let config = crate::config::RunConfig::load_run(dir)?;
    let pipeline = crate::memory::load_pipeline(dir, device)?;
    let schedule = pipeline.scheduler.schedule()?;
    let test = crate::kinds::images::load_images(&config, diffuse_data::Split::Test)?;
    let n = args.n.unwrap_or(100).min(test.len());
    let data: Vec<f32> = test.pixels[..n * test.image_size()]
        .iter()
        .map(|&v| to_model_space(v))
        .collect();
    let one = [test.channels, test.height, test.width];
    crate::memory::check_unet_sampling(
        &pipeline.unet_config,
        test.height,
        test.width,
        args.batch_size.min(n),
    )
    .context("lower --batch-size")?;
    let ts = visited_timesteps(schedule.num_timesteps(), args.t_samples, args.seed);
    let process = ReverseProcess {
        prediction: pipeline.scheduler.prediction_type,
        variance: config.train.loss.variance,
        decoder: Decoder::Discretized,
        clip_x0: args.clip_x0,
    };
    let est = bound_in_batches::<4, _>(
        &pipeline.unet,
        &schedule,
        process,
        batches(&data, &one, n, args.batch_size, device),
        &ts,
        args.seed,
    )?;
    report(
        dir,
        &stem(args),
        &est,
        one.iter().product(),
        &process,
        0.0,
        &ts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_timesteps_cover_the_chain_with_weights_summing_to_t() {
        let all = visited_timesteps(1000, None, 0);
        assert_eq!(all.len(), 1000);
        assert!(all.iter().all(|&(_, w)| w == 1.0));
        let some = visited_timesteps(1000, Some(100), 0);
        assert_eq!(some.len(), 101);
        // t = 0..=50 exactly, then 50 distinct draws from 51..1000.
        assert!((0..=50).all(|t| some[t] == (t, 1.0)));
        let mut drawn: Vec<usize> = some[51..].iter().map(|p| p.0).collect();
        drawn.dedup();
        assert_eq!(drawn.len(), 50);
        assert!(drawn.iter().all(|&t| (51..1000).contains(&t)));
        let total: f64 = some.iter().map(|p| p.1).sum();
        assert!((total - 1000.0).abs() < 1e-9, "{total}");
        // Asking for as many as there are is the whole chain.
        assert_eq!(visited_timesteps(10, Some(50), 0).len(), 10);
    }
}
