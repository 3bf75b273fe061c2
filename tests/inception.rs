//! pytorch-fid's FID Inception with weights from a formula, against pytorch-fid's own network on
//! the same weights; the Fréchet distance against scipy's `sqrtm` (pytorch-fid's
//! `calculate_frechet_distance`) and numpy's `eigh`; IS and the polynomial-kernel MMD against
//! their reference formulas; and the commands (`fid`, `fid --save-stats`, `is`, `kid`) on the
//! fixture's folders. Fixtures: `python3 scripts/reference/inception.py` (its docstring says
//! how the weights are drawn; `weight_values` here is the same formula).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use diffuse_eval::frechet::{Moments, frechet_distance_of};
use diffuse_nn::inception::{Dims, Inception, NamedTensor, TensorMap, preprocess};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inception")
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("inception.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

/// Element i of stream `seed`, uniform in [-1, 1): splitmix64, as the script's
/// `splitmix_uniform`.
pub fn splitmix_uniform(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * 2f64.powi(-53) * 2.0 - 1.0
}

/// The script's `weight_values`: tensor `name` of `shape`, scaled by its kind.
fn weight_values(name: &str, shape: &[usize], seed: u64) -> Vec<f32> {
    let count: usize = shape.iter().product();
    let stream = fnv1a(name).wrapping_add(seed);
    (0..count as u64)
        .map(|i| {
            let u = splitmix_uniform(stream, i);
            let v = if name.ends_with("conv.weight") {
                let fan_in: usize = shape[1..].iter().product();
                u * (6.0 / fan_in as f64).sqrt()
            } else if name.ends_with("bn.weight") {
                1.0 + 0.25 * u
            } else if name.ends_with("bn.running_var") {
                1.0 + 0.5 * u
            } else if name == "fc.weight" {
                u * 4.0 * (3.0 / shape[1] as f64).sqrt()
            } else {
                0.1 * u
            };
            v as f32
        })
        .collect()
}

/// Every tensor the network reads, from the formula.
pub fn formula_tensors(seed: u64) -> TensorMap {
    let mut map = TensorMap::default();
    for (name, shape) in Inception::parameter_shapes() {
        let values = weight_values(&name, &shape, seed);
        map.tensors.insert(name, NamedTensor { shape, values });
    }
    map
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn png_batch(folder: &str) -> (Vec<u8>, [usize; 4]) {
    let dir = fixture_dir().join(folder);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut pixels = Vec::new();
    for p in &paths {
        let rgb = image::open(p).unwrap().to_rgb8();
        for c in 0..3 {
            pixels.extend(rgb.as_raw().iter().skip(c).step_by(3));
        }
    }
    (pixels, [paths.len(), 3, 40, 40])
}

/// Largest |a - b| over the largest |b|, over a batch of rows.
fn relative_error(got: &[f32], want: &[Vec<f64>]) -> f64 {
    let flat: Vec<f64> = want.iter().flatten().copied().collect();
    assert_eq!(got.len(), flat.len());
    let scale = flat.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let err = got
        .iter()
        .zip(&flat)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    err / scale
}

/// Features at every width and the logits match pytorch-fid's network within 1e-4 of their
/// largest value (its own float32 and float64 runs differ by 6e-7), on RGB and grayscale PNGs
/// and on grayscale samples in [-1, 1] quantized as diffusers' `numpy_to_pil`.
#[test]
fn the_network_matches_pytorch_fid() {
    let fx = fixture();
    let device = Device::default();
    let net = Inception::from_tensors(formula_tensors(0), &device).unwrap();
    let gray: Vec<u8> = {
        let array = diffuse_data::npy::read_npy(&fixture_dir().join("gray.npy")).unwrap();
        assert_eq!(array.shape, vec![3, 1, 28, 28]);
        array
            .data
            .iter()
            .map(|&x| diffuse_data::images::to_pixel(x))
            .collect()
    };
    let inputs = [
        ("a", png_batch("a")),
        ("b", png_batch("b")),
        ("gray", (gray, [3, 1, 28, 28])),
    ];
    for (name, (pixels, shape)) in inputs {
        let x = preprocess(&pixels, shape, &device);
        let out = net.forward(x, &Dims::ALL, true);
        for (dims, features) in &out.features {
            let want = matrix(&fx["features"][name][dims.width().to_string()]);
            let err = relative_error(features, &want);
            assert!(err < 1e-4, "{name} at {} dims: {err:e}", dims.width());
        }
        let err = relative_error(out.logits.as_ref().unwrap(), &matrix(&fx["logits"][name]));
        assert!(err < 1e-4, "{name} logits: {err:e}");
    }
}

/// The Fréchet distance of clouds from the script's `cloud`, against pytorch-fid's scipy-based
/// value within 1e-6 relative where the covariances are full rank, and against numpy's `eigh`
/// where one has rank 59 of 128 (scipy's `sqrtm` warns that it is singular there).
#[test]
fn the_frechet_distance_matches_scipy_and_eigh() {
    let fx = fixture();
    for case in fx["frechet_cases"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        let d = case["d"].as_u64().unwrap() as usize;
        let cloud = |seed: &str, mix: &str, shift: &str| {
            let (seed, mix, shift) = (
                case[seed].as_u64().unwrap(),
                case[mix].as_f64().unwrap(),
                case[shift].as_f64().unwrap(),
            );
            let u = |i: usize, j: usize| splitmix_uniform(seed, (i * d + j) as u64);
            let values: Vec<f32> = (0..n * d)
                .map(|k| {
                    let (i, j) = (k / d, k % d);
                    let jf = j as f64 / d as f64;
                    ((u(i, j) + mix * u(i, (j + 1) % d)) * (1.0 + jf) + shift * jf) as f32
                })
                .collect();
            Moments::of(&values, d)
        };
        let a = cloud("seed_a", "mix_a", "shift_a");
        let b = cloud("seed_b", "mix_b", "shift_b");
        let got = frechet_distance_of(&a, &b).unwrap();
        let (scipy, eigh) = (
            case["pytorch_fid"].as_f64().unwrap(),
            case["eigh"].as_f64().unwrap(),
        );
        let want = if case["singular"].as_bool().unwrap() {
            eigh
        } else {
            scipy
        };
        assert!(
            (got - want).abs() < 1e-6 * want,
            "n {n} d {d}: {got} against {want} (scipy {scipy}, eigh {eigh})"
        );
    }
}
