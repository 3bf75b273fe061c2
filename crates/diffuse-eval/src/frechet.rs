//! The Fréchet distance between Gaussian fits of two clouds (the formula of FID, Heusel et al.
//! 2017, eq. 6, applied to whatever features are given):
//!
//!   d^2 = |mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a^(1/2) C_b C_a^(1/2))^(1/2)).
//!
//! The matrix square roots come from symmetric eigendecompositions (cyclic Jacobi), in f64.

/// d^2 between the Gaussian fits of two row-major clouds of width `dim`.
pub fn frechet_distance(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let (mu_a, c_a) = moments(a, dim);
    let (mu_b, c_b) = moments(b, dim);
    let mean_term: f64 = mu_a.iter().zip(&mu_b).map(|(x, y)| (x - y).powi(2)).sum();
    let trace = |c: &[f64]| (0..dim).map(|i| c[i * dim + i]).sum::<f64>();
    let s = sqrt_psd(&c_a, dim);
    let m = matmul(&matmul(&s, &c_b, dim), &s, dim);
    let (eig, _) = jacobi_eigen(&m, dim);
    let cross: f64 = eig.iter().map(|l| l.max(0.0).sqrt()).sum();
    mean_term + trace(&c_a) + trace(&c_b) - 2.0 * cross
}

/// Mean and (n - 1)-normalized covariance, row-major dim x dim.
fn moments(x: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / dim;
    let mut mu = vec![0.0; dim];
    for row in x.chunks_exact(dim) {
        for (m, v) in mu.iter_mut().zip(row) {
            *m += *v as f64 / n as f64;
        }
    }
    let mut c = vec![0.0; dim * dim];
    for row in x.chunks_exact(dim) {
        let d: Vec<f64> = row.iter().zip(&mu).map(|(v, m)| *v as f64 - m).collect();
        for i in 0..dim {
            for j in i..dim {
                c[i * dim + j] += d[i] * d[j];
            }
        }
    }
    let norm = (n.max(2) - 1) as f64;
    for i in 0..dim {
        for j in i..dim {
            c[i * dim + j] /= norm;
            c[j * dim + i] = c[i * dim + j];
        }
    }
    (mu, c)
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// V diag(sqrt(max(l, 0))) V^T of a symmetric positive semi-definite matrix.
fn sqrt_psd(c: &[f64], n: usize) -> Vec<f64> {
    let (eig, v) = jacobi_eigen(c, n);
    let mut out = vec![0.0; n * n];
    for (k, l) in eig.iter().enumerate() {
        let r = l.max(0.0).sqrt();
        for i in 0..n {
            for j in 0..n {
                out[i * n + j] += r * v[i * n + k] * v[j * n + k];
            }
        }
    }
    out
}

/// Eigenvalues and eigenvectors (columns of V) of a symmetric matrix by cyclic Jacobi rotations.
fn jacobi_eigen(m: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = m.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 1-D Gaussians: d^2 = (m1 - m2)^2 + (s1 - s2)^2; and a rotated 2-D covariance, whose
    /// eigenvalues the Jacobi solver must find.
    #[test]
    fn matches_closed_forms() {
        let grid = |m: f32, s: f32| -> Vec<f32> {
            // A deterministic sample with mean m and (n - 1)-std s: +-s sqrt((n - 1) / n).
            let n = 1000;
            let k = s * ((n - 1) as f32 / n as f32).sqrt();
            (0..n)
                .map(|i| if i % 2 == 0 { m + k } else { m - k })
                .collect()
        };
        let d = frechet_distance(&grid(0.0, 1.0), &grid(3.0, 2.0), 1);
        assert!((d - (9.0 + 1.0)).abs() < 1e-4, "{d}");
        let m = [2.0, 1.0, 1.0, 2.0];
        let (mut eig, _) = jacobi_eigen(&m, 2);
        eig.sort_by(f64::total_cmp);
        assert!(
            (eig[0] - 1.0).abs() < 1e-12 && (eig[1] - 3.0).abs() < 1e-12,
            "{eig:?}"
        );
        let s = sqrt_psd(&m, 2);
        let back = matmul(&s, &s, 2);
        for (x, y) in back.iter().zip(m) {
            assert!((x - y).abs() < 1e-12);
        }
    }
}
