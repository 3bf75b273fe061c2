//! The Inception's 3x3 pools on the CPU, for inference: each [H, W] plane of a float32
//! burn-flex tensor pooled by one rayon task, separably (rows, then columns), over the
//! window's pixels inside the image
//! (padding never wins a max, and is not counted in a mean: TensorFlow's pools, pytorch-fid's
//! `count_include_pad=False`). burn-flex's pools took a quarter of the forward pass (an
//! index division and a NaN check per element, `perf`); other devices take burn's.

use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Max,
    /// The mean over the window's pixels inside the image.
    Mean,
}

/// A 3x3 pool of `x` [N, C, H, W] with `stride` and `pad` pixels of padding on every side.
pub fn pool3x3(x: Tensor<4>, pool: Pool, stride: usize, pad: usize) -> Tensor<4> {
    if !diffuse_kernels::on_flex_f32(&x) || x.is_require_grad() {
        return burn_pool(x, pool, stride, pad);
    }
    let device = x.device();
    let [n, c, h, w] = x.dims();
    let (ho, wo) = (
        (h + 2 * pad - 3) / stride + 1,
        (w + 2 * pad - 3) / stride + 1,
    );
    let data = x
        .into_data()
        .try_into_vec::<f32>()
        .expect("a float32 tensor");
    let mut out = vec![0.0f32; n * c * ho * wo];
    // The window of output index o along a side of `size`: its first and last pixel inside.
    let window = |o: usize, size: usize| {
        let start = (o * stride) as isize - pad as isize;
        (
            start.max(0) as usize,
            ((start + 3).min(size as isize)) as usize,
        )
    };
    let rows: Vec<(usize, usize)> = (0..ho).map(|o| window(o, h)).collect();
    let cols: Vec<(usize, usize)> = (0..wo).map(|o| window(o, w)).collect();
    let reduce = |a: f32, b: f32| match pool {
        Pool::Max => a.max(b),
        Pool::Mean => a + b,
    };
    // Separable: each row reduced over the column windows, then those rows over the row
    // windows (a mean divides by the count of pixels inside, rows times columns).
    out.par_chunks_mut(ho * wo)
        .zip(data.par_chunks(h * w))
        .for_each_init(
            || vec![0.0f32; h * wo],
            |across, (out, plane)| {
                for (row, acc) in plane.chunks_exact(w).zip(across.chunks_exact_mut(wo)) {
                    for (a, &(x0, x1)) in acc.iter_mut().zip(&cols) {
                        *a = row[x0 + 1..x1].iter().fold(row[x0], |m, &v| reduce(m, v));
                    }
                }
                for (out_row, &(y0, y1)) in out.chunks_exact_mut(wo).zip(&rows) {
                    out_row.copy_from_slice(&across[y0 * wo..(y0 + 1) * wo]);
                    for y in y0 + 1..y1 {
                        let next = &across[y * wo..(y + 1) * wo];
                        out_row
                            .iter_mut()
                            .zip(next)
                            .for_each(|(o, &v)| *o = reduce(*o, v));
                    }
                    if pool == Pool::Mean {
                        for (o, &(x0, x1)) in out_row.iter_mut().zip(&cols) {
                            *o /= ((y1 - y0) * (x1 - x0)) as f32;
                        }
                    }
                }
            },
        );
    Tensor::from_data(TensorData::new(out, [n, c, ho, wo]), &device)
}

fn burn_pool(x: Tensor<4>, pool: Pool, stride: usize, pad: usize) -> Tensor<4> {
    match pool {
        Pool::Max => max_pool2d(
            x,
            MaxPoolOptions::new([3, 3])
                .with_stride([stride, stride])
                .with_padding([pad, pad]),
        ),
        Pool::Mean => avg_pool2d(
            x,
            AvgPoolOptions::new([3, 3])
                .with_stride([stride, stride])
                .with_padding([pad, pad])
                .with_count_include_pad(false),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// Both pools, at both strides and paddings the network uses, against burn's.
    #[test]
    fn matches_burns_pools() {
        let device = Device::default();
        let (n, c, h, w) = (2, 3, 9, 8);
        let values: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [n, c, h, w]), &device);
        for (pool, stride, pad) in [
            (Pool::Max, 2, 0),
            (Pool::Max, 1, 1),
            (Pool::Mean, 1, 1),
            (Pool::Mean, 2, 0),
        ] {
            let ours = pool3x3(x.clone(), pool, stride, pad).into_data();
            let theirs = burn_pool(x.clone(), pool, stride, pad).into_data();
            assert_eq!(ours.shape(), theirs.shape());
            let (a, b) = (
                ours.try_into_vec::<f32>().unwrap(),
                theirs.try_into_vec::<f32>().unwrap(),
            );
            for (u, v) in a.iter().zip(&b) {
                assert!(
                    (u - v).abs() <= 1e-6 * v.abs().max(1.0),
                    "{pool:?} {stride} {pad}"
                );
            }
        }
    }
}
