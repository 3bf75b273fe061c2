//! W4: what FID costs on this machine. The FID Inception's forward pass (pytorch-fid's network,
//! batch 50 of 299 x 299 images to pool3, as `python -m pytorch_fid` runs it; weights from a
//! formula, which does not change the time), and the Fréchet distance of two 2048-wide fits
//! (pytorch-fid: scipy's `sqrtm`; benchmarks/torch_fid.py is the other side). One JSON line.
//!   bench-fid [--batches 4] [--batch 50] [--n 5000]

#[allow(dead_code)] // this binary uses `arg` and `keep_freed_pages` only
mod common;

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use common::{arg, keep_freed_pages};
use diffuse_eval::frechet::{Moments, frechet_distance_of};
use diffuse_nn::inception::{Dims, Inception, NamedTensor, SIDE, TensorMap};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

// As the `diffuse` binary: mimalloc, keeping freed pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    keep_freed_pages();
    diffuse_kernels::on_worker(run);
}

fn run() {
    let (batches, n, dim) = (arg("--batches", 4), arg("--n", 5000), 2048);
    let batch = arg("--batch", 50);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut map = TensorMap::default();
    for (name, shape) in Inception::parameter_shapes() {
        let count: usize = shape.iter().product();
        let scale = if name.ends_with("running_var") || name.ends_with("bn.weight") {
            (1.0, 0.1)
        } else {
            (0.0, 0.05)
        };
        let values = (0..count)
            .map(|_| scale.0 + scale.1 * rng.random_range(-1.0f32..1.0))
            .collect();
        map.tensors.insert(name, NamedTensor { shape, values });
    }
    let device = Device::default();
    let net = Inception::from_tensors(map, &device).expect("the network's own shapes");
    let input: Vec<f32> = (0..batch * 3 * SIDE * SIDE)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(input, [batch, 3, SIDE, SIDE]), &device);
    net.forward(x.clone(), &[Dims::D2048], false); // warm-up
    let start = Instant::now();
    for _ in 0..batches {
        net.forward(x.clone(), &[Dims::D2048], false);
    }
    let images_per_s = (batches * batch) as f64 / start.elapsed().as_secs_f64();

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
            "inception_images_per_s": images_per_s, "frechet_n": n, "frechet": d,
            "moments_s": moments_s, "frechet_s": frechet_s,
        })
    );
}
