//! diffuse's U-Net against diffusers' `UNet2DModel`: tiny random models saved by
//! `python3 scripts/reference/unet.py` (torch 2.15.0, diffusers 0.42.1) in diffusers' own layout,
//! loaded by name, run on the same input: <= 1e-4 max-abs (the bound).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use diffuse_data::read_npy;
use diffuse_nn::{Unet, UnetConfig};

fn fixture_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/unet")
        .join(name)
}

#[test]
fn unet_matches_diffusers() {
    let device = Device::default();
    for name in ["attn_default", "scale_shift"] {
        let dir = fixture_dir(name);
        let (_, model) =
            Unet::from_diffusers_dir(&dir, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = read_npy(&dir.join("input.npy")).unwrap();
        let t = read_npy(&dir.join("timesteps.npy")).unwrap();
        let expected = read_npy(&dir.join("output.npy")).unwrap();
        let shape: [usize; 4] = x.shape.clone().try_into().unwrap();
        let out = model.forward(
            Tensor::from_data(TensorData::new(x.data, shape), &device),
            Tensor::from_data(TensorData::new(t.data, t.shape.clone()), &device),
        );
        assert_eq!(out.dims().to_vec(), expected.shape, "{name}");
        let ours: Vec<f32> = out.into_data().try_to_vec().unwrap();
        let max_abs = ours
            .iter()
            .zip(&expected.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{name}: max-abs {max_abs} over {} values", ours.len());
        assert!(max_abs <= 1e-4, "{name}: max-abs {max_abs}");
    }
}

#[test]
fn unsupported_unet_config_fields_are_named() {
    let base = std::fs::read_to_string(fixture_dir("attn_default").join("config.json")).unwrap();
    let cases = [
        ("\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\"", "act_fn"),
        (
            "\"class_embed_type\": null",
            "\"class_embed_type\": \"timestep\"",
            "class_embed_type",
        ),
        (
            "\"time_embedding_type\": \"positional\"",
            "\"time_embedding_type\": \"fourier\"",
            "time_embedding_type",
        ),
        (
            "\"_class_name\"",
            "\"made_up_field\": 1, \"_class_name\"",
            "made_up_field",
        ),
        (
            "\"norm_num_groups\": 4",
            "\"norm_num_groups\": 3",
            "norm_num_groups",
        ),
    ];
    for (from, to, field) in cases {
        assert!(base.contains(from), "fixture has {from}");
        let err = UnetConfig::from_json(&base.replace(from, to))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    assert!(UnetConfig::from_json(&base).is_ok());
}
