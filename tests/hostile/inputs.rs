//! What a command reads and writes: small feature maps, sizes, files that are not files,
//! outputs onto a run's files or through a full disk, configs that end in NaN, and the small
//! causes.

use std::path::Path;
use std::time::Duration;

use super::{
    assert_no_temporaries, config, fixtures, limit_file_size, npy, ok, refused, s, small_run,
    within,
};
use crate::common::{assert_config_refused, diffuse, scratch, stderr};

/// Cause 1: U-Nets whose feature maps reach 2x2, 1x2 and 1x1 sample and train (a range start
/// before the image panicked in the convolution's im2col).
#[test]
fn small_feature_maps_sample_and_train() {
    let dir = scratch("small-maps");
    let pipeline = fixtures().join("pipelines/ddim_epsilon");
    for shape in [[1, 1, 2, 2], [1, 1, 2, 4], [2, 1, 4, 2]] {
        let noise = dir.join("n.npy");
        npy(&noise, &shape, 0.5);
        let x = dir.join("x.npy");
        let out = diffuse(&[
            "sample",
            "--pipeline",
            s(&pipeline),
            "--sampler",
            "ddim",
            "--steps",
            "5",
            "--init-noise",
            s(&noise),
            "--out",
            s(&x),
        ]);
        ok(&out, &format!("{shape:?}"));
        let got = diffuse_data::read_npy(&x).unwrap();
        assert_eq!(got.shape, shape.to_vec());
        assert!(got.data.iter().all(|v| v.is_finite()));
    }
    // An image folder trained at 2x2 (two levels: 1x1 at the bottom) and at 1x1 (one level).
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (i, name) in ["samples.png", "forward.png"].iter().enumerate() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/images")
            .join(name);
        std::fs::copy(src, images.join(format!("{i}.png"))).unwrap();
    }
    for (size, levels) in [(2, r#"[8, 16]"#), (1, "[8]")] {
        let (down, up) = if size == 2 {
            (
                r#"["DownBlock2D", "AttnDownBlock2D"]"#,
                r#"["AttnUpBlock2D", "UpBlock2D"]"#,
            )
        } else {
            (r#"["AttnDownBlock2D"]"#, r#"["AttnUpBlock2D"]"#)
        };
        let text = format!(
            r#"{{"unet": {{"sample_size": {size}, "block_out_channels": {levels}, "down_block_types": {down}, "up_block_types": {up}, "norm_num_groups": 4, "attention_head_dim": 4}}, "train": {{"steps": 20, "batch_size": 4}}, "sample": {{"n": 4, "ddim_steps": 5}}}}"#
        );
        let run = dir.join(format!("run{size}"));
        let out = diffuse(&[
            "train",
            "--dataset",
            "folder",
            "--data-dir",
            s(&images),
            "--config",
            &config(&dir, "unet.json", &text),
            "--out",
            s(&run),
        ]);
        ok(&out, &format!("sample_size {size}"));
        assert!(run.join("metrics.json").is_file() && run.join("samples.png").is_file());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Cause 2: `--init-noise` of a size no machine here holds is refused with the estimate, at once.
#[test]
fn init_noise_is_held_to_the_memory_estimate() {
    let dir = scratch("big-noise");
    let noise = dir.join("big.npy");
    npy(&noise, &[1, 1, 2048, 2048], 0.0);
    let pipeline = fixtures().join("pipelines/ddim_epsilon");
    let out = within(
        &[
            "sample",
            "--pipeline",
            s(&pipeline),
            "--init-noise",
            s(&noise),
            "--out",
            s(&dir.join("x.npy")),
        ],
        Duration::from_secs(30),
        |_| {},
    );
    refused(&out, "2048 x 2048 needs about", "2048x2048 noise");
    assert!(stderr(&out).contains("big.npy"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Cause 3, and 13's `/dev/zero` weights: a device, a FIFO or a directory where a file is
/// expected (directly or through a symlink) is an error naming it, never an endless read.
#[test]
fn inputs_that_are_not_regular_files_are_refused_at_once() {
    let dir = scratch("unbounded");
    let fifo = dir.join("points.npy");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let zero_toml = dir.join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero_toml).unwrap();
    let zero_npy = dir.join("zero.npy");
    std::os::unix::fs::symlink("/dev/urandom", &zero_npy).unwrap();
    let limit = Duration::from_secs(30);
    let run = dir.join("run");
    for (args, needle) in [
        (
            vec!["train", "--config", s(&zero_toml), "--out", s(&run)],
            "zero.toml is a device",
        ),
        (
            vec!["train", "--data", s(&zero_npy), "--out", s(&run)],
            "zero.npy is a device",
        ),
        (
            vec!["train", "--data", s(&fifo), "--out", s(&run)],
            "points.npy is a FIFO",
        ),
    ] {
        refused(&within(&args, limit, |_| {}), needle, &format!("{args:?}"));
    }
    assert!(!run.exists());
    // A pipeline whose scheduler config, U-Net weights or model index is /dev/zero, and noise
    // that is.
    let src = fixtures().join("pipelines/ddim_epsilon");
    let x = dir.join("x.npy");
    for (file, needle) in [
        (
            "scheduler/scheduler_config.json",
            "scheduler_config.json is a device",
        ),
        (
            "unet/diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.safetensors is a device",
        ),
        ("model_index.json", "model_index.json is a device"),
    ] {
        let p = dir.join("pipeline");
        let _ = std::fs::remove_dir_all(&p);
        crate::reliability::copy_pipeline(&src, &p);
        std::fs::remove_file(p.join(file)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p.join(file)).unwrap();
        let args = ["sample", "--pipeline", s(&p), "--out", s(&x)];
        refused(&within(&args, limit, |_| {}), needle, file);
    }
    let args = [
        "sample",
        "--pipeline",
        s(&src),
        "--init-noise",
        s(&zero_npy),
        "--out",
        s(&x),
    ];
    refused(&within(&args, limit, |_| {}), "is a device", "noise");
    // A 2-D run whose weights are /dev/zero.
    let run = small_run(&dir, "points");
    std::fs::remove_file(run.join("model_ema.safetensors")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", run.join("model_ema.safetensors")).unwrap();
    let args = ["sample", "--run", s(&run), "--out", s(&x)];
    refused(
        &within(&args, limit, |_| {}),
        "model_ema.safetensors is a device",
        "weights",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Causes 5 and 8, and 13's `--png`: an output never replaces a run's files or an input (a
/// symlink or a hard link to one counts), bad outputs are refused before sampling, and an
/// output that cannot be written leaves the previous file whole (a full disk, by RLIMIT_FSIZE).
#[test]
fn outputs_never_replace_run_files_or_good_files() {
    let dir = scratch("outputs");
    let run = small_run(&dir, "run");
    let weights = run.join("model_ema.safetensors");
    let before = std::fs::read(&weights).unwrap();
    let soft = dir.join("soft.npy");
    std::os::unix::fs::symlink(&weights, &soft).unwrap();
    let hard = dir.join("hard.npy");
    std::fs::hard_link(run.join("model.safetensors"), &hard).unwrap();
    let sample = |extra: &[&str]| {
        let mut args = vec!["sample", "--run", s(&run)];
        if !extra.contains(&"--n") {
            args.extend(["--n", "5"]);
        }
        args.extend(extra);
        diffuse(&args)
    };
    for (extra, needle) in [
        (vec!["--out", s(&soft)], "would overwrite a file of the run"),
        (vec!["--out", s(&hard)], "would overwrite a file of the run"),
        (
            vec!["--out", s(&run.join("checkpoint/state.json"))],
            "would overwrite",
        ),
        (
            vec!["--out", s(&run.join("reverse.csv"))],
            "would overwrite",
        ),
        (vec!["--out", s(&dir.join("no/x.npy"))], "does not exist"),
        (vec!["--out", s(&dir)], "a directory"),
        (vec!["--png", s(&dir.join("x.jpg"))], "must end in .png"),
    ] {
        refused(&sample(&extra), needle, &format!("{extra:?}"));
    }
    assert_eq!(std::fs::read(&weights).unwrap(), before);
    ok(&sample(&["--out", "/dev/null"]), "/dev/null");
    // A full disk: the previous file stays whole and no temporary is left.
    let out = dir.join("out.npy");
    ok(
        &sample(&["--n", "20000", "--out", s(&out), "--steps", "10"]),
        "20000",
    );
    let good = std::fs::read(&out).unwrap();
    let full = within(
        &[
            "sample",
            "--run",
            s(&run),
            "--n",
            "20000",
            "--seed",
            "1",
            "--steps",
            "10",
            "--out",
            s(&out),
        ],
        Duration::from_secs(60),
        |cmd| limit_file_size(cmd, 64 << 10),
    );
    refused(&full, "out.npy", "a full disk");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        good,
        "the previous file changed"
    );
    assert_no_temporaries(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Causes 11 and 12: a schedule whose alphas_cumprod leaves float32 (every sampler would give
/// NaN) and a non-finite field are refused before anything is written, naming the field.
#[test]
fn configs_that_end_in_nan_are_refused_before_training() {
    let dir = scratch("nan-configs");
    for (name, text, field) in [
        ("b5.toml", "[schedule]\nbeta_end = 0.5\n", "beta_end"),
        (
            "b9.toml",
            "[schedule]\nbeta_end = 0.999\n",
            "alphas_cumprod",
        ),
        (
            "sig.toml",
            "[schedule]\nbeta_schedule = \"sigmoid\"\nbeta_start = 0.5\nbeta_end = 0.9\n",
            "alphas_cumprod",
        ),
        ("bs.toml", "[schedule]\nbeta_start = 1e-9\n", "beta_start"),
        (
            "nan.toml",
            "[model]\ninput_embed_scale = nan\n",
            "model.input_embed_scale is NaN",
        ),
        (
            "inf.toml",
            "[model]\ninput_embed_scale = inf\n",
            "model.input_embed_scale is inf",
        ),
        ("lr.toml", "[train]\nlr = -inf\n", "train.lr is -inf"),
    ] {
        assert_config_refused(&dir, name, text, field);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Cause 13: an interval from one example is undefined, `--t-samples` >= T is the whole bound,
/// and every sampler flag is refused where it does not apply (`--rtol` on ddim as `--eta` on
/// ddpm), as are tolerances that are not finite.
#[test]
fn small_causes_say_what_they_are() {
    let dir = scratch("small-causes");
    let run = small_run(&dir, "run");
    let out = diffuse(&["eval", "--run", s(&run), "--nll", "--n", "1"]);
    ok(&out, "one example");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("one example: no confidence interval"),
        "{text}"
    );
    let nll: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("nll.json")).unwrap()).unwrap();
    assert!(nll["bits_per_dim_ci95"].is_null(), "{nll}");
    let out = diffuse(&[
        "eval",
        "--run",
        s(&run),
        "--nll",
        "--n",
        "3",
        "--t-samples",
        "5000",
    ]);
    ok(&out, "--t-samples > T");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("1000 of T timesteps") && !text.contains("an estimate"),
        "{text}"
    );
    let x = dir.join("x.npy");
    for (extra, needle) in [
        (vec!["--sampler", "ddim", "--rtol", "1e-3"], "--rtol"),
        (vec!["--sampler", "ode", "--rtol", "inf"], "--rtol"),
        (vec!["--sampler", "ode", "--atol", "0"], "--atol"),
        (vec!["--sampler", "ddpm", "--eta", "0.5"], "--eta"),
    ] {
        let mut args = vec!["sample", "--run", s(&run), "--n", "3", "--out", s(&x)];
        args.extend(&extra);
        refused(&diffuse(&args), needle, &format!("{extra:?}"));
    }
    for (extra, needle) in [
        (vec!["--rtol", "1e-3"], "--method ode"),
        (vec!["--method", "ode", "--t-samples", "5"], "--t-samples"),
        (vec!["--method", "ode", "--rtol", "nan"], "--rtol"),
    ] {
        let mut args = vec!["eval", "--run", s(&run), "--nll", "--n", "3"];
        args.extend(&extra);
        refused(&diffuse(&args), needle, &format!("{extra:?}"));
    }
    assert!(!x.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
