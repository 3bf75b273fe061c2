//! What a run shows once its steps are trained: the loss curve, then its family's pictures and
//! metrics (`Family::report`), whose `metrics.json` is written last and marks the run finished.
//! Reached three ways: at the end of `train`; by `train --resume` on a run that stopped after
//! its last step but before its pictures ([`finish`]); and by `sample --run DIR --pictures`
//! ([`redraw`]), on the weights the run holds.

use std::path::Path;

use anyhow::Result;
use burn::module::Module;
use diffuse_eval::plots::loss_curve;
use diffuse_train::Checkpoint;

use crate::config::RunConfig;
use crate::families::{Family, Task, TrainFigures, dispatch};
use crate::figures::final_loss;
use crate::kinds::Kind;
use crate::run_dir;

/// Draws the pictures and metrics of a run whose steps are all trained, from its last
/// checkpoint: the end of a run that was stopped after its last step.
pub(crate) fn finish<const D: usize, K: Kind<D>, F: Family<D, K>>(
    config: &RunConfig,
    dir: &Path,
    data: &K::Data,
    checkpoint: Checkpoint<F::Net>,
) -> Result<()> {
    eprintln!(
        "{} trained all {} steps but stopped before its pictures and metrics; drawing them now",
        dir.display(),
        config.train.steps
    );
    run_dir::clean(dir);
    let losses = &checkpoint.state.losses;
    let figures = TrainFigures {
        final_loss_avg100: final_loss(losses),
        ..TrainFigures::default()
    };
    let model = checkpoint.sampling_model().valid();
    report::<D, K, F>(config, dir, data, &model, losses, &figures)
}

/// `loss.png`, then the family's pictures and metrics.
pub(crate) fn report<const D: usize, K: Kind<D>, F: Family<D, K>>(
    config: &RunConfig,
    dir: &Path,
    data: &K::Data,
    model: &F::Net,
    losses: &[f32],
    figures: &TrainFigures,
) -> Result<()> {
    write_losses(dir, &config.train.loss.objective.label(), losses)?;
    F::report(dir, config, data, model, figures)?;
    println!("wrote {}", dir.display());
    Ok(())
}

/// `sample --run DIR --pictures`: draws a run's pictures and metrics again from the weights
/// it holds, whatever its family.
pub fn redraw(dir: &Path) -> Result<()> {
    let _lock = run_dir::lock_existing(dir)?;
    let config = RunConfig::load_run(dir)?;
    dispatch(config.family, config.kind(), Redraw { config, dir })
}

/// `--pictures`' generic half.
struct Redraw<'a> {
    config: RunConfig,
    dir: &'a Path,
}

impl Task for Redraw<'_> {
    fn run<const D: usize, K: Kind<D>, F: Family<D, K>>(self) -> Result<()> {
        let (mut config, dir) = (self.config, self.dir);
        let data = K::load(&mut config, false)?;
        let model = F::load_sampling(dir, &config, &crate::device::device())?;
        F::report(dir, &config, &data, &model, &TrainFigures::read(dir))?;
        println!("redrew the pictures in {}", dir.display());
        Ok(())
    }
}

/// `loss.png`. `loss.csv` already holds every loss: the hooks append each step to it.
fn write_losses(dir: &Path, loss_name: &str, losses: &[f32]) -> Result<()> {
    loss_curve(&dir.join("loss.png"), loss_name, losses, 200)?;
    Ok(())
}
