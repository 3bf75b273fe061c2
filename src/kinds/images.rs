//! Images: a dataset's train and test splits (MNIST, Fashion-MNIST, CIFAR-10) or a folder,
//! as 8-bit pixels, mapped to [-1, 1] in batches, with random horizontal flips where the config
//! asks for them.

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_data::images::{flip_horizontal, to_model_space, to_pixel};
use diffuse_data::{ImageSet, Split, load_cifar10, load_image_folder, load_mnist};
use diffuse_data::{read_npy, write_npy};
use diffuse_eval::grid::{Images as ImageGrid, image_grid};
use diffuse_nn::UnetConfig;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::Kind;
use std::path::Path;

use diffuse_train::checkpoint::save_json;
use serde::Serialize;

use crate::args::SampleArgs;
use crate::config::{ImageDataset, RunConfig};
use crate::figures::TrainFigures;

/// The kind of data: images in [N, C, H, W].
pub struct ImageKind;

/// Training images, and held-out ones for the pictures (a folder's own images: it has no test
/// split).
pub struct ImageData {
    pub train: ImageSet,
    pub test: ImageSet,
}

impl Kind<4> for ImageKind {
    type Data = ImageData;
    const LOSS_EVERY: usize = 10;

    fn load(config: &mut RunConfig, _: bool) -> Result<ImageData> {
        let train = load_images(config, Split::Train)?;
        let test = match config.data.image_dataset()? {
            ImageDataset::Folder => train.clone(),
            _ => load_images(config, Split::Test)?,
        };
        Ok(ImageData { train, test })
    }

    fn batch(
        config: &RunConfig,
        data: &ImageData,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Tensor<4> {
        let flip = config.data.random_flip.unwrap_or(false);
        random_image_batch(&data.train, config.train.batch_size, flip, rng, device)
    }

    /// The first 2,000 training images (every pair is visited).
    fn distance_rows(data: &ImageData) -> (Vec<f32>, usize) {
        let set = &data.train;
        let n = set.len().min(2000);
        let rows = set.pixels[..n * set.image_size()]
            .iter()
            .map(|&v| to_model_space(v))
            .collect();
        (rows, set.image_size())
    }

    fn describe(config: &RunConfig, data: &ImageData) -> String {
        format!(
            "{} ({} images, batches of {})",
            config.data.dataset,
            data.train.len(),
            config.train.batch_size,
        )
    }
}

/// One split of an image run's dataset, checked against the U-Net (a folder has no test split:
/// both are its own images).
pub fn load_images(config: &RunConfig, split: Split) -> Result<ImageSet> {
    let (channels, size) = config.image_shape()?;
    let dataset = config.data.image_dataset()?;
    let dir = config.data.image_dir()?;
    let what = match split {
        Split::Train => "the training set",
        Split::Test => "the test set",
    };
    let missing = || {
        format!(
            "cannot read {what} from {}: pass --data-dir DIR with the files, or --download",
            dir.display()
        )
    };
    let set = match dataset {
        ImageDataset::Folder => load_image_folder(&dir, size, channels)?,
        builtin => read_builtin(builtin, &dir, split).with_context(missing)?,
    };
    let [_, c, h, w] = set.shape();
    if c != channels || h != size || w != size {
        bail!(
            "{} images are {c}x{h}x{w}, but the run takes {channels}x{size}x{size}; set unet.in_channels, unet.out_channels and unet.sample_size to match",
            dataset.name(),
        );
    }
    if set.is_empty() {
        bail!("{} holds no images", dir.display());
    }
    Ok(set)
}

/// One split of a built-in set (MNIST, Fashion-MNIST: IDX files; CIFAR-10: binary batches)
/// from `dir`.
fn read_builtin(set: ImageDataset, dir: &Path, split: Split) -> Result<ImageSet> {
    Ok(match set {
        ImageDataset::Mnist | ImageDataset::FashionMnist => load_mnist(dir, split)?,
        ImageDataset::Cifar10 => load_cifar10(dir, split)?,
        ImageDataset::Folder => bail!("a folder has no splits; it is read at the U-Net's size"),
    })
}

/// One split of a built-in set as `fid`, `is`, `kid` and `classifier` name it, from
/// `data_dir` (default `data/<name>`).
pub fn load_builtin(set: ImageDataset, data_dir: Option<&Path>, split: Split) -> Result<ImageSet> {
    let dir = data_dir.map_or_else(|| set.default_dir(), Path::to_path_buf);
    read_builtin(set, &dir, split).with_context(|| {
        format!(
            "cannot read {} from {}: pass --data-dir DIR with its files",
            set.name(),
            dir.display()
        )
    })
}

/// `batch` images drawn uniformly with replacement, in model space, mirrored at random if `flip`.
pub fn random_image_batch(
    set: &ImageSet,
    batch: usize,
    flip: bool,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Tensor<4> {
    let size = set.image_size();
    let mut data = Vec::with_capacity(batch * size);
    for _ in 0..batch {
        let i = rng.random_range(0..set.len());
        let start = data.len();
        data.extend(set.image(i).iter().map(|&v| to_model_space(v)));
        if flip && rng.random_bool(0.5) {
            flip_horizontal(&mut data[start..], set.width);
        }
    }
    Tensor::from_data(
        TensorData::new(data, [batch, set.channels, set.height, set.width]),
        device,
    )
}

/// The first `n` images of `set` in model space, as a tensor.
pub fn first_images(set: &ImageSet, n: usize, device: &Device) -> Tensor<4> {
    let n = n.min(set.len());
    let data: Vec<f32> = set.pixels[..n * set.image_size()]
        .iter()
        .map(|&v| to_model_space(v))
        .collect();
    Tensor::from_data(
        TensorData::new(data, [n, set.channels, set.height, set.width]),
        device,
    )
}

/// Images in model space to `--out`, and a grid of their 8-bit pixels to `--png`.
pub fn write_images(args: &SampleArgs, x: Tensor<4>, title: &str) -> Result<()> {
    let shape: [usize; 4] = x.dims();
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
        let grid = ImageGrid {
            pixels: &pixels,
            shape,
        };
        image_grid(png, title, &grid, cols, scale)?;
        println!("wrote {}", png.display());
    }
    Ok(())
}

/// Model-space values to 8-bit pixels.
pub fn pixels(x: Tensor<4>) -> Result<Vec<u8>> {
    Ok(x.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .into_iter()
        .map(to_pixel)
        .collect())
}

/// Writes `pixels` ([N, C, H, W]) as a grid of `cols` columns.
pub fn grid(path: &Path, title: &str, pixels: &[u8], shape: [usize; 4], cols: usize) -> Result<()> {
    let scale = if shape[2] <= 32 { 3 } else { 1 };
    image_grid(path, title, &ImageGrid { pixels, shape }, cols, scale)?;
    Ok(())
}

#[derive(Serialize)]
struct Metrics {
    dataset: String,
    train_images: usize,
    steps: usize,
    batch_size: usize,
    parameters: usize,
    #[serde(flatten)]
    figures: TrainFigures,
    sample_seconds: f64,
}

/// `metrics.json` of an image run, whatever its family (written last: the run is finished).
pub fn write_metrics(
    dir: &Path,
    config: &RunConfig,
    data: &ImageData,
    parameters: usize,
    figures: &TrainFigures,
    sample_seconds: f64,
) -> Result<()> {
    save_json(
        &Metrics {
            dataset: config.data.dataset.clone(),
            train_images: data.train.len(),
            steps: config.train.steps,
            batch_size: config.train.batch_size,
            parameters,
            figures: figures.clone(),
            sample_seconds,
        },
        &dir.join("metrics.json"),
    )?;
    Ok(())
}

/// A standard-normal draw from an `--init-noise` file, checked against the U-Net: finite,
/// [N, C, H, W] with its channels and a size its levels divide, `--n` (when given) equal to N,
/// and within the memory sampling N images of H x W takes.
pub fn read_noise(
    path: &Path,
    unet: &UnetConfig,
    n_flag: Option<usize>,
    device: &Device,
) -> Result<Tensor<4>> {
    let c = unet.in_channels;
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
    let levels = unet.block_out_channels.len() as u32;
    let factor = 1usize << (levels - 1);
    if !shape[2].is_multiple_of(factor) || !shape[3].is_multiple_of(factor) {
        bail!(
            "{}: H and W ({} x {}) must be divisible by {factor} for this {levels}-level U-Net",
            path.display(),
            shape[2],
            shape[3]
        );
    }
    if let Some(n) = n_flag
        && n != shape[0]
    {
        bail!(
            "--n {n} disagrees with the {} images in {}; leave --n out",
            shape[0],
            path.display()
        );
    }
    let [n, _, h, w] = shape;
    crate::memory::check_unet_sampling(unet, h, w, n)
        .with_context(|| format!("--init-noise {}", path.display()))?;
    Ok(Tensor::from_data(
        TensorData::new(noise.data, shape),
        device,
    ))
}

/// The standard normal draw a family's sampler starts from (scaled to its first noise level
/// there): `--init-noise`, or `--n` images from the seed.
pub fn initial_noise(
    args: &SampleArgs,
    config: &RunConfig,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor<4>> {
    let unet = config.unet()?;
    let size = unet.sample_size.unwrap_or(0);
    match &args.init_noise {
        Some(path) => crate::kinds::images::read_noise(path, unet, args.n, device),
        None => {
            let n = args.n.unwrap_or(crate::sample::DEFAULT_IMAGES);
            crate::memory::check_unet_sampling(unet, size, size, n)?;
            Ok(diffuse_core::coef::randn(
                rng,
                [n, unet.in_channels, size, size],
                device,
            ))
        }
    }
}

/// Writes a checkpoint's U-Net as the weights of a run with no diffusers pipeline (NCSN, score
/// SDEs): the sampling (EMA) weights as a `UNet2DModel` folder `unet/`, the raw ones in `raw/`.
pub fn save_unet_folders(
    dir: &Path,
    config: &RunConfig,
    raw: &diffuse_nn::Unet,
    sampling: &diffuse_nn::Unet,
) -> Result<(), diffuse_train::TrainError> {
    let err = |e: String| diffuse_train::TrainError::Checkpoint {
        path: dir.into(),
        reason: e,
    };
    let unet = config.unet().map_err(|e| err(e.to_string()))?;
    diffuse_diffusers::save_unet(&dir.join("unet"), unet, sampling)
        .map_err(|e| err(e.to_string()))?;
    diffuse_diffusers::save_unet(&dir.join("raw"), unet, raw).map_err(|e| err(e.to_string()))
}

/// The sampling weights [`save_unet_folders`] wrote.
pub fn load_unet_folder(dir: &Path, device: &Device) -> Result<diffuse_nn::Unet> {
    Ok(diffuse_nn::Unet::from_diffusers_dir(&dir.join("unet"), device)?.1)
}
