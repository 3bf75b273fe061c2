//! The networks' products under mixed precision ([`crate::precision`]): inside a
//! bfloat16 [`autocast`](crate::precision::autocast) scope, linear layers,
//! convolutions and the attention's products cast their float32 inputs and weights to
//! bfloat16, run burn's op, and cast the result back to float32. Everything else (group norm,
//! softmax, SiLU, the loss) stays float32, and the fused CPU kernels, which are float32, are
//! left out of such a scope.

use crate::precision;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, FloatDType, Tensor};

/// The type `x`'s products run in: the autocast type in force, for a float32 `x`; None
/// outside an autocast scope (float32 products, through the fused kernels on the CPU).
pub(crate) fn product_dtype<const D: usize>(x: &Tensor<D>) -> Option<FloatDType> {
    precision::current()
        .product_dtype()
        .filter(|_| x.dtype() == DType::F32)
}

/// `a.matmul(b)`, in the autocast type when one is in force (the result float32).
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    match product_dtype(&a) {
        Some(low) => a.cast(low).matmul(b.cast(low)).cast(FloatDType::F32),
        None => a.matmul(b),
    }
}

/// `layer.forward(x)` with x, the weight and the bias cast to `low`, the result float32.
pub(crate) fn linear<const D: usize>(layer: &Linear, x: Tensor<D>, low: FloatDType) -> Tensor<D> {
    let mut layer = layer.clone();
    layer.weight = layer.weight.map(|w| w.cast(low));
    layer.bias = layer.bias.map(|b| b.map(|b| b.cast(low)));
    layer.forward(x.cast(low)).cast(FloatDType::F32)
}

/// `conv.forward(x)` with x, the weight and the bias cast to `low`, the result float32.
pub(crate) fn conv2d(conv: &Conv2d, x: Tensor<4>, low: FloatDType) -> Tensor<4> {
    let mut conv = conv.clone();
    conv.weight = conv.weight.map(|w| w.cast(low));
    conv.bias = conv.bias.map(|b| b.map(|b| b.cast(low)));
    conv.forward(x.cast(low)).cast(FloatDType::F32)
}
