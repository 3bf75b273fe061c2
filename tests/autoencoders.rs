//! diffusers' autoencoders and latent pipelines through the binary: `diffuse encode` / `decode`
//! against `AutoencoderKL` and `VQModel` (<= 1e-4 max-abs), `diffuse sample --pipeline` against
//! `LDMPipeline`'s 20-step DDIM loop (<= 1e-3), every sampler on a latent pipeline, folders saved
//! by diffuse read back bit for bit, and hostile folders refused by name. Fixtures:
//! `python3 scripts/reference/autoencoders.py` (torch 2.15.0, diffusers 0.42.1), whose float32
//! and float64 runs agree within 2e-5 (autoencoders) and 2e-4 (pipelines).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use diffuse_data::read_npy;
use diffuse_nn::Autoencoder;

use crate::common::{copy_dir, diffuse, sample_ddim20, scratch, stderr};

const AUTOENCODERS: [&str; 5] = [
    "kl_one_level",
    "kl_attn_two_levels",
    "kl_three_levels_f16",
    "vq_two_levels",
    "vq_attn_bf16",
];

fn fixture(group: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(group)
        .join(name)
}

fn max_abs(ours: &Path, expected: &Path) -> f32 {
    let (a, b) = (read_npy(ours).unwrap(), read_npy(expected).unwrap());
    assert_eq!(a.shape, b.shape, "{}", ours.display());
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn run_ok(args: &[&str]) {
    let out = diffuse(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// Layouts: one level; two levels with attention blocks, two layers per block and a shift
/// factor; three levels without quant convolutions or mid-block attention, in float16; a VQ model
/// whose codebook is narrower than its latents; a VQ model with attention blocks in bfloat16.
#[test]
fn encode_and_decode_match_diffusers() {
    let tmp = scratch("autoencoders-parity");
    for name in AUTOENCODERS {
        let dir = fixture("autoencoders", name);
        let d = dir.to_str().unwrap();
        let (z, lv, x) = (tmp.join("z.npy"), tmp.join("lv.npy"), tmp.join("x.npy"));
        let input = dir.join("input.npy");
        let mut args = vec![
            "encode",
            "--vae",
            d,
            "--in",
            input.to_str().unwrap(),
            "--out",
            z.to_str().unwrap(),
            "--batch-size",
            "1",
        ];
        let kl = dir.join("logvar.npy").exists();
        if kl {
            args.extend(["--logvar", lv.to_str().unwrap()]);
        }
        run_ok(&args);
        let latents = dir.join("latents.npy");
        run_ok(&[
            "decode",
            "--vae",
            d,
            "--in",
            latents.to_str().unwrap(),
            "--out",
            x.to_str().unwrap(),
        ]);
        let mut gaps = vec![
            max_abs(&z, &dir.join("mean.npy")),
            max_abs(&x, &dir.join("decoded.npy")),
        ];
        if kl {
            gaps.push(max_abs(&lv, &dir.join("logvar.npy")));
        }
        eprintln!("{name}: max-abs {gaps:?} (latents, decoded[, log-variance])");
        assert!(gaps.iter().all(|g| *g <= 1e-4), "{name}: {gaps:?}");
    }
}

/// diffusers' LDMPipeline (a VQModel; an AutoencoderKL in the vqvae slot with v prediction) from
/// the same latent noise, 20 DDIM steps, decoded before the clamp.
#[test]
fn ldm_pipelines_match_diffusers() {
    let tmp = scratch("ldm-parity");
    for name in ["ldm_vq", "ldm_kl"] {
        let dir = fixture("ldm", name);
        let out = tmp.join(format!("{name}.npy"));
        let run = sample_ddim20(&dir, &dir.join("noise.npy"), &out, &[]);
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        let gap = max_abs(&out, &dir.join("ddim20.npy"));
        eprintln!("{name}: max-abs {gap} after 20 DDIM steps and the decoder");
        assert!(gap <= 1e-3, "{name}: {gap}");
    }
}

/// Every sampler of the project runs on a latent pipeline and gives finite images of the
/// decoder's shape (8 x 8 from 4 x 4 latents), different from the DDIM ones.
#[test]
fn every_sampler_runs_on_a_latent_pipeline() {
    let tmp = scratch("ldm-samplers");
    let dir = fixture("ldm", "ldm_vq");
    for sampler in [
        "ddpm",
        "ddim",
        "euler",
        "heun",
        "dpm-solver++",
        "sde",
        "ode",
    ] {
        let out = tmp.join(format!("{sampler}.npy"));
        let mut args = vec![
            "sample",
            "--pipeline",
            dir.to_str().unwrap(),
            "--sampler",
            sampler,
            "--n",
            "3",
            "--out",
            out.to_str().unwrap(),
        ];
        if sampler != "ode" {
            args.extend(["--steps", "10"]);
        }
        run_ok(&args);
        let x = read_npy(&out).unwrap();
        assert_eq!(x.shape, vec![3, 1, 8, 8], "{sampler}");
        assert!(x.data.iter().all(|v| v.is_finite()), "{sampler}");
    }
}

/// A folder written by diffuse's saver is read back into the same outputs, bit for bit, and its
/// config into the same config.
#[test]
fn saved_autoencoders_read_back_the_same() {
    let device = Device::default();
    let tmp = scratch("autoencoders-save");
    for name in ["kl_attn_two_levels", "vq_two_levels"] {
        let dir = fixture("autoencoders", name);
        let (config, model) = Autoencoder::from_diffusers_dir(&dir, &device).unwrap();
        let saved = tmp.join(name);
        diffuse_diffusers::save_autoencoder(&saved, &config, &model).unwrap();
        let (again_config, again) = Autoencoder::from_diffusers_dir(&saved, &device).unwrap();
        assert_eq!(config, again_config, "{name}");
        let x = read_npy(&dir.join("input.npy")).unwrap();
        let shape: [usize; 4] = x.shape.clone().try_into().unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(x.data, shape), &device);
        let bits = |m: &Autoencoder| -> Vec<f32> {
            let z = m.encode(x.clone()).mean;
            m.decode(z).into_data().try_to_vec().unwrap()
        };
        assert_eq!(bits(&model), bits(&again), "{name}");
    }
}

/// Each broken folder or input is refused with status 1 and a message naming its cause.
/// `convert`: the float16 and bfloat16 folders diffusers wrote, converted to float32 and back,
/// are the bytes diffusers wrote (the weights file included: the same rounding, names, order
/// and metadata); a pipeline converts with its JSON files as they were and samples; an existing
/// --out and a folder of no known class are refused.
#[test]
fn convert_writes_the_half_precision_files_diffusers_writes() {
    let tmp = scratch("autoencoders-convert");
    let weights = "diffusion_pytorch_model.safetensors";
    for (name, dtype) in [
        ("kl_three_levels_f16", "float16"),
        ("vq_attn_bf16", "bfloat16"),
    ] {
        let src = fixture("autoencoders", name);
        let (wide, back) = (tmp.join(format!("{name}-f32")), tmp.join(name));
        for (from, to, dtype) in [(&src, &wide, "float32"), (&wide, &back, dtype)] {
            run_ok(&[
                "convert",
                "--in",
                from.to_str().unwrap(),
                "--out",
                to.to_str().unwrap(),
                "--dtype",
                dtype,
            ]);
        }
        let size = |dir: &Path| std::fs::metadata(dir.join(weights)).unwrap().len();
        assert!(
            size(&wide) > size(&back) * 3 / 2,
            "{name}: float32 is not wider"
        );
        for file in [weights, "config.json"] {
            assert_eq!(
                std::fs::read(src.join(file)).unwrap(),
                std::fs::read(back.join(file)).unwrap(),
                "{name}: {file}"
            );
        }
    }
    let pipeline = fixture("ldm", "ldm_kl");
    let half = tmp.join("ldm-f16");
    run_ok(&[
        "convert",
        "--in",
        pipeline.to_str().unwrap(),
        "--out",
        half.to_str().unwrap(),
    ]);
    for file in [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "vqvae/config.json",
    ] {
        assert_eq!(
            std::fs::read(pipeline.join(file)).unwrap(),
            std::fs::read(half.join(file)).unwrap(),
            "{file}"
        );
    }
    let header = |path: PathBuf| -> serde_json::Value {
        let bytes = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        serde_json::from_slice(&bytes[8..8 + n]).unwrap()
    };
    for model in ["unet", "vqvae"] {
        let h = header(half.join(model).join(weights));
        let dtypes: std::collections::BTreeSet<&str> = h
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(_, v)| v["dtype"].as_str().unwrap())
            .collect();
        assert_eq!(dtypes, ["F16"].into(), "{model}");
    }
    let out = tmp.join("ldm-f16.npy");
    run_ok(&[
        "sample",
        "--pipeline",
        half.to_str().unwrap(),
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "--n",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(read_npy(&out).unwrap().data.iter().all(|v| v.is_finite()));
    let refused = |args: &[&str], expect: &str| {
        let out = diffuse(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    let p = pipeline.to_str().unwrap();
    refused(
        &["convert", "--in", p, "--out", half.to_str().unwrap()],
        "exists",
    );
    refused(
        &[
            "convert",
            "--in",
            pipeline.join("scheduler").to_str().unwrap(),
            "--out",
            tmp.join("x").to_str().unwrap(),
        ],
        "neither model_index.json",
    );
    assert!(!tmp.join("x").exists());
}

#[test]
fn hostile_autoencoder_folders_are_refused_by_name() {
    let tmp = scratch("autoencoders-hostile");
    let ldm = fixture("ldm", "ldm_vq");
    let noise = ldm.join("noise.npy");
    let sample = |dir: &Path| sample_ddim20(dir, &noise, &tmp.join("out.npy"), &[]);
    let edit = |path: &Path, from: &str, to: &str| {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(from), "{}: no {from}", path.display());
        std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    };
    let refused = |out: std::process::Output, expect: &str, case: &str| {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{case}: {err}");
        assert!(err.contains(expect), "{case}: {err}");
    };

    // A latent pipeline without its autoencoder.
    let no_vae = tmp.join("no_vae");
    copy_dir(&ldm, &no_vae);
    std::fs::remove_dir_all(no_vae.join("vqvae")).unwrap();
    refused(sample(&no_vae), "vqvae/config.json", "missing vqvae/");

    // An autoencoder config that does not match its weights (one more latent channel).
    let mismatch = tmp.join("mismatch");
    copy_dir(&ldm, &mismatch);
    edit(
        &mismatch.join("vqvae/config.json"),
        "\"latent_channels\": 3",
        "\"latent_channels\": 4",
    );
    refused(
        sample(&mismatch),
        "vqvae/diffusion_pytorch_model.safetensors",
        "config against weights",
    );

    // An autoencoder class diffuse does not load, in model_index.json and in config.json.
    let tiny = tmp.join("tiny");
    copy_dir(&ldm, &tiny);
    edit(
        &tiny.join("model_index.json"),
        "\"VQModel\"",
        "\"AutoencoderTiny\"",
    );
    refused(sample(&tiny), "AutoencoderTiny", "model_index class");
    let vae = tmp.join("vae_tiny");
    copy_dir(&fixture("autoencoders", "vq_two_levels"), &vae);
    edit(
        &vae.join("config.json"),
        "\"VQModel\"",
        "\"AutoencoderTiny\"",
    );
    let x = fixture("autoencoders", "vq_two_levels").join("input.npy");
    let z = tmp.join("z.npy");
    let encode = |vae: &Path, input: &Path, extra: &[&str]| {
        let mut args = vec![
            "encode",
            "--vae",
            vae.to_str().unwrap(),
            "--in",
            input.to_str().unwrap(),
            "--out",
            z.to_str().unwrap(),
        ];
        args.extend(extra);
        diffuse(&args)
    };
    refused(encode(&vae, &x, &[]), "AutoencoderTiny", "config class");

    // Inputs: the wrong channels, sides the encoder cannot halve, --logvar of a VQ model, no
    // autoencoder at all.
    let vq = fixture("autoencoders", "vq_two_levels");
    let rgb = fixture("autoencoders", "kl_one_level").join("input.npy");
    refused(encode(&vq, &rgb, &[]), "[N, 1, H, W]", "channels");
    let odd = tmp.join("odd.npy");
    diffuse_data::write_npy(&odd, &[1, 1, 7, 8], &[0.0; 56]).unwrap();
    refused(encode(&vq, &odd, &[]), "divisible by 2", "odd side");
    refused(
        encode(&vq, &x, &["--logvar", tmp.join("lv.npy").to_str().unwrap()]),
        "--logvar",
        "VQ log-variance",
    );
    refused(encode(&tmp, &x, &[]), "no autoencoder here", "empty folder");
    assert!(!z.exists(), "a refused command wrote its output");
}
