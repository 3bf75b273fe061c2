//! Every `--sampler` through the binary, on a 2-D run (`likelihood.rs` checks quality) and on a
//! tiny image run with a learned variance, and the image ODE likelihood (Hutchinson).

use std::path::Path;

use diffuse_data::read_npy;
use serde_json::Value;

use crate::common::{diffuse, scratch, stderr};

pub const ALL_SAMPLERS: [&str; 7] = [
    "ddpm",
    "ddim",
    "euler",
    "heun",
    "dpm-solver++",
    "ode",
    "sde",
];

/// A 3-step image run on a folder of 8x8 PNGs, learning its variance (6 output channels).
fn tiny_learned_image_run(dir: &Path) -> std::path::PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..8u32 {
        let img = image::RgbImage::from_fn(8, 8, |x, y| {
            image::Rgb([(x * 30) as u8, (y * 30) as u8, (i * 30) as u8])
        });
        img.save(images.join(format!("{i}.png"))).unwrap();
    }
    let config = dir.join("tiny.json");
    std::fs::write(
        &config,
        r#"{
          "unet": {"sample_size": 8, "block_out_channels": [8, 16], "norm_num_groups": 4,
                   "attention_head_dim": 8,
                   "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                   "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]},
          "train": {"batch_size": 4, "loss": {"objective": {"kind": "hybrid", "lambda": 0.001},
                    "variance": "learned_range"}},
          "sample": {"n": 2, "ddim_steps": 5}
        }"#,
    )
    .unwrap();
    let run = dir.join("run");
    let out = diffuse(&[
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        images.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--steps",
        "3",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    run
}

#[test]
fn every_sampler_runs_on_an_image_run_and_the_ode_likelihood_evaluates() {
    let dir = scratch("samplers-cli");
    let run = tiny_learned_image_run(&dir);
    for sampler in ALL_SAMPLERS {
        for karras in [false, true] {
            if karras && matches!(sampler, "ddpm" | "ddim" | "ode") {
                continue;
            }
            let file = dir.join(format!("{sampler}{karras}.npy"));
            let mut args = vec![
                "sample",
                "--run",
                run.to_str().unwrap(),
                "--sampler",
                sampler,
                "--n",
                "2",
                "--out",
                file.to_str().unwrap(),
            ];
            if sampler != "ode" {
                args.extend(["--steps", "4"]);
            } else {
                args.extend(["--rtol", "1e-2", "--atol", "1e-2"]);
            }
            if karras {
                args.push("--karras");
            }
            let out = diffuse(&args);
            assert!(
                out.status.success(),
                "{sampler} karras={karras}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains("network evaluations"),
                "{sampler}: {}",
                stderr(&out)
            );
            let x = read_npy(&file).unwrap();
            assert_eq!(x.shape, vec![2, 3, 8, 8], "{sampler}");
            assert!(x.data.iter().all(|v| v.is_finite()), "{sampler}");
        }
    }
    // Flags that do not apply are refused, not ignored.
    for (extra, says) in [
        (vec!["--sampler", "ddim", "--karras"], "--karras"),
        (vec!["--sampler", "ode", "--steps", "5"], "--rtol"),
        (vec!["--sampler", "euler", "--eta", "0.5"], "--eta"),
    ] {
        let mut args = vec![
            "sample",
            "--run",
            run.to_str().unwrap(),
            "--n",
            "1",
            "--out",
            dir.join("x.npy").to_str().unwrap().to_string().leak(),
        ];
        args.extend(extra);
        let out = diffuse(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let out = diffuse(&[
        "eval",
        "--run",
        run.to_str().unwrap(),
        "--nll",
        "--method",
        "ode",
        "--n",
        "2",
        "--rtol",
        "1e-3",
        "--atol",
        "1e-3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("nll_ode.json")).unwrap()).unwrap();
    assert_eq!(r["divergence"], "hutchinson");
    assert_eq!(r["examples"], 2);
    assert_eq!(r["dequantization_bits_per_dim"], 7.0);
    let bits = r["bits_per_dim"].as_f64().unwrap();
    // 8-bit data: a density model's bits/dim is positive and, for a 3-step model, far from 0.
    assert!(bits.is_finite() && bits > 0.5, "{bits}");
}
