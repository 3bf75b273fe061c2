//! W4: what FID costs. The Fréchet distance of two 2048-wide Gaussian fits (pytorch-fid's
//! `calculate_frechet_distance`, scipy's `sqrtm`, against `diffuse_eval::frechet`), and the
//! moments of the features. Prints one JSON line.
//!   bench-fid [--n 5000] [--dim 2048]

mod common;

use std::time::Instant;

use common::arg;
use diffuse_eval::frechet::{Moments, frechet_distance_of};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() {
    diffuse_kernels::on_worker(run);
}

fn run() {
    let (n, dim) = (arg("--n", 5000), arg("--dim", 2048));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut cloud = |scale: f32, shift: f32| -> Vec<f32> {
        (0..n * dim)
            .map(|_| rng.random_range(-1.0f32..1.0) * scale + shift)
            .collect()
    };
    let (a, b) = (cloud(1.0, 0.0), cloud(1.1, 0.1));
    let start = Instant::now();
    let (ma, mb) = (Moments::of(&a, dim), Moments::of(&b, dim));
    let moments_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let d = frechet_distance_of(&ma, &mb).expect("converges");
    let frechet_s = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "n": n, "dim": dim, "frechet": d, "moments_s": moments_s, "frechet_s": frechet_s,
        })
    );
}
