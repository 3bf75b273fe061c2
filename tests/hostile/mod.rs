//! Reliability, second pass: inputs a hostile user tried, each through the binary where a user
//! meets it. No panic, no hang, no lost or overwritten work: every case is a clear error (exit
//! 1, naming the file or field) or the correct result. `inputs`: what a command reads and
//! writes; `runs`: what happens to a run directory (its lock, `--overwrite`, resume, kill -9).

mod inputs;
mod runs;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{diffuse, stderr};

/// A 2-D run of a second or two: 400 steps, a checkpoint every 100, 200 sample points.
pub(crate) const SMALL: &str = "[train]\nsteps = 400\nbatch_size = 64\ncheckpoint_every = 100\n[sample]\nn = 200\n[data]\ntrain_points = 500\nheld_out = 50\n";

pub(crate) fn config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the binary, killing it (and failing the test) if it runs past `limit`: a hang is a bug.
pub(crate) fn within(args: &[&str], limit: Duration, setup: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_diffuse"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    setup(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Exit status 1 with `needle` in the message.
pub(crate) fn refused(out: &Output, needle: &str, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(
        err.contains(needle),
        "{what}: expected {needle:?} in: {err}"
    );
}

pub(crate) fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", stderr(out));
}

/// A small trained 2-D run in `dir/name`.
pub(crate) fn small_run(dir: &Path, name: &str) -> PathBuf {
    let run = dir.join(name);
    let out = diffuse(&[
        "train",
        "--config",
        &config(dir, "small.toml", SMALL),
        "--out",
        s(&run),
    ]);
    ok(&out, "small run");
    run
}

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A float32 `.npy` of the given shape filled with `value`.
pub(crate) fn npy(path: &Path, shape: &[usize], value: f32) {
    let n: usize = shape.iter().product();
    diffuse_data::write_npy(path, shape, &vec![value; n]).unwrap();
}

/// Files may grow to `bytes` at most in the child (EFBIG beyond, SIGXFSZ ignored): a full disk.
pub(crate) fn limit_file_size(cmd: &mut Command, bytes: u64) {
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal).
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}

/// No `.NAME.tmp-PID` file anywhere under `dir`.
pub(crate) fn assert_no_temporaries(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains(".tmp-"),
            "{} left behind",
            entry.path().display()
        );
        if entry.path().is_dir() {
            assert_no_temporaries(&entry.path());
        }
    }
}
