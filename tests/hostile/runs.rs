//! What happens to a run directory: one writer at a time, `--overwrite`, a tampered resume
//! state, finishing after the last step, and kill -9 at any moment.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    SMALL, assert_no_temporaries, config, limit_file_size, ok, refused, s, small_run, within,
};
use crate::common::{diffuse, scratch, stderr};

/// Cause 4: one writer per run. While a run trains, a second `train --resume`, an `eval` and a
/// `sample --pictures` of it are refused with the holder's pid; sampling (a reader) is not.
#[test]
fn a_run_has_one_writer_at_a_time() {
    let dir = scratch("lock");
    let run = small_run(&dir, "run");
    let mut holder = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(["train", "--resume", s(&run), "--steps", "1000000"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it trains (its loss.csv grows past the checkpoint's 400 steps).
    let lines = || std::fs::read_to_string(run.join("loss.csv")).map_or(0, |t| t.lines().count());
    let start = Instant::now();
    while lines() < 450 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = format!("pid {}", holder.id());
    for args in [
        vec!["train", "--resume", s(&run), "--steps", "2000000"],
        vec!["eval", "--run", s(&run), "--nll", "--n", "5"],
        vec!["sample", "--run", s(&run), "--pictures"],
        vec!["train", "--out", s(&run), "--overwrite"],
    ] {
        refused(&diffuse(&args), &pid, &format!("{args:?}"));
    }
    let x = dir.join("x.npy");
    ok(
        &diffuse(&["sample", "--run", s(&run), "--n", "5", "--out", s(&x)]),
        "sampling while training",
    );
    Command::new("kill")
        .args(["-INT", &holder.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(holder.wait().unwrap().code(), Some(130));
    // The lock ends with its holder: the run can be evaluated now.
    ok(
        &diffuse(&["eval", "--run", s(&run), "--nll", "--n", "5"]),
        "eval after",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Causes 6 and 7: `--overwrite` removes the files of the old run and nothing else, from inside
/// the run (`--out .`) or through `run/.`; anything diffuse did not write stops it first.
#[test]
fn overwrite_removes_only_the_runs_own_files() {
    let dir = scratch("overwrite");
    let run = small_run(&dir, "run");
    let small = config(&dir, "small.toml", SMALL);
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args([
            "train",
            "--config",
            &small,
            "--out",
            ".",
            "--overwrite",
            "--seed",
            "3",
        ])
        .current_dir(&run)
        .output()
        .unwrap();
    ok(&out, "--out . from inside the run");
    let config_json = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config_json.contains("\"seed\": 3"), "{config_json}");
    assert!(run.join("metrics.json").is_file() && run.join("checkpoint").is_dir());
    // A user's notes inside the run, and a folder of theirs: nothing is removed.
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    std::fs::create_dir_all(run.join("checkpoint/extra")).unwrap();
    let files = |d: &Path| std::fs::read_dir(d).unwrap().count();
    let n = files(&run);
    let dot = format!("{}/.", s(&run));
    let out = diffuse(&["train", "--config", &small, "--out", &dot, "--overwrite"]);
    refused(&out, "notes.txt", "foreign files");
    assert!(
        stderr(&out).contains("checkpoint/extra"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(&run), n);
    assert_eq!(
        std::fs::read_to_string(run.join("notes.txt")).unwrap(),
        "mine"
    );
    std::fs::remove_file(run.join("notes.txt")).unwrap();
    std::fs::remove_dir(run.join("checkpoint/extra")).unwrap();
    ok(
        &diffuse(&["train", "--config", &small, "--out", &dot, "--overwrite"]),
        "run/.",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Cause 9: resume checks the importance sampler's history against the run's chain; a bad one
/// is refused before anything is written.
#[test]
fn resume_checks_the_importance_history() {
    let dir = scratch("importance");
    let text = format!(
        "{SMALL}[train.loss]\nobjective = {{ kind = \"hybrid\", lambda = 0.001 }}\nvariance = \"learned_range\"\nimportance_sampling = true\n"
    );
    let run = dir.join("run");
    ok(
        &diffuse(&[
            "train",
            "--config",
            &config(&dir, "hybrid.toml", &text),
            "--out",
            s(&run),
        ]),
        "hybrid",
    );
    let state_path = run.join("checkpoint/state.json");
    let original = std::fs::read_to_string(&state_path).unwrap();
    let config_before = std::fs::read(run.join("config.json")).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(Edit, &str); 3] = [
        (
            |s| {
                let h = s["importance"]["history"].as_array_mut().unwrap();
                h.push(serde_json::json!([1.0]));
            },
            "1001 timesteps",
        ),
        (
            |s| {
                let h = s["importance"]["history"].as_array_mut().unwrap();
                h.truncate(10);
            },
            "10 timesteps",
        ),
        (
            |s| s["importance"]["history"][3] = serde_json::json!([-1.0]),
            "-1 at t = 3",
        ),
    ];
    for (edit, needle) in edits {
        let mut state: serde_json::Value = serde_json::from_str(&original).unwrap();
        edit(&mut state);
        std::fs::write(&state_path, state.to_string()).unwrap();
        let out = diffuse(&["train", "--resume", s(&run), "--steps", "500"]);
        refused(&out, needle, needle);
        assert!(stderr(&out).contains("state.json"), "{}", stderr(&out));
        assert_eq!(
            std::fs::read(run.join("config.json")).unwrap(),
            config_before
        );
    }
    std::fs::write(&state_path, original).unwrap();
    ok(
        &diffuse(&["train", "--resume", s(&run), "--steps", "500"]),
        "the original state",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Cause 10, with 8's disk-full `train`: a run that stops after its last step but before its
/// pictures (a full disk here) keeps every file whole, and `train --resume` finishes it; a 2-D
/// run's pictures are drawn again by `sample --pictures`, keeping the training figures.
#[test]
fn finishing_a_run_is_resumable() {
    let dir = scratch("finish");
    // A small network (no Fourier features), so its checkpoints fit under the limit and the
    // pictures do not.
    let text = format!("{SMALL}[model]\nhidden_width = 32\ninput_embed_dim = 0\n");
    let small = config(&dir, "tiny.toml", &text);
    let run = dir.join("run");
    let out = within(
        &["train", "--config", &small, "--out", s(&run)],
        Duration::from_secs(120),
        |cmd| limit_file_size(cmd, 40 << 10),
    );
    refused(&out, ".png", "a full disk while drawing");
    assert!(!run.join("metrics.json").exists());
    assert_no_temporaries(&run);
    for entry in std::fs::read_dir(&run).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "png") {
            image::open(entry.path()).unwrap_or_else(|e| panic!("{entry:?}: {e}"));
        }
    }
    let out = diffuse(&["train", "--resume", s(&run)]);
    ok(&out, "finishing");
    assert!(
        stderr(&out).contains("drawing them now"),
        "{}",
        stderr(&out)
    );
    for f in ["forward.png", "reverse.png", "samples.png", "metrics.json"] {
        assert!(run.join(f).is_file(), "{f}");
    }
    refused(
        &diffuse(&["train", "--resume", s(&run)]),
        "--steps",
        "finished",
    );
    // --pictures on a 2-D run: the same pictures and quality figure again.
    let metrics = std::fs::read_to_string(run.join("metrics.json")).unwrap();
    std::fs::remove_file(run.join("samples.png")).unwrap();
    ok(
        &diffuse(&["sample", "--run", s(&run), "--pictures"]),
        "--pictures",
    );
    assert!(run.join("samples.png").is_file());
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.json")).unwrap(),
        metrics
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The probe's kill -9 test, standing: a run killed at a moment the clock picks (training,
/// writing a checkpoint, drawing its pictures, or before it wrote anything) and then resumed
/// ends with the bytes of a run that was never stopped.
#[test]
fn a_run_killed_at_any_moment_resumes_to_the_same_bytes() {
    let dir = scratch("kill9");
    let small = config(&dir, "small.toml", SMALL);
    let full = dir.join("full");
    let start = Instant::now();
    ok(
        &diffuse(&["train", "--config", &small, "--out", s(&full)]),
        "full",
    );
    let whole = start.elapsed();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u128;
    let moment = Duration::from_nanos((nanos * whole.as_nanos() / 1_000_000_000) as u64);
    let part = dir.join("part");
    let mut child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(["train", "--config", &small, "--out", s(&part)])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(moment);
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    eprintln!(
        "killed at {moment:?} of {whole:?}; the run held {:?}",
        std::fs::read_dir(&part).map(|d| d.count()).unwrap_or(0)
    );
    // Go on as a user would: resume a run that wrote its config, else start it again.
    let out = if part.join("config.json").is_file() {
        diffuse(&["train", "--resume", s(&part)])
    } else {
        diffuse(&["train", "--config", &small, "--out", s(&part)])
    };
    let err = stderr(&out);
    assert!(
        out.status.success() || err.contains("already trained"),
        "{err}"
    );
    for f in crate::reliability::RUN_FILES {
        assert!(
            std::fs::read(full.join(f)).unwrap() == std::fs::read(part.join(f)).unwrap(),
            "{f} differs after a kill at {moment:?}"
        );
    }
    for f in ["forward.png", "reverse.png", "samples.png", "metrics.json"] {
        assert!(
            part.join(f).is_file(),
            "{f} missing after a kill at {moment:?}"
        );
    }
    assert_no_temporaries(&part);
    std::fs::remove_dir_all(&dir).unwrap();
}
