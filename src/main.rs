//! `diffuse`: train diffusion models and sample from them.

mod config;
mod data;
mod download;
mod eval;
mod eval_ode;
mod eval_samples;
mod images;
mod memory;
mod points;
mod progress;
mod run_dir;
mod sample;
mod solvers;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc instead of glibc malloc: glibc's mmap threshold makes large, short-lived tensor
// buffers expensive (benchmarks/README.md has the numbers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "diffuse",
    version,
    about = "Diffusion models in Rust: DDPM, DDIM, Euler, Heun, DPM-Solver++, the probability-flow ODE and the reverse SDE, checked against diffusers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
