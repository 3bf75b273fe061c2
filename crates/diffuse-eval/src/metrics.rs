//! Sample-quality figures for point clouds.

use rand::{Rng, RngExt};
use rand_distr::StandardNormal;

/// Sliced Wasserstein-1 distance between two point clouds of dimension `dim` (row-major):
/// the mean over `projections` random unit directions of the 1-D Wasserstein-1 distance between
/// the projected clouds (Bonneel et al. 2015). Clouds may differ in size: the 1-D distance is
/// computed between empirical quantile functions at max(n_a, n_b) levels.
pub fn sliced_wasserstein(
    a: &[f32],
    b: &[f32],
    dim: usize,
    projections: usize,
    rng: &mut impl Rng,
) -> f64 {
    assert!(
        dim > 0 && a.len().is_multiple_of(dim) && b.len().is_multiple_of(dim),
        "row-major clouds of width dim"
    );
    assert!(!a.is_empty() && !b.is_empty(), "clouds must be non-empty");
    let levels = (a.len() / dim).max(b.len() / dim);
    let mut total = 0.0;
    for _ in 0..projections {
        let mut dir: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        dir.iter_mut().for_each(|v| *v /= norm);
        let pa = sorted_projection(a, &dir);
        let pb = sorted_projection(b, &dir);
        let w1: f64 = (0..levels)
            .map(|i| {
                let q = (i as f64 + 0.5) / levels as f64;
                (quantile(&pa, q) - quantile(&pb, q)).abs()
            })
            .sum::<f64>()
            / levels as f64;
        total += w1;
    }
    total / projections as f64
}

fn sorted_projection(points: &[f32], dir: &[f64]) -> Vec<f64> {
    let mut p: Vec<f64> = points
        .chunks_exact(dir.len())
        .map(|row| row.iter().zip(dir).map(|(x, d)| *x as f64 * d).sum())
        .collect();
    p.sort_by(f64::total_cmp);
    p
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

/// Mean and covariance of a 2-D cloud, for the "single Gaussian fitted to the data" baseline.
pub fn gaussian_fit_2d(points: &[f32]) -> ([f64; 2], [[f64; 2]; 2]) {
    let n = (points.len() / 2) as f64;
    let mut m = [0.0; 2];
    for p in points.chunks_exact(2) {
        m[0] += p[0] as f64 / n;
        m[1] += p[1] as f64 / n;
    }
    let mut c = [[0.0; 2]; 2];
    for p in points.chunks_exact(2) {
        let d = [p[0] as f64 - m[0], p[1] as f64 - m[1]];
        for i in 0..2 {
            for j in 0..2 {
                c[i][j] += d[i] * d[j] / n;
            }
        }
    }
    (m, c)
}

/// `n` draws from N(mean, cov) in 2-D (Cholesky factor of cov).
pub fn sample_gaussian_2d(
    mean: [f64; 2],
    cov: [[f64; 2]; 2],
    n: usize,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let l00 = cov[0][0].sqrt();
    let l10 = cov[1][0] / l00;
    let l11 = (cov[1][1] - l10 * l10).max(0.0).sqrt();
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let (z0, z1): (f64, f64) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
        out.push((mean[0] + l00 * z0) as f32);
        out.push((mean[1] + l10 * z0 + l11 * z1) as f32);
    }
    out
}

/// The largest Euclidean distance between two of `rows` (row-major, `dim` columns): NCSNv2's
/// sigma_1 (Technique 1). In two dimensions the convex hull's diameter by rotating calipers,
/// O(n log n), so every point of a large cloud can be passed; in others every pair is visited,
/// and callers pass a subset of large sets.
pub fn max_pairwise_distance(rows: &[f32], dim: usize) -> f64 {
    if dim == 2 {
        return hull_diameter(rows);
    }
    let n = rows.len() / dim.max(1);
    let mut best = 0.0f64;
    for i in 0..n {
        let a = &rows[i * dim..(i + 1) * dim];
        for j in i + 1..n {
            let b = &rows[j * dim..(j + 1) * dim];
            let d2: f64 = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
                .sum();
            best = best.max(d2);
        }
    }
    best.sqrt()
}

/// (a - o) x (b - o), positive when o, a, b turn counter-clockwise.
fn cross(o: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

fn dist2(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// The diameter of a 2-D cloud: its convex hull (Andrew's monotone chain), then for each hull
/// edge the vertex farthest from it (rotating calipers, Shamos 1978); the farthest pair is among
/// those antipodal pairs.
fn hull_diameter(rows: &[f32]) -> f64 {
    let mut pts: Vec<[f64; 2]> = rows
        .chunks_exact(2)
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return match pts.as_slice() {
            [a, b] => dist2(*a, *b).sqrt(),
            _ => 0.0,
        };
    }
    // The lower chain left to right, then the upper one right to left; each chain's last point
    // is the other's first, so it is dropped.
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(2 * pts.len());
    fn chain<'a>(hull: &mut Vec<[f64; 2]>, points: impl Iterator<Item = &'a [f64; 2]>) {
        let start = hull.len();
        for &p in points {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    chain(&mut hull, pts.iter());
    chain(&mut hull, pts.iter().rev());
    let h = hull.len();
    if h < 3 {
        // Every point on one line: the chain's two ends.
        return hull
            .windows(2)
            .map(|w| dist2(w[0], w[1]))
            .fold(0.0, f64::max)
            .sqrt();
    }
    let mut best = 0.0f64;
    let mut j = 1;
    for i in 0..h {
        let (a, b) = (hull[i], hull[(i + 1) % h]);
        while cross(a, b, hull[(j + 1) % h]).abs() > cross(a, b, hull[j]).abs() {
            j = (j + 1) % h;
        }
        best = best.max(dist2(a, hull[j])).max(dist2(b, hull[j]));
    }
    best.sqrt()
}

/// The mean of per-example values and its standard error (the sample standard deviation over
/// sqrt(n)); `None` for a single example, whose sample variance is undefined.
pub fn mean_and_standard_error(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let se = (values.len() > 1).then(|| {
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (var / n).sqrt()
    });
    (mean, se)
}

/// The mean of per-example values and the half-width of its 95% confidence interval (normal
/// approximation, 1.96 standard errors); `None` for a single example.
pub fn mean_and_ci95(values: &[f64]) -> (f64, Option<f64>) {
    let (mean, se) = mean_and_standard_error(values);
    (mean, se.map(|se| 1.96 * se))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn sliced_wasserstein_of_a_shift_is_its_mean_projection() {
        // Shifting a cloud by s moves every projection by <s, u>; E|<s, u>| over the unit circle
        // is 2|s|/pi.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let a = sample_gaussian_2d([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]], 2000, &mut rng);
        let b: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 2 == 0 { v + 3.0 } else { *v })
            .collect();
        let sw = sliced_wasserstein(&a, &b, 2, 2000, &mut rng);
        assert!((sw - 6.0 / std::f64::consts::PI).abs() < 0.05, "{sw}");
        assert_eq!(sliced_wasserstein(&a, &a, 2, 10, &mut rng), 0.0);
    }

    #[test]
    fn gaussian_fit_recovers_covariance() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let cov = [[2.0, 0.6], [0.6, 0.5]];
        let pts = sample_gaussian_2d([1.0, -1.0], cov, 50_000, &mut rng);
        let (m, c) = gaussian_fit_2d(&pts);
        assert!((m[0] - 1.0).abs() < 0.03 && (m[1] + 1.0).abs() < 0.03);
        for i in 0..2 {
            for j in 0..2 {
                assert!((c[i][j] - cov[i][j]).abs() < 0.05, "{c:?}");
            }
        }
    }

    #[test]
    fn the_interval_is_196_standard_errors_and_undefined_for_one_value() {
        let (mean, ci) = mean_and_ci95(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mean, 2.5);
        // sample variance 5/3, standard error sqrt(5/12)
        assert!((ci.unwrap() - 1.96 * (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_and_ci95(&[7.0]), (7.0, None));
    }

    #[test]
    fn the_largest_pairwise_distance_is_found() {
        let rows = [0.0f32, 0.0, 3.0, 4.0, 1.0, 1.0, -3.0, -4.0];
        assert!((max_pairwise_distance(&rows, 2) - 10.0).abs() < 1e-12);
        assert_eq!(max_pairwise_distance(&rows[..2], 2), 0.0);
        assert!((max_pairwise_distance(&rows[..4], 2) - 5.0).abs() < 1e-12);
    }

    /// Every pair, the definition the 2-D hull's calipers must agree with.
    fn brute_force(rows: &[f32]) -> f64 {
        let n = rows.len() / 2;
        let mut best = 0.0f64;
        for i in 0..n {
            for j in i + 1..n {
                let d = (rows[2 * i] as f64 - rows[2 * j] as f64).powi(2)
                    + (rows[2 * i + 1] as f64 - rows[2 * j + 1] as f64).powi(2);
                best = best.max(d);
            }
        }
        best.sqrt()
    }

    #[test]
    fn the_hull_diameter_is_every_pairs_largest_distance() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut clouds: Vec<Vec<f32>> = Vec::new();
        for n in [3, 4, 7, 50, 400] {
            // Gaussian clouds, stretched ones, and points on a circle (every point on the hull).
            let g: Vec<f32> = (0..2 * n)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect();
            let stretched: Vec<f32> = g
                .iter()
                .enumerate()
                .map(|(k, v)| if k % 2 == 0 { 9.0 * v } else { *v })
                .collect();
            let circle: Vec<f32> = (0..n)
                .flat_map(|k| {
                    let a = std::f32::consts::TAU * k as f32 / n as f32 + 0.1;
                    [3.0 * a.cos(), 3.0 * a.sin()]
                })
                .collect();
            clouds.extend([g, stretched, circle]);
        }
        // Collinear points, duplicates, and a grid (many collinear hull points).
        clouds.push(vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 5.0, 5.0, 3.0, 3.0]);
        clouds.push(vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        clouds.push(
            (0..36)
                .flat_map(|k| [(k % 6) as f32, (k / 6) as f32])
                .collect(),
        );
        for rows in &clouds {
            let (fast, slow) = (max_pairwise_distance(rows, 2), brute_force(rows));
            assert!(
                (fast - slow).abs() <= 1e-12 * slow.max(1.0),
                "{fast} vs {slow} on {} points",
                rows.len() / 2
            );
        }
    }
}
