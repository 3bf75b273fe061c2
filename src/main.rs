//! `diffuse`: train diffusion models and sample from them.

mod args;
mod autoencode;
mod axes;
mod classifier;
mod config;
mod convert;
mod device;
mod download;
mod eval;
mod eval_samples;
mod families;
mod fid;
mod figures;
mod kinds;
mod memory;
mod progress;
mod report;
mod run_dir;
mod run_files;
mod sample;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc instead of glibc malloc: glibc's mmap threshold makes large, short-lived tensor
// buffers expensive (benchmarks/README.md has the numbers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps freed pages instead of returning them to the OS after mimalloc's 10 ms `purge_delay`:
/// every step frees and allocates tensors of the same sizes again, and a returned page costs a
/// page fault and zeroing when it comes back (13% of a U-Net training step; benchmarks/README.md).
/// Memory stays at its peak.
fn keep_freed_pages() {
    use libmimalloc_sys::{mi_option_set, mi_option_use_numa_nodes};
    let purge_delay = mi_option_use_numa_nodes - 1; // just before it in mimalloc v2's and v3's option lists
    // SAFETY: reads and sets one integer option of the allocator; no memory is touched.
    unsafe {
        mi_option_set(purge_delay, -1);
    }
}

#[derive(Parser)]
#[command(
    name = "diffuse",
    version,
    about = "Diffusion models in Rust: DDPM, DDIM, Euler, Heun, DPM-Solver++, the probability-flow ODE and the reverse SDE, checked against diffusers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where tensors live: auto (the best backend this binary was built with: cuda, vulkan, wgpu,
    /// then cpu), cpu (burn-flex), or a GPU backend built in with its cargo feature.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    device: device::DeviceChoice,
}

#[derive(Subcommand)]
enum Command {
    /// Train a denoiser: on 2-D points (default: a swiss roll, about a minute on 2 cores) or on
    /// images (--dataset mnist, fashion_mnist, cifar10, folder).
    Train(train::TrainArgs),
    /// Draw samples from a trained run or a diffusers pipeline folder.
    Sample(sample::SampleArgs),
    /// Evaluate a trained run: --nll (the variational bound, or --method ode the exact
    /// likelihood) on held-out data; --samples FILE the distance of samples to the data.
    Eval(eval::EvalArgs),
    /// The Fréchet Inception Distance between two sets of images, or their statistics
    /// (pytorch-fid's)
    Fid(fid::FidArgs),
    /// The Inception Score of a set of images
    Is(fid::IsArgs),
    /// The Kernel Inception Distance between two sets of images
    Kid(fid::KidArgs),
    /// Latents of images through an autoencoder (a diffusers AutoencoderKL or VQModel folder,
    /// or a latent pipeline's): --in X.npy --out Z.npy [--logvar LV.npy]
    Encode(autoencode::EncodeArgs),
    /// Images of latents through an autoencoder's decoder: --in Z.npy --out X.npy
    Decode(autoencode::DecodeArgs),
    /// A diffusers pipeline or model folder written again with float16, bfloat16 or float32
    /// weights: --in DIR --out NEW --dtype float16
    Convert(convert::ConvertArgs),
    /// Train the LeNet whose features give FD_LeNet (`fid --classifier DIR`), on MNIST or
    /// Fashion-MNIST
    Classifier(classifier::ClassifierArgs),
}

/// Where runs go when `--out` is not given: `runs/<dataset>-<unix time>`.
pub fn default_run_dir(name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{name}-{secs}"))
}

fn main() -> ExitCode {
    // Die quietly when the reader of stdout goes away (`diffuse eval ... | head -1`), as Unix
    // tools do, instead of panicking on the failed write (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_pages();
    let cli = Cli::parse();
    // On a worker of the CPU kernels' thread pool (`diffuse_kernels::on_worker`).
    let result = diffuse_kernels::on_worker(|| {
        device::choose(cli.device).and_then(|()| match cli.command {
            Command::Train(args) => train::run(args),
            Command::Sample(args) => sample::run(args),
            Command::Eval(args) => eval::run(args),
            Command::Fid(args) => fid::run_fid(args),
            Command::Is(args) => fid::run_is(args),
            Command::Kid(args) => fid::run_kid(args),
            Command::Classifier(args) => classifier::run(args),
            Command::Encode(args) => autoencode::run_encode(args),
            Command::Decode(args) => autoencode::run_decode(args),
            Command::Convert(args) => convert::run(args),
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
