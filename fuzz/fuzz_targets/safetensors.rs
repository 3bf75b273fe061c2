#![no_main]
// U-Net weights loaded by name from a diffusers model folder (a fixed tiny config.json, fuzzed
// diffusion_pytorch_model.safetensors), and the MLP's own checkpoints.
use std::sync::OnceLock;

use burn::tensor::Device;
use diffuse_nn::{Mlp, MlpConfig, Unet, UnetConfig};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"{"sample_size": 8, "in_channels": 1, "out_channels": 1,
  "block_out_channels": [4, 8], "layers_per_block": 1, "norm_num_groups": 2,
  "attention_head_dim": 4, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}"#;

/// The two models, built once; each input is loaded into a copy (building is the slow part).
fn models() -> &'static (Unet, Mlp) {
    static MODELS: OnceLock<(Unet, Mlp)> = OnceLock::new();
    MODELS.get_or_init(|| {
        let device = Device::default();
        let unet = UnetConfig::from_json(CONFIG).unwrap().init(&device).unwrap();
        (unet, MlpConfig::default().init(&device).unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let (unet, mlp) = models();
    let path = diffuse_fuzz::file("diffusion_pytorch_model.safetensors", data);
    let _ = unet.clone().load_diffusers_weights(&path);
    let _ = diffuse_train::checkpoint::load_weights(mlp.clone(), &path);
});
