//! `diffuse sample`: draws from a trained run or a diffusers pipeline folder with any
//! `--sampler`. One path for every family and kind: the outputs are checked before any work,
//! then the run's family samples it (`Family::sample`; a bare pipeline folder is DDPM on
//! images), or, with `--pictures`, draws the run's pictures again.

use std::path::Path;

use anyhow::{Result, bail};

pub use crate::args::SampleArgs;
use crate::config::RunConfig;
use crate::families::{Family, FamilyName, Task, dispatch};
use crate::kinds::{Kind, KindName};
use crate::run_files::check_output;

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
    draw(&args, dir)
}

/// Samples `dir` as `args` say, its outputs already checked (by [`run`]; or chosen by
/// `eval --fid`, which writes its samples into the run it holds locked).
pub fn draw(args: &SampleArgs, dir: &Path) -> Result<()> {
    let (family, kind, config) = resolve(dir)?;
    dispatch(
        family,
        kind,
        Sample {
            args,
            dir,
            config: config.as_ref(),
        },
    )
}

/// Points drawn from a 2-D run when `--n` is not given.
pub const DEFAULT_POINTS: usize = 1000;
/// Images drawn when neither `--n` nor `--init-noise` gives the count.
pub const DEFAULT_IMAGES: usize = 16;

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
