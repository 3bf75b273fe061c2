//! Sinusoidal timestep embeddings (Vaswani et al. 2017, section 3.5; DDPM appendix B), with
//! diffusers' `get_timestep_embedding` conventions so that U-Net weights port unchanged.
//!
//! On the CPU, an embedding that no gradient flows through (timesteps, noise levels) is written
//! in one pass with a vectorized sine and cosine ([`sin_cos`]); burn-flex's `sin` and `cos` call
//! the C library element by element, about 8% of a 2-D training step. Inputs that are tracked
//! for a gradient (the MLP's Fourier features of x_t, under the exact likelihood) and other
//! devices take burn's ops.

use burn::tensor::{Tensor, TensorData};

/// Embeds timesteps `t` ([B], floats) into [B, dim]:
/// freq_i = exp(-ln(max_period) i / (dim/2 - freq_shift)) for i < dim/2, then
/// [sin(t freq), cos(t freq)], or [cos, sin] when `flip_sin_to_cos`; odd `dim` pads one zero.
pub fn timestep_embedding(
    t: Tensor<1>,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    max_period: f64,
) -> Tensor<2> {
    let device = t.device();
    let batch = t.dims()[0];
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(max_period.ln()) * i as f64 / (half as f64 - freq_shift)).exp() as f32)
        .collect();
    if diffuse_kernels::on_flex_f32(&t) && !t.is_tracked() {
        let t: Vec<f32> = t.into_data().try_to_vec().expect("float32 timesteps");
        let values = embed_on_host(&t, &freqs, dim, flip_sin_to_cos);
        return Tensor::from_data(TensorData::new(values, [batch, dim]), &device);
    }
    let freqs = Tensor::<2>::from_data(TensorData::new(freqs, [1, half]), &device);
    let args = t.reshape([batch, 1]).mul(freqs);
    let (sin, cos) = (args.clone().sin(), args.cos());
    let mut emb = if flip_sin_to_cos {
        Tensor::cat(vec![cos, sin], 1)
    } else {
        Tensor::cat(vec![sin, cos], 1)
    };
    if dim % 2 == 1 {
        emb = Tensor::cat(vec![emb, Tensor::zeros([batch, 1], &device)], 1);
    }
    emb
}

/// The rows of the embedding, as `timestep_embedding` lays them out.
fn embed_on_host(t: &[f32], freqs: &[f32], dim: usize, flip_sin_to_cos: bool) -> Vec<f32> {
    let half = freqs.len();
    let mut out = vec![0.0f32; t.len() * dim];
    pulp::Arch::new().dispatch(|| {
        for (row, &t) in out.chunks_exact_mut(dim).zip(t) {
            let (first, second) = row[..2 * half].split_at_mut(half);
            let (sin, cos) = if flip_sin_to_cos {
                (second, first)
            } else {
                (first, second)
            };
            for ((s, c), &f) in sin.iter_mut().zip(cos.iter_mut()).zip(freqs) {
                (*s, *c) = sin_cos(t * f);
            }
        }
    });
    // The reduction below is exact only for |x| < LIMIT; larger arguments (rare) go to libm.
    for (i, &t) in t.iter().enumerate() {
        for (j, &f) in freqs.iter().enumerate() {
            let x = t * f;
            if x.abs() >= LIMIT || x.is_nan() {
                let (s, c) = (x.sin(), x.cos());
                let row = &mut out[i * dim..];
                let (s_at, c_at) = if flip_sin_to_cos {
                    (half + j, j)
                } else {
                    (j, half + j)
                };
                (row[s_at], row[c_at]) = (s, c);
            }
        }
    }
    out
}

/// Arguments below this reduce exactly: j pi/2 with j < 2^13, the pieces of pi/2 below having
/// few enough significant bits that j times each is exact in float32.
const LIMIT: f32 = 8192.0;

/// (sin x, cos x) for |x| < 8192, branch-free so that it vectorizes: x = j pi/2 + r with j the
/// nearest integer to x 2/pi and |r| <= pi/4 (Cody and Waite: pi/2 in three pieces), the two
/// minimax polynomials of Cephes' `sinf` / `cosf` on [-pi/4, pi/4], then the quadrant j mod 4
/// swaps them and sets the signs. Within about 1e-7 of the C library.
#[inline(always)]
pub(crate) fn sin_cos(x: f32) -> (f32, f32) {
    const PIO2_1: f32 = 1.570_312_5;
    const PIO2_2: f32 = 4.837_513e-4;
    const PIO2_3: f32 = 7.549_79e-8;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23
    let shifted = x * std::f32::consts::FRAC_2_PI + ROUND;
    let j = shifted - ROUND;
    let quadrant = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32) as u32;
    let r = ((x - j * PIO2_1) - j * PIO2_2) - j * PIO2_3;
    let z = r * r;
    let sin_r = r + r * z * (-1.666_665_5e-1 + z * (8.332_161e-3 + z * -1.951_529_6e-4));
    let cos_r =
        1.0 - 0.5 * z + z * z * (4.166_664_6e-2 + z * (-1.388_731_6e-3 + z * 2.443_315_7e-5));
    // Odd quadrants swap sine and cosine; quadrants 2 and 3 negate the sine, 1 and 2 the cosine.
    let swap = 0u32.wrapping_sub(quadrant & 1);
    let (s, c) = (sin_r.to_bits(), cos_r.to_bits());
    let sin = (s & !swap) | (c & swap);
    let cos = (c & !swap) | (s & swap);
    let sin_sign = (quadrant & 2) << 30;
    let cos_sign = (quadrant.wrapping_add(1) & 2) << 30;
    (
        f32::from_bits(sin ^ sin_sign),
        f32::from_bits(cos ^ cos_sign),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn sin_cos_is_within_two_ulp_of_one() {
        let (mut worst_sin, mut worst_cos) = (0.0f64, 0.0f64);
        let mut x = -8191.0f32;
        while x < 8191.0 {
            let (s, c) = sin_cos(x);
            worst_sin = worst_sin.max((s as f64 - (x as f64).sin()).abs());
            worst_cos = worst_cos.max((c as f64 - (x as f64).cos()).abs());
            x += 0.000_731 * x.abs().max(1.0);
        }
        // Absolute error against float64 of the same float32 argument; 2.4e-7 is two ulp at 1.
        assert!(
            worst_sin < 2.4e-7,
            "sin: worst absolute error {worst_sin:e}"
        );
        assert!(
            worst_cos < 2.4e-7,
            "cos: worst absolute error {worst_cos:e}"
        );
        let (s, c) = sin_cos(0.0);
        assert_eq!((s, c), (0.0, 1.0));
    }

    #[test]
    fn the_host_embedding_matches_burns_ops() {
        let device = Device::default();
        // Integer timesteps, fractional ones, negative ones and one past the reduction's limit.
        let t: Vec<f32> = (0..1000)
            .map(|i| i as f32)
            .chain([0.37, 999.5, -3.2, 12_345.6, 1e6])
            .collect();
        for (dim, flip, shift) in [(64, true, 0.0), (32, false, 1.0), (7, true, 0.0)] {
            let t = Tensor::<1>::from_data(TensorData::new(t.clone(), [t.len()]), &device);
            let fast = timestep_embedding(t.clone(), dim, flip, shift, 10_000.0);
            // The same embedding through burn's ops: a tracked input takes that path.
            let ad = Device::default().autodiff();
            let tracked = Tensor::<1>::from_data(t.into_data(), &ad).require_grad();
            assert!(tracked.is_tracked());
            let slow = timestep_embedding(tracked, dim, flip, shift, 10_000.0).inner();
            assert_eq!(fast.dims(), slow.dims());
            let (fast, slow): (Vec<f32>, Vec<f32>) = (
                fast.into_data().try_to_vec().unwrap(),
                slow.into_data().try_to_vec().unwrap(),
            );
            let worst = fast
                .iter()
                .zip(&slow)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                worst < 3e-7,
                "dim {dim}: worst absolute difference {worst:e}"
            );
        }
    }
}
