//! L_simple (DDPM eq. 14; Algorithm 1): the mean squared error between the network output and the
//! parameterization's target, at t drawn uniformly from {0, ..., T-1}. The objectives built on it
//! (L_vlb, L_hybrid) are in [`crate::objective`].

use burn::tensor::Tensor;
use rand::{Rng, RngExt};

/// t ~ Uniform({0, ..., T-1}) for each of `batch` items.
pub fn sample_timesteps(rng: &mut impl Rng, num_timesteps: usize, batch: usize) -> Vec<usize> {
    (0..batch)
        .map(|_| rng.random_range(0..num_timesteps))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

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
    }
}
