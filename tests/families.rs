//! Model families through the binary: `--family` round-trips through the run config, every
//! command runs a family's run on its one path, and what does not apply to a family is
//! refused by name.

use std::path::Path;

use serde_json::Value;

use crate::common::{diffuse, scratch, stderr};

/// A short 2-D NCSN run with the family's defaults: 3,000 steps (about 4 s).
const NCSN: &str =
    "family = \"ncsn\"\n[train]\nsteps = 3000\ncheckpoint_every = 1000\n[sample]\nn = 500\n";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `eval --nll --method ode` on `run` over `n` examples (with `extra` flags): its bits/dim.
fn ode_bits(run: &Path, n: &str, extra: &[&str]) -> f64 {
    let mut args = vec![
        "eval",
        "--run",
        s(run),
        "--nll",
        "--method",
        "ode",
        "--n",
        n,
    ];
    args.extend(extra);
    ok(&diffuse(&args), "eval --nll --method ode");
    json(&run.join("nll_ode.json"))["bits_per_dim"]
        .as_f64()
        .unwrap()
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", stderr(out));
}

/// A folder of three of the README's pictures: an image dataset for tiny runs.
fn image_folder(dir: &Path) -> std::path::PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (i, name) in ["samples.png", "forward.png", "reverse.png"]
        .iter()
        .enumerate()
    {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/images")
            .join(name);
        std::fs::copy(src, images.join(format!("{i}.png"))).unwrap();
    }
    images
}

/// Trains a tiny U-Net (8x8, 30 steps) of the family `section` names on [`image_folder`]'s
/// pictures; returns the run directory.
fn train_tiny_unet(dir: &Path, section: &str) -> std::path::PathBuf {
    let images = image_folder(dir);
    let config = dir.join("unet.json");
    let unet = r#""unet": {"sample_size": 8, "block_out_channels": [8, 16],
                     "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                     "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
                     "norm_num_groups": 4, "attention_head_dim": 4},
            "train": {"steps": 30, "batch_size": 4, "checkpoint_every": 15},
            "sample": {"n": 4}"#;
    std::fs::write(&config, format!("{{{section}, {unet}}}")).unwrap();
    let run = dir.join("run");
    ok(
        &diffuse(&[
            "train",
            "--dataset",
            "folder",
            "--data-dir",
            s(&images),
            "--config",
            s(&config),
            "--out",
            s(&run),
        ]),
        "train",
    );
    run
}

fn refused(out: &std::process::Output, needle: &str, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(err.contains(needle), "{what}: expected {needle:?} in {err}");
}

/// An NCSN run on the swiss roll: its config names the family and the levels it derived from
/// the data (Technique 1: sigma_1 is the largest pairwise distance), its samples beat a
/// fitted Gaussian by 2x after a short run, `sample` draws by annealed Langevin, resume goes
/// on, and what does not apply is refused.
#[test]
fn an_ncsn_run_trains_samples_and_refuses_what_does_not_apply() {
    let dir = scratch("ncsn-points");
    let config = dir.join("ncsn.toml");
    std::fs::write(&config, NCSN).unwrap();
    let run = dir.join("run");
    ok(
        &diffuse(&["train", "--config", s(&config), "--out", s(&run)]),
        "train",
    );
    let c = json(&run.join("config.json"));
    assert_eq!(c["family"], "ncsn");
    assert!(
        c.get("schedule").is_none() && c.get("prediction").is_none(),
        "{c}"
    );
    // Technique 1 on the standardized swiss roll, and levels at most 1.1 apart.
    let sigma_max = c["ncsn"]["sigma_max"].as_f64().unwrap();
    assert!(sigma_max > 3.0 && sigma_max < 6.0, "{sigma_max}");
    let levels = c["ncsn"]["num_levels"].as_u64().unwrap();
    assert!(
        (sigma_max / 0.01).powf(1.0 / (levels - 1) as f64) <= 1.1,
        "{levels}"
    );
    let m = json(&run.join("metrics.json"));
    let (sw, gauss) = (
        m["sw_samples"].as_f64().unwrap(),
        m["sw_gaussian_fit"].as_f64().unwrap(),
    );
    assert!(
        sw < 0.5 * gauss,
        "samples {sw} vs a fitted Gaussian {gauss}"
    );
    for f in [
        "forward.png",
        "score.png",
        "reverse.png",
        "samples.png",
        "loss.png",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    // sample: annealed Langevin, the same seed the same bits.
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    for out in [&a, &b] {
        let o = diffuse(&[
            "sample",
            "--run",
            s(&run),
            "--n",
            "300",
            "--steps",
            "5",
            "--seed",
            "3",
            "--out",
            s(out),
        ]);
        ok(&o, "sample");
        let says = format!("{levels} levels x 5 Langevin steps");
        assert!(stderr(&o).contains(&says), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let x = diffuse_data::read_npy(&a).unwrap();
    assert_eq!(x.shape, vec![300, 2]);
    // Resume extends it, the family kept.
    ok(
        &diffuse(&["train", "--resume", s(&run), "--steps", "3100"]),
        "resume",
    );
    assert_eq!(json(&run.join("config.json"))["family"], "ncsn");
    // Refusals, by name.
    for (extra, needle) in [
        (vec!["--sampler", "ddim"], "does not apply to NCSN"),
        (vec!["--eta", "0.5"], "--eta"),
        (vec!["--karras"], "--karras"),
        (vec!["--rtol", "1e-3"], "--rtol"),
    ] {
        let mut args = vec!["sample", "--run", s(&run), "--n", "3", "--out", s(&a)];
        args.extend(extra.iter());
        refused(&diffuse(&args), needle, &format!("{extra:?}"));
    }
    refused(
        &diffuse(&["eval", "--run", s(&run), "--nll"]),
        "--method ode",
        "eval --nll",
    );
    // The VE SDE of its levels: its samplers, and its probability-flow ODE's likelihood.
    for (sampler, says) in [
        ("pc", "40 network evaluations (PC"),
        ("ode", "probability-flow ODE"),
    ] {
        let mut args = vec![
            "sample",
            "--run",
            s(&run),
            "--sampler",
            sampler,
            "--n",
            "200",
        ];
        if sampler == "pc" {
            args.extend(["--steps", "20"]);
        }
        args.extend(["--out", s(&a)]);
        let o = diffuse(&args);
        ok(&o, sampler);
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
        assert_eq!(diffuse_data::read_npy(&a).unwrap().shape, vec![200, 2]);
    }
    let bits = ode_bits(&run, "20", &[]);
    assert!(bits.is_finite() && bits > 0.0, "{bits}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// DDPM's fields in an NCSN config, the NCSN section in a DDPM one, and Langevin on a DDPM
/// run are refused by name, before anything is written.
#[test]
fn each_family_refuses_the_others_fields() {
    let dir = scratch("family-fields");
    let run = dir.join("run");
    for (name, text, needle) in [
        (
            "a.toml",
            "family = \"ncsn\"\n[schedule]\nbeta_end = 0.01\n",
            "`schedule` applies to the ddpm family",
        ),
        (
            "b.toml",
            "family = \"ncsn\"\nprediction = \"v_prediction\"\n",
            "`prediction` applies to the ddpm family",
        ),
        (
            "c.toml",
            "family = \"ncsn\"\n[train.loss]\nobjective = { kind = \"vlb\" }\n",
            "train.loss applies to the ddpm family",
        ),
        (
            "d.toml",
            "[ncsn]\nlangevin_steps = 3\n",
            "`ncsn` applies to the ncsn family",
        ),
        (
            "e.toml",
            "family = \"ncsn\"\n[ncsn]\nsigma_min = 0\n",
            "ncsn.sigma_min",
        ),
        (
            "f.toml",
            "family = \"gan\"\n",
            "families are ddpm, ncsn, score, vae, hvae, vdm, autoencoder and latent",
        ),
        (
            "i.toml",
            "[latent]\nimage_channels = 1\nimage_size = 16\n",
            "`latent` applies to the latent family",
        ),
        (
            "j.toml",
            "family = \"autoencoder\"\n[schedule]\nbeta_end = 0.01\n",
            "`schedule` applies to the ddpm family",
        ),
        (
            "k.toml",
            "family = \"latent\"\n[autoencoder]\nbottleneck = \"kl\"\nlatent_channels = 4\n\
             block_out_channels = [16, 32, 32]\nlayers_per_block = 1\nnorm_num_groups = 8\n\
             mid_block_add_attention = true\nreconstruction = \"l1\"\nkl_weight = 1e-5\n\
             num_vq_embeddings = 256\ncommitment = 0.25\n",
            "`autoencoder` applies to the autoencoder family",
        ),
        (
            "g.toml",
            "[score]\nsde = \"ve\"\nsteps = 10\n",
            "`score` applies to the score family",
        ),
        (
            "h.toml",
            "family = \"score\"\n[score]\nsde = \"vp\"\nsteps = 10\nsigma_max = 5.0\n",
            "score.sigma_max applies to the VE SDE",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = diffuse(&["train", "--config", s(&path), "--out", s(&run)]);
        refused(&out, needle, name);
        assert!(!run.exists(), "{name} wrote a run");
    }
    // --family on the command line chooses the section a file is laid over.
    let path = dir.join("steps.toml");
    std::fs::write(&path, "[ncsn]\nlangevin_steps = 3\n[train]\nsteps = 30\n").unwrap();
    ok(
        &diffuse(&[
            "train",
            "--family",
            "ncsn",
            "--config",
            s(&path),
            "--out",
            s(&run),
        ]),
        "--family ncsn with a file",
    );
    assert_eq!(json(&run.join("config.json"))["ncsn"]["langevin_steps"], 3);
    // Langevin on a DDPM run.
    let ddpm = dir.join("ddpm");
    let cfg = dir.join("ddpm.toml");
    std::fs::write(&cfg, "[train]\nsteps = 30\n[sample]\nn = 20\n").unwrap();
    ok(
        &diffuse(&["train", "--config", s(&cfg), "--out", s(&ddpm)]),
        "ddpm",
    );
    let x = dir.join("x.npy");
    refused(
        &diffuse(&[
            "sample",
            "--run",
            s(&ddpm),
            "--sampler",
            "langevin",
            "--out",
            s(&x),
        ]),
        "applies to NCSN runs",
        "langevin on ddpm",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// NCSN on images (a folder at 8x8, a tiny U-Net): the run writes its U-Net as a diffusers
/// model folder and its pictures, and `sample` draws from it, `--init-noise` included.
#[test]
fn an_ncsn_image_run_trains_and_samples() {
    let dir = scratch("ncsn-images");
    let run = train_tiny_unet(
        &dir,
        r#""family": "ncsn", "ncsn": {"num_levels": 8, "langevin_steps": 2}"#,
    );
    for f in [
        "diffuse_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "raw/diffusion_pytorch_model.safetensors",
        "samples.npy",
        "samples.png",
        "progressive.png",
        "forward.png",
        "metrics.json",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    assert!(!run.join("model_index.json").exists());
    let x = dir.join("x.npy");
    ok(
        &diffuse(&["sample", "--run", s(&run), "--n", "2", "--out", s(&x)]),
        "sample",
    );
    assert_eq!(diffuse_data::read_npy(&x).unwrap().shape, vec![2, 3, 8, 8]);
    let noise = dir.join("noise.npy");
    diffuse_data::write_npy(&noise, &[1, 3, 8, 8], &[0.5; 192]).unwrap();
    ok(
        &diffuse(&[
            "sample",
            "--run",
            s(&run),
            "--init-noise",
            s(&noise),
            "--out",
            s(&x),
        ]),
        "--init-noise",
    );
    assert_eq!(diffuse_data::read_npy(&x).unwrap().shape, vec![1, 3, 8, 8]);
    ok(
        &diffuse(&["sample", "--run", s(&run), "--pictures"]),
        "--pictures",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Score SDE runs on the swiss roll (3,000 steps, 200 PC steps): the config names the family
/// and the SDE (VE with sigma_max from the data), samples beat a fitted Gaussian by 2x, every
/// sampler that applies draws (the same seed the same bits), the probability-flow ODE gives a
/// finite likelihood, and what does not apply is refused by name.
#[test]
fn score_sde_runs_train_sample_evaluate_and_refuse_what_does_not_apply() {
    let dir = scratch("score-points");
    let config = dir.join("score.toml");
    std::fs::write(
        &config,
        "[train]\nsteps = 3000\ncheckpoint_every = 1000\n[sample]\nn = 500\n",
    )
    .unwrap();
    for sde in ["vp", "subvp", "ve"] {
        let run = dir.join(sde);
        ok(
            &diffuse(&[
                "train",
                "--family",
                "score",
                "--sde",
                sde,
                "--config",
                s(&config),
                "--out",
                s(&run),
                "--steps",
                "3000",
            ]),
            "train",
        );
        let c = json(&run.join("config.json"));
        assert_eq!(
            (c["family"].as_str(), c["score"]["sde"].as_str()),
            (Some("score"), Some(sde))
        );
        assert!(c.get("schedule").is_none(), "{c}");
        let sigma_max = c["score"].get("sigma_max").and_then(Value::as_f64);
        assert_eq!(sigma_max.is_some(), sde == "ve", "{c}");
        if let Some(m) = sigma_max {
            assert!(m > 3.0 && m < 6.0, "{m}");
        }
        let m = json(&run.join("metrics.json"));
        let (sw, gauss) = (
            m["sw_samples"].as_f64().unwrap(),
            m["sw_gaussian_fit"].as_f64().unwrap(),
        );
        assert!(
            sw < 0.5 * gauss,
            "{sde}: samples {sw} vs a fitted Gaussian {gauss}"
        );
        for f in ["forward.png", "score.png", "reverse.png", "samples.png"] {
            assert!(run.join(f).is_file(), "{f}");
        }
    }
    let run = dir.join("ve");
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    for (sampler, extra, says) in [
        (
            "pc",
            vec!["--steps", "50", "--snr", "0.1"],
            "100 network evaluations",
        ),
        (
            "pc",
            vec!["--steps", "50", "--corrector-steps", "2"],
            "150 network evaluations",
        ),
        ("sde", vec!["--steps", "50"], "50 network evaluations"),
        ("heun", vec!["--steps", "5"], "9 network evaluations"),
        (
            "ode",
            vec!["--rtol", "1e-3", "--atol", "1e-3"],
            "probability-flow ODE",
        ),
    ] {
        for out in [&a, &b] {
            let mut args = vec![
                "sample",
                "--run",
                s(&run),
                "--sampler",
                sampler,
                "--n",
                "200",
                "--seed",
                "3",
                "--out",
                s(out),
            ];
            args.extend(extra.iter());
            let o = diffuse(&args);
            ok(&o, sampler);
            assert!(stderr(&o).contains(says), "{sampler}: {}", stderr(&o));
        }
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{sampler}"
        );
    }
    for (extra, needle) in [
        (vec!["--sampler", "ddim"], "does not apply to score runs"),
        (
            vec!["--sampler", "langevin"],
            "does not apply to score runs",
        ),
        (vec!["--eta", "0.5"], "--eta"),
        (vec!["--sampler", "ode", "--snr", "0.1"], "--snr"),
        (vec!["--sampler", "euler", "--rtol", "1e-3"], "--rtol"),
        (vec!["--sampler", "ode", "--steps", "5"], "--steps"),
        (
            vec!["--sampler", "pc", "--snr", "0"],
            "snr must be positive",
        ),
        (
            vec!["--sampler", "pc", "--snr", "nan"],
            "snr must be positive",
        ),
    ] {
        let mut args = vec!["sample", "--run", s(&run), "--n", "3", "--out", s(&a)];
        args.extend(extra.iter());
        refused(&diffuse(&args), needle, &format!("{extra:?}"));
    }
    let bits = ode_bits(&run, "50", &["--rtol", "1e-3", "--atol", "1e-3"]);
    assert!(bits.is_finite() && bits > -1.0 && bits < 5.0, "{bits}");
    refused(
        &diffuse(&["eval", "--run", s(&run), "--nll"]),
        "--method ode",
        "eval --nll (vlb)",
    );
    // --sde belongs to the score family; a DDPM run on a linear schedule samples by PC.
    refused(
        &diffuse(&["train", "--sde", "ve", "--out", s(&dir.join("x"))]),
        "--sde applies to the score family",
        "--sde on ddpm",
    );
    assert!(!dir.join("x").exists());
    let ddpm = dir.join("ddpm");
    ok(
        &diffuse(&[
            "train",
            "--config",
            s(&config),
            "--steps",
            "500",
            "--out",
            s(&ddpm),
        ]),
        "ddpm",
    );
    let o = diffuse(&[
        "sample",
        "--run",
        s(&ddpm),
        "--sampler",
        "pc",
        "--steps",
        "100",
        "--n",
        "100",
        "--out",
        s(&a),
    ]);
    ok(&o, "pc on ddpm");
    refused(
        &diffuse(&[
            "sample",
            "--run",
            s(&ddpm),
            "--sampler",
            "pc",
            "--steps",
            "10",
            "--out",
            s(&a),
        ]),
        "too few",
        "pc with 10 steps on VP",
    );
    assert!(
        stderr(&o).contains("200 network evaluations"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A score SDE run on a folder of images (a tiny U-Net, 30 steps): a VE run's files, its
/// samples by PC and by the ODE, and its likelihood.
#[test]
fn a_score_image_run_trains_samples_and_evaluates() {
    let dir = scratch("score-images");
    let run = train_tiny_unet(
        &dir,
        r#""family": "score", "score": {"sde": "ve", "steps": 4}"#,
    );
    for f in [
        "unet/diffusion_pytorch_model.safetensors",
        "raw/diffusion_pytorch_model.safetensors",
        "samples.npy",
        "samples.png",
        "progressive.png",
        "forward.png",
        "metrics.json",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    let c = json(&run.join("diffuse_config.json"));
    assert!(c["score"]["sigma_max"].as_f64().unwrap() > 1.0, "{c}");
    let x = dir.join("x.npy");
    for (sampler, extra) in [
        ("pc", vec![]),
        ("ode", vec!["--rtol", "1e-2", "--atol", "1e-2"]),
    ] {
        let mut args = vec!["sample", "--run", s(&run), "--sampler", sampler, "--n", "2"];
        args.extend(extra);
        args.extend(["--out", s(&x)]);
        ok(&diffuse(&args), sampler);
        assert_eq!(diffuse_data::read_npy(&x).unwrap().shape, vec![2, 3, 8, 8]);
    }
    let bits = ode_bits(&run, "2", &["--rtol", "1e-2", "--atol", "1e-2"]);
    assert!(bits.is_finite(), "{bits}");
    std::fs::remove_dir_all(&dir).unwrap();
}
