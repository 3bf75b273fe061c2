//! `diffuse classifier`: trains the LeNet of FD_LeNet (`diffuse_nn::lenet`) on a dataset's
//! training split (MNIST, Fashion-MNIST) with the project's training loop and cross-entropy,
//! reports its accuracy on the test split, and saves it in its own folder
//! (`lenet.safetensors`, `classifier.json`). `diffuse fid --classifier DIR` then measures
//! Fréchet distances of its 84 penultimate features: FD_LeNet, a domain metric for data where
//! Inception's features (or its file) are not at hand.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Int, Tensor, TensorData};
use clap::Args;
use diffuse_data::images::to_model_space;
use diffuse_data::{ImageSet, Split};
use diffuse_nn::lenet::{LENET_SIDE, LeNet};
use diffuse_train::checkpoint::{load_weights, save_json, save_weights};
use diffuse_train::objective::CrossEntropy;
use diffuse_train::{Start, TrainConfig, TrainError, TrainHooks};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::config::ImageDataset;

#[derive(Args, Debug)]
pub struct ClassifierArgs {
    /// mnist or fashion_mnist.
    #[arg(long)]
    pub dataset: String,
    /// Where the dataset's IDX files are (default data/<dataset>).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The folder to write (lenet.safetensors, classifier.json).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 3000)]
    pub steps: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// What `classifier.json` records.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClassifierInfo {
    pub network: String,
    pub dataset: String,
    pub steps: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub test_accuracy: f64,
    pub test_images: usize,
    pub train_seconds: f64,
}

const CLASSES: usize = 10;
const WEIGHTS: &str = "lenet.safetensors";
const INFO: &str = "classifier.json";

fn load_split(dataset: &str, data_dir: Option<&Path>, split: Split) -> Result<ImageSet> {
    let set = match ImageDataset::from_name(dataset) {
        Some(s @ (ImageDataset::Mnist | ImageDataset::FashionMnist)) => s,
        _ => bail!("--dataset {dataset}: the classifier trains on mnist or fashion_mnist"),
    };
    crate::kinds::images::load_builtin(set, data_dir, split)
}

/// Images `idx` of `set` in [-1, 1], as the network's input.
fn batch(set: &ImageSet, idx: &[usize], device: &burn::tensor::Device) -> Tensor<4> {
    let data: Vec<f32> = idx
        .iter()
        .flat_map(|&i| set.image(i).iter().map(|&v| to_model_space(v)))
        .collect();
    Tensor::from_data(
        TensorData::new(data, [idx.len(), 1, LENET_SIDE, LENET_SIDE]),
        device,
    )
}

struct Progress(indicatif::ProgressBar);

impl<M> TrainHooks<M> for Progress {
    fn on_step(&mut self, step: usize, loss: f32, _lr: f64) -> Result<(), TrainError> {
        crate::progress::training_step(&self.0, step, loss, 50);
        Ok(())
    }
}

pub fn run(args: ClassifierArgs) -> Result<()> {
    if args.steps == 0 || args.batch_size == 0 {
        bail!("--steps and --batch-size must be at least 1");
    }
    if args.out.exists() && !args.out.is_dir() {
        bail!(
            "--out {} is a file; it names the folder to write",
            args.out.display()
        );
    }
    let train = load_split(&args.dataset, args.data_dir.as_deref(), Split::Train)?;
    let test = load_split(&args.dataset, args.data_dir.as_deref(), Split::Test)?;
    let (Some(train_labels), Some(test_labels)) = (train.labels.clone(), test.labels.clone())
    else {
        bail!("{} has no labels", args.dataset);
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let device = crate::device::device();
    device.seed(args.seed);
    let ad = device.clone().autodiff();
    let config = TrainConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        lr: 1e-3,
        warmup_steps: 0,
        ema_decay: None,
        grad_clip_norm: None,
        checkpoint_every: 0,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let mut objective = CrossEntropy {
        logits: LeNet::logits,
    };
    let pb = crate::progress::bar(args.steps, "training LeNet");
    let start = Instant::now();
    let data = |rng: &mut rand_chacha::ChaCha8Rng| {
        let idx: Vec<usize> = (0..args.batch_size)
            .map(|_| rng.random_range(0..train.len()))
            .collect();
        let labels: Vec<i64> = idx.iter().map(|&i| train_labels[i] as i64).collect();
        (
            batch(&train, &idx, &ad),
            Tensor::<1, Int>::from_data(TensorData::new(labels, [idx.len()]), &ad),
        )
    };
    let trained = diffuse_train::train(
        Start::Fresh(LeNet::new(CLASSES, &ad)),
        &mut objective,
        &config,
        data,
        &mut Progress(pb.clone()),
    )?;
    pb.finish_and_clear();
    let train_seconds = start.elapsed().as_secs_f64();
    save_weights(&trained.model, &args.out.join(WEIGHTS))?;
    // The saved weights, read back off the autodiff device.
    let model = load_weights(LeNet::new(CLASSES, &device), &args.out.join(WEIGHTS))?;
    let correct = (0..test.len())
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|idx| {
            let predicted = model.logits(batch(&test, idx, &device)).argmax(1);
            let predicted: Vec<i64> = predicted.into_data().convert::<i64>().try_to_vec().unwrap();
            idx.iter()
                .zip(predicted)
                .filter(|&(&i, p)| test_labels[i] as i64 == p)
                .count()
        })
        .sum::<usize>();
    let test_accuracy = correct as f64 / test.len() as f64;
    let info = ClassifierInfo {
        network: "LeNet-5 (28x28, 84 penultimate features)".into(),
        dataset: args.dataset.clone(),
        steps: args.steps,
        batch_size: args.batch_size,
        seed: args.seed,
        test_accuracy,
        test_images: test.len(),
        train_seconds,
    };
    save_json(&info, &args.out.join(INFO))?;
    println!(
        "LeNet on {}: {:.2}% of {} test images right after {} steps ({train_seconds:.0} s); wrote {}",
        args.dataset,
        100.0 * test_accuracy,
        test.len(),
        args.steps,
        args.out.display()
    );
    Ok(())
}

/// A trained classifier's network and what it was trained on.
pub fn load(dir: &Path) -> Result<(LeNet, ClassifierInfo)> {
    let text = diffuse_fs::read_to_string(&dir.join(INFO), diffuse_fs::Limit::CONFIG)
        .with_context(|| format!("{} is not a `diffuse classifier` folder", dir.display()))?;
    let info: ClassifierInfo = serde_json::from_str(&text)
        .with_context(|| format!("cannot parse {}", dir.join(INFO).display()))?;
    let device = crate::device::device();
    let model = load_weights(LeNet::new(CLASSES, &device), &dir.join(WEIGHTS))?;
    Ok((model, info))
}
