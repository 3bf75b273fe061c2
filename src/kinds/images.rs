//! Images: a dataset's train and test splits (MNIST, Fashion-MNIST, CIFAR-10) or a folder,
//! as 8-bit pixels, mapped to [-1, 1] in batches, with random horizontal flips where the config
//! asks for them.

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_data::images::{flip_horizontal, to_model_space};
use diffuse_data::{ImageSet, Split, load_cifar10, load_image_folder, load_mnist};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::Kind;
use crate::config::{ImageDataset, RunConfig};

/// Images in [N, C, H, W].
pub struct Images;

/// Training images, and held-out ones for the pictures (a folder's own images: it has no test
/// split).
pub struct ImageData {
    pub train: ImageSet,
    pub test: ImageSet,
}

impl Kind<4> for Images {
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
    let unet = config.unet()?;
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
    let size = unet.sample_size.unwrap_or(0);
    let set = match dataset {
        ImageDataset::Mnist | ImageDataset::FashionMnist => {
            load_mnist(&dir, split).with_context(missing)?
        }
        ImageDataset::Cifar10 => load_cifar10(&dir, split).with_context(missing)?,
        ImageDataset::Folder => load_image_folder(&dir, size, unet.in_channels)?,
    };
    let [_, c, h, w] = set.shape();
    if c != unet.in_channels || h != size || w != size {
        bail!(
            "{} images are {c}x{h}x{w}, but the U-Net takes {}x{size}x{size}; set unet.in_channels, unet.out_channels and unet.sample_size to match",
            dataset.name(),
            unet.in_channels
        );
    }
    if set.is_empty() {
        bail!("{} holds no images", dir.display());
    }
    Ok(set)
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
