//! Mixed precision: the floating-point type the networks' matrix products and convolutions
//! run in, set for a scope as `torch.autocast` does.
//!
//! Parameters stay float32 (the master copy the optimizer updates). Inside [`autocast`] with
//! [`Precision::Bf16`], a network's linear layers, convolutions and attention products cast
//! their float32 inputs and weights to bfloat16, compute, and cast the result back to float32,
//! so that normalizations, softmax, SiLU, the loss and every sum outside those products stay
//! float32 (PyTorch autocast's float32 list). The casts are differentiable: the backward pass
//! runs the same products in bfloat16 and hands float32 gradients to the float32 parameters.
//! bfloat16 keeps float32's exponent range, so no loss scaling is needed (float16 would need
//! one, and is not offered).

use std::cell::Cell;

use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

/// The type of the networks' matrix products and convolutions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 throughout.
    #[default]
    F32,
    /// bfloat16 products and convolutions, float32 everything else (see the module docs).
    Bf16,
}

impl Precision {
    /// The type the products are cast to; None for float32 (no casts).
    pub fn product_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Runs `f` with the networks' products in `precision` on this thread, then restores the
/// precision that was in force before (also when `f` panics).
pub fn autocast<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(precision)));
    f()
}

/// The precision in force on this thread ([`autocast`]); float32 outside any scope.
pub fn current() -> Precision {
    CURRENT.with(|c| c.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_sets_the_precision_for_its_scope_and_restores_it() {
        assert_eq!(current(), Precision::F32);
        let inner = autocast(Precision::Bf16, || {
            let nested = autocast(Precision::F32, current);
            (current(), nested)
        });
        assert_eq!(inner, (Precision::Bf16, Precision::F32));
        assert_eq!(current(), Precision::F32);
        let panicked = std::panic::catch_unwind(|| autocast(Precision::Bf16, || panic!("inside")));
        assert!(panicked.is_err());
        assert_eq!(current(), Precision::F32);
    }
}
