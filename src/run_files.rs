//! What a run directory consists of, and who may write it:
//!
//! - [`RunLock`]: one writer per run. Every command that writes into a run directory (`train`,
//!   new, resumed or overwriting; `sample --pictures`; `eval`) holds an advisory lock on it for
//!   its whole life; a second one is refused with the holder's pid.
//! - [`is_run_entry`]: the names diffuse writes into a run directory, so that `--overwrite`
//!   removes those and nothing else ([`remove_run`]).
//! - [`check_output`]: an output file never replaces one of the command's inputs or a run's own
//!   files, compared by identity (a symlink or a hard link to a file is that file).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use diffuse_fs::FileId;

/// The lock file of a run directory (see [`RunLock`]).
pub const LOCK_FILE: &str = ".diffuse.lock";

/// An exclusive advisory lock on a run directory, held until it is dropped (the end of the
/// command): a POSIX record lock on `DIR/.diffuse.lock`, which the kernel releases when the
/// process ends however it ends (kill -9 included), so a stale lock never blocks a run.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks `dir` (which exists), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        use std::os::fd::AsRawFd;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot lock the run directory {}", dir.display()))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            bail!(
                "{} is not a regular file; remove it to use {} as a run directory",
                path.display(),
                dir.display()
            );
        }
        // SAFETY: an all-zero flock is a valid value of the C struct; fcntl gets a valid fd and
        // a pointer to it, which it reads (F_SETLK) or fills (F_GETLK).
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as _;
        lock.l_whence = libc::SEEK_SET as _;
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } == 0 {
            return Ok(RunLock { _file: file });
        }
        let err = std::io::Error::last_os_error();
        let busy = matches!(err.raw_os_error(), Some(libc::EACCES | libc::EAGAIN));
        if !busy {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
        let holder = if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } == 0
            && i32::from(lock.l_type) != libc::F_UNLCK
        {
            format!("pid {}", lock.l_pid)
        } else {
            "a process that has since ended; try again".into()
        };
        bail!(
            "{} is in use by another diffuse command ({holder}); wait for it to finish, or stop it",
            dir.display()
        )
    }
}

/// The stems of `eval --nll`'s files (`nll.json`, `nll_per_t.csv`, `nll_per_t.png`, ...).
const NLL_STEMS: [&str; 6] = [
    "nll",
    "nll_clip_x0",
    "nll_ode",
    "nll_data",
    "nll_clip_x0_data",
    "nll_ode_data",
];

/// Files diffuse writes at the top of a run directory (2-D runs and image runs).
const TOP_FILES: [&str; 21] = [
    "config.json",
    "diffuse_config.json",
    "model_index.json",
    "model.safetensors",
    "model_ema.safetensors",
    "loss.csv",
    "loss.png",
    "forward.png",
    "reverse.png",
    "reverse.csv",
    "score.png",
    "samples.png",
    "samples.npy",
    "progressive.png",
    "interpolation.png",
    "reconstructions.png",
    "latent.png",
    "levels.png",
    "schedule.png",
    "schedule.csv",
    "metrics.json",
];

/// The folders of a run and the files diffuse writes in each.
const FOLDERS: [(&str, &[&str]); 4] = [
    (
        "unet",
        &["config.json", "diffusion_pytorch_model.safetensors"],
    ),
    (
        "raw",
        &["config.json", "diffusion_pytorch_model.safetensors"],
    ),
    ("scheduler", &["scheduler_config.json"]),
    (
        "checkpoint",
        &[
            "model.safetensors",
            "model_ema.safetensors",
            "optimizer.bpk",
            "state.json",
        ],
    ),
];

/// The files diffuse writes in the folder `name` of a run (a checkpoint being built or
/// swapped out is a checkpoint folder); `None` when it writes no such folder.
fn folder_files(name: &str) -> Option<&'static [&'static str]> {
    let name = if name.starts_with(".checkpoint.tmp-") || name.starts_with(".checkpoint.old-") {
        "checkpoint"
    } else {
        name
    };
    FOLDERS
        .iter()
        .find(|(f, _)| *f == name)
        .map(|(_, files)| *files)
}

/// Whether `name`, at the top of a run directory, is a file diffuse writes there: the run's
/// own files, `eval`'s (`nll*.json`, `nll*_per_t.csv|png`, `*.sw.json`, `fid.json`,
/// `fid_samples_*.npy`), the lock, and the
/// temporaries of a killed writer.
pub fn is_run_entry(name: &str) -> bool {
    let nll = NLL_STEMS.iter().any(|stem| {
        [".json", "_per_t.csv", "_per_t.png"]
            .iter()
            .any(|ext| name == format!("{stem}{ext}"))
    });
    TOP_FILES.contains(&name)
        || nll
        || name.ends_with(".sw.json")
        || name == "fid.json"
        || (name.starts_with("fid_samples_") && name.ends_with(".npy"))
        || name == LOCK_FILE
        || diffuse_fs::is_temporary(name)
}

/// The entries of `dir` that diffuse did not write (paths relative to `dir`).
fn foreign_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut foreign = Vec::new();
    let read = |d: &Path| {
        std::fs::read_dir(d)
            .with_context(|| format!("cannot read {}", d.display()))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                    .collect::<Vec<_>>()
            })
    };
    for (name, path) in read(dir)? {
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        match (is_dir, folder_files(&name)) {
            (true, Some(files)) => {
                for (inner, _) in read(&path)? {
                    if !files.contains(&inner.as_str()) && !diffuse_fs::is_temporary(&inner) {
                        foreign.push(PathBuf::from(&name).join(inner));
                    }
                }
            }
            (false, _) if is_run_entry(&name) => {}
            _ => foreign.push(PathBuf::from(name)),
        }
    }
    foreign.sort();
    Ok(foreign)
}

/// `--overwrite`: removes the files of the run in `dir` (which holds the lock), and nothing
/// else: when `dir` holds anything diffuse did not write, nothing is removed and the error
/// names it. The run config goes last, so a removal cut short still leaves a run that a second
/// `--overwrite` recognises. `dir` itself stays (it may be `.`).
pub fn remove_run(dir: &Path) -> Result<()> {
    let foreign = foreign_entries(dir)?;
    if !foreign.is_empty() {
        let names: Vec<String> = foreign
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect();
        bail!(
            "--overwrite removes only the files diffuse wrote, and {} also holds {}{}; move {} elsewhere, or choose another --out",
            dir.display(),
            names.join(", "),
            if foreign.len() > 5 {
                format!(" and {} more", foreign.len() - 5)
            } else {
                String::new()
            },
            if foreign.len() == 1 { "it" } else { "them" }
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.ends_with(LOCK_FILE))
        .collect();
    // The run configs last: while anything of the run is left, the folder is still a run.
    let config = |p: &PathBuf| p.ends_with("config.json") || p.ends_with("diffuse_config.json");
    entries.sort_by_key(config);
    for path in entries {
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let removed = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("cannot remove {} of the old run", path.display()))?;
    }
    Ok(())
}

/// Whether `dir` is a run directory or a pipeline folder.
fn is_run_dir(dir: &Path) -> bool {
    ["config.json", "diffuse_config.json", "model_index.json"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// Refuses to write `out` where it would replace one of the command's `inputs` or a file of a
/// run: any file diffuse wrote into one of `runs` (the run or pipeline folders the command
/// reads), found by identity so that a symlink or a hard link to one counts, or a run file's
/// name in any run directory or model folder. Also refuses, before any work is done, an `out`
/// that cannot be written: an existing directory or device, or a folder that does not exist.
pub fn check_output(flag: &str, out: &Path, inputs: &[&Path], runs: &[&Path]) -> Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!(
            "{flag} {}: the folder {} does not exist",
            out.display(),
            parent.display()
        );
    }
    diffuse_fs::writable_kind(out).with_context(|| format!("{flag} {}", out.display()))?;
    if let Some(id) = FileId::of(out) {
        if inputs.iter().any(|i| FileId::of(i) == Some(id)) {
            bail!(
                "{flag} {} is one of this command's inputs; choose another path",
                out.display()
            );
        }
        for run in runs {
            if run_file_ids(run).contains(&id) {
                bail!(
                    "{flag} {} would overwrite a file of the run {} (it is one, or a link to one); choose another path",
                    out.display(),
                    run.display()
                );
            }
        }
    }
    // A run file's name in a run directory or a model folder inside one (unet/, raw/,
    // checkpoint/): never an output, whether or not the file exists yet.
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    let canon = parent.canonicalize().unwrap_or(parent);
    let in_folder = canon.file_name().is_some_and(|f| {
        folder_files(&f.to_string_lossy()).is_some_and(|files| files.contains(&name.as_str()))
    }) && canon.parent().is_some_and(is_run_dir);
    let weights_or_config = [".safetensors", ".json", ".bpk"]
        .iter()
        .any(|e| name.ends_with(e));
    let in_run = is_run_dir(&canon) && (is_run_entry(&name) || weights_or_config);
    if in_folder || in_run {
        bail!(
            "{flag} {} would overwrite a run's own file (weights, config, checkpoint or pictures); choose another path",
            out.display()
        );
    }
    Ok(())
}

/// The identities of the files diffuse wrote into the run `dir` (top level and its folders).
fn run_file_ids(dir: &Path) -> Vec<FileId> {
    let mut ids = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return ids;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(files) = folder_files(&name) {
            ids.extend(files.iter().filter_map(|f| FileId::of(&path.join(f))));
        } else if is_run_entry(&name) {
            ids.extend(FileId::of(&path));
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_entries_are_what_diffuse_writes() {
        for name in [
            "config.json",
            "samples.npy",
            "nll_ode_data.json",
            "nll_clip_x0_per_t.png",
            "samples.sw.json",
            ".model.safetensors.tmp-12",
            LOCK_FILE,
        ] {
            assert!(is_run_entry(name), "{name}");
        }
        for name in ["notes.txt", "data.npy", "nll_mine.json", "checkpoint"] {
            assert!(!is_run_entry(name), "{name}");
        }
        assert!(folder_files(".checkpoint.old-99").is_some());
        assert!(folder_files("data").is_none());
    }
}
