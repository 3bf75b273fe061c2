//! `diffuse train`: trains the MLP denoiser on 2-D points and writes a run directory:
//!
//! - `config.json`: the full configuration (with the data standardizer), enough to sample again
//! - `model.safetensors`, `model_ema.safetensors`: weights, written atomically every
//!   `checkpoint_every` steps and at the end
//! - `loss.csv`, `loss.png`: the loss at every step
//! - `forward.png`: the data at 10 evenly spaced steps of the forward process
//! - `reverse.png`: the reverse process (DDPM) at 10 evenly spaced steps
//! - `reverse.csv`: per reverse step, the RMS and largest |coordinate| of x_{t-1}
//! - `samples.png`: generated points over held-out data
//! - `metrics.json`: sliced Wasserstein distances of samples and baselines to held-out points

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use clap::Args;
use diffuse_core::coef::randn;
use diffuse_core::process::q_sample;
use diffuse_core::vlb::ReverseVariance;
use diffuse_data::{Points, Standardizer, ToyDataset, load_points};
use diffuse_eval::metrics::{gaussian_fit_2d, sample_gaussian_2d, sliced_wasserstein};
use diffuse_eval::plots::{DATA_COLOR, Layer, SAMPLE_COLOR, loss_curve, scatter, strip};
use diffuse_nn::Mlp;
use diffuse_train::checkpoint::{load_checkpoint, save_json, save_weights};
use diffuse_train::{Checkpoint, Ddpm, Start, random_batch, train};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{MIN_HELD_OUT, RunConfig};
use crate::image_config::{ImageDataset, ImageRunConfig};
use crate::run_dir::{self, RunHooks};
use crate::sample::{draw_ddpm, to_points};
use crate::{default_run_dir, progress};
use crate::{download, image_train};

#[derive(Args)]
pub struct TrainArgs {
    /// Your own points: `.npy` (float32/float64, shape [N, 2]) or `.csv` (x,y per line).
    #[arg(long, conflicts_with = "dataset")]
    data: Option<PathBuf>,
    /// A built-in 2-D dataset (swiss_roll, two_moons, eight_gaussians, circles, checkerboard) or
    /// an image dataset (mnist, fashion_mnist, cifar10, folder), which trains a U-Net.
    #[arg(long)]
    dataset: Option<String>,
    /// Image datasets: the folder with the files (default: data/<dataset>). MNIST and
    /// Fashion-MNIST: the four IDX files (.gz or raw); CIFAR-10: the binary batches; folder:
    /// PNG/JPEG images.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Image datasets: fetch MNIST / Fashion-MNIST / CIFAR-10 into --data-dir first.
    #[arg(long)]
    download: bool,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// The run directory (default: runs/<dataset>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A TOML or JSON file with any fields of the run config (see README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint, to its configured steps (--steps N
    /// extends it). The result is the same, bit for bit, as a run that was never stopped.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "data", "dataset", "download", "batch_size", "lr", "seed", "out", "config", "overwrite"
    ])]
    resume: Option<PathBuf>,
    /// Replace the run already in --out (without it, an existing run is never overwritten).
    #[arg(long)]
    overwrite: bool,
}

/// Training and held-out points, in data space.
pub struct Data {
    pub name: String,
    pub train: Points,
    pub held_out: Points,
}

pub fn load_data(config: &RunConfig, seed: u64) -> Result<Data> {
    let d = &config.data;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xDA7A);
    match &d.path {
        Some(path) => {
            let points = load_points(path, config.model.data_dim)?;
            if points.len() < 5 * MIN_HELD_OUT {
                bail!(
                    "{} holds {} points; training needs at least {} (20% are held out for evaluation)",
                    path.display(),
                    points.len(),
                    5 * MIN_HELD_OUT
                );
            }
            let held = d.held_out.min(points.len() / 5);
            let (train, held_out) = points.split(held, &mut rng);
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(Data {
                name,
                train,
                held_out,
            })
        }
        None => {
            let set = ToyDataset::from_name(&d.dataset)?;
            Ok(Data {
                name: set.name().to_string(),
                train: set.sample(d.train_points, &mut rng),
                held_out: set.sample(d.held_out, &mut rng),
            })
        }
    }
}

fn apply_args(args: &TrainArgs) -> Result<RunConfig> {
    let mut config = match &args.config {
        Some(path) => RunConfig::load(path)?,
        None => RunConfig::default(),
    };
    if let Some(path) = &args.data {
        config.data.path = Some(path.clone());
    }
    if let Some(name) = &args.dataset {
        config.data.dataset = name.clone();
        config.data.path = None;
    }
    override_train(&mut config.train, args);
    Ok(config)
}

/// The command line's --steps, --batch-size, --lr and --seed over the config's, for either kind
/// of run.
fn override_train(t: &mut diffuse_train::TrainConfig, args: &TrainArgs) {
    t.steps = args.steps.unwrap_or(t.steps);
    t.batch_size = args.batch_size.unwrap_or(t.batch_size);
    t.lr = args.lr.unwrap_or(t.lr);
    t.seed = args.seed.unwrap_or(t.seed);
}

#[derive(Serialize)]
struct Metrics {
    dataset: String,
    steps: usize,
    train_seconds: f64,
    steps_per_second: f64,
    final_loss_avg100: f64,
    /// Sliced Wasserstein-1 (data units, 256 projections) to the held-out points.
    sw_samples: f64,
    /// The same for training points (as many as held-out): two independent draws of the data.
    sw_data_vs_data: f64,
    /// The same for a single Gaussian fitted to the training points.
    sw_gaussian_fit: f64,
}

/// The image run config: the dataset's preset, the `--config` file laid over it, then the flags.
fn image_config(args: &TrainArgs, dataset: ImageDataset) -> Result<ImageRunConfig> {
    let preset = ImageRunConfig::preset(dataset);
    let mut config = match &args.config {
        Some(path) => preset.overlay_file(path)?,
        None => preset,
    };
    config.data.dataset = dataset;
    // A learned variance is an output of the network (improved DDPM): twice the channels.
    config.unet.out_channels = config.train.loss.output_channels(config.unet.in_channels);
    if let Some(dir) = &args.data_dir {
        config.data.dir = Some(dir.clone());
    }
    override_train(&mut config.train, args);
    Ok(config)
}

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(dir) = &args.resume {
        return resume(dir, &args);
    }
    if let Some(dataset) = args.dataset.as_deref().and_then(ImageDataset::from_name) {
        let config = image_config(&args, dataset)?;
        let dir = args
            .out
            .clone()
            .unwrap_or_else(|| default_run_dir(dataset.name()));
        // Everything is checked before anything is fetched or written.
        config.validate()?;
        run_dir::check_new(&dir, args.overwrite)?;
        if args.download {
            download::fetch(dataset, &config.data_dir())?;
        }
        return image_train::run(config, &dir, Some(args.overwrite));
    }
    if args.data_dir.is_some() || args.download {
        bail!(
            "--data-dir and --download apply to image datasets (mnist, fashion_mnist, cifar10, folder)"
        );
    }
    let mut config = apply_args(&args)?;
    // A learned variance is an output of the network (improved DDPM): the MLP doubles its outputs.
    config.model.learned_variance = config.train.loss.variance == ReverseVariance::LearnedRange;
    config.validate()?;
    let data = load_data(&config, config.train.seed)?;
    let standardizer = if config.data.standardize {
        Standardizer::fit(&data.train)
    } else {
        Standardizer::identity(data.train.dim)
    };
    config.standardizer = Some(standardizer);
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| default_run_dir(&data.name));
    run_dir::claim_new(&dir, args.overwrite)?;
    save_json(&config, &dir.join("config.json"))?;
    train_points(config, data, &dir, None)
}

/// `train --resume DIR`: the run's own config (with --steps), its data, its checkpoint.
fn resume(dir: &Path, args: &TrainArgs) -> Result<()> {
    if dir.join("diffuse_config.json").is_file() {
        let mut config = image_train::load_image_run_config(dir)?;
        if let Some(data_dir) = &args.data_dir {
            config.data.dir = Some(data_dir.clone());
        }
        config.train.steps = args.steps.unwrap_or(config.train.steps);
        config.validate()?;
        return image_train::run(config, dir, None);
    }
    let path = dir.join("config.json");
    if !path.is_file() {
        bail!(
            "{} is not a diffuse run directory (no config.json or diffuse_config.json)",
            dir.display()
        );
    }
    if args.data_dir.is_some() {
        bail!("--data-dir applies to image runs");
    }
    let mut config = RunConfig::load(&path)?;
    config.train.steps = args.steps.unwrap_or(config.train.steps);
    config.validate()?;
    let data = load_data(&config, config.train.seed)?;
    let ad_device = Device::default().autodiff();
    let checkpoint = load_checkpoint(dir, config.model.init(&ad_device)?)?;
    run_dir::check_resumable(checkpoint.state.step, config.train.steps, dir)?;
    save_json(&config, &path)?;
    train_points(config, data, dir, Some(checkpoint))
}

/// Trains (from the start, or on from `checkpoint`) and writes everything a 2-D run shows.
fn train_points(
    config: RunConfig,
    data: Data,
    dir: &Path,
    checkpoint: Option<Checkpoint<Mlp>>,
) -> Result<()> {
    let schedule = config.schedule.build()?;
    if let Some(w) = schedule.terminal_warning() {
        eprintln!("warning: {w}");
    }
    let standardizer = config
        .standardizer
        .clone()
        .context("the run config has no standardizer")?;
    run_dir::clean(dir);
    let seed = config.train.seed;
    let device = Device::default();
    device.seed(seed);
    let ad_device = device.clone().autodiff();
    let start = match checkpoint {
        Some(c) => Start::Resume(c),
        None => Start::Fresh(config.model.init(&ad_device)?),
    };
    let done = checkpoint_step(&start);
    eprintln!(
        "training on {} ({} points, {} held out) for {} steps{}; run directory {}",
        data.name,
        data.train.len(),
        data.held_out.len(),
        config.train.steps,
        run_dir::resuming_note(&start),
        dir.display()
    );
    let train_z = standardizer.forward(&data.train);
    let batch = config.train.batch_size;
    let save = Box::new(|c: &Checkpoint<Mlp>| {
        save_weights(&c.model, &dir.join("model.safetensors"))?;
        save_weights(c.sampling_model(), &dir.join("model_ema.safetensors"))
    });
    let mut hooks = RunHooks::new(dir, config.train.steps, 25, &start, save)?;
    run_dir::catch_interrupts();
    let timer = Instant::now();
    let trained = train(
        start,
        &mut Ddpm::new(&schedule, config.prediction, config.train.loss),
        &config.train,
        |rng| random_batch(&train_z.data, train_z.dim, batch, rng, &ad_device),
        &mut hooks,
    )?;
    hooks.pb.finish_and_clear();
    if let Some(step) = trained.stopped_at {
        run_dir::exit_interrupted(dir, step, config.train.steps);
    }
    let train_seconds = timer.elapsed().as_secs_f64();
    report_trained(config.train.steps - done, train_seconds);

    write_losses(dir, &config.train.loss.objective.label(), &trained.losses)?;
    forward_picture(
        dir,
        &schedule,
        &standardizer.forward(&data.held_out),
        &device,
        seed,
    )?;

    // Samples with DDPM over all T steps, recording x_t at 10 points for reverse.png.
    let n = config.sample.n;
    let record: Vec<usize> = (0..10)
        .map(|k| k * (schedule.num_timesteps() - 1) / 9)
        .collect();
    let mut panels = Vec::new();
    // Per step: the root mean square and the largest |coordinate| of x_{t-1} (model space), to see
    // where a chain leaves the data's range (a NaN coordinate makes the RMS NaN; the largest
    // skips it).
    let mut trajectory = String::from("t,rms,max_abs\n");
    let pb = progress::bar(schedule.num_timesteps(), "sampling");
    let x = draw_ddpm(
        trained.sampling_model(),
        &config,
        n,
        seed + 1,
        &device,
        |_, t, out| {
            pb.inc(1);
            let pts = out
                .prev_sample
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            let sq = pts.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
            let max = pts.iter().fold(0f32, |m, v| m.max(v.abs()));
            trajectory.push_str(&format!("{t},{},{max}\n", (sq / pts.len() as f64).sqrt()));
            if record.contains(&t) {
                panels.push((format!("t = {t}"), pts));
            }
        },
    );
    pb.finish_and_clear();
    // Written whether or not sampling went non-finite: it shows how the chain got there.
    std::fs::write(dir.join("reverse.csv"), trajectory).context("cannot write reverse.csv")?;
    let x = x.with_context(|| {
        format!(
            "the weights are saved in {}, but sampling from them failed; reverse.csv lists each step before it",
            dir.display()
        )
    })?;
    strip(
        &dir.join("reverse.png"),
        "reverse process (DDPM, model space): x_{t-1} after the step at t",
        &panels,
    )?;
    let samples = to_points(x, &standardizer)?;

    let timing = (config.train.steps - done, train_seconds);
    let metrics = quality(&data, &samples, &config, timing, &trained.losses, seed)?;
    scatter(
        &dir.join("samples.png"),
        &format!(
            "{}: {} samples (SW {:.3}; data vs data {:.3})",
            data.name,
            samples.len(),
            metrics.sw_samples,
            metrics.sw_data_vs_data
        ),
        &[
            Layer {
                label: "held-out data",
                points: &data.held_out.data,
                color: DATA_COLOR,
            },
            Layer {
                label: "samples",
                points: &samples.data,
                color: SAMPLE_COLOR,
            },
        ],
    )?;
    save_json(&metrics, &dir.join("metrics.json"))?;
    println!(
        "sliced Wasserstein to held-out points: samples {:.4}, data vs data {:.4} (ratio {:.2}), single Gaussian {:.4}",
        metrics.sw_samples,
        metrics.sw_data_vs_data,
        metrics.sw_samples / metrics.sw_data_vs_data,
        metrics.sw_gaussian_fit
    );
    println!("wrote {}", dir.display());
    Ok(())
}

/// The steps a run has already trained when it starts.
pub fn checkpoint_step<M>(start: &Start<M>) -> usize {
    match start {
        Start::Resume(c) => c.state.step,
        Start::Fresh(_) => 0,
    }
}

/// The line every run prints when its training loop ends.
pub fn report_trained(steps: usize, seconds: f64) {
    eprintln!(
        "trained {steps} steps in {seconds:.1} s ({:.2} steps/s)",
        steps as f64 / seconds
    );
}

pub fn write_losses(dir: &Path, loss_name: &str, losses: &[f32]) -> Result<()> {
    let mut csv = String::from("step,loss\n");
    for (i, l) in losses.iter().enumerate() {
        csv.push_str(&format!("{},{l}\n", i + 1));
    }
    std::fs::write(dir.join("loss.csv"), csv).context("cannot write loss.csv")?;
    loss_curve(&dir.join("loss.png"), loss_name, losses, 200)?;
    Ok(())
}

/// q(x_t | x_0) for held-out points at 10 evenly spaced t, in model space.
fn forward_picture(
    dir: &Path,
    schedule: &diffuse_core::NoiseSchedule,
    x0: &Points,
    device: &Device,
    seed: u64,
) -> Result<()> {
    let n = x0.len().min(1000);
    let x0_t = Tensor::<2>::from_data(TensorData::new(x0.data[..n * 2].to_vec(), [n, 2]), device);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    let eps = randn(&mut rng, [n, 2], device);
    let last = schedule.num_timesteps() - 1;
    let mut panels = Vec::new();
    for k in 0..10 {
        let t = k * last / 9;
        let x_t = q_sample(schedule, x0_t.clone(), &vec![t; n], eps.clone());
        panels.push((
            format!("t = {t}"),
            x_t.into_data().try_to_vec::<f32>().unwrap_or_default(),
        ));
    }
    strip(
        &dir.join("forward.png"),
        "forward process q(x_t | x_0) (model space)",
        &panels,
    )?;
    Ok(())
}

fn quality(
    data: &Data,
    samples: &Points,
    config: &RunConfig,
    (trained_steps, secs): (usize, f64),
    losses: &[f32],
    seed: u64,
) -> Result<Metrics> {
    let k = data.held_out.len().min(data.train.len());
    let reference = &data.train.data[..k * 2];
    let (mean, cov) = gaussian_fit_2d(&data.train.data);
    let gauss = sample_gaussian_2d(
        mean,
        cov,
        samples.len(),
        &mut ChaCha8Rng::seed_from_u64(seed + 3),
    );
    let sw = |pts: &[f32]| {
        sliced_wasserstein(
            pts,
            &data.held_out.data,
            2,
            256,
            &mut ChaCha8Rng::seed_from_u64(seed + 4),
        )
    };
    let tail = &losses[losses.len().saturating_sub(100)..];
    Ok(Metrics {
        dataset: data.name.clone(),
        steps: config.train.steps,
        train_seconds: secs,
        // This invocation's steps: a resumed run trained only those after its checkpoint.
        steps_per_second: trained_steps as f64 / secs,
        final_loss_avg100: tail.iter().map(|v| *v as f64).sum::<f64>() / tail.len().max(1) as f64,
        sw_samples: sw(&samples.data),
        sw_data_vs_data: sw(reference),
        sw_gaussian_fit: sw(&gauss),
    })
}
