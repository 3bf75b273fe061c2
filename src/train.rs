//! `diffuse train`: one path for every model family. The config is the dataset's preset with
//! `--config FILE` laid over it and the flags on top; it is checked whole before anything is
//! fetched or written; then the family's data and network go to `diffuse_train::train` with
//! DDPM's objective, and the family writes what its run shows ([`Family`]: `points.rs` for an
//! MLP on 2-D points, `images.rs` for a U-Net on images).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use diffuse_train::checkpoint::{find_checkpoint, load_checkpoint, save_json};
use diffuse_train::{Checkpoint, Start, check_checkpoint, train};

use crate::config::{ConfigFile, LatentDiffusion, RunConfig, SdeName, Source};
use crate::device::DeviceChoice;
use crate::families::TrainFigures;
use crate::families::{Family, FamilyName, Task, dispatch};
use crate::kinds::{Kind, KindName};
use crate::report::{finish, report};
use crate::run_dir::{self, RunHooks};
use crate::{default_run_dir, download};
use diffuse_kernels::Precision;

#[derive(Args)]
pub struct TrainArgs {
    /// Your own points: `.npy` (float32/float64, shape [N, 2]) or `.csv` (x,y per line).
    #[arg(long, conflicts_with = "dataset")]
    data: Option<PathBuf>,
    /// A built-in 2-D dataset (swiss_roll, two_moons, eight_gaussians, circles, checkerboard,
    /// ring16), which trains an MLP, or an image dataset (mnist, fashion_mnist, cifar10,
    /// folder), which trains a U-Net (the presets; a config file's `[model]` or `[unet]` section
    /// changes them).
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
    /// The network's products in float32 (`f32`, the default) or bfloat16 (`bf16`: mixed
    /// precision, with float32 weights, optimizer, norms and loss; on cpu and cuda).
    #[arg(long, value_enum)]
    precision: Option<PrecisionArg>,
    /// The model family: ddpm (the default: DDPM's discrete chain), ncsn (noise-conditional
    /// score networks, sampled by annealed Langevin dynamics), score (score SDEs in continuous
    /// time, `--sde`, sampled by predictor-corrector), vae (a variational autoencoder), hvae (a
    /// Markovian hierarchical VAE), vdm (a variational diffusion model with a learned noise
    /// schedule), autoencoder (latent diffusion's first stage: a KL- or VQ-regularized
    /// autoencoder on images) or latent (DDPM, a score SDE or the VDM in an autoencoder's latent
    /// space: --vae, --diffusion).
    #[arg(long, value_enum)]
    family: Option<FamilyName>,
    /// Latent diffusion's autoencoder (--family latent): a diffusers AutoencoderKL or VQModel
    /// folder, an LDMPipeline folder (its vqvae/), or an `autoencoder` run (its vae/).
    #[arg(long, value_name = "DIR")]
    vae: Option<PathBuf>,
    /// The score family's SDE (vp, the default; subvp; ve), as `[score] sde` in a config file;
    /// with --family latent, a score SDE on the latents.
    #[arg(long, value_enum)]
    sde: Option<SdeName>,
    /// Latent diffusion's model (--family latent): ddpm (the default), score (a score SDE,
    /// `--sde`) or vdm (the variational diffusion model), as `[latent] diffusion` in a config
    /// file.
    #[arg(long, value_enum)]
    diffusion: Option<LatentDiffusion>,
    /// The run directory (default: runs/<dataset>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A TOML or JSON file with any fields of the run config (see README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint, to its configured steps (--steps N
    /// extends it). The result is the same, bit for bit, as a run that was never stopped.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "data", "dataset", "download", "batch_size", "lr", "seed", "precision", "out", "config",
        "overwrite", "family", "sde", "vae", "diffusion"
    ])]
    resume: Option<PathBuf>,
    /// Replace the run already in --out (without it, an existing run is never overwritten).
    #[arg(long)]
    overwrite: bool,
}

/// `--precision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum PrecisionArg {
    F32,
    Bf16,
}

/// The run config of `train` without `--resume`: the preset of the dataset (the flag's, else
/// the file's, else the default swiss roll; points for `--data`), the file over it, the flags
/// over both.
fn new_config(args: &TrainArgs) -> Result<RunConfig> {
    let file = args.config.as_deref().map(ConfigFile::read).transpose()?;
    let file_dataset = file.as_ref().and_then(|f| f.dataset());
    let dataset = args
        .dataset
        .as_deref()
        .or(file_dataset)
        .unwrap_or("swiss_roll");
    let file_family = file.as_ref().map(|f| f.family()).transpose()?.flatten();
    let family = args.family.or(file_family).unwrap_or_default();
    // The family's section at its defaults for the data, which the file's fields then change.
    let mut preset = RunConfig::preset(dataset).with_family(family);
    // Latent diffusion by a score SDE or the VDM: the [score] or [vdm] section the file is
    // laid over.
    if family == FamilyName::Latent {
        let file_diffusion = file
            .as_ref()
            .map(|f| f.latent_diffusion())
            .transpose()?
            .flatten();
        let flag = args.diffusion.or(args.sde.map(|_| LatentDiffusion::Score));
        if let (Some(flag), Some(file)) = (flag, file_diffusion)
            && flag != file
        {
            bail!(
                "the flags ask for latent diffusion by {} and the config file's latent.diffusion is {}",
                flag.name(),
                file.name()
            );
        }
        let diffusion = flag.or(file_diffusion).unwrap_or_default();
        preset = preset.with_latent_diffusion(diffusion, args.sde)?;
    } else if args.diffusion.is_some() {
        bail!(
            "--diffusion applies to latent diffusion (--family latent); this run's family is {}",
            family.name()
        );
    }
    let mut config = match &file {
        Some(file) => preset.overlay(file)?,
        None => preset,
    };
    if let Some(name) = &args.dataset {
        config.data.dataset = name.clone();
        config.data.path = None;
    }
    if let Some(path) = &args.data {
        config.data.path = Some(path.clone());
    }
    if let Some(dir) = &args.data_dir {
        config.data.dir = Some(dir.clone());
    }
    let t = &mut config.train;
    t.steps = args.steps.unwrap_or(t.steps);
    t.batch_size = args.batch_size.unwrap_or(t.batch_size);
    t.lr = args.lr.unwrap_or(t.lr);
    t.seed = args.seed.unwrap_or(t.seed);
    if let Some(precision) = args.precision {
        t.precision = match precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Bf16 => Precision::Bf16,
        };
    }
    config.family = family;
    if let Some(sde) = args.sde.filter(|_| family != FamilyName::Latent) {
        let Some(score) = config.score.as_mut() else {
            bail!(
                "--sde applies to the score family (--family score); this run's family is {}",
                family.name()
            );
        };
        score.sde = sde;
    }
    if let Some(vae) = &args.vae {
        let Some(latent) = config.latent.as_mut() else {
            bail!(
                "--vae applies to latent diffusion on images (--family latent); this run's family is {}",
                family.name()
            );
        };
        latent.vae = Some(std::path::absolute(vae)?);
    }
    config.fit_latent_unet()?;
    config.fit_output_to_loss();
    Ok(config)
}

/// `train --resume DIR`: the run's own config, with --steps and --data-dir.
fn resume_config(dir: &Path, args: &TrainArgs) -> Result<RunConfig> {
    let mut config = RunConfig::load_run(dir)?;
    if let Some(data_dir) = &args.data_dir {
        config.data.dir = Some(data_dir.clone());
    }
    config.train.steps = args.steps.unwrap_or(config.train.steps);
    Ok(config)
}

pub fn run(args: TrainArgs) -> Result<()> {
    // A resumed run is locked before anything of it is read; a new one once its folder exists
    // (`run_dir::claim_new`). Held until the command ends.
    let _lock = match &args.resume {
        Some(dir) => Some(run_dir::lock_existing(dir)?),
        None => None,
    };
    let (config, dir, new) = match &args.resume {
        Some(dir) => (resume_config(dir, &args)?, dir.clone(), None),
        None => {
            let config = new_config(&args)?;
            let dir = match &args.out {
                Some(dir) => dir.clone(),
                None => default_run_dir(&run_name(&config)?),
            };
            (config, dir, Some(args.overwrite))
        }
    };
    // Everything is checked before anything is fetched or written.
    if config.kind() == KindName::Points && (args.data_dir.is_some() || args.download) {
        bail!(
            "--data-dir and --download apply to image datasets (mnist, fashion_mnist, cifar10, folder)"
        );
    }
    config.validate()?;
    let backend = crate::device::backend();
    if config.train.precision == Precision::Bf16
        && matches!(backend, DeviceChoice::Vulkan | DeviceChoice::Wgpu)
    {
        bail!(
            "precision bf16 runs on --device cpu or cuda: burn's wgpu backend (vulkan, wgpu) has no bfloat16 arithmetic; use precision f32 there"
        );
    }
    if let Some(overwrite) = new {
        run_dir::check_new(&dir, overwrite)?;
    }
    if args.download {
        download::fetch(config.data.image_dataset()?, &config.data.image_dir()?)?;
    }
    let (family, kind) = (config.family, config.kind());
    dispatch(
        family,
        kind,
        Fit {
            config,
            dir: &dir,
            new,
        },
    )
}

/// `train`'s generic half.
struct Fit<'a> {
    config: RunConfig,
    dir: &'a Path,
    new: Option<bool>,
}

impl Task for Fit<'_> {
    fn run<const D: usize, K: Kind<D>, F: Family<D, K>>(self) -> Result<()> {
        fit::<D, K, F>(self.config, self.dir, self.new)
    }
}

/// The name of a new run's default directory: the dataset's, or the stem of the user's file.
fn run_name(config: &RunConfig) -> Result<String> {
    Ok(match config.data.source()? {
        Source::File(path) => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Source::Toy(set) => set.name().into(),
        Source::Images(set) => set.name().into(),
    })
}

/// Trains a new run (`Some(overwrite)`: see [`run_dir::claim_new`]) or, with `None`, the run
/// in `dir` from its checkpoint (from step 0 when it was stopped before its first one), and
/// writes what the family shows. A run whose steps are all trained but whose pictures and
/// metrics were never written (stopped, or killed, after its last step) is finished. The config
/// is validated.
fn fit<const D: usize, K: Kind<D>, F: Family<D, K>>(
    mut config: RunConfig,
    dir: &Path,
    new: Option<bool>,
) -> Result<()> {
    let data = K::load(&mut config, new.is_some())?;
    if new.is_some() {
        F::prepare(&mut config, &data)?;
    }
    let mut objective = F::objective(&config)?;
    let seed = config.train.seed;
    let device = crate::device::device();
    device.seed(seed);
    let ad_device = device.autodiff();
    let net = F::init(&config, &ad_device)?;
    let mut _lock = None;
    let start = match new {
        Some(overwrite) => {
            _lock = Some(run_dir::claim_new(dir, overwrite)?);
            Start::Fresh(net)
        }
        None if find_checkpoint(dir).is_none() => {
            eprintln!(
                "note: {} was stopped before its first checkpoint; training it from step 0",
                dir.display()
            );
            Start::Fresh(net)
        }
        None => {
            let checkpoint = load_checkpoint(dir, net)?;
            check_checkpoint(&checkpoint, &objective, &config.train)?;
            let done = checkpoint.state.step;
            if done == config.train.steps && !run_dir::is_finished(dir) {
                return finish::<D, K, F>(&config, dir, &data, checkpoint);
            }
            run_dir::check_resumable(done, config.train.steps, dir)?;
            Start::Resume(checkpoint)
        }
    };
    save_json(&config, &dir.join(config.file_name()))?;
    run_dir::clean(dir);
    let done = match &start {
        Start::Resume(c) => c.state.step,
        Start::Fresh(_) => 0,
    };
    let net = match &start {
        Start::Resume(c) => F::describe(&c.model),
        Start::Fresh(net) => F::describe(net),
    };
    eprintln!(
        "training {net} on {} for {} steps{}; run directory {}",
        K::describe(&config, &data),
        config.train.steps,
        run_dir::resuming_note(&start),
        dir.display()
    );
    let save = Box::new(|c: &Checkpoint<F::Net>| F::save(dir, &config, c));
    let mut hooks = RunHooks::new(dir, config.train.steps, K::LOSS_EVERY, &start, save)?;
    run_dir::catch_interrupts();
    let timer = Instant::now();
    let trained = train(
        start,
        &mut objective,
        &config.train,
        |rng| K::batch(&config, &data, rng, &ad_device),
        &mut hooks,
    )?;
    hooks.pb.finish_and_clear();
    if let Some(step) = trained.stopped_at {
        run_dir::exit_interrupted(dir, step, config.train.steps);
    }
    let (steps, seconds) = (config.train.steps - done, timer.elapsed().as_secs_f64());
    eprintln!(
        "trained {steps} steps in {seconds:.1} s ({:.2} steps/s)",
        steps as f64 / seconds
    );
    let figures = TrainFigures::measured(steps, seconds, &trained.losses);
    report::<D, K, F>(
        &config,
        dir,
        &data,
        trained.sampling_model(),
        &trained.losses,
        &figures,
    )
}
