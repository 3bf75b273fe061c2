//! `diffuse convert`: a diffusers folder written again with its weights in float16, bfloat16 or
//! float32, as `model.to(dtype).save_pretrained(out)` writes it. The folder is loaded first (so
//! its configs and weights are checked against each other), each model's weights are written
//! from the loaded model in the new type, and its JSON files (`model_index.json`, each
//! `config.json`, `scheduler/scheduler_config.json`) are copied as they are.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use clap::Args;
use diffuse_diffusers::{Pipeline, WEIGHTS_FILE, WeightDtype, save_weights};
use diffuse_nn::autoencoder::{Autoencoder, KL_CLASS, VQ_CLASS};
use diffuse_nn::unet::Unet;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// A diffusers pipeline folder (model_index.json: DDPM, DDIM or LDMPipeline; a DDPM or latent
    /// run directory is one) or model folder (config.json: UNet2DModel, AutoencoderKL or
    /// VQModel), with weights of any float type.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The new folder; it must not exist yet (or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// The float type of the written weights.
    #[arg(long, value_enum, default_value = "float16")]
    pub dtype: DtypeArg,
}

/// `--dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    Float16,
    Bfloat16,
    Float32,
}

impl From<DtypeArg> for WeightDtype {
    fn from(d: DtypeArg) -> Self {
        match d {
            DtypeArg::Float16 => WeightDtype::Float16,
            DtypeArg::Bfloat16 => WeightDtype::Bfloat16,
            DtypeArg::Float32 => WeightDtype::Float32,
        }
    }
}

/// One model of the folder, loaded.
enum Component {
    Unet(Box<Unet>),
    Autoencoder(Box<Autoencoder>),
}

/// A folder, loaded: its models (each with its folder, relative) and the JSON files to copy
/// (relative paths).
struct Loaded {
    models: Vec<(PathBuf, Component)>,
    files: Vec<PathBuf>,
}

impl Component {
    fn save(&self, path: &Path, dtype: WeightDtype) -> Result<()> {
        match self {
            Component::Unet(m) => save_weights(path, m.as_ref(), dtype)?,
            Component::Autoencoder(m) => save_weights(path, m.as_ref(), dtype)?,
        }
        Ok(())
    }

    fn num_params(&self) -> usize {
        match self {
            Component::Unet(m) => m.num_params(),
            Component::Autoencoder(m) => m.num_params(),
        }
    }
}

/// The folder's models and JSON files.
fn load(dir: &Path) -> Result<Loaded> {
    let device = crate::device::device();
    if dir.join("model_index.json").is_file() {
        let pipeline = Pipeline::from_dir(dir, &device)
            .with_context(|| format!("cannot load the pipeline in {}", dir.display()))?;
        let mut models = vec![(
            PathBuf::from("unet"),
            Component::Unet(Box::new(pipeline.unet)),
        )];
        let mut files: Vec<PathBuf> = [
            "model_index.json",
            "unet/config.json",
            "scheduler/scheduler_config.json",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        if let Some(vqvae) = pipeline.vqvae {
            models.push((
                PathBuf::from("vqvae"),
                Component::Autoencoder(Box::new(vqvae.model)),
            ));
            files.push(PathBuf::from("vqvae/config.json"));
        }
        return Ok(Loaded { models, files });
    }
    let config = dir.join("config.json");
    if !config.is_file() {
        bail!(
            "{}: neither model_index.json (a pipeline folder) nor config.json (a model folder); an autoencoder run's model is its vae/, a latent run's its vqvae/",
            dir.display()
        );
    }
    let text = diffuse_fs::read_to_string(&config, diffuse_fs::Limit::CONFIG)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid JSON", config.display()))?;
    let class = json["_class_name"].as_str().unwrap_or("(missing)");
    let model = match class {
        "UNet2DModel" => Component::Unet(Box::new(Unet::from_diffusers_dir(dir, &device)?.1)),
        KL_CLASS | VQ_CLASS => {
            Component::Autoencoder(Box::new(Autoencoder::from_diffusers_dir(dir, &device)?.1))
        }
        other => bail!(
            "{}: _class_name is {other}; diffuse converts UNet2DModel, {KL_CLASS} and {VQ_CLASS} folders and their pipelines",
            config.display()
        ),
    };
    Ok(Loaded {
        models: vec![(PathBuf::new(), model)],
        files: vec![PathBuf::from("config.json")],
    })
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let out = &args.out;
    if out.exists() {
        let empty = out.is_dir() && std::fs::read_dir(out)?.next().is_none();
        if !empty {
            bail!(
                "{} exists; convert writes a new folder (remove it, or choose another --out)",
                out.display()
            );
        }
    }
    if std::path::absolute(&args.input)? == std::path::absolute(out)? {
        bail!("--out is --in; convert writes a new folder");
    }
    let Loaded { models, files } = load(&args.input)?;
    // Built beside --out and renamed into place: a failure leaves no half-written folder.
    let parent = std::path::absolute(out)?
        .parent()
        .map(Path::to_path_buf)
        .context("--out has no parent folder")?;
    std::fs::create_dir_all(&parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = (|| -> Result<usize> {
        let dtype = WeightDtype::from(args.dtype);
        let mut params = 0;
        for file in &files {
            let to = tmp.join(file);
            if let Some(folder) = to.parent() {
                std::fs::create_dir_all(folder)?;
            }
            let bytes = diffuse_fs::read(&args.input.join(file), diffuse_fs::Limit::CONFIG)?;
            diffuse_fs::write(&to, &bytes)?;
        }
        for (folder, model) in &models {
            std::fs::create_dir_all(tmp.join(folder))?;
            model.save(&tmp.join(folder).join(WEIGHTS_FILE), dtype)?;
            params += model.num_params();
        }
        Ok(params)
    })();
    let params = match written {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if out.exists() {
        std::fs::remove_dir(out)?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot move the new folder to {}", out.display()))?;
    eprintln!(
        "wrote {} ({} model{}, {params} parameters, {})",
        out.display(),
        models.len(),
        if models.len() == 1 { "" } else { "s" },
        WeightDtype::from(args.dtype).name()
    );
    Ok(())
}
