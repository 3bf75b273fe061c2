//! What the ELBO family's `eval --nll` shares: the examples a bound is evaluated on and the
//! report it writes (`nll.json`, or `nll_data.json` with `--data`), with the fields of DDPM's:
//! `bits_per_dim` (the family's bound), its 95% interval over the examples, the mean nats and
//! the standardization's log-determinant for 2-D runs, and each term in bits/dim.
//!
//! - 2-D runs: the run's held-out points or `--data`, in model space; a density in the data's
//!   own units, so sum_d ln std_d of the standardization is added to every example's nats.
//! - Image runs: the first `--n` (default 100) test images, 8-bit, bounds on the discrete data.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};
use diffuse_data::images::to_model_space;
use diffuse_eval::metrics::mean_and_ci95;
use diffuse_train::checkpoint::save_json;
use serde::Serialize;

use crate::args::{EvalArgs, stem};
use crate::axes::KindName;
use crate::config::RunConfig;
use crate::families::interval;
use crate::kinds::points::evaluation_points;

/// The examples of an evaluation, in model space.
pub struct Examples {
    pub data: Vec<f32>,
    /// One example's shape.
    pub shape: Vec<usize>,
    pub n: usize,
    /// 2-D runs: sum_d ln std_d of the standardization (0 for images).
    pub log_det: f64,
}

impl Examples {
    /// The run's evaluation examples (see the module docs).
    pub fn of(args: &EvalArgs, config: &RunConfig) -> Result<Self> {
        match config.kind() {
            KindName::Points => {
                let (held, log_det) = evaluation_points(config, args.data.as_deref())?;
                let n = args.n.unwrap_or(held.len()).min(held.len());
                Ok(Self {
                    data: held.data[..n * held.dim].to_vec(),
                    shape: vec![held.dim],
                    n,
                    log_det,
                })
            }
            KindName::Images => {
                if args.data.is_some() {
                    anyhow::bail!(
                        "--data applies to 2-D runs; an image run evaluates its dataset's test split"
                    );
                }
                let test = crate::kinds::images::load_images(config, diffuse_data::Split::Test)?;
                let n = args.n.unwrap_or(100).min(test.len());
                Ok(Self {
                    data: test.pixels[..n * test.image_size()]
                        .iter()
                        .map(|&v| to_model_space(v))
                        .collect(),
                    shape: vec![test.channels, test.height, test.width],
                    n,
                    log_det: 0.0,
                })
            }
        }
    }

    pub fn dims(&self) -> usize {
        self.shape.iter().product()
    }

    /// Batches of at most `size` examples, as tensors of rank D (rank 2: flattened).
    pub fn batches<const D: usize>(
        &self,
        size: usize,
        device: &Device,
    ) -> impl Iterator<Item = Tensor<D>> + '_ {
        let per = self.dims();
        let device = device.clone();
        (0..self.n).step_by(size.max(1)).map(move |start| {
            let m = size.max(1).min(self.n - start);
            let mut shape = [0usize; D];
            shape[0] = m;
            if D == 2 {
                shape[1] = per;
            } else {
                shape[1..].copy_from_slice(&self.shape);
            }
            Tensor::from_data(
                TensorData::new(self.data[start * per..(start + m) * per].to_vec(), shape),
                &device,
            )
        })
    }
}

/// The file `eval --nll` writes for an ELBO-family run.
#[derive(Serialize)]
pub struct BoundReport {
    pub examples: usize,
    pub dims: usize,
    /// Which bound `bits_per_dim` is: "iwae", "elbo", "vdm_continuous" or "vdm_discrete".
    pub bound: String,
    pub bits_per_dim: f64,
    pub bits_per_dim_ci95: Option<f64>,
    /// Mean bound in nats per example (the data's units for 2-D runs).
    pub nats: f64,
    /// 2-D runs: sum_d ln std_d of the standardization, in every example's nats.
    pub log_det_standardizer: f64,
    /// Each term's mean in bits/dim (model space).
    pub terms_bits_per_dim: BTreeMap<String, f64>,
    /// What else the family measured (the VAE's ELBO beside its IWAE bound, K, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Mean bits/dim and its 95% interval of per-example nats (model space) plus `log_det`.
pub fn bits(nats: &[f64], dims: usize, log_det: f64) -> (f64, Option<f64>, f64) {
    let scale = 1.0 / (dims as f64 * std::f64::consts::LN_2);
    let per: Vec<f64> = nats.iter().map(|n| (n + log_det) * scale).collect();
    let (mean, ci) = mean_and_ci95(&per);
    (mean, ci, mean / scale)
}

/// The mean of each term in bits/dim.
pub fn term_bits(terms: &[(String, Vec<f64>)], dims: usize) -> BTreeMap<String, f64> {
    terms
        .iter()
        .map(|(name, v)| {
            let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
            (
                name.clone(),
                diffuse_core::gaussian::bits_per_dim(mean, dims),
            )
        })
        .collect()
}

/// Writes the report and prints its summary.
pub fn write(args: &EvalArgs, dir: &Path, r: &BoundReport) -> Result<()> {
    println!(
        "NLL bound ({}): {:.4} {})",
        r.bound,
        r.bits_per_dim,
        interval(r.bits_per_dim_ci95, r.examples)
    );
    for (term, bits) in &r.terms_bits_per_dim {
        println!("  {term}: {bits:.4} bits/dim");
    }
    let path = dir.join(format!("{}.json", stem(args)));
    save_json(r, &path)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `eval --nll` flags of DDPM's chain and of the ODE, refused by the ELBO family's bounds.
pub fn refuse_chain_flags(args: &EvalArgs) -> Result<()> {
    if args.clip_x0.is_some() {
        anyhow::bail!(
            "--clip-x0 applies to DDPM's bound; this family's bound has no x_0 estimate to clamp"
        );
    }
    if args.method == crate::args::Method::Vlb && (args.rtol.is_some() || args.atol.is_some()) {
        anyhow::bail!("--rtol and --atol apply to --method ode");
    }
    Ok(())
}

/// A [B] tensor's values on the host, in f64.
pub fn host(x: Tensor<1>) -> Result<Vec<f64>> {
    x.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}
