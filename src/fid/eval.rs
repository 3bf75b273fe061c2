//! `diffuse eval --run DIR --fid`: draws `--n` images from an image run with its family's
//! default sampler (`diffuse sample`'s, kept as `fid_samples_N_seedS.npy` and reused), scores
//! them against as many images of the run's dataset's training split (all of it when it has no
//! more; otherwise a subset drawn with seed 0, the same for every run: "FID-N") whose
//! statistics are computed once and cached beside the data as pytorch-fid's `--save-stats`
//! writes them, and by the Inception Score; writes `fid.json`, with the two figures also added
//! to `metrics.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use diffuse_data::Split;
use diffuse_eval::frechet::Moments;
use diffuse_nn::inception::Dims;
use serde_json::{Value, json};

use super::inputs::{Images, read_stats, run_network};
use super::{NetworkArgs, load_network_and_digest};
use crate::args::EvalArgs;
use crate::kinds::KindName;

/// Images a `--fid` evaluation draws when `--n` is not given.
pub const DEFAULT_FID_IMAGES: usize = 10_000;
/// Images per forward pass of the Inception network (pytorch-fid's default).
const INCEPTION_BATCH: usize = 50;
/// Splits of the Inception Score (the original code's).
const IS_SPLITS: usize = 10;

/// `diffuse sample`'s flags, parsed as the command line would give them.
#[derive(Parser)]
struct SampleCommand {
    #[command(flatten)]
    args: crate::args::SampleArgs,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let dir = &args.run;
    let (_, kind, config) = crate::sample::resolve(dir)?;
    if kind != KindName::Images {
        bail!("--fid scores image runs; for a 2-D run, `eval --samples FILE` compares points");
    }
    let Some(config) = config else {
        bail!(
            "{} is a diffusers pipeline folder, not a diffuse run: --fid needs the run's dataset (diffuse_config.json); use `diffuse sample` then `diffuse fid`",
            dir.display()
        );
    };
    let n = args.n.unwrap_or(DEFAULT_FID_IMAGES);
    if n < 2 {
        bail!("--n must be at least 2 (a covariance needs two images)");
    }
    // The network first: a missing or wrong file is found before any sampling.
    let network = NetworkArgs {
        inception: args.inception.clone(),
        batch_size: INCEPTION_BATCH,
        data_dir: None,
    };
    let (net, sha) = load_network_and_digest(&network)?;

    // The sampler's flags, as `diffuse sample` takes them, and a file name that tells them.
    let mut flags: Vec<String> = Vec::new();
    let mut tag = String::new();
    if let Some(sampler) = args.sampler {
        let name = clap::ValueEnum::to_possible_value(&sampler)
            .expect("every sampler has a name")
            .get_name()
            .to_string();
        tag.push_str(&format!("_{name}"));
        flags.extend(["--sampler".into(), name]);
    }
    if let Some(steps) = args.steps {
        tag.push_str(&format!("_{steps}steps"));
        flags.extend(["--steps".into(), steps.to_string()]);
    }
    for (flag, value) in [("--rtol", args.rtol), ("--atol", args.atol)] {
        if let Some(v) = value {
            tag.push_str(&format!("_{}{v}", &flag[2..]));
            flags.extend([flag.into(), v.to_string()]);
        }
    }
    let samples = dir.join(format!("fid_samples_{n}_seed{}{tag}.npy", args.seed));
    let input = super::inputs::Input::Samples(samples.clone());
    // Samples of this count already drawn are read once, and reused.
    let kept = Images::open(&input, None).ok().filter(|i| i.len() == n);
    let images = match kept {
        Some(images) => {
            eprintln!("reusing {} ({n} samples)", samples.display());
            images
        }
        None => {
            // A file of another count (an interrupted draw is never left: files are written
            // whole).
            if samples.exists() {
                std::fs::remove_file(&samples)?;
            }
            let (d, s) = (dir.to_string_lossy(), samples.to_string_lossy());
            let (n_text, seed) = (n.to_string(), args.seed.to_string());
            let mut argv: Vec<String> = [
                "sample", "--run", &d, "--n", &n_text, "--seed", &seed, "--out", &s,
            ]
            .map(String::from)
            .to_vec();
            argv.extend(flags);
            crate::sample::draw(&SampleCommand::try_parse_from(argv)?.args, dir)?;
            Images::open(&input, None)?
        }
    };
    let (features, logits) = run_network(
        &net,
        &images,
        Some(Dims::D2048),
        true,
        INCEPTION_BATCH,
        "samples through Inception",
    )?;
    let sample_moments = Moments::of(&features, 2048);
    let (is_mean, is_std) = diffuse_eval::scores::inception_score(&logits, 1008, IS_SPLITS.min(n));

    let (reference, train_images) = reference_moments(&config, &net, &sha, n)?;
    let fid = super::frechet(&sample_moments, &reference)?;
    let dataset = config.data.dataset.clone();
    let report = json!({
        "fid": fid,
        "inception_score": is_mean,
        "inception_score_std": is_std,
        "inception_score_splits": IS_SPLITS.min(n),
        "samples": samples.file_name().map(|f| f.to_string_lossy().to_string()),
        "n": n,
        "seed": args.seed,
        "reference": format!("{dataset} training split, {train_images} images (seed 0)"),
        "inception_sha256": sha,
    });
    let text = serde_json::to_string_pretty(&report)?;
    diffuse_fs::write(&dir.join("fid.json"), text.as_bytes())?;
    add_to_metrics(dir, &report)?;
    println!("FID against the {dataset} training split ({n} samples): {fid:.4}");
    println!("IS: {is_mean} ± {is_std}");
    Ok(())
}

/// The statistics of `count` training images (all when the split has no more; else a subset
/// drawn with seed 0): from the cache beside the data when it is there (made with the same
/// network file), computed and cached otherwise.
fn reference_moments(
    config: &crate::config::RunConfig,
    net: &diffuse_nn::inception::Inception,
    sha: &str,
    count: usize,
) -> Result<(Moments, usize)> {
    let data_dir = config.data.image_dir()?;
    let size = config.image_shape()?.1;
    let train = crate::kinds::images::load_images(config, Split::Train)?;
    let total = train.len();
    let n = count.min(total);
    let cache: PathBuf = data_dir.join(format!(
        "fid_stats_{}_train_{n}of{total}_{size}px_{}.npz",
        config.data.dataset,
        &sha[..16]
    ));
    if cache.is_file() {
        let m = read_stats(&cache, 2048)?;
        eprintln!("reference statistics from {}", cache.display());
        return Ok((m, n));
    }
    let images = Images::subset_of(&train, n);
    let (features, _) = run_network(
        net,
        &images,
        Some(Dims::D2048),
        false,
        INCEPTION_BATCH,
        "training split through Inception",
    )?;
    let m = Moments::of(&features, 2048);
    match super::inputs::write_stats(&cache, &m) {
        Ok(()) => eprintln!("cached the reference statistics in {}", cache.display()),
        Err(e) => eprintln!("note: could not cache the reference statistics: {e}"),
    }
    Ok((m, n))
}

/// Adds the FID and IS to the run's `metrics.json` (a finished run has one).
fn add_to_metrics(dir: &Path, report: &Value) -> Result<()> {
    let path = dir.join("metrics.json");
    let Ok(text) = diffuse_fs::read_to_string(&path, diffuse_fs::Limit::CONFIG) else {
        return Ok(());
    };
    let mut metrics: Value =
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    if let Some(object) = metrics.as_object_mut() {
        for key in ["fid", "inception_score", "inception_score_std"] {
            object.insert(key.into(), report[key].clone());
        }
        object.insert("fid_samples".into(), report["n"].clone());
    }
    diffuse_fs::write(&path, serde_json::to_string_pretty(&metrics)?.as_bytes())?;
    Ok(())
}
