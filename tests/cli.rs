//! End-to-end runs of the `diffuse` binary on small budgets, checking real quality numbers.

use std::path::Path;
use std::process::Output;

use diffuse_data::{read_npy, write_npy};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde_json::Value;

use crate::common::{assert_config_refused, diffuse, scratch};

fn metrics(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A point cloud no built-in set resembles: the five-armed "pinwheel" of Johnson et al. (2016),
/// in its own units (centred at (3, -1), spread ~2), saved as float64 `.npy`.
fn pinwheel(path: &Path, n: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let arm = rng.random_range(0..5) as f64;
        let (r, w): (f64, f64) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
        let x = 1.0 + 0.3 * r;
        let y = 0.05 * w;
        let angle = arm * 2.0 * std::f64::consts::PI / 5.0 + 0.25 * x.exp();
        data.push((3.0 + 2.0 * (x * angle.cos() - y * angle.sin())) as f32);
        data.push((-1.0 + 2.0 * (x * angle.sin() + y * angle.cos())) as f32);
    }
    // Stored as float64 to exercise that path of the reader.
    let f64s: Vec<f64> = data.iter().map(|v| *v as f64).collect();
    write_npy_f64(path, n, &f64s);
}

fn write_npy_f64(path: &Path, n: usize, data: &[f64]) {
    let header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({n}, 2), }}");
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    let header = format!("{header}{}\n", " ".repeat(pad));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// A short run on a built-in set: the samples must be far closer to held-out points than a single
/// Gaussian fitted to the data is. Then `diffuse sample` reads the run back.
#[test]
fn short_run_beats_a_gaussian_and_samples_back() {
    let dir = scratch("moons");
    let run = dir.join("run");
    ok(&diffuse(&[
        "train",
        "--dataset",
        "two_moons",
        "--steps",
        "3000",
        "--seed",
        "1",
        "--out",
        run.to_str().unwrap(),
    ]));
    for f in [
        "config.json",
        "model.safetensors",
        "model_ema.safetensors",
        "loss.png",
        "samples.png",
        "forward.png",
        "reverse.png",
        "loss.csv",
        "reverse.csv",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // One line per reverse step, t = 999 down to 0; the chain ends at the data's scale (the
    // points are standardized, so an RMS near 1).
    let trajectory = std::fs::read_to_string(run.join("reverse.csv")).unwrap();
    let rows: Vec<Vec<f64>> = trajectory
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 1000);
    assert_eq!((rows[0][0], rows[999][0]), (999.0, 0.0));
    assert!(rows.iter().flatten().all(|v| v.is_finite()));
    assert!(
        (0.7..1.3).contains(&rows[999][1]),
        "final RMS {}",
        rows[999][1]
    );
    let m = metrics(&run);
    let (sw, gauss) = (
        m["sw_samples"].as_f64().unwrap(),
        m["sw_gaussian_fit"].as_f64().unwrap(),
    );
    assert!(
        sw < 0.5 * gauss,
        "samples SW {sw} vs single Gaussian {gauss}"
    );

    let out = dir.join("s.npy");
    let png = dir.join("s.png");
    for sampler in [
        ["--sampler", "ddim", "--steps", "50"],
        ["--sampler", "ddpm", "--steps", "100"],
    ] {
        let mut args = vec![
            "sample",
            "--run",
            run.to_str().unwrap(),
            "--n",
            "300",
            "--seed",
            "5",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(sampler);
        args.extend(["--png", png.to_str().unwrap()]);
        ok(&diffuse(&args));
        let arr = read_npy(&out).unwrap();
        assert_eq!(arr.shape, vec![300, 2]);
        assert!(arr.data.iter().all(|v| v.is_finite()));
        assert!(png.is_file());
    }
    // DDIM with eta = 0 is deterministic: the same seed gives the same bits.
    let again = dir.join("again.npy");
    ok(&diffuse(&[
        "sample",
        "--run",
        run.to_str().unwrap(),
        "--n",
        "300",
        "--seed",
        "5",
        "--sampler",
        "ddpm",
        "--steps",
        "100",
        "--out",
        again.to_str().unwrap(),
    ]));
    assert_eq!(read_npy(&out).unwrap(), read_npy(&again).unwrap());

    // The variational bound on the held-out points: finite, with a 95% interval, per-t files.
    let nll = eval_nll(&run);
    assert!(nll.0.is_finite() && nll.1 > 0.0 && nll.1 < 0.2, "{nll:?}");
    assert!(run.join("nll_per_t.png").is_file() && run.join("nll_per_t.csv").is_file());

    // --clip-x0 writes nll_clip_x0.* beside nll.*: a clamp no estimate reaches changes nothing,
    // a tight one (x_0 estimates squeezed to [-0.01, 0.01]) makes the bound worse.
    let plain = std::fs::read_to_string(run.join("nll.json")).unwrap();
    let clipped = |r: &str| -> f64 {
        let args = ["--n", "200", "--t-samples", "40", "--clip-x0", r];
        let mut cmd = vec!["eval", "--run", run.to_str().unwrap(), "--nll"];
        cmd.extend(args);
        ok(&diffuse(&cmd));
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("nll_clip_x0.json")).unwrap())
                .unwrap();
        assert_eq!(v["clip_x0"].as_f64(), Some(r.parse().unwrap()));
        v["bits_per_dim"].as_f64().unwrap()
    };
    let (wide, tight) = (clipped("1e6"), clipped("0.01"));
    assert_eq!(
        plain,
        std::fs::read_to_string(run.join("nll.json")).unwrap()
    );
    ok(&diffuse(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--nll",
        "--n",
        "200",
        "--t-samples",
        "40",
    ]));
    let unclamped: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("nll.json")).unwrap()).unwrap();
    assert_eq!(unclamped["bits_per_dim"].as_f64(), Some(wide));
    assert!(unclamped["clip_x0"].is_null());
    assert!(tight > wide + 0.1, "tight clamp {tight} vs none {wide}");
    assert!(run.join("nll_clip_x0_per_t.csv").is_file());
}

/// `diffuse eval --nll` on a run: (bits/dim, 95% half-width, NLL of a Gaussian with the data's
/// per-dimension spread in bits/dim).
fn eval_nll(run: &Path) -> (f64, f64, f64) {
    ok(&diffuse(&["eval", "--run", run.to_str().unwrap(), "--nll"]));
    let read = |f: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(run.join(f)).unwrap()).unwrap()
    };
    let (nll, config) = (read("nll.json"), read("config.json"));
    let stds = config["standardizer"]["std"].as_array().unwrap();
    let gauss_nats: f64 = stds
        .iter()
        .map(|s| {
            0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E).ln() + s.as_f64().unwrap().ln()
        })
        .sum();
    (
        nll["bits_per_dim"].as_f64().unwrap(),
        nll["bits_per_dim_ci95"].as_f64().unwrap(),
        gauss_nats / (stds.len() as f64 * std::f64::consts::LN_2),
    )
}

/// The issue's bar: default settings on a point cloud the project has never seen, given as
/// `.npy`, give samples whose sliced Wasserstein distance to held-out points is within 1.5x of
/// the distance between two independent draws of the data.
#[test]
fn default_run_on_unseen_npy_is_within_1_5x_of_data() {
    let dir = scratch("pinwheel");
    let data = dir.join("pinwheel.npy");
    pinwheel(&data, 12_000, 42);
    let run = dir.join("run");
    ok(&diffuse(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]));
    let m = metrics(&run);
    let (sw, floor) = (
        m["sw_samples"].as_f64().unwrap(),
        m["sw_data_vs_data"].as_f64().unwrap(),
    );
    assert!(
        sw <= 1.5 * floor,
        "samples SW {sw} vs data-vs-data {floor} (ratio {:.2})",
        sw / floor
    );
    // The default model's bound on held-out points beats a Gaussian with the data's spread (an
    // upper bound on the NLL that is worse than a Gaussian fit would mean a broken bound).
    let (bits, ci, gauss) = eval_nll(&run);
    eprintln!("pinwheel bound {bits:.3} +- {ci:.3} bits/dim; Gaussian {gauss:.3}");
    assert!(
        bits + ci < gauss,
        "bound {bits} +- {ci} vs Gaussian {gauss}"
    );
}

/// The example config in README.md is accepted as written and reaches the run's config.json.
#[test]
fn readme_example_config_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```toml\n").expect("README has a TOML example") + 8;
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = scratch("readme");
    let config = dir.join("example.toml");
    std::fs::write(&config, example).unwrap();
    let run = dir.join("run");
    ok(&diffuse(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--steps",
        "20",
        "--out",
        run.to_str().unwrap(),
    ]));
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(written["prediction"], "v_prediction");
    assert_eq!(written["schedule"]["beta_schedule"], "squaredcos_cap_v2");
    assert_eq!(written["model"]["hidden_width"], 256);
    assert_eq!(
        written["train"]["steps"], 20,
        "flags override the config file"
    );
}

/// Bad input gives a clear error naming the file and the problem, never a panic.
#[test]
fn bad_input_is_a_clear_error() {
    let dir = scratch("bad");
    let csv = dir.join("bad.csv");
    std::fs::write(&csv, "x,y\n1,2\n3,oops\n").unwrap();
    let npy = dir.join("wrong.npy");
    write_npy(&npy, &[4, 3], &[0.0; 12]).unwrap();
    let missing = dir.join("missing.npy");
    let tiny = dir.join("tiny.csv");
    std::fs::write(&tiny, "1,2\n3,4\n5,6\n").unwrap();
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "[train]\nstepz = 5\n").unwrap();
    let cases: [(Vec<&str>, &str); 8] = [
        (
            vec!["train", "--config", typo.to_str().unwrap()],
            "unknown field `stepz`",
        ),
        (
            vec!["train", "--data", tiny.to_str().unwrap()],
            "holds 3 points",
        ),
        (vec!["train", "--data", csv.to_str().unwrap()], "line 3"),
        (vec!["train", "--data", npy.to_str().unwrap()], "[N, 2]"),
        (
            vec!["train", "--data", missing.to_str().unwrap()],
            "missing.npy",
        ),
        (vec!["train", "--dataset", "spiral"], "swiss_roll"),
        (vec!["train", "--steps", "0"], "steps"),
        (
            vec!["sample", "--run", dir.to_str().unwrap()],
            "not a diffuse run directory",
        ),
    ];
    for (args, expect) in cases {
        let out = diffuse(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// One run config for both model families: the file's model section and dataset choose the
/// family, a model that does not fit the data is refused by name, and so is a field of the
/// other kind of data; nothing is written for a refused config.
#[test]
fn the_config_names_the_model_family_and_a_mismatch_is_refused() {
    let dir = scratch("families");
    let cases = [
        (
            "mlp_on_mnist.toml",
            "[data]\ndataset = \"mnist\"\n[model]\nhidden_width = 64\n",
            "a set of images, which a U-Net",
        ),
        (
            "unet_on_points.json",
            r#"{"unet": {"sample_size": 32}}"#,
            "a set of points, which an MLP",
        ),
        ("both.json", r#"{"model": {}, "unet": {}}"#, "not both"),
        (
            "flip_points.toml",
            "[data]\nrandom_flip = true\n",
            "data.random_flip does not apply to points",
        ),
        (
            "held_out_images.toml",
            "[data]\ndataset = \"fashion_mnist\"\nheld_out = 100\n",
            "data.held_out does not apply to images",
        ),
        // TOML values JSON cannot hold reach validation, which names the field.
        (
            "inf.toml",
            "[data]\ndataset = \"mnist\"\n[train]\nlr = inf\n",
            "lr",
        ),
    ];
    for (name, text, expect) in cases {
        assert_config_refused(&dir, name, text, expect);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--device` names a backend; one this binary was not built with is refused by its cargo
/// feature, before any work.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_device_that_is_not_built_in_is_refused_by_its_feature() {
    let dir = scratch("device");
    let run = dir.join("run");
    let out = diffuse(&["train", "--device", "cuda", "--out", run.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--features cuda"), "{err}");
    assert!(!run.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--precision bf16` (mixed precision) trains as float32 does: the same run's loss curve, in
/// means over 200 steps, within 3% of float32's, its samples as close to held-out points (within
/// 10%), and the config it writes names the precision, which a resumed run keeps.
#[test]
fn bf16_mixed_precision_trains_as_float32_does() {
    let dir = scratch("bf16");
    let train = |name: &str, precision: &str| {
        let run = dir.join(name);
        ok(&diffuse(&[
            "train",
            "--dataset",
            "two_moons",
            "--steps",
            "1500",
            "--seed",
            "2",
            "--precision",
            precision,
            "--out",
            run.to_str().unwrap(),
        ]));
        let losses: Vec<f64> = std::fs::read_to_string(run.join("loss.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let config = std::fs::read_to_string(run.join("config.json")).unwrap();
        let config: Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["train"]["precision"], precision);
        (run, losses)
    };
    let (run, bf16) = train("bf16", "bf16");
    let (run_f32, f32) = train("f32", "f32");
    assert_eq!(bf16.len(), f32.len());
    for (a, b) in bf16.chunks(200).zip(f32.chunks(200)) {
        let (a, b) = (a.iter().sum::<f64>(), b.iter().sum::<f64>());
        assert!(
            (a - b).abs() <= 0.03 * b,
            "bf16 {a} vs f32 {b} (sums of 200 losses)"
        );
    }
    // Sampled in float32 with the same seed: the two sets of weights draw equally good points.
    let sw = |run: &Path| metrics(run)["sw_samples"].as_f64().unwrap();
    let (sw_bf16, sw_f32) = (sw(&run), sw(&run_f32));
    eprintln!("sliced Wasserstein to held-out points: bf16 {sw_bf16}, f32 {sw_f32}");
    assert!(
        (sw_bf16 - sw_f32).abs() <= 0.1 * sw_f32,
        "bf16 {sw_bf16} vs f32 {sw_f32}"
    );
    // Resumed with more steps: the saved precision, not a flag.
    ok(&diffuse(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--steps",
        "1600",
    ]));
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains("\"precision\": \"bf16\""), "{config}");
    let out = diffuse(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--precision",
        "f32",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `eval --samples` on fresh draws of the data itself: they stand at the floor, within the
/// standard errors it reports, and 100,000 points are compared as five chunks of 20,000.
#[test]
fn fresh_data_stands_at_the_floor_of_eval_samples() {
    let dir = scratch("eval-chunks");
    let run = dir.join("run");
    ok(&diffuse(&[
        "train",
        "--steps",
        "20",
        "--out",
        run.to_str().unwrap(),
    ]));
    let n = 100_000;
    let points = diffuse_data::ToyDataset::SwissRoll.sample(n, &mut ChaCha8Rng::seed_from_u64(99));
    let file = dir.join("fresh.npy");
    write_npy(&file, &[n, 2], &points.data).unwrap();
    ok(&diffuse(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--samples",
        file.to_str().unwrap(),
    ]));
    let q: Value =
        serde_json::from_str(&std::fs::read_to_string(file.with_extension("sw.json")).unwrap())
            .unwrap();
    assert_eq!(q["chunks"], 5);
    assert_eq!(q["reference"], 20_000);
    assert_eq!(q["floor_pairs"], 30);
    let f = |k: &str| q[k].as_f64().unwrap();
    let (sw, floor) = (f("sliced_wasserstein"), f("data_vs_data"));
    let se = (f("sliced_wasserstein_se").powi(2) + f("data_vs_data_se").powi(2)).sqrt();
    eprintln!("fresh data {sw:.4} vs floor {floor:.4} (standard error of the difference {se:.4})");
    assert!((sw - floor).abs() < 3.0 * se, "{sw} vs {floor}, se {se}");
}
