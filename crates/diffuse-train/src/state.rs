//! What a run needs to continue bit for bit after an interruption: the step, the RNG's position
//! (which fixes the data order, the timesteps and the noise still to come), the loss history, the
//! objective's own state (improved DDPM's importance history), and, beside this struct, the optimizer moments and the weights.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use diffuse_core::coef::is_finite;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The position of a ChaCha8 stream: enough to rebuild it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    /// Words (u32) consumed so far; a string, as JSON numbers cannot hold a u128.
    pub word_pos: String,
}

impl RngState {
    pub fn of(rng: &ChaCha8Rng) -> Self {
        Self {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// The RNG at the saved position; `None` if `word_pos` is not a number.
    pub fn restore(&self) -> Option<ChaCha8Rng> {
        let pos: u128 = self.word_pos.parse().ok()?;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Some(rng)
    }
}

/// The trainer's own state after `step` completed steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed optimizer steps.
    pub step: usize,
    pub rng: RngState,
    /// The loss of every completed step, in order.
    pub losses: Vec<f32>,
    /// The objective's own state (`Objective::state`): improved DDPM's per-t loss history
    /// when t is importance-sampled. Saved under the key DDPM's history has always had, so a
    /// checkpoint's bytes are those of earlier versions.
    #[serde(rename = "importance")]
    pub objective: Option<serde_json::Value>,
}

/// Gives the module's parameters the ids 1, 2, ... in visiting order. burn draws parameter ids
/// at random; the optimizer keys its moments by id, so fixed ids let a checkpoint's moments find
/// their parameters in a freshly built model, and make the saved optimizer state reproducible.
pub fn canonical_param_ids<M: Module>(module: M) -> M {
    struct Renumber(u64);
    impl ModuleMapper for Renumber {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.0 += 1;
            let (_, value, mapper) = param.consume();
            Param::from_mapped_value(ParamId::from(self.0), value, mapper)
        }
    }
    module.map(&mut Renumber(0))
}

/// Whether every float parameter of the module is finite (one host read per tensor).
pub fn all_finite<M: Module>(module: &M) -> bool {
    struct Check(bool);
    impl ModuleVisitor for Check {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 = self.0 && is_finite(&param.val());
        }
    }
    let mut check = Check(true);
    module.visit(&mut check);
    check.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn rng_state_restores_the_stream_position() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..13 {
            rng.next_u32();
        }
        let state = RngState::of(&rng);
        let json = serde_json::to_string(&state).unwrap();
        let mut back = serde_json::from_str::<RngState>(&json)
            .unwrap()
            .restore()
            .unwrap();
        for _ in 0..100 {
            assert_eq!(rng.next_u64(), back.next_u64());
        }
    }

    #[test]
    fn param_ids_are_renumbered_in_order_and_finiteness_is_checked() {
        use burn::nn::LinearConfig;
        let device = burn::tensor::Device::default();
        let model = canonical_param_ids(LinearConfig::new(2, 3).init(&device));
        assert_eq!(model.weight.id, ParamId::from(1));
        assert_eq!(model.bias.as_ref().unwrap().id, ParamId::from(2));
        assert!(all_finite(&model));
        let bad = model.map(&mut NanBias);
        assert!(!all_finite(&bad));
    }

    struct NanBias;
    impl ModuleMapper for NanBias {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if D == 1 {
                param.map(|t| t.mul_scalar(f32::INFINITY))
            } else {
                param
            }
        }
    }
}
