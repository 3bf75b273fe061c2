//! SiLU, x sigma(x), the activation of every network here, as one fused pass on the CPU.
//!
//! burn-flex computes `silu` as `x * sigmoid(x)`, where `sigmoid` calls the C library's scalar
//! `expf` element by element on one thread, and autodiff recomputes it in the backward pass: 43%
//! of a 2-D training step and 58% of a 2-D sampling step went there (benchmarks/README.md,
//! "Profile"). Here SiLU and its derivative are each one pass: a branch-free exp (Cody-Waite
//! reduction and a degree-7 polynomial, within 2e-7 relative of `expf`) that the compiler
//! vectorizes for the CPU it finds at run time (pulp), over chunks spread across threads (rayon).
//!
//! It is a burn backend extension for burn-flex with its own backward pass under autodiff
//! (d/dx SiLU = s (1 + x (1 - s)), s = sigma(x)). Other devices (GPU backends) use burn's
//! composite `silu`, as before.
//!
//! [`softmax_last`], the attention's softmax over its last dimension, is fused the same way:
//! one pass per row with the same exp (burn's composite ran its exp, subtraction, sums and
//! division as separate single-threaded passes, and as many again backward), and the backward
//! pass `dx = y (dy - sum(dy y))` from the output alone.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;
use burn_flex::FlexTensor;

use std::mem::MaybeUninit;

use crate::cpu::{f32s, tensor, zeros};
use rayon::prelude::*;

/// SiLU(x) = x / (1 + exp(-x)), fused on the CPU (see the module docs).
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !crate::cpu::on_flex_f32(&x) {
        return burn::tensor::activation::silu(x);
    }
    Tensor::from_dispatch(<Dispatch as FusedSilu>::silu(x.into_dispatch()))
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedSilu: Backend {
    /// x sigma(x).
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// grad * d/dx SiLU(x).
    fn silu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl FusedSilu for Flex {
    fn silu(x: FlexTensor) -> FlexTensor {
        map(x, None, |x, _| silu_f32(x))
    }

    fn silu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        map(grad, Some(&f32s(&x)), |g, x| g * silu_derivative_f32(x))
    }
}

/// f(a, b) element by element, with `b` zeros when absent: in place when this function alone
/// holds `a` (contiguous, from its first element), else into a new buffer, so that a tensor
/// autodiff keeps for the backward pass is read once and never copied first.
fn map(
    a: FlexTensor,
    b: Option<&[f32]>,
    f: impl Fn(f32, f32) -> f32 + Copy + Send + Sync,
) -> FlexTensor {
    let shape = a.layout().shape().clone();
    // In place only when the buffer is exactly this tensor (a view can start at the buffer's
    // first element and still cover less of it).
    let simple = a.is_unique()
        && a.layout().is_contiguous()
        && a.layout().start_offset() == 0
        && a.bytes().len() == shape.num_elements() * size_of::<f32>();
    let b = b.unwrap_or(&[]);
    if simple {
        let mut a = a;
        for_chunks(a.storage_mut::<f32>(), None, b, f);
        return a;
    }
    let input = f32s(&a);
    let mut out = zeros(input.len());
    for_chunks(&mut out, Some(&input), b, f);
    tensor(out, shape)
}

/// Softmax over the last dimension, fused on the CPU (see the module docs); other devices take
/// burn's.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !crate::cpu::on_flex_f32(&x) {
        return burn::tensor::activation::softmax(x, D - 1);
    }
    Tensor::from_dispatch(<Dispatch as FusedSoftmax>::softmax_last(x.into_dispatch()))
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedSoftmax: Backend {
    /// y = exp(x - max) / sum(exp(x - max)) along the last dimension.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// dx = y (grad - sum(grad y)) along the last dimension, given the output y.
    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl FusedSoftmax for Flex {
    fn softmax_last(x: FlexTensor) -> FlexTensor {
        let shape = x.layout().shape().clone();
        let input = f32s(&x);
        let mut y = zeros(input.len());
        by_rows(
            &mut y,
            &input,
            &[],
            shape[shape.num_dims() - 1],
            |y, x, _| {
                let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = exp_f32(x - max);
                    sum += *y;
                }
                let scale = 1.0 / sum;
                y.iter_mut().for_each(|y| *y *= scale);
            },
        );
        tensor(y, shape)
    }

    fn softmax_last_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let shape = y.layout().shape().clone();
        let (y, grad) = (f32s(&y), f32s(&grad));
        let mut dx = zeros(y.len());
        by_rows(
            &mut dx,
            &y,
            &grad,
            shape[shape.num_dims() - 1],
            |dx, y, g| {
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                for (dx, (&y, &g)) in dx.iter_mut().zip(y.iter().zip(g)) {
                    *dx = y * (g - dot);
                }
            },
        );
        tensor(dx, shape)
    }
}

/// `f(out row, a row, b row)` for every row of `len` elements, rows spread across threads in
/// runs of about [`CHUNK`] elements, `b` empty rows when it is empty.
fn by_rows(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    len: usize,
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Copy + Send + Sync,
) {
    if len == 0 {
        return;
    }
    let rows = CHUNK.div_ceil(len);
    let run = |(i, out): (usize, &mut [f32])| {
        let start = i * rows * len;
        let a = &a[start..start + out.len()];
        let b = if b.is_empty() {
            b
        } else {
            &b[start..start + out.len()]
        };
        pulp::Arch::new().dispatch(|| {
            for (r, (out, a)) in out
                .chunks_exact_mut(len)
                .zip(a.chunks_exact(len))
                .enumerate()
            {
                let b = if b.is_empty() {
                    b
                } else {
                    &b[r * len..][..len]
                };
                f(out, a, b);
            }
        });
    };
    out.par_chunks_mut(rows * len).enumerate().for_each(run);
}

#[derive(Debug)]
struct SoftmaxBackward;

impl<B: Backend + FusedSoftmax> Backward<B, 1> for SoftmaxBackward {
    /// The output y.
    type State = B::FloatTensorPrimitive;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let y = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::softmax_last_backward(y, grad)
        });
    }
}

impl<B: Backend + FusedSoftmax, C: CheckpointStrategy> FusedSoftmax for Autodiff<B, C> {
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (primitive, _guard) = x.into_parts();
                let y = B::softmax_last(primitive);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => {
                let (primitive, _guard) = x.into_parts();
                prep.finish(B::softmax_last(primitive))
            }
        }
    }

    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        // A second derivative through the softmax is never taken here; compose it from burn's
        // ops if one is.
        let dims = y.shape().num_dims();
        let dot = Self::float_sum_dim(Self::float_mul(grad.clone(), y.clone()), dims - 1);
        Self::float_mul(y, Self::float_sub(grad, dot))
    }
}

/// Elements per task: large enough that spreading work across threads pays.
const CHUNK: usize = 1 << 14;

/// out = f(a, b) over chunks spread across threads, `a` being `out` itself when None, and `b`
/// zeros when empty.
fn for_chunks(
    out: &mut [f32],
    a: Option<&[f32]>,
    b: &[f32],
    f: impl Fn(f32, f32) -> f32 + Copy + Send + Sync,
) {
    let run = |(i, out): (usize, &mut [f32])| {
        let range = i * CHUNK..(i * CHUNK + out.len());
        let a = a.map(|a| &a[range.clone()]);
        let b = if b.is_empty() { b } else { &b[range] };
        map_slice(out, a, b, f);
    };
    if out.len() <= CHUNK {
        run((0, out));
    } else {
        out.par_chunks_mut(CHUNK).enumerate().for_each(run);
    }
}

/// out = f(a, b) on this thread, vectorized, `a` being `out` itself when None, and `b` zeros
/// when empty.
#[inline(always)]
fn map_slice(out: &mut [f32], a: Option<&[f32]>, b: &[f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    // One dispatch per case: a closure that small is inlined into pulp's SIMD-enabled
    // function and vectorized there (a match inside it was not).
    let arch = pulp::Arch::new();
    match (a, b.is_empty()) {
        (None, true) => arch.dispatch(|| out.iter_mut().for_each(|v| *v = f(*v, 0.0))),
        (None, false) => arch.dispatch(|| out.iter_mut().zip(b).for_each(|(v, &b)| *v = f(*v, b))),
        (Some(a), true) => {
            arch.dispatch(|| out.iter_mut().zip(a).for_each(|(v, &a)| *v = f(a, 0.0)))
        }
        (Some(a), false) => arch.dispatch(|| {
            for (v, (&a, &b)) in out.iter_mut().zip(a.iter().zip(b)) {
                *v = f(a, b);
            }
        }),
    }
}

/// SiLU in place, on this thread (vectorized): for kernels that apply it to their own output
/// while it is in cache.
pub(crate) fn silu_slice(values: &mut [f32]) {
    map_slice(values, None, &[], |x, _| silu_f32(x));
}

/// h = SiLU(z) = z s with s = sigma(z), and z replaced by s, on this thread (vectorized): the
/// backward pass then needs no exp ([`silu_backward_slice`]).
pub(crate) fn silu_keep_sigmoid(z: &mut [f32], h: &mut [MaybeUninit<f32>]) {
    pulp::Arch::new().dispatch(|| {
        for (z, h) in z.iter_mut().zip(h) {
            let s = sigmoid_f32(*z);
            *h = MaybeUninit::new(*z * s);
            *z = s;
        }
    });
}

/// dz = dh d/dz SiLU(z) = dh (s + h (1 - s)), from s = sigma(z) and h = SiLU(z) = z s, on this
/// thread (vectorized).
pub(crate) fn silu_backward_slice(dz: &mut [f32], dh: &[f32], s: &[f32], h: &[f32]) {
    pulp::Arch::new().dispatch(|| {
        for (dz, (&dh, (&s, &h))) in dz.iter_mut().zip(dh.iter().zip(s.iter().zip(h))) {
            *dz = dh * (s + h * (1.0 - s));
        }
    });
}

/// exp(x) for x in [-87, 88] (clamped there), branch-free so that it vectorizes (no FMA or
/// rounding instruction needed): x = n ln 2 + r with |r| <= ln 2 / 2, n rounded to nearest by
/// adding and removing 1.5 * 2^23 (which leaves n in the low mantissa bits), ln 2 split in two (Cody and Waite: n * LN2_HI is exact), e^r by
/// its Taylor polynomial to degree 7 (truncation below 3e-9), times 2^n built in the exponent
/// bits.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4; // 355 / 512
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // n as an integer, read from the mantissa of `shifted` (a float-to-int cast would saturate,
    // lane by lane).
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p: f32 = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    p * f32::from_bits((n_int.wrapping_add(127) << 23) as u32)
}

#[inline(always)]
fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[inline(always)]
pub(crate) fn silu_f32(x: f32) -> f32 {
    x * sigmoid_f32(x)
}

/// d/dx x sigma(x) = s + x s (1 - s) = s (1 + x (1 - s)).
#[inline(always)]
pub(crate) fn silu_derivative_f32(x: f32) -> f32 {
    let s = sigmoid_f32(x);
    s * (1.0 + x * (1.0 - s))
}

#[derive(Debug)]
struct SiluBackward;

impl<B: Backend + FusedSilu> Backward<B, 1> for SiluBackward {
    /// The input x, checkpointed.
    type State = NodeId;

    fn backward(self, ops: Ops<NodeId, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let x = checkpointer.retrieve_node_output(ops.state);
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::silu_backward(x, grad)
        });
    }
}

impl<B: Backend + FusedSilu, C: CheckpointStrategy> FusedSilu for Autodiff<B, C> {
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SiluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                let (primitive, _guard) = x.into_parts();
                prep.finish(state, B::silu(primitive))
            }
            OpsKind::UnTracked(prep) => {
                let (primitive, _guard) = x.into_parts();
                prep.finish(B::silu(primitive))
            }
        }
    }

    fn silu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        // A second derivative through SiLU is never taken here; compose it from burn's ops if
        // one is.
        let s = Self::sigmoid(x.clone());
        let one_minus_s = Self::float_add_scalar(Self::float_neg(s.clone()), 1.0.into());
        let inner = Self::float_add_scalar(Self::float_mul(x, one_minus_s), 1.0.into());
        Self::float_mul(grad, Self::float_mul(s, inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn exp_is_within_two_ulp_of_the_c_library() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        // Beyond the clamp: finite, and the right limits for SiLU (at -1e4 the clamped exp gives
        // -1e4 / e^88, where the exact value underflows to -0).
        assert!(silu_f32(-1e4) <= 0.0 && silu_f32(-1e4) > -1e-30);
        assert_eq!(silu_f32(1e4), 1e4);
        assert!(silu_f32(f32::NAN).is_nan());
    }

    #[test]
    fn fused_silu_and_its_gradient_match_burns() {
        let device = Device::default().autodiff();
        let values: Vec<f32> = (0..70_001).map(|i| (i as f32 - 35_000.0) * 7e-4).collect();
        let data = burn::tensor::TensorData::new(values, [70_001]);
        let x1 = Tensor::<1>::from_data(data.clone(), &device).require_grad();
        let x2 = Tensor::<1>::from_data(data, &device).require_grad();
        let (y1, y2) = (silu(x1.clone()), burn::tensor::activation::silu(x2.clone()));
        let (g1, g2) = (
            x1.grad(&y1.clone().sum().backward()).unwrap(),
            x2.grad(&y2.clone().sum().backward()).unwrap(),
        );
        let close = |a: Tensor<1>, b: Tensor<1>| {
            let (a, b): (Vec<f32>, Vec<f32>) = (
                a.into_data().try_to_vec().unwrap(),
                b.into_data().try_to_vec().unwrap(),
            );
            a.iter()
                .zip(&b)
                .map(|(a, b)| ((a - b).abs() / b.abs().max(1.0)) as f64)
                .fold(0.0, f64::max)
        };
        assert!(close(y1.inner(), y2.inner()) < 1e-6);
        assert!(close(g1, g2) < 1e-6);
        // Without autodiff, and on a strided view.
        let plain = Tensor::<2>::from_data(
            burn::tensor::TensorData::new((0..12).map(|v| v as f32 - 6.0).collect(), [3, 4]),
            &Device::default(),
        )
        .transpose();
        let want = burn::tensor::activation::silu(plain.clone());
        assert!(close(silu(plain).flatten(0, 1), want.flatten(0, 1)) < 1e-6);
    }

    /// The fused softmax and its input gradient against burn's, for rows split across tasks
    /// (6,272 rows of 49, the U-Net's 7x7 attention) and for a few short rows on a strided
    /// view.
    #[test]
    fn fused_softmax_and_its_gradient_match_burns() {
        use crate::cpu::testing::max_relative;
        use burn::tensor::Distribution;
        let device = Device::default().autodiff();
        for dims in [[64, 2, 49, 49], [2, 3, 4, 5]] {
            let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 3.0), &device);
            let (x1, x2) = (x.clone().detach().require_grad(), x.detach().require_grad());
            let (y1, y2) = (
                softmax_last(x1.clone()),
                burn::tensor::activation::softmax(x2.clone(), 3),
            );
            // Both sides sum 49 rounded exponentials in float32 (each side's sum within about
            // 49 x 6e-8 of the exact one), and the exps differ by up to 2.5e-7.
            let y = max_relative(y1.clone(), y2.clone());
            assert!(y < 5e-6, "{dims:?}: output {y}");
            let weights = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let g1 = (y1 * weights.clone()).sum().backward();
            let g2 = (y2 * weights).sum().backward();
            let dx = max_relative(x1.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
            assert!(dx < 1e-5, "{dims:?}: input gradient {dx}");
        }
        let plain = Tensor::<2>::random([5, 7], Distribution::Normal(0.0, 1.0), &Device::default())
            .transpose();
        let want = burn::tensor::activation::softmax(plain.clone(), 1);
        assert!(max_relative(softmax_last(plain), want) < 5e-6);
    }

    /// A view that alone holds a larger buffer, from its first element: not written in place
    /// (the buffer is longer than the view and than the second operand).
    #[test]
    fn a_view_of_a_larger_buffer_is_mapped_into_a_new_one() {
        let data = burn::tensor::TensorData::new((0..10).map(|v| v as f32).collect(), [10]);
        let view = FlexTensor::from_data(data).narrow(0, 0, 6);
        assert!(view.is_unique() && view.layout().start_offset() == 0);
        let out = map(view, Some(&[0.5; 6]), |a, b| a + b);
        let values: Vec<f32> = out.into_data().try_to_vec().unwrap();
        assert_eq!(values, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]);
    }
}
