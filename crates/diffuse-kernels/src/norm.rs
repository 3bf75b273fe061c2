//! Group normalization (Wu and He 2018) on the CPU in three passes forward and two or three
//! backward.
//!
//! burn's `GroupNorm` is composed of a mean, a subtraction, a square, a second mean, a square
//! root, a division and the affine map, each a pass over the tensor with its own autodiff node.
//! Here, per (image, group) of m = C/G H W values, in parallel over those groups:
//!
//! - forward: mu and sigma^2 (accumulated in f64 over eight running sums, added in a fixed order,
//!   so that the loop vectorizes), then `y = gamma_c (x - mu) / sigma + beta_c`;
//! - backward, from the mu and 1 / sigma the forward pass kept (recomputing them had been two
//!   of the backward pass's four passes, five with SiLU), with x_hat = (x - mu) / sigma and
//!   g = dy gamma_c:
//!   `dx = (g - mean(g) - x_hat mean(g x_hat)) / sigma`, `dgamma_c = sum(dy x_hat)`,
//!   `dbeta_c = sum(dy)` (per-image sums added in image order, so the bits do not depend on the
//!   thread count).
//!
//! [`group_norm_silu`] is SiLU(group norm) in the same passes: the forward pass writes
//! `silu(y)`, and the backward pass first takes dy through SiLU's derivative at y (recomputed
//! from x and the statistics) and then runs the group norm's backward on that. A separate SiLU
//! had cost a pass over the tensor each way and a buffer.
//!
//! float32, 4-D inputs, affine; anything else, and other devices, take `GroupNorm::forward`.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::module::Param;
use burn::nn::GroupNorm;
use burn::tensor::Tensor;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::activation::{silu, silu_derivative_f32, silu_f32};
use std::mem::MaybeUninit;

use crate::cpu::{assume_written, f32s, lane_sums, on_flex_f32, tensor, written};

/// `norm.forward(x)`, fused on the CPU for the cases the module docs name.
pub fn group_norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    match fused_parameters(norm, &x) {
        Some((gamma, beta)) => fused(norm, gamma, beta, x, false),
        None => norm.forward(x),
    }
}

/// `silu(norm.forward(x))`, the two fused on the CPU (see the module docs).
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    match fused_parameters(norm, &x) {
        Some((gamma, beta)) => fused(norm, gamma, beta, x, true),
        None => silu(norm.forward(x)),
    }
}

/// gamma and beta where the fused kernel takes `x`.
fn fused_parameters<'a>(
    norm: &'a GroupNorm,
    x: &Tensor<4>,
) -> Option<(&'a Param<Tensor<1>>, &'a Param<Tensor<1>>)> {
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        return None;
    };
    let [_, channels, _, _] = x.dims();
    let fits = norm.affine && channels == norm.num_channels && channels % norm.num_groups == 0;
    (fits && on_flex_f32(x)).then_some((gamma, beta))
}

fn fused(
    norm: &GroupNorm,
    gamma: &Param<Tensor<1>>,
    beta: &Param<Tensor<1>>,
    x: Tensor<4>,
    silu: bool,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedGroupNorm>::fused_group_norm(
        x.into_dispatch(),
        gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        Options {
            groups: norm.num_groups,
            epsilon: norm.epsilon,
            silu,
        },
    ))
}

/// What a fused group norm computes besides its tensors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    groups: usize,
    epsilon: f64,
    /// SiLU after the norm.
    silu: bool,
}

#[backend_extension(Flex, Autodiff)]
pub(crate) trait FusedGroupNorm: Backend {
    /// gamma (x - mu) / sigma + beta over groups of channels, through SiLU when
    /// `options.silu`.
    fn fused_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        options: Options,
    ) -> FloatTensor<Self>;

    /// The same, and each (image, group)'s mean and 1 / sigma ([batch groups, 2]), which its
    /// backward pass reads.
    fn fused_group_norm_keep(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        options: Options,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients of x, gamma and beta, given the output's gradient and the statistics
    /// the forward pass kept.
    fn fused_group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: Options,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// The mean and 1 / sigma of one group, in two passes accumulated in f64.
fn statistics(group: &[f32], epsilon: f64) -> (f32, f32) {
    let n = group.len() as f64;
    let mean = lane_sums(group, group, |v, _| [v, 0.0])[0] / n;
    let var = lane_sums(group, group, |v, _| [(v - mean) * (v - mean), 0.0])[0] / n;
    (mean as f32, (1.0 / (var + epsilon).sqrt()) as f32)
}

/// The forward pass on burn-flex: y, and with `keep` each group's (mean, 1 / sigma).
fn forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    options: Options,
    keep: bool,
) -> (FlexTensor, Option<FlexTensor>) {
    let Options {
        groups,
        epsilon,
        silu,
    } = options;
    let shape = x.layout().shape().clone();
    let (batch, channels, plane) = (shape[0], shape[1], shape[2] * shape[3]);
    let per_group = channels / groups;
    let (x, gamma, beta) = (f32s(x), f32s(gamma), f32s(beta));
    let group_len = per_group * plane;
    // Each group's (mean, 1 / sigma), returned when kept.
    let mut kept = vec![[0.0f32; 2]; batch * groups];
    let normalize = |y: &mut [MaybeUninit<f32>]| {
        if group_len == 0 {
            return;
        }
        y.par_chunks_mut(group_len)
            .zip(x.par_chunks(group_len))
            .zip(kept.par_iter_mut())
            .enumerate()
            .for_each(|(index, ((y, x), kept))| {
                let arch = pulp::Arch::new();
                let (mean, rstd) = statistics(x, epsilon);
                *kept = [mean, rstd];
                let first = (index % groups) * per_group;
                for (c, (y, x)) in y
                    .chunks_exact_mut(plane)
                    .zip(x.chunks_exact(plane))
                    .enumerate()
                {
                    let (scale, shift) = (gamma[first + c] * rstd, beta[first + c]);
                    let norm = move |x: f32| (x - mean) * scale + shift;
                    let pairs = y.iter_mut().zip(x);
                    if silu {
                        arch.dispatch(|| {
                            pairs.for_each(|(y, &x)| *y = MaybeUninit::new(silu_f32(norm(x))))
                        });
                    } else {
                        arch.dispatch(|| pairs.for_each(|(y, &x)| *y = MaybeUninit::new(norm(x))));
                    }
                }
            });
    };
    // SAFETY: the groups cover y (x.len() is a whole number of them), and each writes all its
    // elements.
    let y = unsafe { written(x.len(), normalize) };
    let kept = keep.then(|| {
        let len = kept.len();
        tensor(kept.into_iter().flatten().collect(), [len, 2])
    });
    (tensor(y, shape), kept)
}

impl FusedGroupNorm for Flex {
    fn fused_group_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        options: Options,
    ) -> FlexTensor {
        forward(&x, &gamma, &beta, options, false).0
    }

    fn fused_group_norm_keep(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        options: Options,
    ) -> (FlexTensor, FlexTensor) {
        let (y, kept) = forward(&x, &gamma, &beta, options, true);
        (y, kept.expect("kept"))
    }

    fn fused_group_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        statistics: FlexTensor,
        grad: FlexTensor,
        options: Options,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let Options { groups, silu, .. } = options;
        let shape = x.layout().shape().clone();
        let (batch, channels, plane) = (shape[0], shape[1], shape[2] * shape[3]);
        let per_group = channels / groups;
        let (x, gamma, beta, dy) = (f32s(&x), f32s(&gamma), f32s(&beta), f32s(&grad));
        let kept = f32s(&statistics);
        // Per image and channel: sum(g x_hat) and sum(g), summed over images afterwards, g
        // being the norm's output gradient (dy, or dy through SiLU).
        let mut sums = vec![(0.0f64, 0.0f64); batch * channels];
        let group_len = per_group * plane;
        let backward = |dx: &mut [MaybeUninit<f32>]| {
            if group_len == 0 {
                return;
            }
            dx.par_chunks_mut(group_len)
                .zip(x.par_chunks(group_len).zip(dy.par_chunks(group_len)))
                .zip(sums.par_chunks_mut(per_group))
                .zip(kept.par_chunks_exact(2))
                .enumerate()
                .for_each(|(index, (((dx, (x, dy)), sums), kept))| {
                    let arch = pulp::Arch::new();
                    let (mean, rstd) = (kept[0], kept[1]);
                    let first = (index % groups) * per_group;
                    // mean(g gamma) and mean(g gamma x_hat) over the group, from the norm's
                    // output gradient g, channel by channel.
                    let means = |g_all: &[f32], sums: &mut [(f64, f64)]| {
                        let (mut g_sum, mut gx_sum) = (0.0f64, 0.0f64);
                        for (c, (x, g)) in x
                            .chunks_exact(plane)
                            .zip(g_all.chunks_exact(plane))
                            .enumerate()
                        {
                            let [g_xhat, g_total] = lane_sums(x, g, |x, g| {
                                let x_hat = ((x as f32 - mean) * rstd) as f64;
                                [g * x_hat, g]
                            });
                            sums[c] = (g_xhat, g_total);
                            let gamma = gamma[first + c] as f64;
                            g_sum += gamma * g_total;
                            gx_sum += gamma * g_xhat;
                        }
                        let n = group_len as f64;
                        ((g_sum / n) as f32, (gx_sum / n) as f32)
                    };
                    let dx_of = move |x: f32, g: f32, gamma: f32, (g_mean, gx_mean): (f32, f32)| {
                        let x_hat = (x - mean) * rstd;
                        (g * gamma - g_mean - x_hat * gx_mean) * rstd
                    };
                    if silu {
                        // The norm's output gradient, dy silu'(y), into dx first.
                        for (c, (d, (x, dy))) in dx
                            .chunks_exact_mut(plane)
                            .zip(x.chunks_exact(plane).zip(dy.chunks_exact(plane)))
                            .enumerate()
                        {
                            let (scale, shift) = (gamma[first + c] * rstd, beta[first + c]);
                            let norm = move |x: f32| (x - mean) * scale + shift;
                            arch.dispatch(|| {
                                for (d, (&x, &dy)) in d.iter_mut().zip(x.iter().zip(dy)) {
                                    *d = MaybeUninit::new(dy * silu_derivative_f32(norm(x)));
                                }
                            });
                        }
                        // SAFETY: the loop above wrote every element of dx's group.
                        let dx = unsafe { assume_written(dx) };
                        let means = means(dx, sums);
                        for (c, (dx, x)) in dx
                            .chunks_exact_mut(plane)
                            .zip(x.chunks_exact(plane))
                            .enumerate()
                        {
                            let gamma = gamma[first + c];
                            arch.dispatch(|| {
                                for (dx, &x) in dx.iter_mut().zip(x) {
                                    *dx = dx_of(x, *dx, gamma, means);
                                }
                            });
                        }
                    } else {
                        let means = means(dy, sums);
                        for (c, (dx, (x, dy))) in dx
                            .chunks_exact_mut(plane)
                            .zip(x.chunks_exact(plane).zip(dy.chunks_exact(plane)))
                            .enumerate()
                        {
                            let gamma = gamma[first + c];
                            arch.dispatch(|| {
                                for (dx, (&x, &dy)) in dx.iter_mut().zip(x.iter().zip(dy)) {
                                    *dx = MaybeUninit::new(dx_of(x, dy, gamma, means));
                                }
                            });
                        }
                    }
                });
        };
        // SAFETY: the groups cover dx, and each writes all its elements (through SiLU's
        // derivative first, or in its last pass).
        let dx = unsafe { written(x.len(), backward) };
        let (mut dgamma, mut dbeta) = (vec![0.0f64; channels], vec![0.0f64; channels]);
        for image in sums.chunks_exact(channels.max(1)) {
            for (c, &(g_xhat, g_total)) in image.iter().enumerate() {
                dgamma[c] += g_xhat;
                dbeta[c] += g_total;
            }
        }
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<_>>();
        (
            tensor(dx, shape),
            tensor(to_f32(dgamma), [channels]),
            tensor(to_f32(dbeta), [channels]),
        )
    }
}

#[derive(Debug)]
struct GroupNormBackward;

impl<B: Backend + FusedGroupNorm> Backward<B, 3> for GroupNormBackward {
    /// x, gamma and beta, checkpointed, the statistics the forward pass kept, and the
    /// options.
    type State = (NodeId, NodeId, NodeId, B::FloatTensorPrimitive, Options);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, beta_state, statistics, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
        let beta = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(beta_state);
        let (dx, dgamma, dbeta) =
            B::fused_group_norm_backward(x, gamma, beta, statistics, grad, options);
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + FusedGroupNorm, C: CheckpointStrategy> FusedGroupNorm for Autodiff<B, C> {
    fn fused_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        options: Options,
    ) -> FloatTensor<Self> {
        let prepared = GroupNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        match prepared {
            OpsKind::Tracked(mut prep) => {
                let nodes = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&gamma),
                    prep.checkpoint(&beta),
                );
                let ((x, _gx), (gamma, _gg), (beta, _gb)) =
                    (x.into_parts(), gamma.into_parts(), beta.into_parts());
                let (y, statistics) = B::fused_group_norm_keep(x, gamma, beta, options);
                let state = (nodes.0, nodes.1, nodes.2, statistics, options);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                let ((x, _gx), (gamma, _gg), (beta, _gb)) =
                    (x.into_parts(), gamma.into_parts(), beta.into_parts());
                prep.finish(B::fused_group_norm(x, gamma, beta, options))
            }
        }
    }

    /// Never called: `fused_group_norm` above keeps the statistics on the inner backend.
    fn fused_group_norm_keep(
        _x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        _options: Options,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the fused group norm keeps its statistics on the inner backend")
    }

    /// A second derivative through a group norm is never taken here.
    fn fused_group_norm_backward(
        _x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        _statistics: FloatTensor<Self>,
        _grad: FloatTensor<Self>,
        _options: Options,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the fused group norm's backward pass runs on the inner backend")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::{bits, max_relative, on_threads};
    use burn::nn::GroupNormConfig;
    use burn::tensor::{Device, Distribution};

    /// The fused group norm and its three gradients against burn's, with non-trivial gamma
    /// and beta and a shifted, scaled input; and the same with SiLU after it, against burn's
    /// norm followed by burn's SiLU.
    #[test]
    fn fused_group_norm_and_its_gradients_match_burns() {
        let device = Device::default().autodiff();
        let cases = [(3, 8, 4, 5, 6), (2, 32, 8, 7, 7), (1, 6, 6, 3, 2)];
        for ((batch, channels, groups, h, w), with_silu) in cases
            .into_iter()
            .flat_map(|case| [(case, false), (case, true)])
        {
            let mut norm = GroupNormConfig::new(groups, channels)
                .with_epsilon(1e-6)
                .init(&device);
            let random = |shape: [usize; 1]| {
                Tensor::<1>::random(shape, Distribution::Normal(1.0, 0.5), &device)
            };
            norm.gamma = Some(burn::module::Param::from_tensor(random([channels])));
            norm.beta = Some(burn::module::Param::from_tensor(random([channels])));
            let x = Tensor::<4>::random(
                [batch, channels, h, w],
                Distribution::Normal(3.0, 2.0),
                &device,
            );
            assert!(on_flex_f32(&x));
            let (x1, x2) = (x.clone().detach().require_grad(), x.detach().require_grad());
            let (y1, y2) = if with_silu {
                (
                    group_norm_silu(&norm, x1.clone()),
                    burn::tensor::activation::silu(norm.forward(x2.clone())),
                )
            } else {
                (group_norm(&norm, x1.clone()), norm.forward(x2.clone()))
            };
            assert!(
                max_relative(y1.clone(), y2.clone()) < 1e-5,
                "{channels} {with_silu}: output"
            );
            // Mean 1: the beta gradient sums these over the batch, and a sum near zero made
            // its relative error a matter of cancellation (the linear layer's check failed in 1
            // of 300 runs of the suite).
            let weights = Tensor::<4>::random(y1.dims(), Distribution::Normal(1.0, 1.0), &device);
            let g1 = (y1 * weights.clone()).sum().backward();
            let g2 = (y2 * weights).sum().backward();
            let dx = max_relative(x1.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
            assert!(dx < 1e-4, "{channels} {with_silu}: input gradient {dx}");
            let (gamma, beta) = (norm.gamma.as_ref().unwrap(), norm.beta.as_ref().unwrap());
            let dg = max_relative(gamma.grad(&g1).unwrap(), gamma.grad(&g2).unwrap());
            assert!(dg < 1e-5, "{channels} {with_silu}: gamma gradient {dg}");
            let db = max_relative(beta.grad(&g1).unwrap(), beta.grad(&g2).unwrap());
            assert!(db < 1e-5, "{channels} {with_silu}: beta gradient {db}");
        }
    }

    /// The gradients have the same bits on one thread and on three.
    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let device = Device::default().autodiff();
        let norm = GroupNormConfig::new(4, 16).init(&device);
        let x = Tensor::<4>::random([9, 16, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        let run = |threads: usize| {
            on_threads(threads, || {
                let x = x.clone().detach().require_grad();
                let y = group_norm(&norm, x.clone()) + group_norm_silu(&norm, x.clone());
                let grads = y.powi_scalar(3).sum().backward();
                let gamma = norm.gamma.as_ref().unwrap().grad(&grads).unwrap();
                (bits(x.grad(&grads).unwrap()), bits(gamma))
            })
        };
        assert_eq!(run(1), run(3));
    }
}
