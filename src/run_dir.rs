//! What every training run shares: claiming the run directory (never over another run by
//! accident), the loss log appended as training goes, SIGINT/SIGTERM handling, and the hooks that
//! write checkpoints and report progress.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use diffuse_train::checkpoint::{clean_temporaries, save_checkpoint};
use diffuse_train::{Checkpoint, Start, TrainError, TrainHooks};
use indicatif::ProgressBar;

use crate::progress;
use crate::run_files::{self, LOCK_FILE, RunLock};

/// Prepares `dir` for a new run and locks it for this command. An existing non-empty
/// directory is refused unless `overwrite` is set and it is a diffuse run, whose files are then
/// removed (and only those: [`run_files::remove_run`]), so no old weights can sit beside the
/// new config. The checks are made again under the lock.
pub fn claim_new(dir: &Path, overwrite: bool) -> Result<RunLock> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    let lock = RunLock::acquire(dir)?;
    if check_new(dir, overwrite)? {
        run_files::remove_run(dir)?;
    }
    Ok(lock)
}

/// Locks an existing run directory for this command (`train --resume`, `sample --pictures`,
/// `eval`): see [`RunLock`].
pub fn lock_existing(dir: &Path) -> Result<RunLock> {
    if !dir.is_dir() {
        bail!("{} is not a diffuse run directory", dir.display());
    }
    RunLock::acquire(dir)
}

/// Whether the run in `dir` finished: `metrics.json` is the last file a run writes, after its
/// pictures.
pub fn is_finished(dir: &Path) -> bool {
    dir.join("metrics.json").is_file()
}

/// Whether `dir` holds a diffuse run: a run config with a `train` section (a diffusers model
/// folder's `config.json` has none, and is never taken for a run).
fn is_run(dir: &Path) -> bool {
    crate::axes::KindName::ALL.iter().any(|f| {
        diffuse_fs::read_to_string(&dir.join(f.run_config_file()), diffuse_fs::Limit::CONFIG)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|v| v.get("train").is_some())
    })
}

/// The checks of [`claim_new`], without touching anything; `true` if an old run is to go.
pub fn check_new(dir: &Path, overwrite: bool) -> Result<bool> {
    if dir.exists() && !dir.is_dir() {
        bail!("--out {} is a file, not a directory", dir.display());
    }
    // The lock file and temporaries alone (a run killed before it wrote its config) are empty.
    let non_empty = dir.is_dir()
        && std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .flatten()
            .any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name != LOCK_FILE && !diffuse_fs::is_temporary(&name)
            });
    if non_empty {
        if !is_run(dir) {
            bail!(
                "--out {} is a non-empty directory that is not a diffuse run; choose another --out",
                dir.display()
            );
        }
        if !overwrite {
            bail!(
                "{} already holds a run; pass --resume {} to continue it, --overwrite to replace it, or choose another --out",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(non_empty)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// From here on, the first SIGINT or SIGTERM asks the trainer to stop after the current step
/// (with a checkpoint); a second one ends the process at once (the handler resets itself).
pub fn catch_interrupts() {
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the sigaction
    // struct is zeroed and then filled as sigaction(2) documents.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

/// `loss.csv`, one line per step, appended as training goes. A resumed run starts it again from
/// the checkpoint's losses, so steps trained after the last checkpoint are not listed twice.
pub struct LossLog {
    file: std::fs::File,
}

impl LossLog {
    pub fn create(dir: &Path, losses: &[f32]) -> Result<Self> {
        let mut text = String::from("step,loss\n");
        for (i, l) in losses.iter().enumerate() {
            text.push_str(&format!("{},{l}\n", i + 1));
        }
        let path = dir.join("loss.csv");
        diffuse_fs::write(&path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot append to {}", path.display()))?;
        Ok(Self { file })
    }

    fn push(&mut self, step: usize, loss: f32) -> Result<(), TrainError> {
        writeln!(self.file, "{step},{loss}")
            .map_err(|e| TrainError::Hook(format!("cannot append to loss.csv: {e}")))
    }
}

/// Writes a run's user-facing weights (the layout differs between 2-D and image runs).
pub type SaveWeights<'a, M> = Box<dyn FnMut(&Checkpoint<M>) -> Result<(), TrainError> + 'a>;

/// Progress bar, loss log, checkpoints (the run's weights, then `checkpoint/` to resume from)
/// and the stop request of a signal.
pub struct RunHooks<'a, M> {
    dir: &'a Path,
    pub pb: ProgressBar,
    /// Show the loss every this many steps.
    every: usize,
    log: LossLog,
    save: SaveWeights<'a, M>,
}

impl<'a, M> RunHooks<'a, M> {
    /// Hooks for a run of `steps` steps that starts at `start`: the bar at its step, and
    /// `loss.csv` holding its losses so far.
    pub fn new(
        dir: &'a Path,
        steps: usize,
        every: usize,
        start: &Start<M>,
        save: SaveWeights<'a, M>,
    ) -> Result<Self> {
        let losses: &[f32] = match start {
            Start::Resume(c) => &c.state.losses,
            Start::Fresh(_) => &[],
        };
        let pb = progress::bar(steps, "training");
        pb.set_position(losses.len() as u64);
        Ok(Self {
            dir,
            pb,
            every,
            log: LossLog::create(dir, losses)?,
            save,
        })
    }
}

/// ", resuming after step N" for the line a run prints when it starts (empty for a fresh run).
pub fn resuming_note<M>(start: &Start<M>) -> String {
    match start {
        Start::Resume(c) => format!(", resuming after step {}", c.state.step),
        Start::Fresh(_) => String::new(),
    }
}

impl<M: Module> TrainHooks<M> for RunHooks<'_, M> {
    fn on_step(&mut self, step: usize, loss: f32, _lr: f64) -> Result<(), TrainError> {
        progress::training_step(&self.pb, step, loss, self.every);
        self.log.push(step, loss)
    }

    fn on_checkpoint(&mut self, checkpoint: &Checkpoint<M>) -> Result<(), TrainError> {
        (self.save)(checkpoint)?;
        save_checkpoint(self.dir, checkpoint)
    }

    fn stop_requested(&mut self) -> bool {
        STOP.load(Ordering::SeqCst)
    }
}

/// Removes what killed runs left behind, and says so.
pub fn clean(dir: &Path) {
    let n = clean_temporaries(dir);
    if n > 0 {
        eprintln!(
            "removed {n} temporary file(s) left in {} by an interrupted run",
            dir.display()
        );
    }
}

/// Exit status of a run stopped by a signal (128 + SIGINT, as shells report it).
pub const INTERRUPTED_EXIT: i32 = 130;

/// Tells the user how to go on after a stop, and exits.
pub fn exit_interrupted(dir: &Path, step: usize, steps: usize) -> ! {
    eprintln!(
        "interrupted: stopped after step {step} of {steps}; the checkpoint and loss.csv are saved in {}.\ncontinue with: diffuse train --resume {}",
        dir.display(),
        dir.display()
    );
    std::process::exit(INTERRUPTED_EXIT);
}

/// A checkpoint after `done` steps can go on to `steps` only if steps remain.
pub fn check_resumable(done: usize, steps: usize, dir: &Path) -> Result<()> {
    if done >= steps {
        bail!(
            "{} already trained {done} of its {steps} steps; pass --steps N with N > {done} to train further",
            dir.display()
        );
    }
    Ok(())
}
