//! `diffuse eval --nll --method ode` on a 2-D mixture whose density is known: the eight
//! Gaussians (means 2 (cos k pi/4, sin k pi/4), std 0.1, weights 1/8). The ODE's likelihood is
//! that of a normalizing flow, so it cannot beat the true density on average; and it is tighter
//! than the variational bound of the same run.

use diffuse_data::write_npy;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde_json::Value;

use crate::common::{diffuse, scratch, stderr};

fn component_mean(k: usize) -> [f64; 2] {
    let a = k as f64 * std::f64::consts::PI / 4.0;
    [2.0 * a.cos(), 2.0 * a.sin()]
}

/// -log p(x) per dimension, in bits, averaged over the points.
fn true_bits_per_dim(points: &[[f64; 2]]) -> f64 {
    let var = 0.01f64;
    let nats: f64 = points
        .iter()
        .map(|x| {
            let p: f64 = (0..8)
                .map(|k| {
                    let m = component_mean(k);
                    let d2 = (x[0] - m[0]).powi(2) + (x[1] - m[1]).powi(2);
                    (-d2 / (2.0 * var)).exp() / (2.0 * std::f64::consts::PI * var) / 8.0
                })
                .sum();
            -p.ln()
        })
        .sum();
    nats / points.len() as f64 / 2.0 / std::f64::consts::LN_2
}

fn bits(dir: &std::path::Path, file: &str) -> (f64, f64) {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
    (
        v["bits_per_dim"].as_f64().unwrap(),
        v["bits_per_dim_ci95"].as_f64().unwrap(),
    )
}

#[test]
fn ode_likelihood_lies_between_the_truth_and_the_bound() {
    let dir = scratch("ode-nll");
    let run = dir.join("run");
    let out = diffuse(&[
        "train",
        "--dataset",
        "eight_gaussians",
        "--steps",
        "5000",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 2,000 fresh points from the mixture, evaluated with --data.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let points: Vec<[f64; 2]> = (0..2000)
        .map(|_| {
            let m = component_mean(rng.random_range(0..8));
            let (a, b): (f64, f64) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
            [m[0] + 0.1 * a, m[1] + 0.1 * b]
        })
        .collect();
    let file = dir.join("points.npy");
    let flat: Vec<f32> = points.iter().flatten().map(|&v| v as f32).collect();
    write_npy(&file, &[2000, 2], &flat).unwrap();
    let truth = true_bits_per_dim(&points);
    for method in ["vlb", "ode"] {
        let out = diffuse(&[
            "eval",
            "--run",
            run.to_str().unwrap(),
            "--nll",
            "--method",
            method,
            "--data",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{method}: {}", stderr(&out));
    }
    let (vlb, vlb_ci) = bits(&run, "nll_data.json");
    let (ode, ode_ci) = bits(&run, "nll_ode_data.json");
    eprintln!(
        "true {truth:.4}, ODE {ode:.4} +- {ode_ci:.4}, bound {vlb:.4} +- {vlb_ci:.4} bits/dim"
    );
    assert!(
        ode + ode_ci > truth,
        "the ODE ({ode} +- {ode_ci}) beats the true density ({truth})"
    );
    assert!(
        ode < vlb,
        "the ODE ({ode}) is not tighter than the bound ({vlb})"
    );

    // Every sampler at its default steps draws points near the data: within 2x the distance
    // between two draws of 2,000 data points (the NFE experiment compares them properly).
    for sampler in crate::sampling_cli::ALL_SAMPLERS {
        let file = dir.join(format!("{sampler}.npy"));
        let out = diffuse(&[
            "sample",
            "--run",
            run.to_str().unwrap(),
            "--sampler",
            sampler,
            "--n",
            "2000",
            "--out",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{sampler}: {}", stderr(&out));
        let out = diffuse(&[
            "eval",
            "--run",
            run.to_str().unwrap(),
            "--samples",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{sampler}: {}", stderr(&out));
        let q: Value =
            serde_json::from_str(&std::fs::read_to_string(file.with_extension("sw.json")).unwrap())
                .unwrap();
        let (sw, floor) = (
            q["sliced_wasserstein"].as_f64().unwrap(),
            q["data_vs_data"].as_f64().unwrap(),
        );
        eprintln!("{sampler}: {sw:.4} (floor {floor:.4})");
        assert!(sw < 2.0 * floor, "{sampler}: {sw} vs floor {floor}");
    }
}
