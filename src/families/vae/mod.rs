//! The latent-variable half of the ELBO family: the VAE (Kingma & Welling 2014; `--family vae`)
//! and the Markovian hierarchical VAE (`--family hvae`), one Rust family over the run config's
//! `[vae]` section, whose `levels` is 1 for a VAE. The network is a hierarchy of MLPs
//! (`diffuse_nn::vae::Hierarchy`; images flattened), trained on the negative ELBO with one
//! reparameterized draw per example (`diffuse_train::elbo::Elbo`, `diffuse_core::elbo`).
//!
//! Sampling: z_T ~ N(0, I), z_{t-1} ~ p(z_{t-1} | z_t), then p(x | z_1): a draw for points, the
//! decoder's mean for images (the usual picture of a VAE's samples).
//!
//! `eval --nll`: a VAE's `bits_per_dim` is the importance-weighted bound L_K (`--iwae-k K`,
//! default 100) with the ELBO beside it (`elbo_bits_per_dim`); an HVAE's is its ELBO, term by
//! term (reconstruction, prior matching, consistency).
//!
//! - `points` / `images` — the family on each kind of data: weights, pictures, sample

pub mod images;
pub mod points;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use diffuse_core::coef::randn;
use diffuse_core::elbo::{
    LatentHierarchy, Observation, elbo_terms, log_importance_weight, log_mean_exp, reparameterize,
    split_mean_log_scale,
};
use diffuse_nn::vae::Hierarchy;
use diffuse_train::elbo::flatten;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::args::{EvalArgs, Method};
use crate::config::{ModelConfig, RunConfig, VaeConfig};
use crate::families::bounds::{self, BoundReport, Examples, host};
use crate::progress;

/// The VAE and the Markovian HVAE (see the module docs).
pub struct Vae;

/// The run's `[vae]` section (a validated config of this family has one).
pub(crate) fn section(config: &RunConfig) -> Result<&VaeConfig> {
    config
        .vae
        .as_ref()
        .context("a vae or hvae run config has a [vae] section")
}

/// Coordinates of one example: the MLP's data_dim (points), C H W (images); and images' [C,
/// H, W].
fn example_shape(config: &RunConfig) -> Result<(usize, Option<[usize; 3]>)> {
    Ok(match &config.model {
        ModelConfig::Mlp(m) => (m.data_dim, None),
        ModelConfig::Unet(u) => {
            let size = u
                .sample_size
                .context("an image run's unet has a sample_size")?;
            (
                u.in_channels * size * size,
                Some([u.in_channels, size, size]),
            )
        }
    })
}

fn init(config: &RunConfig, device: &Device) -> Result<Hierarchy> {
    let (dim, image) = example_shape(config)?;
    Ok(section(config)?.hierarchy(dim, image).init(device)?)
}

fn objective<const D: usize>(config: &RunConfig) -> Result<diffuse_train::elbo::Elbo<D>> {
    let section = section(config)?;
    Ok(diffuse_train::elbo::Elbo::new(
        section.observation,
        section.kl_warmup,
    ))
}

fn describe(net: &Hierarchy) -> String {
    match net.levels() {
        1 => format!(
            "a {}-parameter VAE ({}-D latent)",
            net.num_params(),
            net.latent_dim()
        ),
        t => format!(
            "a {}-parameter hierarchical VAE ({t} levels of {}-D latents)",
            net.num_params(),
            net.latent_dim()
        ),
    }
}

/// Refuses drawing `n` examples that would not fit in memory.
pub fn check_sampling(config: &RunConfig, n: usize) -> Result<()> {
    let (dim, _) = example_shape(config)?;
    crate::memory::check_latent_sampling(dim, section(config)?.hidden_width, n)
}

/// Draws `n` examples [n, dims] from the model: z_T ~ N(0, I) down the chain (each level
/// sampled), then p(x | z_1), drawn (`draw_x`, Gaussian observations) or its mean. Also returns
/// the decoder's mean from each level t's z_t, decoded through the means of the levels below
/// (index t - 1): what each level holds.
pub fn generate(
    model: &Hierarchy,
    observation: Observation,
    n: usize,
    draw_x: bool,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> (Tensor<2>, Vec<Tensor<2>>) {
    let levels = model.levels();
    let mut z = randn(rng, [n, model.latent_dim()], device);
    let mut chain = vec![z.clone()];
    for t in (2..=levels).rev() {
        let (mean, logvar) = split_mean_log_scale(model.decode(t, z));
        let eps = randn(rng, mean.dims(), device);
        z = reparameterize(mean, logvar, eps);
        chain.push(z.clone());
    }
    let out = model.decode(1, z);
    let x = if draw_x && observation == Observation::Gaussian {
        let (mean, log_scale) = split_mean_log_scale(out);
        let eps = randn(rng, mean.dims(), device);
        mean + log_scale.exp() * eps
    } else {
        observation.mean(out)
    };
    // chain holds z_T .. z_1; decode each through the means below it.
    let per_level = chain
        .into_iter()
        .rev()
        .enumerate()
        .map(|(i, z)| decode_means(model, observation, i + 1, z))
        .collect();
    (x, per_level)
}

/// The encoder's means up the chain from x to level T: the top latent of x.
pub fn encode_means(model: &Hierarchy, x: Tensor<2>) -> Tensor<2> {
    (1..=model.levels()).fold(x, |below, t| model.encode(t, below).0)
}

/// The decoder's means down the chain from z at `level` to x.
pub fn decode_means(
    model: &Hierarchy,
    observation: Observation,
    level: usize,
    z: Tensor<2>,
) -> Tensor<2> {
    let z1 = (2..=level)
        .rev()
        .fold(z, |above, t| split_mean_log_scale(model.decode(t, above)).0);
    observation.mean(model.decode(1, z1))
}

/// The encoder's means up to the top and the decoder's means back: a reconstruction.
pub fn reconstruct(model: &Hierarchy, observation: Observation, x: Tensor<2>) -> Tensor<2> {
    decode_means(model, observation, model.levels(), encode_means(model, x))
}

/// `eval --nll` on a VAE or HVAE run (see the module docs).
pub fn nll(
    args: &EvalArgs,
    dir: &std::path::Path,
    config: &RunConfig,
    model: &Hierarchy,
) -> Result<()> {
    if args.method != Method::Vlb {
        bail!(
            "a {} run's likelihood is its variational bound: --method vlb",
            config.family.name()
        );
    }
    bounds::refuse_chain_flags(args)?;
    if args.t_samples.is_some() {
        bail!(
            "--t-samples applies to diffusion models' bounds; a {} run has no t",
            config.family.name()
        );
    }
    let observation = section(config)?.observation;
    let vae = model.levels() == 1;
    let k = match (vae, args.iwae_k) {
        (true, k) => k.unwrap_or(100),
        (false, None) => 0,
        (false, Some(_)) => bail!("--iwae-k applies to the vae family; an hvae reports its ELBO"),
    };
    if vae && k == 0 {
        bail!("--iwae-k must be at least 1");
    }
    let device = crate::device::device();
    let examples = Examples::of(args, config)?;
    let dims = examples.dims();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xE1B0);
    let names: Vec<String> = std::iter::once("reconstruction".to_string())
        .chain(std::iter::once("prior_matching".to_string()))
        .chain((1..model.levels()).map(|t| format!("consistency_{t}")))
        .collect();
    let mut terms: Vec<(String, Vec<f64>)> =
        names.iter().map(|n| (n.clone(), Vec::new())).collect();
    let (mut elbo, mut iwae) = (Vec::new(), Vec::new());
    let pb = progress::bar(examples.n, "bound");
    for x in examples.batches::<2>(args.batch_size, &device) {
        let x = observation.data(flatten(x));
        let m = x.dims()[0];
        let t = elbo_terms(model, x.clone(), observation, &mut rng);
        elbo.extend(host(t.total())?);
        let mut parts = vec![t.reconstruction, t.prior];
        parts.extend(t.consistency);
        for (slot, part) in terms.iter_mut().zip(parts) {
            slot.1.extend(host(part)?);
        }
        if k > 0 {
            let weights: Vec<Vec<f64>> = (0..k)
                .map(|_| {
                    host(log_importance_weight(
                        model,
                        x.clone(),
                        observation,
                        &mut rng,
                    ))
                })
                .collect::<Result<_>>()?;
            iwae.extend(log_mean_exp(&weights).into_iter().map(|l| -l));
        }
        pb.inc(m as u64);
    }
    pb.finish_and_clear();
    if let Some(bad) = elbo.iter().chain(&iwae).find(|v| !v.is_finite()) {
        bail!("the bound is {bad} on some example; the run's weights give no finite likelihood");
    }
    let (e_bits, e_ci, e_nats) = bounds::bits(&elbo, dims, examples.log_det);
    let mut extra = BTreeMap::new();
    let report = if k > 0 {
        let (bits, ci, nats) = bounds::bits(&iwae, dims, examples.log_det);
        extra.insert("iwae_k".into(), k.into());
        extra.insert("elbo_bits_per_dim".into(), e_bits.into());
        extra.insert("elbo_bits_per_dim_ci95".into(), serde_json::to_value(e_ci)?);
        extra.insert("elbo_nats".into(), e_nats.into());
        println!("ELBO: {e_bits:.4} bits/dim; IWAE (K = {k}) below:");
        BoundReport {
            examples: examples.n,
            dims,
            bound: "iwae".into(),
            bits_per_dim: bits,
            bits_per_dim_ci95: ci,
            nats,
            log_det_standardizer: examples.log_det,
            terms_bits_per_dim: bounds::term_bits(&terms, dims),
            extra,
        }
    } else {
        BoundReport {
            examples: examples.n,
            dims,
            bound: "elbo".into(),
            bits_per_dim: e_bits,
            bits_per_dim_ci95: e_ci,
            nats: e_nats,
            log_det_standardizer: examples.log_det,
            terms_bits_per_dim: bounds::term_bits(&terms, dims),
            extra,
        }
    };
    if observation == Observation::Bernoulli {
        println!(
            "note: a Bernoulli decoder's bound is on the binarized images (pixel > 127.5), not on their 8 bits"
        );
    }
    bounds::write(args, dir, &report)
}

/// `sample`'s flags that choose a diffusion sampler, refused on a VAE run: it draws from its
/// prior and decoder.
pub fn refuse_sampler_flags(choice: &crate::args::SolverChoice) -> Result<()> {
    if choice.sampler.is_some() || choice.steps.is_some() {
        bail!(
            "a vae or hvae run draws from its prior and decoder; --sampler and --steps apply to diffusion models"
        );
    }
    Ok(())
}
