//! What `fid`, `is` and `kid` read: a folder of PNG/JPEG images, a `.npy` of samples as diffuse
//! writes them ([N, C, H, W] floats in [-1, 1]), a built-in dataset's split (`mnist:test`,
//! `cifar10:train`, ...; `mnist:train:N` for N of its images drawn with seed 0), or an `.npz` of statistics (`mu`, `sigma`) as pytorch-fid writes
//! them; and the network's outputs over the images, batch by batch.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use diffuse_data::Split;
use diffuse_data::images::to_model_space;
use diffuse_data::images::to_pixel;
use diffuse_eval::frechet::Moments;
use diffuse_nn::inception::{Dims, Inception, InceptionOutput, SIDE, input_image};
use diffuse_nn::lenet::{LENET_FEATURES, LENET_SIDE, LeNet};

use crate::config::ImageDataset;

/// One input of a command, as its argument names it.
#[derive(Debug, Clone)]
pub enum Input {
    Folder(PathBuf),
    Samples(PathBuf),
    /// A split, or (`mnist:train:N`) N of its images drawn with seed 0.
    Dataset(ImageDataset, Split, Option<usize>),
    Stats(PathBuf),
}

/// Extensions pytorch-fid reads that diffuse does not decode.
const OTHER_IMAGES: [&str; 7] = ["bmp", "pgm", "ppm", "tif", "tiff", "webp", "gif"];

impl Input {
    pub fn parse(arg: &str) -> Result<Self> {
        let path = Path::new(arg);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase);
        if let Some((name, split)) = arg.split_once(':')
            && let Some(set) = ImageDataset::from_name(name)
            && set != ImageDataset::Folder
        {
            let (split, count) = match split.split_once(':') {
                Some((split, n)) => match n.parse::<usize>() {
                    Ok(n) if n >= 1 => (split, Some(n)),
                    _ => {
                        bail!("{arg}: the count after the split is a number of images, at least 1")
                    }
                },
                None => (split, None),
            };
            let split = match split {
                "train" => Split::Train,
                "test" => Split::Test,
                other => bail!("{arg}: the split is `train` or `test`, not `{other}`"),
            };
            return Ok(Self::Dataset(set, split, count));
        }
        Ok(match ext.as_deref() {
            Some("npz") => Self::Stats(path.into()),
            Some("npy") => Self::Samples(path.into()),
            _ if path.is_dir() => Self::Folder(path.into()),
            _ => bail!(
                "{arg} is neither a folder of images, a .npy of samples, an .npz of statistics nor a dataset split (mnist:test, fashion_mnist:train, cifar10:test, ...)"
            ),
        })
    }
}

/// 8-bit images, each [C, H, W] with its own size.
#[derive(Clone)]
pub struct Image {
    pub pixels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// The images of an input, loaded a batch at a time (a folder's files are decoded as they are
/// reached, so a folder larger than memory streams).
pub enum Images {
    Files(Vec<PathBuf>),
    Loaded(Vec<Image>),
}

impl Images {
    pub fn open(input: &Input, data_dir: Option<&Path>) -> Result<Self> {
        match input {
            Input::Folder(dir) => folder_files(dir).map(Self::Files),
            Input::Samples(path) => {
                let array = diffuse_data::npy::read_npy(path)?;
                let &[n, c, h, w] = array.shape.as_slice() else {
                    bail!(
                        "{} has shape {:?}; samples are [N, C, H, W] (as `diffuse sample` writes them)",
                        path.display(),
                        array.shape
                    );
                };
                if c != 1 && c != 3 {
                    bail!("{}: images have 1 or 3 channels, not {c}", path.display());
                }
                if let Some(bad) = array.data.iter().find(|v| !v.is_finite()) {
                    bail!("{} holds a non-finite value ({bad})", path.display());
                }
                let images = array
                    .data
                    .chunks_exact(c * h * w)
                    .take(n)
                    .map(|x| Image {
                        // As the PNGs diffusers' `numpy_to_pil` would write.
                        pixels: x.iter().map(|&v| to_pixel(v)).collect(),
                        channels: c,
                        height: h,
                        width: w,
                    })
                    .collect();
                Ok(Self::Loaded(images))
            }
            Input::Dataset(set, split, count) => {
                let loaded = crate::kinds::images::load_builtin(*set, data_dir, *split)?;
                let total = loaded.len();
                if count.is_some_and(|n| n > total) {
                    bail!(
                        "{} has {total} images, fewer than the {} asked for",
                        set.name(),
                        count.unwrap_or(0)
                    );
                }
                Ok(Self::subset_of(&loaded, count.unwrap_or(total)))
            }
            Input::Stats(path) => bail!(
                "{} holds statistics, not images: this needs the images",
                path.display()
            ),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Files(f) => f.len(),
            Self::Loaded(i) => i.len(),
        }
    }

    /// `n` images of `set` (all when it has no more; else the seed-0 subset).
    pub fn subset_of(set: &diffuse_data::ImageSet, n: usize) -> Self {
        let [total, c, h, w] = set.shape();
        let images = seed0_subset(total, n)
            .into_iter()
            .map(|i| Image {
                pixels: set.image(i).to_vec(),
                channels: c,
                height: h,
                width: w,
            })
            .collect();
        Self::Loaded(images)
    }

    /// Image `i` (a folder's file decoded now).
    pub fn get(&self, i: usize) -> Result<std::borrow::Cow<'_, Image>> {
        Ok(match self {
            Self::Loaded(images) => std::borrow::Cow::Borrowed(&images[i]),
            Self::Files(files) => std::borrow::Cow::Owned(decode_rgb(&files[i])?),
        })
    }

    /// Images `range` as the network's input, [n, 3, 299, 299].
    fn batch(
        &self,
        range: std::ops::Range<usize>,
        device: &burn::tensor::Device,
    ) -> Result<Tensor<4>> {
        let n = range.len();
        let mut input = Vec::with_capacity(n * 3 * SIDE * SIDE);
        for i in range {
            let image = self.get(i)?;
            input.extend(input_image(
                &image.pixels,
                image.channels,
                image.height,
                image.width,
            ));
        }
        Ok(Tensor::from_data(
            TensorData::new(input, [n, 3, SIDE, SIDE]),
            device,
        ))
    }
}

/// Images `range` as LeNet's input, [n, 1, 28, 28] in [-1, 1] (RGB ones as PIL's
/// `convert("L")`).
fn gray_batch(
    images: &Images,
    range: std::ops::Range<usize>,
    device: &burn::tensor::Device,
) -> Result<Tensor<4>> {
    let plane = LENET_SIDE * LENET_SIDE;
    let mut input = Vec::with_capacity(range.len() * plane);
    let n = range.len();
    for i in range {
        let image = images.get(i)?;
        if image.height != LENET_SIDE || image.width != LENET_SIDE {
            bail!(
                "image {i} is {}x{}; the LeNet of FD_LeNet reads 28x28 images",
                image.height,
                image.width
            );
        }
        let p = &image.pixels;
        input.extend((0..plane).map(|k| {
            let gray = match image.channels {
                1 => p[k],
                _ => luma(p[k], p[plane + k], p[2 * plane + k]),
            };
            to_model_space(gray)
        }));
    }
    Ok(Tensor::from_data(
        TensorData::new(input, [n, 1, LENET_SIDE, LENET_SIDE]),
        device,
    ))
}

/// `n` of `total` indices, sorted: all of them, or a subset drawn with seed 0 (the same for
/// every command and run, so that statistics of it can be shared).
pub fn seed0_subset(total: usize, n: usize) -> Vec<usize> {
    if n >= total {
        return (0..total).collect();
    }
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut chosen = rand::seq::index::sample(&mut rng, total, n).into_vec();
    chosen.sort_unstable();
    chosen
}

/// The PNG/JPEG files directly in `dir`, sorted by path as pytorch-fid sorts them.
fn folder_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase);
        match ext.as_deref() {
            Some("png" | "jpg" | "jpeg") => files.push(path),
            Some(e) if OTHER_IMAGES.contains(&e) => bail!(
                "{}: diffuse reads PNG and JPEG images; pytorch-fid would count this one, so convert it (or move it out) to compare the same images",
                path.display()
            ),
            _ => {}
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("{} holds no PNG or JPEG images", dir.display());
    }
    Ok(files)
}

/// One file as RGB (`PIL.Image.convert("RGB")`), planar.
fn decode_rgb(path: &Path) -> Result<Image> {
    let (pixels, height, width) = diffuse_data::folder::read_rgb(path)?;
    Ok(Image {
        pixels,
        channels: 3,
        height,
        width,
    })
}

/// The network's outputs over every image, `batch` at a time, with a progress bar; the
/// features (row-major, `dims` wide) and the logits when asked.
pub fn run_network(
    net: &Inception,
    images: &Images,
    dims: Option<Dims>,
    logits: bool,
    batch: usize,
    what: &str,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let device = crate::device::device();
    let (mut features, mut all_logits) = (Vec::new(), Vec::new());
    let wanted: Vec<Dims> = dims.into_iter().collect();
    for_batches(images.len(), batch, what, |range| {
        let x = images.batch(range, &device)?;
        let InceptionOutput {
            features: f,
            logits: l,
        } = net.forward(x, &wanted, logits);
        for (_, values) in f {
            features.extend(values);
        }
        all_logits.extend(l.unwrap_or_default());
        Ok(())
    })?;
    if let Some(bad) = features.iter().chain(&all_logits).find(|v| !v.is_finite()) {
        bail!("the network gave a non-finite output ({bad}): check the weights file");
    }
    Ok((features, all_logits))
}

/// The network whose features a Fréchet distance compares.
pub enum Extractor {
    /// pytorch-fid's Inception at one of its widths: FID.
    Inception(Box<Inception>, Dims),
    /// A `diffuse classifier` LeNet (1 x 28 x 28 images): FD_LeNet.
    LeNet(Box<LeNet>),
}

impl Extractor {
    /// The features of every image, row-major.
    pub fn features(&self, images: &Images, batch: usize) -> Result<Vec<f32>> {
        match self {
            Self::Inception(net, dims) => {
                Ok(run_network(net, images, Some(*dims), false, batch, "features")?.0)
            }
            Self::LeNet(net) => lenet_features(net, images, batch),
        }
    }
}

/// LeNet's features of 28 x 28 images, in [-1, 1].
fn lenet_features(net: &LeNet, images: &Images, batch: usize) -> Result<Vec<f32>> {
    let device = crate::device::device();
    let mut features = Vec::with_capacity(images.len() * LENET_FEATURES);
    for_batches(images.len(), batch, "LeNet features", |range| {
        let x = gray_batch(images, range, &device)?;
        let values = net.features(x).into_data().try_to_vec::<f32>();
        features.extend(values.map_err(|e| anyhow::anyhow!("{e:?}"))?);
        Ok(())
    })?;
    Ok(features)
}

/// `f` on `0..n` a `batch` at a time, in order, with a progress bar saying `what`.
fn for_batches(
    n: usize,
    batch: usize,
    what: &str,
    mut f: impl FnMut(std::ops::Range<usize>) -> Result<()>,
) -> Result<()> {
    let pb = crate::progress::bar(n, what);
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        f(start..end)?;
        pb.set_position(end as u64);
    }
    pb.finish_and_clear();
    Ok(())
}

/// PIL's `convert("L")`: L = R 299/1000 + G 587/1000 + B 114/1000, in its fixed point.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// The moments of an input: read from its `.npz`, or from the features of its images.
pub fn moments(
    input: &Input,
    extractor: Option<&Extractor>,
    width: usize,
    batch: usize,
    data_dir: Option<&Path>,
) -> Result<Moments> {
    if let Input::Stats(path) = input {
        return read_stats(path, width);
    }
    let extractor = extractor.expect("the caller loads the network for images");
    let images = Images::open(input, data_dir)?;
    if images.len() < 2 {
        bail!(
            "a covariance needs at least 2 images; {input:?} has {}",
            images.len()
        );
    }
    let features = extractor.features(&images, batch)?;
    Ok(Moments::of(&features, width))
}

/// pytorch-fid's statistics file: `mu` [d] and `sigma` [d, d].
pub fn read_stats(path: &Path, width: usize) -> Result<Moments> {
    let arrays = diffuse_data::npz::read_npz(path)?;
    let (Some((mu_shape, mu)), Some((sigma_shape, sigma))) =
        (arrays.get("mu"), arrays.get("sigma"))
    else {
        bail!(
            "{} has no `mu` and `sigma` arrays (pytorch-fid's --save-stats writes both)",
            path.display()
        );
    };
    let d = mu.len();
    if mu_shape.len() != 1 || sigma_shape != &[d, d] {
        bail!(
            "{}: mu has shape {mu_shape:?} and sigma {sigma_shape:?}; they must be [d] and [d, d]",
            path.display()
        );
    }
    if d != width {
        bail!(
            "{} holds {d}-wide statistics, but --dims is {width}",
            path.display()
        );
    }
    if let Some(bad) = mu.iter().chain(sigma).find(|v| !v.is_finite()) {
        bail!("{} holds a non-finite value ({bad})", path.display());
    }
    Ok(Moments {
        dim: d,
        count: 0,
        mu: mu.clone(),
        sigma: sigma.clone(),
    })
}

/// Writes `m` as pytorch-fid's `--save-stats` does: `mu` and `sigma`, both float64 (its
/// features are gathered in float64).
pub fn write_stats(path: &Path, m: &Moments) -> Result<(), diffuse_data::DataError> {
    let d = m.dim;
    diffuse_data::npz::write_npz(
        path,
        &[
            ("mu", &[d], diffuse_data::npy::Values::F64(&m.mu)),
            ("sigma", &[d, d], diffuse_data::npy::Values::F64(&m.sigma)),
        ],
    )
}
