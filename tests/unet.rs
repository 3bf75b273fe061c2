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

/// Also on the smallest feature maps diffusers runs: a 2x4 input (maps of 2x4 and 1x2), a 4x4
/// input through three levels (2x2, then 1x1 with attention), a one-level U-Net on 1x1 images.
#[test]
fn unet_matches_diffusers() {
    let device = Device::default();
    for name in [
        "attn_default",
        "scale_shift",
        "small_2x4",
        "small_4x4",
        "one_level_1x1",
    ] {
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

/// Mixed precision: inside a bfloat16 autocast scope the fixtures' outputs, and the gradients
/// of sum(y * r) with respect to their inputs (r_i = sin(0.1 i)), move from float32 by no more
/// than twice what PyTorch's own bfloat16 autocast moves them (`scripts/reference/autocast.py`:
/// 0.7-1.7% of the output's largest value, 2.1-2.4% of the gradient's), and by more than the
/// float32 parity bound, so the products did run in bfloat16.
#[test]
fn bf16_autocast_stays_as_close_to_float32_as_pytorchs() {
    use diffuse_kernels::precision::{Precision, autocast};
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir("autocast_bf16.json")).unwrap())
            .unwrap();
    let device = Device::default().autodiff();
    let relative = |a: &Tensor<4>, b: &Tensor<4>| {
        let scale = b.clone().abs().max().into_scalar::<f32>();
        (a.clone() - b.clone()).abs().max().into_scalar::<f32>() / scale
    };
    for name in ["attn_default", "scale_shift"] {
        let dir = fixture_dir(name);
        let (_, model) = Unet::from_diffusers_dir(&dir, &device).unwrap();
        let x = read_npy(&dir.join("input.npy")).unwrap();
        let t = read_npy(&dir.join("timesteps.npy")).unwrap();
        let shape: [usize; 4] = x.shape.clone().try_into().unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(x.data, shape), &device);
        let t = Tensor::<1>::from_data(TensorData::new(t.data, t.shape.clone()), &device);
        let run = |precision| {
            let x = x.clone().require_grad();
            let y = autocast(precision, || model.forward(x.clone(), t.clone()));
            assert_eq!(y.dtype(), burn::tensor::DType::F32);
            let n = y.dims().iter().product::<usize>();
            let r: Vec<f32> = (0..n).map(|i| (0.1 * i as f32).sin()).collect();
            let r = Tensor::<4>::from_data(TensorData::new(r, y.dims()), &device);
            let grads = (y.clone() * r).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let ((y32, g32), (y16, g16)) = (run(Precision::F32), run(Precision::Bf16));
        assert_eq!(g16.dtype(), burn::tensor::DType::F32);
        let limit = |key: &str| reference[name][key].as_f64().unwrap() as f32;
        for (what, ours, torch) in [
            (
                "output",
                relative(&y16, &y32),
                limit("output_relative_error"),
            ),
            (
                "input gradient",
                relative(&g16, &g32),
                limit("input_gradient_relative_error"),
            ),
        ] {
            eprintln!("{name}: {what} relative error {ours} (PyTorch autocast {torch})");
            assert!(
                ours <= 2.0 * torch,
                "{name}: {what} {ours} vs PyTorch {torch}"
            );
            assert!(ours > 1e-3, "{name}: {what} {ours}: not bfloat16");
        }
    }
}
