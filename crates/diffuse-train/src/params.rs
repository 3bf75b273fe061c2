//! Whole-model parameter operations the optimizer crate does not give: the global gradient norm
//! clip (PyTorch's `clip_grad_norm_`; burn clips each tensor on its own) and the EMA of weights.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Scales every gradient by min(1, max_norm / (||g|| + 1e-6)), where ||g|| is the L2 norm of all
/// gradients together. Stays on the device: no host round trip.
pub fn clip_grad_norm<M: Module>(
    model: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> GradientsParams {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    struct Scale {
        grads: GradientsParams,
        coef: Tensor<1>,
    }
    impl ModuleVisitor for Scale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let coef = self.coef.clone().reshape([1; D]);
                self.grads.register::<D>(param.id, g * coef);
            }
        }
    }
    let mut sum = SumSquares {
        grads: &grads,
        total: None,
    };
    model.visit(&mut sum);
    let Some(total) = sum.total else { return grads };
    let coef = total
        .sqrt()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm as f32)
        .clamp_max(1.0);
    let mut scale = Scale { grads, coef };
    model.visit(&mut scale);
    scale.grads
}

/// An exponential moving average of a model's weights: ema <- decay ema + (1 - decay) theta.
/// Keeps its own copy without autodiff; parameters are matched by id, so the EMA must start as a
/// copy of the model it follows.
pub struct Ema<M> {
    pub model: M,
    pub decay: f64,
}

impl<M: Module> Ema<M> {
    pub fn new(model: &M, decay: f64) -> Self {
        Self {
            model: model.valid(),
            decay,
        }
    }

    pub fn update(&mut self, model: &M) {
        struct Collect(GradientsParams);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.register::<D>(param.id, param.val().inner());
            }
        }
        struct Blend {
            current: GradientsParams,
            decay: f32,
        }
        impl ModuleMapper for Blend {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let Some(theta) = self.current.remove::<D>(param.id) else {
                    return param;
                };
                let decay = self.decay;
                param.map(|ema| ema.mul_scalar(decay) + theta.mul_scalar(1.0 - decay))
            }
        }
        let mut collect = Collect(GradientsParams::new());
        model.visit(&mut collect);
        let mut blend = Blend {
            current: collect.0,
            decay: self.decay as f32,
        };
        let ema = std::mem::replace(&mut self.model, model.valid());
        self.model = ema.map(&mut blend);
    }
}
