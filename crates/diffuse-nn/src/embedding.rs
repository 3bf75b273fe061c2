//! Sinusoidal timestep embeddings (Vaswani et al. 2017, section 3.5; DDPM appendix B), with
//! diffusers' `get_timestep_embedding` conventions so that U-Net weights port unchanged.

use burn::tensor::{Tensor, TensorData};

/// Embeds timesteps `t` ([B], floats) into [B, dim]:
/// freq_i = exp(-ln(max_period) i / (dim/2 - freq_shift)) for i < dim/2, then
/// [sin(t freq), cos(t freq)], or [cos, sin] when `flip_sin_to_cos`; odd `dim` pads one zero.
pub fn timestep_embedding(
    t: Tensor<1>,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    max_period: f64,
) -> Tensor<2> {
    let device = t.device();
    let batch = t.dims()[0];
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(max_period.ln()) * i as f64 / (half as f64 - freq_shift)).exp() as f32)
        .collect();
    let freqs = Tensor::<2>::from_data(TensorData::new(freqs, [1, half]), &device);
    let args = t.reshape([batch, 1]).mul(freqs);
    let (sin, cos) = (args.clone().sin(), args.cos());
    let mut emb = if flip_sin_to_cos {
        Tensor::cat(vec![cos, sin], 1)
    } else {
        Tensor::cat(vec![sin, cos], 1)
    };
    if dim % 2 == 1 {
        emb = Tensor::cat(vec![emb, Tensor::zeros([batch, 1], &device)], 1);
    }
    emb
}
