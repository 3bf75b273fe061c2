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
    // Always `Some` between calls; taken during `update` so the old weights are moved, not copied.
    model: Option<M>,
    decay: f64,
}

impl<M: Module> Ema<M> {
    pub fn new(model: &M, decay: f64) -> Self {
        Self {
            model: Some(model.valid()),
            decay,
        }
    }

    /// Continues an average from saved weights (a checkpoint's), whose parameter ids must be
    /// those of the model it follows.
    pub fn from_weights(weights: M, decay: f64) -> Self {
        Self {
            model: Some(weights.valid()),
            decay,
        }
    }

    /// The averaged weights.
    pub fn model(&self) -> &M {
        self.model
            .as_ref()
            .expect("EMA weights are present outside update")
    }

    pub fn into_model(self) -> M {
        self.model.expect("EMA weights are present outside update")
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
        let ema = self
            .model
            .take()
            .expect("EMA weights are present outside update");
        self.model = Some(ema.map(&mut blend));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    fn weights(model: &Linear) -> Vec<f32> {
        let mut w: Vec<f32> = model.weight.val().inner().into_data().try_to_vec().unwrap();
        w.extend(
            model
                .bias
                .as_ref()
                .unwrap()
                .val()
                .inner()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
        w
    }

    #[test]
    fn ema_blends_toward_the_current_weights() {
        let device = Device::default().autodiff();
        let model = LinearConfig::new(3, 2).init(&device);
        let start = weights(&model);
        let mut ema = Ema::new(&model, 0.9);
        // Same parameter ids, new values: theta <- theta + 1.
        let moved = model.map(&mut AddOne);
        ema.update(&moved);
        for (e, s) in weights(ema.model()).iter().zip(&start) {
            assert!((e - (s + 0.1)).abs() < 1e-6, "{e} vs {}", s + 0.1);
        }
    }

    struct AddOne;
    impl ModuleMapper for AddOne {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| t.add_scalar(1.0))
        }
    }

    fn global_norm(model: &Linear, grads: &GradientsParams) -> f32 {
        let w: f32 = grads
            .get::<2>(model.weight.id)
            .unwrap()
            .square()
            .sum()
            .into_scalar();
        let b: f32 = grads
            .get::<1>(model.bias.as_ref().unwrap().id)
            .unwrap()
            .square()
            .sum()
            .into_scalar();
        (w + b).sqrt()
    }

    #[test]
    fn clip_grad_norm_scales_the_global_norm() {
        let device = Device::default().autodiff();
        let model = LinearConfig::new(4, 3).init(&device);
        let x = Tensor::<2>::ones([5, 4], &device).mul_scalar(10.0);
        let grads = GradientsParams::from_grads(model.forward(x).sum().backward(), &model);
        let before = global_norm(&model, &grads);
        assert!(before > 1.0);
        let clipped = clip_grad_norm(&model, grads, 1.0);
        assert!((global_norm(&model, &clipped) - 1.0).abs() < 1e-4);
        // Below the threshold nothing changes.
        let unclipped = clip_grad_norm(&model, clipped, 10.0);
        assert!((global_norm(&model, &unclipped) - 1.0).abs() < 1e-4);
    }
}
