//! Helpers shared by the integration tests: running the binary, scratch folders, fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Runs the `diffuse` binary built for these tests.
pub fn diffuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .expect("run diffuse")
}

/// `train --config FILE` with `text` in `dir/name` fails with status 1 and a message naming
/// `expect`, and leaves no run behind.
pub fn assert_config_refused(dir: &Path, name: &str, text: &str, expect: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let run = dir.join(format!("run-{name}"));
    let out = diffuse(&[
        "train",
        "--config",
        path.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{name}: {err}");
    assert!(err.contains(expect), "{name}: {err}");
    assert!(
        !run.exists(),
        "{name}: a refused config wrote {}",
        run.display()
    );
}

/// diffusers' 20-step DDIM loop as `diffuse sample --pipeline` runs it, from `--init-noise`,
/// with `extra` flags after.
pub fn sample_ddim20(pipeline: &Path, noise: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "sample",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--sampler",
        "ddim",
        "--steps",
        "20",
        "--init-noise",
        noise.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    diffuse(&args)
}

/// An empty folder for one test (names are unique across the test binary).
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// tests/fixtures/<name>, parsed, with a pointer to the script that writes it when missing.
pub fn json_fixture(name: &str, script: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} ({e}; run {script})", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Copies a directory tree (pipeline folders are two levels deep).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
