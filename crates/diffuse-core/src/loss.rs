//! L_simple (DDPM eq. 14; Algorithm 1): the mean squared error between the network output and the
//! parameterization's target, at t drawn uniformly from {0, ..., T-1}.

use burn::tensor::{Device, Tensor};
use rand::{Rng, RngExt};

use crate::param::{NoiseLevel, Prediction};
use crate::process::q_sample;
use crate::schedule::NoiseSchedule;

/// One training example batch for DDPM Algorithm 1: timesteps, noisy inputs and targets.
pub struct SimpleLossBatch<const D: usize> {
    pub t: Vec<usize>,
    pub x_t: Tensor<D>,
    pub target: Tensor<D>,
}

/// t ~ Uniform({0, ..., T-1}) for each of `batch` items.
pub fn sample_timesteps(rng: &mut impl Rng, num_timesteps: usize, batch: usize) -> Vec<usize> {
    (0..batch)
        .map(|_| rng.random_range(0..num_timesteps))
        .collect()
}

/// Builds (t, x_t, target) from clean data x_0, timesteps and noise eps.
pub fn simple_loss_batch<const D: usize>(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    x0: Tensor<D>,
    t: Vec<usize>,
    eps: Tensor<D>,
) -> SimpleLossBatch<D> {
    let device: Device = x0.device();
    let level = NoiseLevel::at(schedule, &t, &device);
    let x_t = q_sample(schedule, x0.clone(), &t, eps.clone());
    let target = prediction.target(x0, eps, &level);
    SimpleLossBatch { t, x_t, target }
}

/// Per-example mean squared error over all but the batch dimension: shape [B].
pub fn per_example_mse<const D: usize>(output: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    let batch = output.dims()[0];
    (output - target)
        .powi_scalar(2)
        .reshape([batch as i64, -1])
        .mean_dim(1)
        .reshape([batch])
}

/// L_simple: the batch mean of [`per_example_mse`].
pub fn l_simple<const D: usize>(output: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    per_example_mse(output, target).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn per_example_mse_matches_hand_computation() {
        let device = Device::default();
        let out = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 0.0, 0.0], [2, 2]),
            &device,
        );
        let tgt = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 3.0, 1.0], [2, 2]),
            &device,
        );
        let v: Vec<f32> = per_example_mse(out.clone(), tgt.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(v, vec![2.5, 5.0]);
        assert_eq!(l_simple(out, tgt).into_scalar::<f32>(), 3.75);
    }
}
