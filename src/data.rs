//! A run's data, read as its config says: points (a built-in set or the user's file, split into
//! training and held-out points) or images (a dataset's train and test splits, or a folder).

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_data::images::{flip_horizontal, to_model_space};
use diffuse_data::{ImageSet, Points, Split, load_cifar10, load_image_folder, load_mnist};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{ImageDataset, MIN_HELD_OUT, RunConfig, Source};

/// Training and held-out points, in data space.
pub struct PointData {
    pub name: String,
    pub train: Points,
    pub held_out: Points,
}

/// A point run's data: drawn from its built-in set, or its file split at random, both from the
/// run's seed, so that evaluation finds the same held-out points again.
pub fn load_points(config: &RunConfig) -> Result<PointData> {
    let d = &config.data;
    let model = config.mlp()?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.train.seed ^ 0xDA7A);
    match d.source()? {
        Source::File(path) => {
            let points = diffuse_data::load_points(path, model.data_dim)?;
            if points.len() < 5 * MIN_HELD_OUT {
                bail!(
                    "{} holds {} points; training needs at least {} (20% are held out for evaluation)",
                    path.display(),
                    points.len(),
                    5 * MIN_HELD_OUT
                );
            }
            let held = d.held_out().min(points.len() / 5);
            let (train, held_out) = points.split(held, &mut rng);
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(PointData {
                name,
                train,
                held_out,
            })
        }
        Source::Toy(set) => Ok(PointData {
            name: set.name().to_string(),
            train: set.sample(d.train_points(), &mut rng),
            held_out: set.sample(d.held_out(), &mut rng),
        }),
        Source::Images(set) => bail!("{} is an image set, not points", set.name()),
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
