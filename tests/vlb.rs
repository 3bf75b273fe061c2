//! The terms of the variational bound against PyTorch. Fixture: tests/fixtures/vlb.json, written by
//!     python3 scripts/reference/vlb.py   (torch 2.15.0, float64, torch.distributions)
//! diffuse computes in float32; the bounds below are stated per function.

use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::gaussian::{
    discretized_gaussian_log_likelihood, gaussian_log_density, normal_kl,
};
use serde_json::Value;

use crate::common::{floats, json_fixture};

fn fixture() -> Value {
    json_fixture("vlb.json", "scripts/reference/vlb.py")
}

fn tensor(v: &Value, device: &Device) -> Tensor<1> {
    let data: Vec<f32> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let n = data.len();
    Tensor::from_data(TensorData::new(data, [n]), device)
}

/// Largest |ours - expected| / max(1, |expected|).
fn max_rel(ours: Tensor<1>, expected: &[f64]) -> f64 {
    let ours: Vec<f32> = ours.into_data().try_to_vec().unwrap();
    ours.iter()
        .zip(expected)
        .map(|(a, b)| (*a as f64 - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

#[test]
fn normal_kl_matches_torch() {
    let (f, device) = (fixture(), Device::default());
    let k = &f["normal_kl"];
    let kl = normal_kl(
        tensor(&k["mean1"], &device),
        tensor(&k["logvar1"], &device),
        tensor(&k["mean2"], &device),
        tensor(&k["logvar2"], &device),
    );
    let err = max_rel(kl, &floats(&k["kl"]));
    eprintln!("normal_kl: max rel error {err:.2e}");
    assert!(err < 1e-5, "{err}");
}

#[test]
fn discretized_gaussian_log_likelihood_matches_torch() {
    let (f, device) = (fixture(), Device::default());
    let d = &f["discretized"];
    let log_p = discretized_gaussian_log_likelihood(
        tensor(&d["x"], &device),
        tensor(&d["mean"], &device),
        tensor(&d["log_scale"], &device),
    );
    // Inputs rounded to float32 shift (x - mean) / scale by up to ~1e-4 relative at scale 1e-3;
    // float32 CDF differences lose digits when a bin holds little mass: 1e-4 (measured 5e-6).
    let err = max_rel(log_p, &floats(&d["log_prob"]));
    eprintln!("discretized log-likelihood: max rel error {err:.2e}");
    assert!(err < 1e-4, "{err}");
}

#[test]
fn gaussian_log_density_matches_torch() {
    let (f, device) = (fixture(), Device::default());
    let g = &f["gaussian"];
    let log_p = gaussian_log_density(
        tensor(&g["x"], &device),
        tensor(&g["mean"], &device),
        tensor(&g["log_scale"], &device),
    );
    // (x - mean) of float32 inputs at scale 1e-3 carries ~1e-4 relative error into z^2 / 2:
    // 1e-4 (measured 1.2e-5).
    let err = max_rel(log_p, &floats(&g["log_prob"]));
    eprintln!("gaussian log density: max rel error {err:.2e}");
    assert!(err < 1e-4, "{err}");
}
