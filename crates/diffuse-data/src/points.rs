//! Point clouds: the user's own from `.npy` or `.csv`, standardization, and train/held-out splits.

use std::path::Path;

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::npy::read_npy;

/// N points of dimension `dim`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    pub data: Vec<f32>,
    pub dim: usize,
}

impl Points {
    pub fn new(data: Vec<f32>, dim: usize) -> Self {
        assert!(
            dim > 0 && data.len().is_multiple_of(dim),
            "data length must be a multiple of dim"
        );
        Self { data, dim }
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Shuffles with `rng` and splits off the last `held_out` points.
    pub fn split(mut self, held_out: usize, rng: &mut impl Rng) -> (Points, Points) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        let rows: Vec<f32> = order.iter().flat_map(|&i| self.row(i).to_vec()).collect();
        self.data = rows;
        let keep = self.len().saturating_sub(held_out);
        let rest = self.data.split_off(keep * self.dim);
        let dim = self.dim;
        (self, Points::new(rest, dim))
    }
}

/// Per-dimension affine map x -> (x - mean) / std, stored with a run so samples map back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Fits mean and standard deviation per dimension (std floored at 1e-12 for constant columns).
    pub fn fit(points: &Points) -> Self {
        let n = points.len().max(1) as f64;
        let mut mean = vec![0.0; points.dim];
        for i in 0..points.len() {
            for (m, v) in mean.iter_mut().zip(points.row(i)) {
                *m += *v as f64 / n;
            }
        }
        let mut var = vec![0.0; points.dim];
        for i in 0..points.len() {
            for ((s, v), m) in var.iter_mut().zip(points.row(i)).zip(&mean) {
                *s += (*v as f64 - m).powi(2) / n;
            }
        }
        Self {
            mean,
            std: var.into_iter().map(|v| v.sqrt().max(1e-12)).collect(),
        }
    }

    /// Checks that the map has one finite mean and one positive finite std per dimension.
    pub fn check_dim(&self, dim: usize) -> Result<(), DataError> {
        if self.mean.len() != dim || self.std.len() != dim {
            return Err(DataError::Standardizer(format!(
                "has {} means and {} stds for {dim}-D points",
                self.mean.len(),
                self.std.len()
            )));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::Standardizer(format!(
                "std {s} is not positive and finite"
            )));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(DataError::Standardizer(format!("mean {m} is not finite")));
        }
        Ok(())
    }

    pub fn identity(dim: usize) -> Self {
        Self {
            mean: vec![0.0; dim],
            std: vec![1.0; dim],
        }
    }

    pub fn forward(&self, points: &Points) -> Points {
        self.map(points, |v, m, s| (v - m) / s)
    }

    pub fn inverse(&self, points: &Points) -> Points {
        self.map(points, |v, m, s| v * s + m)
    }

    fn map(&self, points: &Points, f: impl Fn(f64, f64, f64) -> f64) -> Points {
        let data = points
            .data
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let d = i % points.dim;
                f(*v as f64, self.mean[d], self.std[d]) as f32
            })
            .collect();
        Points::new(data, points.dim)
    }
}

/// Loads a point cloud of shape [N, dim] from `.npy` (float32/float64) or `.csv` (numbers
/// separated by commas, an optional header line). Rejects wrong shapes, empty files and
/// non-finite values, naming the file.
pub fn load_points(path: &Path, dim: usize) -> Result<Points, DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_lowercase);
    let (shape, data) = match ext.as_deref() {
        Some("npy") => {
            let arr = read_npy(path)?;
            (arr.shape, arr.data)
        }
        Some("csv") => read_csv(path)?,
        _ => return Err(DataError::Extension { path: path.into() }),
    };
    if shape.len() != 2 || shape[1] != dim {
        if shape.iter().product::<usize>() == 0 {
            return Err(DataError::Empty { path: path.into() });
        }
        return Err(DataError::Shape {
            path: path.into(),
            dim,
            shape,
        });
    }
    if shape[0] == 0 {
        return Err(DataError::Empty { path: path.into() });
    }
    if let Some((i, v)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(DataError::NotFinite {
            path: path.into(),
            index: i / dim,
            value: *v as f64,
        });
    }
    Ok(Points::new(data, dim))
}

fn read_csv(path: &Path) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    let text = diffuse_fs::read_to_string(path, diffuse_fs::Limit::memory())?;
    let mut data = Vec::new();
    let mut rows = 0;
    let mut cols = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Vec<Option<f32>> = fields.iter().map(|f| f.parse::<f32>().ok()).collect();
        if rows == 0 && cols.is_none() && parsed.iter().all(Option::is_none) {
            cols = Some(fields.len()); // a header line
            continue;
        }
        let err = |reason: String| DataError::Csv {
            path: path.into(),
            line: i + 1,
            reason,
        };
        if let Some(k) = parsed.iter().position(Option::is_none) {
            return Err(err(format!(
                "field {} ({:?}) is not a number",
                k + 1,
                fields[k]
            )));
        }
        match cols {
            Some(c) if c != fields.len() => {
                return Err(err(format!("expected {c} fields, found {}", fields.len())));
            }
            _ => cols = Some(fields.len()),
        }
        data.extend(parsed.into_iter().flatten());
        rows += 1;
    }
    Ok((vec![rows, cols.unwrap_or(0)], data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::write_npy;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn tmp(name: &str, content: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("diffuse-points-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn loads_csv_with_header_and_npy() {
        let p = load_points(&tmp("ok.csv", b"x,y\n1,2\n3.5, -4\n"), 2).unwrap();
        assert_eq!(p.data, vec![1.0, 2.0, 3.5, -4.0]);
        let path = tmp("ok.npy", b"");
        write_npy(&path, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(load_points(&path, 2).unwrap().len(), 2);
    }

    #[test]
    fn bad_files_name_the_file_and_problem() {
        let cases: [(&str, &[u8], &str); 5] = [
            ("words.csv", b"1,2\n3,abc\n", "line 2"),
            ("nan.csv", b"1,2\nnan,1\n", "not finite"),
            ("empty.csv", b"", "no points"),
            ("three.csv", b"1,2,3\n4,5,6\n", "[N, 2]"),
            ("ragged.csv", b"1,2\n3\n", "expected 2 fields"),
        ];
        for (name, content, expect) in cases {
            let err = load_points(&tmp(name, content), 2).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(expect), "{err}");
        }
        let path = tmp("shape.npy", b"");
        write_npy(&path, &[3], &[1.0, 2.0, 3.0]).unwrap();
        let err = load_points(&path, 2).unwrap_err().to_string();
        assert!(err.contains("shape.npy") && err.contains("[3]"), "{err}");
        let err = load_points(&tmp("pts.txt", b"1,2"), 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains(".npy or .csv"), "{err}");
    }

    #[test]
    fn standardizer_round_trips_and_split_is_a_partition() {
        let p = Points::new(vec![1.0, 10.0, 3.0, 30.0, 5.0, 50.0], 2);
        let s = Standardizer::fit(&p);
        let z = s.forward(&p);
        let back = s.inverse(&z);
        for (a, b) in back.data.iter().zip(&p.data) {
            assert!((a - b).abs() < 1e-5);
        }
        let (train, held) = p.split(1, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!((train.len(), held.len()), (2, 1));
    }
}
