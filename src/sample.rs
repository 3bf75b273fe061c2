//! `diffuse sample`: draws from a trained run or a diffusers pipeline folder with any
//! `--sampler`. One path for every family and kind: the outputs are checked before any work,
//! then the run's family samples it (`Family::sample`; a bare pipeline folder is DDPM on
//! images), or, with `--pictures`, draws the run's pictures again.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use crate::config::RunConfig;
use crate::families::ddpm::solvers::SolverChoice;
use crate::families::{Family, FamilyName, Task, dispatch};
use crate::kinds::{Kind, KindName};
use crate::run_files::check_output;

#[derive(Args)]
pub struct SampleArgs {
    /// A run directory written by `diffuse train` (2-D or image).
    #[arg(
        long,
        required_unless_present = "pipeline",
        conflicts_with = "pipeline"
    )]
    pub run: Option<PathBuf>,
    /// A diffusers pipeline folder (model_index.json, unet/, scheduler/), e.g. a downloaded
    /// `google/ddpm-cifar10-32`, or an image run directory.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    #[command(flatten)]
    pub solver: SolverChoice,
    /// Number of samples (default: 1000 points, 16 images; with --init-noise, its N).
    #[arg(long)]
    pub n: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output `.npy`, float32: points [n, 2] in the data's own units, or images [N, C, H, W] in
    /// model space ([-1, 1]), before conversion to 8 bits.
    #[arg(long, default_value = "samples.npy")]
    pub out: PathBuf,
    /// Also write a PNG: a scatter plot of points, or a grid of the 8-bit images.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Images: x_T from a float32/float64 `.npy` of shape [N, C, H, W] instead of the seed: a
    /// standard-normal draw, scaled by the solver's first noise level as diffusers' pipelines
    /// scale by `init_noise_sigma`.
    #[arg(long)]
    pub init_noise: Option<PathBuf>,
    /// 2-D runs: use the raw weights instead of the EMA weights.
    #[arg(long)]
    pub no_ema: bool,
    /// Draw the run's pictures and metrics again from its saved weights, into the run
    /// directory (2-D runs: forward, reverse, samples; image runs: samples, progressive,
    /// forward, interpolation).
    #[arg(long, requires = "run", conflicts_with_all = [
        "n", "seed", "out", "png", "init_noise", "no_ema", "sampler", "steps", "eta", "karras",
        "rtol", "atol"
    ])]
    pub pictures: bool,
}

pub fn run(args: SampleArgs) -> Result<()> {
    if args.n == Some(0) {
        bail!("--n must be at least 1");
    }
    let Some(dir) = args.pipeline.as_ref().or(args.run.as_ref()) else {
        bail!("pass --run DIR or --pipeline DIR");
    };
    if args.pictures {
        return crate::report::redraw(dir);
    }
    // Outputs are checked before any work: sampling is not thrown away for a bad path.
    let inputs: Vec<&Path> = args.init_noise.iter().map(|p| p.as_path()).collect();
    check_output("--out", &args.out, &inputs, &[dir])?;
    if let Some(png) = &args.png {
        if png
            .extension()
            .is_none_or(|e| !e.eq_ignore_ascii_case("png"))
        {
            bail!("--png {} must end in .png", png.display());
        }
        check_output("--png", png, &inputs, &[dir])?;
        if png == &args.out {
            bail!("--png and --out name the same file; give each its own");
        }
    }
    let (family, kind, config) = resolve(dir)?;
    dispatch(
        family,
        kind,
        Sample {
            args: &args,
            dir,
            config: config.as_ref(),
        },
    )
}

/// The family, kind and run config of a run directory; a diffusers pipeline folder without a
/// diffuse config is DDPM on images.
pub fn resolve(dir: &Path) -> Result<(FamilyName, KindName, Option<RunConfig>)> {
    let kind = KindName::of(dir)?;
    if kind == KindName::Images && !dir.join(kind.run_config_file()).exists() {
        return Ok((FamilyName::Ddpm, kind, None));
    }
    let config = RunConfig::load_run(dir)?;
    Ok((config.family, kind, Some(config)))
}

/// `sample`'s generic half.
struct Sample<'a> {
    args: &'a SampleArgs,
    dir: &'a Path,
    config: Option<&'a RunConfig>,
}

impl Task for Sample<'_> {
    fn run<const D: usize, K: Kind<D>, F: Family<D, K>>(self) -> Result<()> {
        F::sample(self.args, self.dir, self.config)
    }
}
