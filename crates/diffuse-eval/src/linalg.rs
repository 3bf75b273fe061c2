//! Dense symmetric linear algebra in f64, for the Fréchet distance of 2048-wide features.
//!
//! What FID needs is tr((C_a C_b)^(1/2)), the sum of the square roots of the eigenvalues of
//! C_a C_b. With C_a = F F^T (any factor F, n x r), those are the eigenvalues of the symmetric
//! r x r matrix F^T C_b F, so no non-symmetric square root (scipy's `sqrtm`, a Schur
//! decomposition) is needed:
//!
//! - [`psd_factor`]: pivoted Cholesky (LAPACK's `dpstrf`, blocked: each block's columns chosen
//!   by the largest remaining diagonal, the trailing matrix updated by one gemm a block). It
//!   stops at the numerical rank, so a covariance of fewer examples than dimensions (singular)
//!   gives a thin factor instead of a failure or a NaN.
//! - [`symmetric_eigenvalues`]: Householder reduction to tridiagonal form (the rank-2 update of
//!   `dsytd2`, rows in parallel), then the implicit QL iteration with Wilkinson's shift
//!   (Golub & Van Loan, Algorithm 8.3.3; `tqli` in Numerical Recipes), eigenvalues only.
//!
//! O(n^3) with small constants: at n = 2048 on 2 cores the whole trace takes a few seconds,
//! where scipy's `sqrtm` takes about 11 (benchmarks/README.md).

use rayon::prelude::*;

/// The implicit QL iteration did not converge (never seen on a finite symmetric matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoConvergence {
    pub index: usize,
}

/// dst (m x n, row-major, contiguous) = beta lhs rhs + alpha dst, the operands given by their
/// (row, column) strides.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f64],
    alpha: f64,
    lhs: &[f64],
    lhs_strides: [usize; 2],
    rhs: &[f64],
    rhs_strides: [usize; 2],
    beta: f64,
) {
    if m == 0 || n == 0 {
        return;
    }
    let reach = |rows: usize, cols: usize, [rs, cs]: [usize; 2]| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    };
    assert!(dst.len() >= m * n, "gemm: destination too small");
    assert!(lhs.len() >= reach(m, k, lhs_strides), "gemm: lhs too small");
    assert!(rhs.len() >= reach(k, n, rhs_strides), "gemm: rhs too small");
    // SAFETY: the asserts keep every index the strides reach inside the slices; `dst` is a
    // unique borrow, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            alpha != 0.0,
            lhs.as_ptr(),
            lhs_strides[1] as isize,
            lhs_strides[0] as isize,
            rhs.as_ptr(),
            rhs_strides[1] as isize,
            rhs_strides[0] as isize,
            alpha,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// Columns of F (each of length n, in the matrix's own index order) with F F^T = S, for a
/// symmetric positive semi-definite S (row-major n x n), as many as its numerical rank:
/// pivoting stops when the largest remaining diagonal is at most n eps max(diag S), LAPACK's
/// default tolerance. Negative or NaN pivots stop it too (they are not PSD).
pub fn psd_factor(s: &[f64], n: usize) -> Vec<Vec<f64>> {
    const BLOCK: usize = 64;
    assert_eq!(s.len(), n * n, "psd_factor: S must be n x n");
    let mut a = s.to_vec();
    let mut d: Vec<f64> = (0..n).map(|i| s[i * n + i]).collect();
    let max_diag = d.iter().copied().fold(0.0, f64::max);
    let tol = n as f64 * f64::EPSILON * max_diag;
    let mut chosen = vec![false; n];
    let mut columns: Vec<Vec<f64>> = Vec::new();
    loop {
        let start = columns.len();
        while columns.len() - start < BLOCK {
            let Some(p) = (0..n)
                .filter(|&i| !chosen[i])
                .max_by(|&i, &j| d[i].total_cmp(&d[j]))
                .filter(|&p| d[p] > tol)
            else {
                break;
            };
            // Column p of the Schur complement: the trailing matrix as the last gemm left it,
            // less this block's columns.
            let mut col: Vec<f64> = a[p * n..(p + 1) * n].to_vec();
            for c in &columns[start..] {
                let cp = c[p];
                col.iter_mut().zip(c).for_each(|(x, ci)| *x -= ci * cp);
            }
            let pivot = d[p].sqrt();
            chosen[p] = true;
            for i in 0..n {
                col[i] = if chosen[i] { 0.0 } else { col[i] / pivot };
                d[i] -= col[i] * col[i];
            }
            col[p] = pivot;
            columns.push(col);
        }
        let block = &columns[start..];
        if block.len() < BLOCK || columns.len() == n {
            return columns;
        }
        // a -= B B^T, B = the block's columns (n x BLOCK, stored column by column).
        let b: Vec<f64> = (0..n)
            .flat_map(|i| block.iter().map(move |c| c[i]))
            .collect();
        let k = block.len();
        gemm((n, n, k), &mut a, 1.0, &b, [k, 1], &b, [1, k], -1.0);
    }
}

/// The eigenvalues of a symmetric matrix (row-major n x n; only its lower triangle is read),
/// in no particular order.
pub fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Result<Vec<f64>, NoConvergence> {
    assert_eq!(a.len(), n * n, "symmetric_eigenvalues: A must be n x n");
    for i in 0..n {
        for j in i + 1..n {
            a[i * n + j] = a[j * n + i];
        }
    }
    let (d, e) = tridiagonalize(&mut a, n);
    tridiagonal_eigenvalues(d, e)
}

/// Householder reduction Q^T A Q = T (full storage, both triangles kept symmetric): the
/// diagonal and the sub-diagonal of T. Step k reflects row k's tail x = A[k, k+1..] onto
/// beta e_1 with H = I - tau v v^T, then A22 <- H A22 H = A22 - v w^T - w v^T, where
/// p = tau A22 v and w = p - (tau / 2)(p . v) v.
fn tridiagonalize(a: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n.saturating_sub(1)];
    for k in 0..n.saturating_sub(1) {
        d[k] = a[k * n + k];
        let x = &a[k * n + k + 1..(k + 1) * n];
        let alpha = x[0];
        let tail: f64 = x[1..].iter().map(|v| v * v).sum::<f64>().sqrt();
        if tail == 0.0 {
            e[k] = alpha;
            continue;
        }
        let beta = -alpha.signum() * alpha.hypot(tail);
        let tau = (beta - alpha) / beta;
        let scale = 1.0 / (alpha - beta);
        let v: Vec<f64> = std::iter::once(1.0)
            .chain(x[1..].iter().map(|x| x * scale))
            .collect();
        e[k] = beta;
        let rows = &mut a[(k + 1) * n..];
        let p: Vec<f64> = rows
            .par_chunks(n)
            .map(|row| tau * dot(&row[k + 1..], &v))
            .collect();
        let gamma = 0.5 * tau * dot(&p, &v);
        let w: Vec<f64> = p.iter().zip(&v).map(|(p, v)| p - gamma * v).collect();
        rows.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            let (vi, wi) = (v[i], w[i]);
            for ((r, vj), wj) in row[k + 1..].iter_mut().zip(&v).zip(&w) {
                *r -= vi * wj + wi * vj;
            }
        });
    }
    if n > 0 {
        d[n - 1] = a[n * n - 1];
    }
    (d, e)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four running sums: the compiler vectorizes these, not a single chained one.
    let mut acc = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a4.zip(b4) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// The eigenvalues of the symmetric tridiagonal matrix with diagonal `d` and sub-diagonal
/// `e`, by the implicit QL iteration with Wilkinson's shift.
fn tridiagonal_eigenvalues(mut d: Vec<f64>, e: Vec<f64>) -> Result<Vec<f64>, NoConvergence> {
    let n = d.len();
    let mut e: Vec<f64> = e.into_iter().chain(std::iter::once(0.0)).collect();
    e.truncate(n);
    for l in 0..n {
        let mut iterations = 0;
        loop {
            // The first negligible sub-diagonal element at or after l splits the matrix.
            let m = (l..n.saturating_sub(1))
                .find(|&m| e[m].abs() <= f64::EPSILON * (d[m].abs() + d[m + 1].abs()))
                .unwrap_or(n - 1);
            if m == l {
                break;
            }
            iterations += 1;
            if iterations > 60 {
                return Err(NoConvergence { index: l });
            }
            let g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let r = g.hypot(1.0);
            let mut g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut deflated = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                let r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    // Underflow: the rotation is the identity; restart from a split at i + 1.
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                let r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if deflated {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Ok(d)
}

/// tr((A B)^(1/2)) for symmetric positive semi-definite A and B (row-major n x n): the sum of
/// the square roots of the eigenvalues of F^T B F, F F^T = A; eigenvalues below zero (rounding)
/// count as zero.
pub fn trace_sqrt_product(a: &[f64], b: &[f64], n: usize) -> Result<f64, NoConvergence> {
    let f = psd_factor(a, n);
    let r = f.len();
    if r == 0 {
        return Ok(0.0);
    }
    // F as an n x r row-major matrix.
    let f_rows: Vec<f64> = (0..n).flat_map(|i| f.iter().map(move |c| c[i])).collect();
    let mut bf = vec![0.0; n * r];
    gemm((n, r, n), &mut bf, 0.0, b, [n, 1], &f_rows, [r, 1], 1.0);
    let mut m = vec![0.0; r * r];
    gemm((r, r, n), &mut m, 0.0, &f_rows, [1, r], &bf, [r, 1], 1.0);
    let eig = symmetric_eigenvalues(m, r)?;
    Ok(eig.iter().map(|l| l.max(0.0).sqrt()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_symmetric(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v: f64 = rng.random_range(-1.0..1.0);
                a[i * n + j] = v;
                a[j * n + i] = v;
            }
        }
        a
    }

    /// The trace and the sum of squares of the eigenvalues are tr A and |A|_F^2, and each
    /// eigenvalue makes A - lambda I singular (its LDL^T has a zero pivot, so the count of
    /// negative pivots changes across it: Sylvester's law of inertia).
    #[test]
    fn eigenvalues_keep_the_invariants_and_the_inertia() {
        for n in [1, 2, 3, 10, 77, 200] {
            let a = random_symmetric(n, n as u64);
            let mut eig = symmetric_eigenvalues(a.clone(), n).unwrap();
            eig.sort_by(f64::total_cmp);
            let trace: f64 = (0..n).map(|i| a[i * n + i]).sum();
            let frob: f64 = a.iter().map(|x| x * x).sum();
            assert!((eig.iter().sum::<f64>() - trace).abs() < 1e-10 * n as f64);
            let sq: f64 = eig.iter().map(|x| x * x).sum();
            assert!((sq - frob).abs() < 1e-10 * frob, "{sq} {frob}");
            for (k, l) in eig.iter().enumerate() {
                let gap = 1e-7 * (1.0 + l.abs());
                assert_eq!(negative_pivots(&a, n, l - gap), k, "n {n} eigenvalue {k}");
                assert_eq!(
                    negative_pivots(&a, n, l + gap),
                    k + 1,
                    "n {n} eigenvalue {k}"
                );
            }
        }
    }

    /// The number of eigenvalues of A below `shift`: the negative pivots of the LDL^T of
    /// A - shift I (Gaussian elimination without pivoting; fine away from the eigenvalues).
    fn negative_pivots(a: &[f64], n: usize, shift: f64) -> usize {
        let mut m = a.to_vec();
        (0..n).for_each(|i| m[i * n + i] -= shift);
        let mut count = 0;
        for k in 0..n {
            let pivot = m[k * n + k];
            count += usize::from(pivot < 0.0);
            for i in k + 1..n {
                let f = m[i * n + k] / pivot;
                for j in k + 1..n {
                    m[i * n + j] -= f * m[k * n + j];
                }
            }
        }
        count
    }

    /// F F^T gives S back, with as many columns as S's rank, for full-rank, low-rank and zero
    /// matrices (the block's gemm runs for n above 64).
    #[test]
    fn the_pivoted_factor_has_the_rank_and_gives_s_back() {
        for (n, rank) in [(5, 5), (150, 150), (150, 40), (130, 100), (8, 0)] {
            let mut rng = ChaCha8Rng::seed_from_u64(n as u64 + rank as u64);
            let g: Vec<f64> = (0..n * rank).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut s = vec![0.0; n * n];
            gemm((n, n, rank), &mut s, 0.0, &g, [rank, 1], &g, [1, rank], 1.0);
            let f = psd_factor(&s, n);
            assert_eq!(f.len(), rank, "n {n}");
            let scale = s.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1.0);
            for i in 0..n {
                for j in 0..n {
                    let back: f64 = f.iter().map(|c| c[i] * c[j]).sum();
                    assert!((back - s[i * n + j]).abs() < 1e-10 * scale, "{i} {j}");
                }
            }
        }
    }

    /// tr((A B)^(1/2)) for commuting diagonal matrices is sum sqrt(a_i b_i), singular ones too.
    #[test]
    fn trace_sqrt_of_diagonal_products() {
        let n = 70;
        let a: Vec<f64> = (0..n * n)
            .map(|k| {
                if k % (n + 1) == 0 {
                    (k / n % 7) as f64
                } else {
                    0.0
                }
            })
            .collect();
        let b: Vec<f64> = (0..n * n)
            .map(|k| {
                if k % (n + 1) == 0 {
                    1.0 + (k / n) as f64
                } else {
                    0.0
                }
            })
            .collect();
        let want: f64 = (0..n).map(|i| (a[i * n + i] * b[i * n + i]).sqrt()).sum();
        let got = trace_sqrt_product(&a, &b, n).unwrap();
        assert!((got - want).abs() < 1e-10 * want, "{got} {want}");
    }
}
