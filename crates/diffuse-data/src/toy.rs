//! Built-in 2-D datasets, as in the classic diffusion and flow demos. Each draws `n` points from a
//! seeded RNG. Scales are the usual ones (scikit-learn's generators, FFJORD's checkerboard);
//! training standardizes every set anyway.

use std::f64::consts::PI;

use rand::{Rng, RngExt};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::points::Points;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToyDataset {
    SwissRoll,
    TwoMoons,
    EightGaussians,
    Circles,
    Checkerboard,
    /// 16 tight Gaussians on a circle: sharp structure that blurs visibly when a model is off.
    Ring16,
}

impl ToyDataset {
    pub const ALL: [ToyDataset; 6] = [
        ToyDataset::SwissRoll,
        ToyDataset::TwoMoons,
        ToyDataset::EightGaussians,
        ToyDataset::Circles,
        ToyDataset::Checkerboard,
        ToyDataset::Ring16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ToyDataset::SwissRoll => "swiss_roll",
            ToyDataset::TwoMoons => "two_moons",
            ToyDataset::EightGaussians => "eight_gaussians",
            ToyDataset::Circles => "circles",
            ToyDataset::Checkerboard => "checkerboard",
            ToyDataset::Ring16 => "ring16",
        }
    }

    /// Parses a name; `-` and `_` are interchangeable (`swiss-roll` = `swiss_roll`).
    pub fn from_name(name: &str) -> Result<Self, DataError> {
        let key = name.replace('-', "_").to_lowercase();
        Self::ALL
            .into_iter()
            .find(|d| d.name() == key)
            .ok_or_else(|| DataError::UnknownDataset {
                name: name.to_string(),
                choices: Self::ALL.map(|d| d.name()).join(", "),
            })
    }

    /// `n` points drawn from this distribution.
    pub fn sample(self, n: usize, rng: &mut impl Rng) -> Points {
        let mut data = Vec::with_capacity(2 * n);
        for i in 0..n {
            let [x, y] = match self {
                ToyDataset::SwissRoll => swiss_roll(rng),
                ToyDataset::TwoMoons => two_moons(rng, i % 2 == 0),
                ToyDataset::EightGaussians => eight_gaussians(rng),
                ToyDataset::Circles => circles(rng, i % 2 == 0),
                ToyDataset::Checkerboard => checkerboard(rng),
                ToyDataset::Ring16 => ring16(rng),
            };
            data.extend([x as f32, y as f32]);
        }
        Points::new(data, 2)
    }
}

fn normal(rng: &mut impl Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// One of 16 Gaussians with std 0.08, their means evenly spaced on a circle of radius 4 (the
/// means 1.57 apart: 20 standard deviations).
fn ring16(rng: &mut impl Rng) -> [f64; 2] {
    let k = rng.random_range(0..16) as f64;
    let a = 2.0 * PI * k / 16.0;
    [
        4.0 * a.cos() + 0.08 * normal(rng),
        4.0 * a.sin() + 0.08 * normal(rng),
    ]
}

/// scikit-learn's `make_swiss_roll` projected on (x, z), noise 0.5.
fn swiss_roll(rng: &mut impl Rng) -> [f64; 2] {
    let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
    [
        t * t.cos() + 0.5 * normal(rng),
        t * t.sin() + 0.5 * normal(rng),
    ]
}

/// scikit-learn's `make_moons`, noise 0.05.
fn two_moons(rng: &mut impl Rng, upper: bool) -> [f64; 2] {
    let a = PI * rng.random::<f64>();
    let (x, y) = if upper {
        (a.cos(), a.sin())
    } else {
        (1.0 - a.cos(), 0.5 - a.sin())
    };
    [x + 0.05 * normal(rng), y + 0.05 * normal(rng)]
}

/// Eight Gaussians (std 0.1) evenly spaced on a circle of radius 2.
fn eight_gaussians(rng: &mut impl Rng) -> [f64; 2] {
    let k = rng.random_range(0..8) as f64;
    let a = k * PI / 4.0;
    [
        2.0 * a.cos() + 0.1 * normal(rng),
        2.0 * a.sin() + 0.1 * normal(rng),
    ]
}

/// scikit-learn's `make_circles` (radii 1 and 0.5), noise 0.03.
fn circles(rng: &mut impl Rng, outer: bool) -> [f64; 2] {
    let r = if outer { 1.0 } else { 0.5 };
    let a = 2.0 * PI * rng.random::<f64>();
    [
        r * a.cos() + 0.03 * normal(rng),
        r * a.sin() + 0.03 * normal(rng),
    ]
}

/// FFJORD's checkerboard: uniform on the black squares of a 4x4 board over [-4, 4]^2.
fn checkerboard(rng: &mut impl Rng) -> [f64; 2] {
    let x1 = rng.random::<f64>() * 4.0 - 2.0;
    let x2 =
        rng.random::<f64>() - 2.0 * rng.random_range(0..2) as f64 + (x1.floor().rem_euclid(2.0));
    [2.0 * x1, 2.0 * x2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn every_dataset_is_finite_seeded_and_named() {
        for d in ToyDataset::ALL {
            let a = d.sample(500, &mut ChaCha8Rng::seed_from_u64(1));
            let b = d.sample(500, &mut ChaCha8Rng::seed_from_u64(1));
            assert_eq!(a, b);
            assert_eq!(a.len(), 500);
            assert!(a.data.iter().all(|v| v.is_finite()));
            assert_eq!(ToyDataset::from_name(d.name()).unwrap(), d);
        }
        assert_eq!(
            ToyDataset::from_name("swiss-roll").unwrap(),
            ToyDataset::SwissRoll
        );
        let err = ToyDataset::from_name("spiral").unwrap_err().to_string();
        assert!(
            err.contains("swiss_roll") && err.contains("spiral"),
            "{err}"
        );
    }

    #[test]
    fn checkerboard_points_lie_on_black_squares() {
        let p = ToyDataset::Checkerboard.sample(2000, &mut ChaCha8Rng::seed_from_u64(2));
        for xy in p.data.chunks(2) {
            let (i, j) = ((xy[0] / 2.0).floor() as i64, (xy[1] / 2.0).floor() as i64);
            assert_eq!((i + j).rem_euclid(2), 0, "{xy:?}");
        }
    }
}
