//! Every input in `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` (crashing inputs the
//! fuzzers found, kept once fixed) goes through the parser its fuzz target drives, without a
//! panic. The fuzzers themselves run outside this suite (fuzz/README.md).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use diffuse_diffusers::SchedulerConfig;
use diffuse_nn::{MlpConfig, UnetConfig};

use crate::common::{diffuse, scratch};

/// The files of one fuzz target: seeds and regressions.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = ["seeds", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(root.join(kind).join(target)).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds for fuzz target {target}");
    files
}

/// A copy of `input` named `name` in `dir` (the parsers read paths and look at extensions).
fn copy_as(input: &Path, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(input, &path).unwrap();
    path
}

#[test]
fn fuzz_inputs_of_the_data_parsers_do_not_panic() {
    let dir = scratch("fuzz-data");
    for input in inputs("npy") {
        let path = copy_as(&input, &dir, "x.npy");
        let _ = diffuse_data::read_npy(&path);
        let _ = diffuse_data::load_points(&path, 2);
    }
    for input in inputs("csv") {
        let _ = diffuse_data::load_points(&copy_as(&input, &dir, "x.csv"), 2);
    }
    for input in inputs("npz") {
        let _ = diffuse_data::npz::read_npz(&input);
    }
    for input in inputs("idx") {
        let _ = diffuse_data::read_idx(&input);
    }
    for input in inputs("cifar") {
        let _ = diffuse_data::read_cifar_batch(&input);
    }
    for input in inputs("image") {
        // As the fuzz target: the first byte picks the extension and the channels.
        let bytes = std::fs::read(&input).unwrap();
        let Some((&pick, image)) = bytes.split_first() else {
            continue;
        };
        let images = dir.join("images");
        let _ = std::fs::remove_dir_all(&images);
        std::fs::create_dir_all(&images).unwrap();
        let name = if pick & 1 == 0 { "a.png" } else { "a.jpg" };
        std::fs::write(images.join(name), image).unwrap();
        let channels = if pick & 2 == 0 { 1 } else { 3 };
        let _ = diffuse_data::load_image_folder(&images, 8, channels);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tiny U-Net of the `safetensors` fuzz target.
const UNET: &str = r#"{"sample_size": 8, "in_channels": 1, "out_channels": 1,
  "block_out_channels": [4, 8], "layers_per_block": 1, "norm_num_groups": 2,
  "attention_head_dim": 4, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}"#;

/// The part of a run config the `run_config` fuzz target parses.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Parts {
    #[serde(default)]
    schedule: diffuse_core::ScheduleConfig,
    #[serde(default)]
    model: MlpConfig,
    #[serde(default)]
    train: diffuse_train::TrainConfig,
}

#[test]
fn fuzz_inputs_of_weights_and_configs_do_not_panic() {
    let device = Device::default();
    let unet = UnetConfig::from_json(UNET).unwrap().init(&device).unwrap();
    let mlp = MlpConfig::default().init(&device).unwrap();
    for input in inputs("safetensors") {
        let _ = unet.clone().load_diffusers_weights(&input);
        let _ = diffuse_train::checkpoint::load_weights(mlp.clone(), &input);
    }
    for input in inputs("diffusers_config") {
        let Ok(text) = std::fs::read_to_string(&input) else {
            continue;
        };
        let _ = UnetConfig::from_json(&text);
        if let Ok(a) = diffuse_nn::AutoencoderConfig::from_json(&text) {
            let _ = (a.downsampling(), a.diffusion_channels(), a.to_json("0"));
        }
        if let Ok(s) = SchedulerConfig::from_json(&text) {
            let _ = s.schedule();
        }
    }
    // Run configs: the fuzz target's library parts (schedule, model, train), then the binary's
    // own reader, as TOML and as JSON: an error (exit 1), never a panic (101) or an abort (134).
    // An --out that is a file stops every config that passes validation before training.
    let dir = scratch("fuzz-config");
    let not_a_dir = dir.join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    for input in inputs("run_config") {
        let text = std::fs::read_to_string(&input).unwrap_or_default();
        let parts = [
            toml::from_str::<Parts>(&text).ok(),
            serde_json::from_str::<Parts>(&text).ok(),
        ];
        for p in parts.into_iter().flatten() {
            let _ = p.schedule.build();
            let _ = p.model.validate();
            let _ = p.train.validate();
        }
        for ext in ["toml", "json"] {
            let path = copy_as(&input, &dir, &format!("c.{ext}"));
            let out = diffuse(&[
                "train",
                "--config",
                path.to_str().unwrap(),
                "--out",
                not_a_dir.to_str().unwrap(),
            ]);
            assert_eq!(out.status.code(), Some(1), "{}", input.display());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Checkpoint states (`train --resume`'s `state.json`): read and checked, and a history that
/// passes its check gives a distribution over t, as the `resume_state` target requires.
#[test]
fn fuzz_inputs_of_inception_weights_do_not_panic() {
    for input in inputs("inception_weights") {
        if let Ok(map) = diffuse_nn::inception::TensorMap::read(&input) {
            let _ = diffuse_nn::inception::Inception::from_tensors(map, &Device::default());
        }
    }
}

#[test]
fn fuzz_inputs_of_resume_states_do_not_panic() {
    use diffuse_core::discrete::importance::ImportanceSampler;
    use rand::SeedableRng;
    for input in inputs("resume_state") {
        let Ok(state) = diffuse_train::checkpoint::read_state(&input) else {
            continue;
        };
        let _ = state.rng.restore();
        // DDPM's state: its importance history.
        let Some(Ok(mut sampler)) = state
            .objective
            .map(serde_json::from_value::<ImportanceSampler>)
        else {
            continue;
        };
        let t = sampler.probabilities().len();
        if t == 0 || t > 100_000 || sampler.check(t).is_err() {
            continue;
        }
        let p = sampler.probabilities();
        let total: f64 = p.iter().sum();
        assert!(p.iter().all(|v| v.is_finite()) && (total - 1.0).abs() < 1e-6);
        let (ts, _) = sampler.sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0), 8);
        sampler.update(&ts, &[1.0; 8]);
    }
}
