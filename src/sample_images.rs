//! `diffuse sample --pipeline DIR`: samples from a diffusers pipeline folder (or an image run
//! directory, which is one) with any `--sampler`, from seeded noise or from `--init-noise`.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::coef::randn;
use diffuse_data::images::to_pixel;
use diffuse_data::{read_npy, write_npy};
use diffuse_eval::grid::{Images, image_grid};
use diffuse_nn::diffusers::Pipeline;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::sample::{SampleArgs, run_solver, steps_label};
use crate::solvers::build;

/// Images drawn when neither `--n` nor `--init-noise` gives the count.
const DEFAULT_IMAGES: usize = 16;

/// x_T: the `--init-noise` file (checked against the U-Net), or N(0, I) from the seed.
#[allow(non_snake_case)] // x_T, as in the papers.
fn initial_noise(
    args: &SampleArgs,
    pipeline: &Pipeline,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor<4>> {
    let c = pipeline.unet_config.in_channels;
    let Some(path) = &args.init_noise else {
        let Some(size) = pipeline.unet_config.sample_size else {
            bail!(
                "unet/config.json has no sample_size; pass --init-noise NOISE.npy [N, {c}, H, W]"
            );
        };
        let n = args.n.unwrap_or(DEFAULT_IMAGES);
        crate::memory::check_unet_sampling(&pipeline.unet_config, size, n)?;
        return Ok(randn(rng, [n, c, size, size], device));
    };
    let noise = read_npy(path)?;
    if let Some(i) = noise.data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: value {} at flat index {i} is not finite; initial noise must be finite",
            path.display(),
            noise.data[i]
        );
    }
    let shape: [usize; 4] = match noise.shape.as_slice() {
        &[n, ch, h, w] if ch == c && n > 0 => [n, ch, h, w],
        s => bail!(
            "{}: init noise must have shape [N, {c}, H, W] for this U-Net, found {s:?}",
            path.display()
        ),
    };
    let levels = pipeline.unet_config.block_out_channels.len() as u32;
    let factor = 1usize << (levels - 1);
    if !shape[2].is_multiple_of(factor) || !shape[3].is_multiple_of(factor) {
        bail!(
            "{}: H and W ({} x {}) must be divisible by {factor} for this {levels}-level U-Net",
            path.display(),
            shape[2],
            shape[3]
        );
    }
    if let Some(n) = args.n
        && n != shape[0]
    {
        bail!(
            "--n {n} disagrees with the {} images in {}; leave --n out",
            shape[0],
            path.display()
        );
    }
    Ok(Tensor::from_data(
        TensorData::new(noise.data, shape),
        device,
    ))
}

#[allow(non_snake_case)] // x_T, as in the papers.
pub fn run(dir: &Path, args: &SampleArgs) -> Result<()> {
    if args.no_ema {
        bail!(
            "--no-ema applies to 2-D runs; an image run keeps its raw weights as a diffusers model in {}",
            dir.join("raw").display()
        );
    }
    let device = Device::default();
    let pipeline = crate::memory::load_pipeline(dir, &device)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let x_T = initial_noise(args, &pipeline, &mut rng, &device)?;
    let shape: [usize; 4] = x_T.dims();
    let solver = build::<4>(&args.solver, &pipeline.scheduler)?;
    let x = run_solver(solver.as_ref(), &pipeline.unet, x_T, &mut rng)?;
    let values: Vec<f32> = x
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    write_npy(&args.out, &shape, &values)?;
    println!(
        "wrote {} images ({}x{}x{}, model space) to {}",
        shape[0],
        shape[1],
        shape[2],
        shape[3],
        args.out.display()
    );
    if let Some(png) = &args.png {
        let pixels: Vec<u8> = values.iter().map(|&v| to_pixel(v)).collect();
        let cols = (shape[0] as f64).sqrt().ceil() as usize;
        let scale = if shape[2] <= 32 { 3 } else { 1 };
        image_grid(
            png,
            &format!(
                "{} samples ({}, {})",
                shape[0],
                args.solver.sampler.label(),
                steps_label(&args.solver, pipeline.scheduler.num_train_timesteps)
            ),
            &Images {
                pixels: &pixels,
                shape,
            },
            cols,
            scale,
        )?;
        println!("wrote {}", png.display());
    }
    Ok(())
}
