//! Latent diffusion end to end through the binary, on a tiny folder of PNGs: an autoencoder
//! trains (its reconstructions beating the best constant image, its pictures and its scaling
//! factor written), `encode` / `decode` read its run, latent DDPM trains on it into an
//! LDMPipeline folder that `sample --run` loads, a seed replays bit for bit, a stopped run resumes
//! to the bytes of one never stopped, a score SDE and the VDM train on the same latents, and
//! misuses are refused by name.

use std::path::{Path, PathBuf};

use diffuse_data::read_npy;
use diffuse_nn::Autoencoder;
use serde_json::Value;

use crate::common::{diffuse, scratch, stderr};

/// 24 RGB images of 16 x 16: a disc of varying place and size on a gradient, so that a good
/// reconstruction has to carry each image's own content.
fn image_folder(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..24u32 {
        let (cx, cy, r) = (4 + i % 8, 4 + (i * 3) % 8, 2 + i % 4);
        let img = image::RgbImage::from_fn(16, 16, |x, y| {
            let inside =
                (x as i32 - cx as i32).pow(2) + (y as i32 - cy as i32).pow(2) <= (r * r) as i32;
            if inside {
                image::Rgb([250, 240, (i * 10) as u8])
            } else {
                image::Rgb([(x * 12) as u8, (y * 8) as u8, 40])
            }
        });
        img.save(images.join(format!("{i:02}.png"))).unwrap();
    }
    images
}

fn run_ok(args: &[&str]) {
    let out = diffuse(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// `train --config CONFIG` on the PNG folder `images` for `steps` steps into `out`.
fn train_on(images: &Path, config: &Path, steps: &str, out: &Path) -> std::process::Output {
    diffuse(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--dataset",
        "folder",
        "--data-dir",
        images.to_str().unwrap(),
        "--steps",
        steps,
        "--out",
        out.to_str().unwrap(),
    ])
}

/// Failed with status 1 and a message holding `expect`.
fn assert_refused(out: &std::process::Output, expect: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(expect), "{err}");
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const AUTOENCODER: &str = r#"
family = "autoencoder"
[unet]
sample_size = 16
in_channels = 3
out_channels = 3
[autoencoder]
block_out_channels = [16, 16]
norm_num_groups = 4
latent_channels = 2
[train]
batch_size = 8
lr = 2e-3
checkpoint_every = 50
"#;

const LATENT: &str = r#"
family = "latent"
[latent]
image_size = 16
[unet]
block_out_channels = [8, 16]
norm_num_groups = 4
attention_head_dim = 8
down_block_types = ["DownBlock2D", "AttnDownBlock2D"]
up_block_types = ["AttnUpBlock2D", "UpBlock2D"]
[train]
batch_size = 4
checkpoint_every = 2
[sample]
n = 4
ddim_steps = 5
"#;

#[test]
fn autoencoder_then_latent_diffusion_end_to_end() {
    let dir = scratch("latent-e2e");
    let images = image_folder(&dir);
    let data = [
        "--dataset",
        "folder",
        "--data-dir",
        images.to_str().unwrap(),
    ];
    let (ae_config, latent_config) = (dir.join("ae.toml"), dir.join("latent.toml"));
    std::fs::write(&ae_config, AUTOENCODER).unwrap();
    std::fs::write(&latent_config, LATENT).unwrap();

    // The first stage.
    let ae = dir.join("ae");
    let mut args = vec!["train", "--config", ae_config.to_str().unwrap()];
    args.extend(data);
    args.extend(["--steps", "1000", "--out", ae.to_str().unwrap()]);
    run_ok(&args);
    for file in [
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "reconstructions.png",
        "latents.png",
        "interpolation.png",
        "loss.png",
        "metrics.json",
    ] {
        assert!(ae.join(file).is_file(), "{file} missing");
    }
    let metrics = json(&ae.join("metrics.json"));
    let l1 = metrics["reconstruction_l1"].as_f64().unwrap();
    let scale = metrics["scaling_factor"].as_f64().unwrap();
    assert_eq!(metrics["latent_shape"], serde_json::json!([2, 8, 8]));
    // The vae/ folder says the same scaling factor.
    let vae = json(&ae.join("vae/config.json"));
    assert_eq!(vae["scaling_factor"].as_f64().unwrap(), scale);
    assert!(scale.is_finite() && scale > 0.0, "scaling factor {scale}");

    // Reconstructions of the run's own images (a folder's test split is its training set),
    // through `encode` / `decode` on the run directory, against the best constant image.
    let x = dir.join("x.npy");
    let pixels: Vec<f32> = {
        let mut all = Vec::new();
        for i in 0..24 {
            let img = image::open(images.join(format!("{i:02}.png")))
                .unwrap()
                .to_rgb8();
            let mut planar = vec![0f32; 3 * 256];
            for (p, px) in img.pixels().enumerate() {
                for c in 0..3 {
                    planar[c * 256 + p] = px[c] as f32 / 127.5 - 1.0;
                }
            }
            all.extend(planar);
        }
        all
    };
    diffuse_data::write_npy(&x, &[24, 3, 16, 16], &pixels).unwrap();
    let (z, x_hat) = (dir.join("z.npy"), dir.join("x_hat.npy"));
    let a = ae.to_str().unwrap();
    run_ok(&[
        "encode",
        "--vae",
        a,
        "--in",
        x.to_str().unwrap(),
        "--out",
        z.to_str().unwrap(),
    ]);
    run_ok(&[
        "decode",
        "--vae",
        a,
        "--in",
        z.to_str().unwrap(),
        "--out",
        x_hat.to_str().unwrap(),
    ]);
    assert_eq!(read_npy(&z).unwrap().shape, vec![24, 2, 8, 8]);
    let recon = read_npy(&x_hat).unwrap().data;
    let per_pixel: Vec<f32> = (0..768)
        .map(|j| (0..24).map(|i| pixels[i * 768 + j]).sum::<f32>() / 24.0)
        .collect();
    let mean_l1 = |f: &dyn Fn(usize) -> f32| -> f32 {
        (0..pixels.len())
            .map(|k| (pixels[k] - f(k)).abs())
            .sum::<f32>()
            / pixels.len() as f32
    };
    let ours = mean_l1(&|k| recon[k].clamp(-1.0, 1.0));
    let constant = mean_l1(&|k| per_pixel[k % 768]);
    eprintln!("reconstruction L1 {ours} (metrics.json {l1}); best constant image {constant}");
    assert!(
        (f64::from(ours) - l1).abs() < 1e-3,
        "{ours} vs metrics.json {l1}"
    );
    assert!(
        ours < 0.3 * constant,
        "L1 {ours} against the constant image's {constant}"
    );

    // Latent DDPM on it: an LDMPipeline folder.
    // `train --config CONFIG --vae <the autoencoder> EXTRA` on the images, `steps` into `out`.
    let train_on_vae = |config: &Path, extra: &[&str], steps: &str, out: &Path| {
        let mut args = vec!["train", "--config", config.to_str().unwrap(), "--vae", a];
        args.extend(extra);
        args.extend(data);
        args.extend(["--steps", steps, "--out", out.to_str().unwrap()]);
        diffuse(&args)
    };
    let train_latent = |out: &Path, steps: &str| {
        let out = train_on_vae(&latent_config, &[], steps, out);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let (l1_dir, l2_dir) = (dir.join("latent1"), dir.join("latent2"));
    train_latent(&l1_dir, "4");
    let index = json(&l1_dir.join("model_index.json"));
    assert_eq!(index["_class_name"], "LDMPipeline");
    assert_eq!(index["vqvae"][1], "AutoencoderKL");
    let unet = json(&l1_dir.join("unet/config.json"));
    assert_eq!(
        (unet["in_channels"].as_u64(), unet["sample_size"].as_u64()),
        (Some(2), Some(8))
    );
    let samples = read_npy(&l1_dir.join("samples.npy")).unwrap();
    assert_eq!(samples.shape, vec![4, 3, 16, 16]);
    assert!(samples.data.iter().all(|v| v.is_finite()));
    let (copy, _) =
        Autoencoder::from_diffusers_dir(&l1_dir.join("vqvae"), &Default::default()).unwrap();
    let (original, _) =
        Autoencoder::from_diffusers_dir(&ae.join("vae"), &Default::default()).unwrap();
    assert_eq!(copy, original, "vqvae/ is not the autoencoder trained on");

    // Same seed, same bits; stopped at step 2 and resumed, the same bits again.
    train_latent(&l2_dir, "2");
    run_ok(&[
        "train",
        "--resume",
        l2_dir.to_str().unwrap(),
        "--steps",
        "4",
    ]);
    for file in ["unet/diffusion_pytorch_model.safetensors", "samples.npy"] {
        assert_eq!(
            std::fs::read(l1_dir.join(file)).unwrap(),
            std::fs::read(l2_dir.join(file)).unwrap(),
            "{file} differs after a resume"
        );
    }

    // A score SDE in the same latent space (--sde): unet/ and vqvae/, decoded samples, the
    // SDE's samplers; DDPM's sampling fields are refused for it.
    let score_config = dir.join("score.toml");
    std::fs::write(
        &score_config,
        LATENT.replace(
            "[sample]\nn = 4\nddim_steps = 5",
            "[sample]\nn = 4\n[score]\nsteps = 25",
        ),
    )
    .unwrap();
    let score_run = dir.join("latent-score");
    let out = train_on_vae(&score_config, &["--sde", "vp"], "3", &score_run);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!score_run.join("model_index.json").exists());
    assert!(
        score_run.join("vqvae/config.json").is_file()
            && score_run.join("unet/config.json").is_file()
    );
    assert_eq!(
        read_npy(&score_run.join("samples.npy")).unwrap().shape,
        vec![4, 3, 16, 16]
    );
    let drawn_score = dir.join("drawn-score.npy");
    run_ok(&[
        "sample",
        "--run",
        score_run.to_str().unwrap(),
        "--sampler",
        "ode",
        "--n",
        "2",
        "--out",
        drawn_score.to_str().unwrap(),
    ]);
    assert_eq!(read_npy(&drawn_score).unwrap().shape, vec![2, 3, 16, 16]);
    let out = train_on_vae(&latent_config, &["--sde", "vp"], "2", &dir.join("x5"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("sample.ddim_steps applies to the ddpm family"),
        "{}",
        stderr(&out)
    );

    // The VDM in the same latent space (`[latent] diffusion = "vdm"` in the file): its weight
    // pair and schedule beside vqvae/, decoded ancestral samples, every sampler on its chain;
    // stopped and resumed, the same bytes; --diffusion agrees with the file or is refused.
    let vdm_config = dir.join("vdm.toml");
    std::fs::write(
        &vdm_config,
        LATENT
            .replace("[latent]\n", "[latent]\ndiffusion = \"vdm\"\n")
            .replace(
                "[sample]\nn = 4\nddim_steps = 5",
                "[sample]\nn = 4\n[vdm]\nsample_steps = 6\ngamma.features = 16",
            ),
    )
    .unwrap();
    let train_vdm =
        |out: &Path, steps: &str, extra: &[&str]| train_on_vae(&vdm_config, extra, steps, out);
    let (vdm1, vdm2) = (dir.join("latent-vdm1"), dir.join("latent-vdm2"));
    let out = train_vdm(&vdm1, "4", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "model.safetensors",
        "model_ema.safetensors",
        "schedule.csv",
        "scheduler/scheduler_config.json",
        "vqvae/config.json",
    ] {
        assert!(vdm1.join(file).is_file(), "{file} missing");
    }
    assert!(!vdm1.join("model_index.json").exists() && !vdm1.join("unet").exists());
    let vdm_config_saved = json(&vdm1.join("diffuse_config.json"));
    assert_eq!(vdm_config_saved["latent"]["diffusion"], "vdm");
    assert_eq!(vdm_config_saved["vdm"]["sample_steps"], 6);
    let vdm_samples = read_npy(&vdm1.join("samples.npy")).unwrap();
    assert_eq!(vdm_samples.shape, vec![4, 3, 16, 16]);
    assert!(vdm_samples.data.iter().all(|v| v.is_finite()));
    // The weight files name the VDM's tensors as a `vdm` run's do (no enum variant).
    let weights = std::fs::read(vdm1.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&weights[8..8 + header_len]).unwrap();
    let names: Vec<&String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("gamma."))
            && names
                .iter()
                .all(|n| n.starts_with("gamma.") || n.starts_with("net.")),
        "{names:?}"
    );
    let out = train_vdm(&vdm2, "2", &["--diffusion", "vdm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    run_ok(&["train", "--resume", vdm2.to_str().unwrap(), "--steps", "4"]);
    for file in ["model_ema.safetensors", "samples.npy"] {
        assert_eq!(
            std::fs::read(vdm1.join(file)).unwrap(),
            std::fs::read(vdm2.join(file)).unwrap(),
            "{file} differs after a resume"
        );
    }
    let v = vdm1.to_str().unwrap();
    let draw_vdm = |extra: &[&str]| {
        let drawn_vdm = dir.join("drawn-vdm.npy");
        let mut args = vec!["sample", "--run", v, "--n", "2", "--steps", "4", "--out"];
        args.extend([drawn_vdm.to_str().unwrap()]);
        args.extend(extra);
        run_ok(&args);
        let drawn = read_npy(&drawn_vdm).unwrap();
        assert_eq!(drawn.shape, vec![2, 3, 16, 16], "{extra:?}");
        assert!(drawn.data.iter().all(|v| v.is_finite()), "{extra:?}");
        drawn.data
    };
    let ancestral = draw_vdm(&[]);
    draw_vdm(&["--sampler", "ddim"]);
    // DDPM on the chain is the ancestral sampler on the same grid (trailing spacing: t = 1,
    // 3/4, 1/2, 1/4), from the same noise, up to the last step (the chain's x_0 estimate, the
    // VDM's z_0 / alpha_0 with noise of sigma_0 = exp(gamma(0) / 2), about 1e-3).
    let chain = draw_vdm(&["--sampler", "ddpm"]);
    let gap = ancestral
        .iter()
        .zip(&chain)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    eprintln!("ancestral against DDPM on the chain, 4 steps: {gap}");
    assert!(
        gap < 0.05,
        "ancestral and DDPM on the chain differ by {gap}"
    );
    // --fid draws decoded images (an Inception network of formula weights).
    let inception = crate::inception::formula_weights_file(&dir);
    run_ok(&[
        "eval",
        "--run",
        v,
        "--fid",
        "--n",
        "4",
        "--inception",
        inception.to_str().unwrap(),
    ]);
    let fid = json(&vdm1.join("fid.json"))["fid"].as_f64().unwrap();
    assert!(fid.is_finite() && fid >= 0.0, "{fid}");
    assert_refused(
        &train_vdm(&dir.join("x6"), "2", &["--sde", "vp"]),
        "latent.diffusion is vdm",
    );
    assert_refused(
        &train_vdm(&dir.join("x7"), "2", &["--diffusion", "score"]),
        "latent.diffusion is vdm",
    );
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        LATENT.replace("[latent]\n", "[latent]\ndiffusion = \"flow\"\n"),
    )
    .unwrap();
    assert_refused(
        &train_on(&images, &bad, "2", &dir.join("x10")),
        "`latent.diffusion` is \"flow\"; it is ddpm, score or vdm",
    );
    assert_refused(
        &train_on_vae(
            &latent_config,
            &["--diffusion", "vdm"],
            "2",
            &dir.join("x8"),
        ),
        "sample.ddim_steps applies to the ddpm family, not to latent diffusion by the VDM",
    );
    assert_refused(
        &diffuse(&[
            "train",
            "--family",
            "vdm",
            "--diffusion",
            "vdm",
            "--out",
            dir.join("x9").to_str().unwrap(),
        ]),
        "--diffusion applies to latent diffusion",
    );

    // `sample --run` decodes with any sampler.
    let drawn = dir.join("drawn.npy");
    let r = l1_dir.to_str().unwrap();
    run_ok(&[
        "sample",
        "--run",
        r,
        "--sampler",
        "dpm-solver++",
        "--steps",
        "5",
        "--n",
        "3",
        "--out",
        drawn.to_str().unwrap(),
    ]);
    assert_eq!(read_npy(&drawn).unwrap().shape, vec![3, 3, 16, 16]);

    // Misuses, refused by name.
    let refused = |args: &[&str], expect: &str| {
        let out = diffuse(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    refused(
        &["sample", "--run", a, "--out", drawn.to_str().unwrap()],
        "draws no samples",
    );
    refused(&["eval", "--run", r, "--nll"], "no bits/dim");
    let (x1, x4) = (dir.join("x1"), dir.join("x4"));
    let mut no_vae = vec!["train", "--family", "latent"];
    no_vae.extend(data);
    no_vae.extend(["--out", x1.to_str().unwrap()]);
    refused(&no_vae, "--vae DIR");
    refused(
        &[
            "train",
            "--family",
            "ddpm",
            "--vae",
            a,
            "--out",
            dir.join("x2").to_str().unwrap(),
        ],
        "--vae applies",
    );
    refused(
        &[
            "train",
            "--family",
            "autoencoder",
            "--out",
            dir.join("x3").to_str().unwrap(),
        ],
        "trains on images",
    );
    let mut gray = vec![
        "train",
        "--family",
        "latent",
        "--vae",
        a,
        "--dataset",
        "mnist",
    ];
    gray.extend(["--out", x4.to_str().unwrap()]);
    refused(&gray, "takes images of 3 channels");

    // The run samples from its own vqvae/ once the autoencoder it trained on has moved; resuming
    // it says where the copy is.
    std::fs::rename(&ae, dir.join("ae-moved")).unwrap();
    run_ok(&[
        "sample",
        "--run",
        r,
        "--n",
        "2",
        "--out",
        drawn.to_str().unwrap(),
    ]);
    refused(&["train", "--resume", r, "--steps", "6"], "vqvae/");
}

/// The latent run of experiments/latent (MNIST), as diffuse saved it, loaded by diffusers'
/// `LDMPipeline` (`scripts/reference/reload_latent.py`: its float32 and float64 loops agree
/// within 7e-6): diffuse's 20-step DDIM loop and decoder on the folder equal diffusers' within
/// 1e-3.
#[test]
fn latent_run_saved_by_diffuse_gives_diffusers_output() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let report = json(&fixtures.join("trained_latent.reload.json"));
    assert_eq!(report["pipeline_class"], "LDMPipeline");
    assert_eq!(report["vqvae_class"], "AutoencoderKL");
    let dir = scratch("trained-latent");
    let out = dir.join("out.npy");
    let run = crate::common::sample_ddim20(
        &fixtures.join("trained_latent"),
        &fixtures.join("trained_latent.noise.npy"),
        &out,
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let (ours, expected) = (
        read_npy(&out).unwrap(),
        read_npy(&fixtures.join("trained_latent.ddim20.npy")).unwrap(),
    );
    assert_eq!(ours.shape, expected.shape);
    let gap = ours
        .data
        .iter()
        .zip(&expected.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("trained latent run: max-abs {gap} against diffusers' LDMPipeline");
    assert!(gap <= 1e-3, "max-abs {gap}");
}

/// A VQ autoencoder whose codebook follows moving averages trains, and stopped halfway and
/// resumed it writes the bytes of a run never stopped (the averages are the objective's
/// checkpointed state); the setting is refused on a KL autoencoder.
#[test]
fn moving_average_codebook_resumes_bit_for_bit() {
    let dir = scratch("latent-vq-ema");
    let images = image_folder(&dir);
    let config = dir.join("vq.toml");
    std::fs::write(
        &config,
        AUTOENCODER.replace(
            "latent_channels = 2",
            "latent_channels = 2\nbottleneck = \"vq\"\nnum_vq_embeddings = 16\ncodebook_ema = 0.9",
        ),
    )
    .unwrap();
    let train = |out: &Path, steps: &str| train_on(&images, &config, steps, out);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let out = train(&a, "100");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = train(&b, "50");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = diffuse(&["train", "--resume", b.to_str().unwrap(), "--steps", "100"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let weights = "vae/diffusion_pytorch_model.safetensors";
    assert_eq!(
        std::fs::read(a.join(weights)).unwrap(),
        std::fs::read(b.join(weights)).unwrap(),
        "a resumed run differs"
    );
    let state = json(&a.join("checkpoint/state.json"));
    assert!(
        state.to_string().contains("counts"),
        "no codebook averages in the checkpoint"
    );
    let kl = dir.join("kl.toml");
    std::fs::write(
        &kl,
        AUTOENCODER.replace(
            "latent_channels = 2",
            "latent_channels = 2\ncodebook_ema = 0.9",
        ),
    )
    .unwrap();
    assert_refused(
        &train_on(&images, &kl, "1", &dir.join("c")),
        "codebook_ema applies to bottleneck",
    );
}

/// The perceptual term (a LeNet's activations of images and reconstructions) enters the loss:
/// the same run with it starts from a larger loss and trains to finite weights; it is refused on
/// images its LeNet cannot take. (A LeNet of random weights stands in for a trained classifier.)
#[test]
fn perceptual_term_enters_the_loss() {
    let dir = scratch("latent-perceptual");
    let images = image_folder(&dir);
    let classifier = dir.join("lenet");
    std::fs::create_dir_all(&classifier).unwrap();
    let device = burn::tensor::Device::default();
    let lenet = diffuse_nn::lenet::LeNet::new(10, &device);
    diffuse_train::checkpoint::save_weights(&lenet, &classifier.join("lenet.safetensors")).unwrap();
    std::fs::write(
        classifier.join("classifier.json"),
        r#"{"network": "lenet5", "dataset": "mnist", "steps": 0, "batch_size": 1, "seed": 0,
            "test_accuracy": 0.1, "test_images": 0, "train_seconds": 0}"#,
    )
    .unwrap();
    let gray = AUTOENCODER.replace(
        "sample_size = 16\nin_channels = 3\nout_channels = 3",
        "sample_size = 28\nin_channels = 1\nout_channels = 1",
    );
    let with = format!(
        "{gray}\n[autoencoder.perceptual]\nclassifier = {:?}\nweight = 1.0\n",
        classifier.to_str().unwrap()
    );
    let first_loss = |text: &str, name: &str| -> f64 {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        let out = dir.join(name);
        let trained = train_on(&images, &config, "20", &out);
        assert!(trained.status.success(), "{}", stderr(&trained));
        let csv = std::fs::read_to_string(out.join("loss.csv")).unwrap();
        let line = csv.lines().find(|l| l.starts_with("1,")).unwrap();
        line.split(',').nth(1).unwrap().parse().unwrap()
    };
    let (plain, perceptual) = (first_loss(&gray, "plain"), first_loss(&with, "perceptual"));
    eprintln!("first loss {plain} without the perceptual term, {perceptual} with it");
    assert!(perceptual > plain, "{perceptual} <= {plain}");
    // 16 x 16 RGB images: refused by name.
    let rgb = dir.join("rgb.toml");
    std::fs::write(
        &rgb,
        format!("{AUTOENCODER}\n[autoencoder.perceptual]\nclassifier = \"x\"\nweight = 1.0\n"),
    )
    .unwrap();
    assert_refused(
        &train_on(&images, &rgb, "1", &dir.join("rgb")),
        "takes 1 x 28 x 28",
    );
}
