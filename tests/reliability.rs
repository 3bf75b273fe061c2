//! Never a silent NaN, never lost work: interrupt and resume, divergence, refusals to overwrite,
//! half-precision weights.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{assert_config_refused, diffuse, sample_ddim20, scratch, stderr};

/// A small 2-D run: 3,000 steps at batch 64, a checkpoint every 250 steps.
pub(crate) const SMALL: &str =
    "[train]\nsteps = 3000\nbatch_size = 64\ncheckpoint_every = 250\n[sample]\nn = 200\n";

/// The same with improved DDPM's objective: a learned variance, L_hybrid, and t importance-
/// sampled (its per-t loss history is part of the checkpoint).
const HYBRID: &str = "[train.loss]\nobjective = { kind = \"hybrid\", lambda = 0.001 }\nvariance = \"learned_range\"\nimportance_sampling = true\n";

fn config_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Files whose bytes a run determines (not the timings in metrics.json, nor PNGs).
pub(crate) const RUN_FILES: [&str; 9] = [
    "config.json",
    "model.safetensors",
    "model_ema.safetensors",
    "loss.csv",
    "reverse.csv",
    "checkpoint/model.safetensors",
    "checkpoint/model_ema.safetensors",
    "checkpoint/optimizer.bpk",
    "checkpoint/state.json",
];

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

#[test]
fn resume_after_sigint_gives_the_bytes_of_an_uninterrupted_run() {
    let dir = scratch("resume");
    resume_case(&dir.join("simple"), SMALL);
    resume_case(&dir.join("hybrid"), &format!("{SMALL}{HYBRID}"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Trains `config` once through, and once interrupted and resumed; compares the two.
pub(crate) fn resume_case(dir: &Path, config: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let config = config_file(dir, "run.toml", config);
    let full = dir.join("full");
    let out = diffuse(&[
        "train",
        "--config",
        &config,
        "--out",
        full.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Interrupt at a step that differs from run to run (the clock picks it).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let target = 100 + nanos % 2000;
    let part = dir.join("part");
    let child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args([
            "train",
            "--config",
            &config,
            "--out",
            part.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while lines(&part.join("loss.csv")) < target + 1 && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(part.join("checkpoint/state.json")).unwrap())
            .unwrap();
    let stopped = state["step"].as_u64().unwrap() as usize;
    assert!(stopped >= target && stopped < 3000, "stopped at {stopped}");
    eprintln!("interrupted at step {stopped} (aimed at {target})");
    // loss.csv holds every step up to the stop.
    assert_eq!(lines(&part.join("loss.csv")), stopped + 1);

    // A second `train --out` onto the run is refused; --resume goes on.
    let again = diffuse(&[
        "train",
        "--config",
        &config,
        "--out",
        part.to_str().unwrap(),
    ]);
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
    // What a killed process leaves behind is cleaned when the run resumes.
    let leftover = part.join(".model.safetensors.tmp-4194304");
    std::fs::write(&leftover, b"partial").unwrap();
    let out = diffuse(&["train", "--resume", part.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!leftover.exists());
    for f in RUN_FILES {
        // A family that writes no such file (reverse.csv is DDPM's) writes it in neither run.
        if !full.join(f).exists() && !part.join(f).exists() && !f.contains("safetensors") {
            continue;
        }
        let (a, b) = (
            std::fs::read(full.join(f)).unwrap(),
            std::fs::read(part.join(f)).unwrap(),
        );
        assert!(
            a == b,
            "{f} differs between the resumed and the uninterrupted run"
        );
    }
    // Weights get the mode of the run's other files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| {
            std::fs::metadata(part.join(f))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode("model.safetensors"), mode("config.json"));
        assert_eq!(mode("checkpoint/optimizer.bpk"), mode("config.json"));
    }
    // A finished run has nothing left to resume; --steps extends it.
    let out = diffuse(&["train", "--resume", part.to_str().unwrap()]);
    assert!(stderr(&out).contains("--steps"), "{}", stderr(&out));
}

/// Reads a float32 safetensors file's values (all tensors).
fn safetensors_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = Vec::new();
    for (name, t) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(t["dtype"], "F32");
        let off = &t["data_offsets"];
        let (a, b) = (
            off[0].as_u64().unwrap() as usize,
            off[1].as_u64().unwrap() as usize,
        );
        out.extend(
            data[a..b]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap())),
        );
    }
    out
}

#[test]
fn a_diverging_run_stops_and_leaves_finite_weights() {
    let dir = scratch("diverge");
    let config = dir.join("d.json");
    std::fs::write(
        &config,
        r#"{"train":{"lr":1e20,"grad_clip_norm":null,"checkpoint_every":1,"warmup_steps":0}}"#,
    )
    .unwrap();
    let run = dir.join("run");
    let out = diffuse(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--steps",
        "200",
        "--out",
        run.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("at step"), "{err}");
    for f in [
        "model.safetensors",
        "model_ema.safetensors",
        "checkpoint/model.safetensors",
    ] {
        let w = safetensors_f32(&run.join(f));
        assert!(!w.is_empty() && w.iter().all(|v| v.is_finite()), "{f}");
    }
    // Sampling those weights goes non-finite: an error naming the step, and no file written.
    let samples = dir.join("x.npy");
    let out = diffuse(&[
        "sample",
        "--run",
        run.to_str().unwrap(),
        "--n",
        "5",
        "--out",
        samples.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("at step"), "{err}");
    assert!(!samples.exists());
    // --out onto the run's own checkpoint is refused, and the weights stay as they were.
    let before = std::fs::read(run.join("model_ema.safetensors")).unwrap();
    let target = run.join("model_ema.safetensors");
    let out = diffuse(&[
        "sample",
        "--run",
        run.to_str().unwrap(),
        "--out",
        target.to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains("would overwrite"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn configs_that_make_nan_certain_are_refused_up_front() {
    let dir = scratch("badconfig");
    for (name, text, field) in [
        ("b.toml", "[schedule]\nbeta_end = 1.0\n", "beta_end"),
        ("w.toml", "[train]\nweight_decay = inf\n", "weight_decay"),
        ("c.toml", "[sample]\nclip_sample = -1\n", "clip_sample"),
        ("m.toml", "[model]\ndata_dim = 3\n", "data_dim"),
    ] {
        assert_config_refused(&dir, name, text, field);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Rewrites a float32 safetensors file with every tensor converted by `convert` to `dtype`.
fn convert_safetensors(src: &Path, dst: &Path, dtype: &str, convert: impl Fn(f32) -> Vec<u8>) {
    let bytes = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut new_header = serde_json::Map::new();
    let mut new_data = Vec::new();
    for (name, t) in header.as_object().unwrap() {
        if name == "__metadata__" {
            new_header.insert(name.clone(), t.clone());
            continue;
        }
        let off = &t["data_offsets"];
        let (a, b) = (
            off[0].as_u64().unwrap() as usize,
            off[1].as_u64().unwrap() as usize,
        );
        let start = new_data.len();
        for c in data[a..b].chunks_exact(4) {
            new_data.extend(convert(f32::from_le_bytes(c.try_into().unwrap())));
        }
        let mut t = t.clone();
        t["dtype"] = dtype.into();
        t["data_offsets"] = serde_json::json!([start, new_data.len()]);
        new_header.insert(name.clone(), t);
    }
    let text = serde_json::to_string(&new_header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(new_data);
    std::fs::write(dst, out).unwrap();
}

pub(crate) fn copy_pipeline(src: &Path, dst: &Path) {
    for sub in ["", "unet", "scheduler"] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
        for entry in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dst.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
}

fn sample_pipeline(pipeline: &Path, noise: &Path, out: &Path) -> Vec<f32> {
    let o = sample_ddim20(pipeline, noise, out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(out).unwrap();
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// fp16, bf16 and fp64 copies of a diffusers pipeline load (cast to float32, as
/// `torch_dtype=torch.float32` does). Casting a half value to float32 is exact, so each copy must
/// give, bit for bit, the samples of a float32 file holding the same rounded weights; against the
/// original float32 weights the difference is the fp16 rounding's (printed).
#[test]
fn half_and_double_precision_weights_load() {
    use half::{bf16, f16};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipelines");
    let src = fixtures.join("ddim_epsilon");
    let noise = fixtures.join("ddim_epsilon.noise.npy");
    let dir = scratch("half");
    let weights = "unet/diffusion_pytorch_model.safetensors";
    let reference = sample_pipeline(&src, &noise, &dir.join("f32.npy"));
    type Conv = fn(f32) -> Vec<u8>;
    let cases: [(&str, Conv, Conv); 3] = [
        (
            "F16",
            |v| f16::from_f32(v).to_le_bytes().to_vec(),
            |v| f16::from_f32(v).to_f32().to_le_bytes().to_vec(),
        ),
        (
            "BF16",
            |v| bf16::from_f32(v).to_le_bytes().to_vec(),
            |v| bf16::from_f32(v).to_f32().to_le_bytes().to_vec(),
        ),
        (
            "F64",
            |v| (v as f64).to_le_bytes().to_vec(),
            |v| v.to_le_bytes().to_vec(),
        ),
    ];
    for (dtype, to_dtype, rounded_f32) in cases {
        let low = dir.join(dtype);
        copy_pipeline(&src, &low);
        convert_safetensors(&src.join(weights), &low.join(weights), dtype, to_dtype);
        let got = sample_pipeline(&low, &noise, &dir.join(format!("{dtype}.npy")));
        let same = dir.join(format!("{dtype}-as-f32"));
        copy_pipeline(&src, &same);
        convert_safetensors(&src.join(weights), &same.join(weights), "F32", rounded_f32);
        let want = sample_pipeline(&same, &noise, &dir.join(format!("{dtype}-as-f32.npy")));
        assert!(
            got == want,
            "{dtype}: differs from float32 with the same rounded weights"
        );
        let diff = got
            .iter()
            .zip(&reference)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{dtype} weights: max |x - x_f32| = {diff:e} over 20 DDIM steps");
        if dtype == "F64" {
            assert_eq!(diff, 0.0);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Inputs that used to panic (exit 101) or abort: each is now an error naming the field or file.
#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = scratch("nopanic");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipelines");
    let run = |args: &[&str], needle: &str| {
        let out = diffuse(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let out = dir.join("run");
    let out = out.to_str().unwrap();
    // Sizes no machine here holds: refused with the estimate, before allocating.
    for (text, field) in [
        ("[model]\nhidden_width = 30000\n", "hidden_width"),
        ("[train]\nbatch_size = 100000000\n", "batch_size"),
        ("[sample]\nn = 100000000000\n", "sample.n"),
        ("[data]\nheld_out = 100000000\n", "held_out"),
    ] {
        run(
            &["train", "--config", &file("size.toml", text), "--out", out],
            field,
        );
    }
    // U-Net configs.
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images/samples.png"),
        images.join("a.png"),
    )
    .unwrap();
    let images = images.to_str().unwrap();
    for (text, needle) in [
        (r#"{"unet":{"norm_num_groups":0}}"#, "norm_num_groups"),
        (r#"{"unet":{"in_channels":4,"out_channels":4}}"#, "1 or 3"),
    ] {
        let config = file("unet.json", text);
        run(
            &[
                "train",
                "--dataset",
                "folder",
                "--data-dir",
                images,
                "--config",
                &config,
                "--out",
                out,
            ],
            needle,
        );
    }
    // Pipelines whose sample_size the U-Net cannot take.
    for size in [0, 27] {
        let pipeline = dir.join(format!("p{size}"));
        copy_pipeline(&fixtures.join("ddim_epsilon"), &pipeline);
        let config = pipeline.join("unet/config.json");
        let mut c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        c["sample_size"] = size.into();
        std::fs::write(&config, c.to_string()).unwrap();
        let x = dir.join("x.npy");
        run(
            &[
                "sample",
                "--pipeline",
                pipeline.to_str().unwrap(),
                "--out",
                x.to_str().unwrap(),
            ],
            "sample_size",
        );
    }
    // A run config whose standardizer has one entry for 2-D points.
    let r = diffuse(&[
        "train",
        "--steps",
        "2",
        "--config",
        &file("s.toml", SMALL_SAMPLE),
        "--out",
        out,
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let config = Path::new(out).join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["standardizer"]["mean"] = serde_json::json!([0.0]);
    std::fs::write(&config, c.to_string()).unwrap();
    let x = dir.join("x.npy");
    run(
        &["sample", "--run", out, "--out", x.to_str().unwrap()],
        "standardizer",
    );
    // NaN initial noise names the file.
    let noise = fixtures.join("ddim_epsilon.noise.npy");
    let mut bytes = std::fs::read(&noise).unwrap();
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    let nan = dir.join("nan.npy");
    std::fs::write(&nan, bytes).unwrap();
    run(
        &[
            "sample",
            "--pipeline",
            fixtures.join("ddim_epsilon").to_str().unwrap(),
            "--init-noise",
            nan.to_str().unwrap(),
            "--out",
            x.to_str().unwrap(),
        ],
        "nan.npy",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

const SMALL_SAMPLE: &str = "[sample]\nn = 20\n[data]\ntrain_points = 100\nheld_out = 20\n";
