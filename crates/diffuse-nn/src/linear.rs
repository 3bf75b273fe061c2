//! A linear layer, y = x W + b, on the CPU as one gemm per thread, forward and backward.
//!
//! burn-flex's matmul hands each product to gemm's own rayon splitting, and autodiff composes
//! the backward pass from a transposed copy and two more products plus a bias reduction: on the
//! 2-D MLP (batch 1024, width 128) the threads spent more time waking and yielding than
//! multiplying (benchmarks/README.md, "Profile"). Here the rows of the batch are split once
//! over the threads, each running gemm on its rows alone:
//!
//! - forward: `y[rows] = x[rows] W + b`;
//! - backward, in one pass: `dx[rows] = dy[rows] W^T`, and each task's share of
//!   `dW = x^T dy` and `db = colsum(dy)`; the backward tasks have a fixed size (256 rows) and
//!   their shares are added in task order, so that the bits do not depend on the thread count.
//!
//! A batch too small to be worth splitting runs on the calling thread. float32 on burn-flex,
//! 2-D inputs, with a bias; other devices take `Linear::forward`.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn_flex::FlexTensor;
use gemm::Parallelism;
use rayon::prelude::*;

use crate::cpu::{f32s, matmul, on_flex_f32, per_task, sum_in_order, tensor};

/// `linear.forward(x)` for x of shape [batch, d_input], fused on the CPU (see the module docs).
pub fn linear(linear: &Linear, x: Tensor<2>) -> Tensor<2> {
    let Some(bias) = linear.bias.as_ref().filter(|_| on_flex_f32(&x)) else {
        return linear.forward(x);
    };
    Tensor::from_dispatch(<Dispatch as FusedLinear>::fused_linear(
        x.into_dispatch(),
        linear.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
    ))
}

#[backend_extension(Flex, Autodiff)]
pub trait FusedLinear: Backend {
    /// y = x W + b, x [batch, d_input], W [d_input, d_output], b [d_output].
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The gradients of x (when `want_x`), of W and of b, given the output's gradient.
    #[allow(clippy::type_complexity)]
    fn fused_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        want_x: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );
}

/// Multiply-adds below which a product runs on the calling thread: waking a second thread
/// costs more than it saves.
const SERIAL_WORK: usize = 1 << 18;

/// Rows per task: all of them for a small product, else the batch split over the threads.
fn rows_per_task(batch: usize, work_per_row: usize) -> usize {
    if batch * work_per_row < SERIAL_WORK {
        batch.max(1)
    } else {
        per_task(batch)
    }
}

/// Rows per task in the backward pass: fixed whatever the thread count, so that the weight
/// and bias gradients (sums over tasks) have the same bits on every machine.
fn backward_rows_per_task(batch: usize, work_per_row: usize) -> usize {
    if batch * work_per_row < SERIAL_WORK {
        batch.max(1)
    } else {
        BACKWARD_ROWS
    }
}

const BACKWARD_ROWS: usize = 256;

fn dims(x: &FlexTensor, weight: &FlexTensor) -> (usize, usize, usize) {
    let (&[batch, d_in], &[_, d_out]) = (
        x.layout().shape().as_slice(),
        weight.layout().shape().as_slice(),
    ) else {
        unreachable!("linear() passes a 2-D input and weight")
    };
    (batch, d_in, d_out)
}

impl FusedLinear for Flex {
    fn fused_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let (batch, d_in, d_out) = dims(&x, &weight);
        let (x, w, b) = (f32s(&x), f32s(&weight), f32s(&bias));
        let mut y = vec![0.0f32; batch * d_out];
        let per = rows_per_task(batch, d_in * d_out);
        let task = |(y, x): (&mut [f32], &[f32])| {
            let rows = y.len() / d_out.max(1);
            for row in y.chunks_exact_mut(d_out) {
                row.copy_from_slice(&b);
            }
            let (x_strides, w_strides) = ([d_in, 1], [d_out, 1]);
            let parallelism = Parallelism::None;
            matmul(
                (rows, d_out, d_in),
                y,
                true,
                x,
                x_strides,
                &w,
                w_strides,
                parallelism,
            );
        };
        if d_out > 0 && d_in > 0 {
            y.par_chunks_mut(per * d_out)
                .zip(x.par_chunks(per * d_in))
                .for_each(task);
        } else {
            y.chunks_exact_mut(d_out.max(1))
                .for_each(|r| r.copy_from_slice(&b));
        }
        tensor(y, [batch, d_out])
    }

    fn fused_linear_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        want_x: bool,
    ) -> (Option<FlexTensor>, FlexTensor, FlexTensor) {
        let (batch, d_in, d_out) = dims(&x, &weight);
        let (x, w, dy) = (f32s(&x), f32s(&weight), f32s(&grad));
        let per = backward_rows_per_task(batch, 2 * d_in * d_out);
        let mut dx = vec![0.0f32; if want_x { batch * d_in } else { 0 }];
        let tasks = batch.div_ceil(per);
        let dx_parts: Vec<&mut [f32]> = if want_x && d_in > 0 {
            dx.chunks_mut(per * d_in).collect()
        } else {
            (0..tasks).map(|_| &mut [][..]).collect()
        };
        let zeros = || (vec![0.0f32; d_in * d_out], vec![0.0f64; d_out]);
        let task = |(t, dx): (usize, &mut [f32])| {
            let (mut dw, mut db) = zeros();
            let rows = t * per..((t + 1) * per).min(batch);
            let n = rows.len();
            let x = &x[rows.start * d_in..rows.end * d_in];
            let dy = &dy[rows.start * d_out..rows.end * d_out];
            let parallelism = Parallelism::None;
            if d_in > 0 && d_out > 0 {
                // dW += x^T dy: (d_in x n) (n x d_out).
                matmul(
                    (d_in, d_out, n),
                    &mut dw,
                    true,
                    x,
                    [1, d_in],
                    dy,
                    [d_out, 1],
                    parallelism,
                );
                if want_x {
                    // dx = dy W^T: (n x d_out) (d_out x d_in).
                    matmul(
                        (n, d_in, d_out),
                        dx,
                        false,
                        dy,
                        [d_out, 1],
                        &w,
                        [1, d_out],
                        parallelism,
                    );
                }
            }
            for row in dy.chunks_exact(d_out.max(1)) {
                db.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
            }
            (dw, db)
        };
        // Collected in task order and added up in that order: the same bits whichever thread
        // finishes first.
        let partials: Vec<_> = dx_parts.into_par_iter().enumerate().map(task).collect();
        let (dw, db) = sum_in_order(partials, zeros());
        let dx = want_x.then(|| tensor(dx, [batch, d_in]));
        let db = tensor(db.into_iter().map(|v| v as f32).collect(), [d_out]);
        (dx, tensor(dw, [d_in, d_out]), db)
    }
}

#[derive(Debug)]
struct LinearBackward;

impl<B: Backend + FusedLinear> Backward<B, 3> for LinearBackward {
    /// x and W, checkpointed.
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(ops.state.0);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(ops.state.1);
        let (dx, dw, db) = B::fused_linear_backward(x, weight, grad, node_x.is_some());
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, db);
        }
    }
}

impl<B: Backend + FusedLinear, C: CheckpointStrategy> FusedLinear for Autodiff<B, C> {
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let prepared = LinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        match prepared {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight));
                let ((x, _gx), (weight, _gw), (bias, _gb)) =
                    (x.into_parts(), weight.into_parts(), bias.into_parts());
                prep.finish(state, B::fused_linear(x, weight, bias))
            }
            OpsKind::UnTracked(prep) => {
                let ((x, _gx), (weight, _gw), (bias, _gb)) =
                    (x.into_parts(), weight.into_parts(), bias.into_parts());
                prep.finish(B::fused_linear(x, weight, bias))
            }
        }
    }

    /// Composed from burn's differentiable ops, for a second derivative (never taken here).
    fn fused_linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        want_x: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let dx = want_x.then(|| Self::float_matmul(grad.clone(), Self::float_transpose(weight)));
        let dw = Self::float_matmul(Self::float_transpose(x), grad.clone());
        let db = Self::float_sum_dim(grad, 0);
        let d_out = db.shape().num_elements();
        (dx, dw, Self::float_reshape(db, [d_out].into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::max_relative;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution};

    /// The fused layer, its input gradient and its parameter gradients against burn's, for a
    /// batch run on one thread, one split over threads, and one with a strided input.
    #[test]
    fn fused_linear_and_its_gradients_match_burns() {
        let device = Device::default().autodiff();
        for (batch, d_in, d_out) in [(5, 3, 4), (1024, 66, 128), (777, 128, 2), (1, 1, 1)] {
            let layer = LinearConfig::new(d_in, d_out).init(&device);
            let x = Tensor::<2>::random([batch, d_in], Distribution::Normal(0.0, 1.0), &device);
            assert!(on_flex_f32(&x));
            let (x1, x2) = (x.clone().detach().require_grad(), x.detach().require_grad());
            let (y1, y2) = (linear(&layer, x1.clone()), layer.forward(x2.clone()));
            assert!(
                max_relative(y1.clone(), y2.clone()) < 1e-5,
                "{batch}x{d_in}: output"
            );
            // Mean 1: the bias gradient sums these over the batch, and a sum near zero made
            // its relative error a matter of cancellation (the linear layer's check failed in 1
            // of 300 runs of the suite).
            let weights = Tensor::<2>::random(y1.dims(), Distribution::Normal(1.0, 1.0), &device);
            let g1 = (y1 * weights.clone()).sum().backward();
            let g2 = (y2 * weights).sum().backward();
            let dx = max_relative(x1.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
            assert!(dx < 1e-5, "{batch}x{d_in}: input gradient {dx}");
            let dw = max_relative(
                layer.weight.grad(&g1).unwrap(),
                layer.weight.grad(&g2).unwrap(),
            );
            assert!(dw < 1e-5, "{batch}x{d_in}: weight gradient {dw}");
            let bias = layer.bias.as_ref().unwrap();
            let db = max_relative(bias.grad(&g1).unwrap(), bias.grad(&g2).unwrap());
            assert!(db < 1e-5, "{batch}x{d_in}: bias gradient {db}");
        }
        // Without autodiff, on a transposed view.
        let plain = Device::default();
        let layer = LinearConfig::new(6, 3).init(&plain);
        let x = Tensor::<2>::random([6, 9], Distribution::Normal(0.0, 1.0), &plain).transpose();
        assert!(max_relative(linear(&layer, x.clone()), layer.forward(x)) < 1e-5);
    }
}

#[cfg(test)]
mod determinism {
    use super::*;
    use crate::cpu::testing::{bits, on_threads};
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution};

    /// The gradients have the same bits on one thread and on three.
    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let device = Device::default().autodiff();
        let layer = LinearConfig::new(64, 96).init(&device);
        let x = Tensor::<2>::random([1000, 64], Distribution::Normal(0.0, 1.0), &device);
        let run = |threads: usize| {
            on_threads(threads, || {
                let x = x.clone().detach().require_grad();
                let grads = linear(&layer, x.clone()).powi_scalar(2).sum().backward();
                (
                    bits(x.grad(&grads).unwrap()),
                    bits(layer.weight.grad(&grads).unwrap()),
                )
            })
        };
        assert_eq!(run(1), run(3));
    }
}
