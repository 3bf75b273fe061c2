//! `diffuse fid`, `diffuse is` and `diffuse kid`: FID, the Inception Score and KID as
//! pytorch-fid (`python -m pytorch_fid`) and the original Inception Score code compute them,
//! on pytorch-fid's Inception network (`diffuse_nn::inception`), read from the file pytorch-fid
//! downloads.

pub mod eval;
pub mod inputs;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use diffuse_eval::frechet::{Moments, frechet_distance_of};
use diffuse_nn::inception::{Dims, Inception, WEIGHTS_FILE, WEIGHTS_SHA256, WEIGHTS_URL};
use inputs::{Extractor, Images, Input, moments, run_network};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// The network's file and how many images go through it at once.
#[derive(Args, Debug, Clone)]
pub struct NetworkArgs {
    /// pytorch-fid's Inception weights, `pt_inception-2015-12-05-6726825d.pth` (or a
    /// safetensors file of the same tensors).
    #[arg(long, value_name = "FILE")]
    pub inception: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    /// Where a dataset split's files are (default data/<dataset>).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `diffuse fid PATH_A PATH_B`: the Fréchet Inception Distance. Each PATH is a folder of
/// PNG/JPEG images, a .npy of samples in [-1, 1] ([N, C, H, W]), a dataset split
/// (`mnist:test`, `cifar10:train`, ...) or an .npz of statistics (`mu`, `sigma`).
/// `--save-stats PATH OUT.npz` writes PATH's statistics instead, as pytorch-fid's.
#[derive(Args, Debug)]
pub struct FidArgs {
    /// Two inputs to compare; with --save-stats, the input and the .npz to write.
    #[arg(num_args = 2, value_names = ["PATH_A", "PATH_B"], required = true)]
    pub paths: Vec<String>,
    /// Write the first path's statistics (mu, sigma) to the second, an .npz.
    #[arg(long)]
    pub save_stats: bool,
    /// Feature width: 64, 192, 768 (earlier blocks of the network) or 2048 (pool3, the FID).
    #[arg(long, default_value_t = 2048)]
    pub dims: usize,
    /// Instead of Inception, the features of a `diffuse classifier` folder's LeNet (28 x 28
    /// images): prints FD_LeNet, the Fréchet distance of those 84 features.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["inception", "dims"])]
    pub classifier: Option<PathBuf>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// `diffuse is PATH`: the Inception Score (Salimans et al. 2016) of the images at PATH.
#[derive(Args, Debug)]
pub struct IsArgs {
    pub path: String,
    /// Parts the images are split into; the score is the mean and standard deviation over them.
    #[arg(long, default_value_t = 10)]
    pub splits: usize,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// `diffuse kid PATH_A PATH_B`: the Kernel Inception Distance (Bińkowski et al. 2018), the
/// unbiased polynomial-kernel MMD over random subsets, for small sets where FID is biased.
#[derive(Args, Debug)]
pub struct KidArgs {
    #[arg(num_args = 2, value_names = ["PATH_A", "PATH_B"], required = true)]
    pub paths: Vec<String>,
    #[arg(long, default_value_t = 2048)]
    pub dims: usize,
    /// Random subsets the estimate is averaged over.
    #[arg(long, default_value_t = 100)]
    pub subsets: usize,
    /// Images of each set in a subset (at most the smaller set's size).
    #[arg(long, default_value_t = 1000)]
    pub subset_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// Reads the network, saying where to get it when the flag is missing, and whether the file
/// is pytorch-fid's published one.
pub fn load_network(args: &NetworkArgs) -> Result<Inception> {
    load_network_and_digest(args).map(|(net, _)| net)
}

/// [`load_network`], and the file's SHA-256 (hex).
pub fn load_network_and_digest(args: &NetworkArgs) -> Result<(Inception, String)> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let Some(path) = &args.inception else {
        bail!(
            "this needs pytorch-fid's Inception weights: download {WEIGHTS_FILE} from {WEIGHTS_URL} (SHA-256 {WEIGHTS_SHA256}, as torch-fidelity publishes the same weights; pytorch-fid keeps its copy in ~/.cache/torch/hub/checkpoints/) and pass --inception FILE"
        );
    };
    let digest = sha256(path)?;
    if digest != WEIGHTS_SHA256 {
        eprintln!(
            "note: {} has SHA-256 {digest}, not the published weights' ({WEIGHTS_SHA256}); its values compare only with values from the same weights",
            path.display()
        );
    }
    Ok((Inception::load(path, &crate::device::device())?, digest))
}

fn sha256(path: &Path) -> Result<String> {
    let (mut file, _) = diffuse_fs::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The Fréchet distance of two fits, as an error when its eigenvalue iteration fails.
pub fn frechet(a: &Moments, b: &Moments) -> Result<f64> {
    frechet_distance_of(a, b)
        .map_err(|e| anyhow::anyhow!("the eigenvalue iteration did not converge at {}", e.index))
}

fn dims(width: usize) -> Result<Dims> {
    Dims::from_width(width).with_context(|| {
        format!("--dims {width}: pytorch-fid's network gives 64, 192, 768 or 2048 features")
    })
}

/// The feature extractor `args` name: a classifier folder's LeNet, or Inception (loaded only
/// when some input is images).
fn extractor(args: &FidArgs, inputs: &[Input]) -> Result<Option<Extractor>> {
    if inputs.iter().all(|i| matches!(i, Input::Stats(_))) {
        return Ok(None);
    }
    if let Some(dir) = &args.classifier {
        let (net, info) = crate::classifier::load(dir)?;
        eprintln!(
            "FD_LeNet with the LeNet of {} ({} test accuracy {:.2}%)",
            dir.display(),
            info.dataset,
            100.0 * info.test_accuracy
        );
        return Ok(Some(Extractor::LeNet(Box::new(net))));
    }
    Ok(Some(Extractor::Inception(
        Box::new(load_network(&args.network)?),
        dims(args.dims)?,
    )))
}

pub fn run_fid(args: FidArgs) -> Result<()> {
    let width = match args.classifier {
        Some(_) => diffuse_nn::lenet::LENET_FEATURES,
        None => dims(args.dims)?.width(),
    };
    let inputs: Vec<Input> = args
        .paths
        .iter()
        .map(|p| Input::parse(p))
        .collect::<Result<_>>()?;
    let data_dir = args.network.data_dir.as_deref();
    if args.network.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let batch = args.network.batch_size;
    if args.save_stats {
        let out = Path::new(&args.paths[1]);
        if matches!(inputs[0], Input::Stats(_)) {
            bail!(
                "--save-stats reads images; {} is already statistics",
                args.paths[0]
            );
        }
        let ex = extractor(&args, &inputs[..1])?;
        let m = moments(&inputs[0], ex.as_ref(), width, batch, data_dir)?;
        inputs::write_stats(out, &m)?;
        println!(
            "Saved statistics of {} images to {}",
            m.count,
            out.display()
        );
        return Ok(());
    }
    let ex = extractor(&args, &inputs)?;
    let a = moments(&inputs[0], ex.as_ref(), width, batch, data_dir)?;
    let b = moments(&inputs[1], ex.as_ref(), width, batch, data_dir)?;
    let distance = frechet(&a, &b)?;
    // Two statistics files need no network; --classifier still says what they measure.
    let label = match args.classifier {
        Some(_) => "FD_LeNet",
        None => "FID",
    };
    println!("{label}: {distance}");
    Ok(())
}

pub fn run_is(args: IsArgs) -> Result<()> {
    let input = Input::parse(&args.path)?;
    let net = load_network(&args.network)?;
    let images = Images::open(&input, args.network.data_dir.as_deref())?;
    if args.splits == 0 || args.splits > images.len() {
        bail!(
            "--splits must be between 1 and the number of images ({})",
            images.len()
        );
    }
    let (_, logits) = run_network(&net, &images, None, true, args.network.batch_size, "logits")?;
    let (mean, std) = diffuse_eval::scores::inception_score(&logits, 1008, args.splits);
    println!("IS: {mean} ± {std}");
    Ok(())
}

pub fn run_kid(args: KidArgs) -> Result<()> {
    let dims = dims(args.dims)?;
    if args.subsets == 0 {
        bail!("--subsets must be at least 1");
    }
    let net = load_network(&args.network)?;
    let mut features = Vec::new();
    for path in &args.paths {
        let images = Images::open(&Input::parse(path)?, args.network.data_dir.as_deref())?;
        let (f, _) = run_network(
            &net,
            &images,
            Some(dims),
            false,
            args.network.batch_size,
            "features",
        )?;
        features.push(f);
    }
    let width = dims.width();
    let smaller = features.iter().map(|f| f.len() / width).min().unwrap_or(0);
    if smaller < 2 {
        bail!("KID needs at least 2 images in each set");
    }
    let size = args.subset_size.min(smaller);
    if size < args.subset_size {
        eprintln!(
            "note: subsets of {size} images (the smaller set), not {}",
            args.subset_size
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let (mean, std) = diffuse_eval::scores::kid(
        &features[0],
        &features[1],
        width,
        args.subsets,
        size,
        &mut rng,
    );
    println!("KID: {mean} ± {std}");
    Ok(())
}
