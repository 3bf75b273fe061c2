//! Loading and saving diffusers pipeline folders (`DDPMPipeline` / `DDIMPipeline` layout, and
//! `LDMPipeline`'s, which adds the autoencoder whose latent space the U-Net works in):
//!
//! ```text
//! DIR/model_index.json                            {"_class_name": "DDIMPipeline", "unet": [...], "scheduler": [...]}
//! DIR/unet/config.json                            UNet2DModel config
//! DIR/unet/diffusion_pytorch_model.safetensors    weights by diffusers' names, PyTorch layouts
//! DIR/scheduler/scheduler_config.json             DDPMScheduler or DDIMScheduler config
//! DIR/vqvae/config.json                           LDMPipeline only: VQModel or AutoencoderKL config
//! DIR/vqvae/diffusion_pytorch_model.safetensors   and its weights
//! ```
//!
//! Every file is written to a temporary name and renamed into place.

use std::path::Path;

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use serde_json::{Value, json};

use super::scheduler::{DIFFUSERS_VERSION, SchedulerClass, SchedulerConfig};
use crate::dtype::WeightDtype;
use crate::error::DiffusersError;
use diffuse_nn::autoencoder::{Autoencoder, AutoencoderConfig, KL_CLASS, VQ_CLASS};
use diffuse_nn::unet::{Unet, UnetConfig};

/// A loaded pipeline folder: the U-Net, its scheduler config, and for an `LDMPipeline` the
/// autoencoder whose latents the U-Net denoises.
pub struct Pipeline {
    pub unet_config: UnetConfig,
    pub unet: Unet,
    pub scheduler: SchedulerConfig,
    pub vqvae: Option<Vqvae>,
}

/// An `LDMPipeline`'s `vqvae/` (a `VQModel`, or an `AutoencoderKL` as diffuse's latent runs
/// write).
pub struct Vqvae {
    pub config: AutoencoderConfig,
    pub model: Autoencoder,
}

const PIPELINE_CLASSES: [&str; 3] = ["DDPMPipeline", "DDIMPipeline", "LDMPipeline"];
const LATENT_PIPELINE: &str = "LDMPipeline";

fn read(path: &Path) -> Result<String, DiffusersError> {
    Ok(diffuse_fs::read_to_string(path, diffuse_fs::Limit::CONFIG)?)
}

/// Checks `model_index.json`: a DDPM/DDIM pipeline whose `unet` is a `UNet2DModel` and whose
/// `scheduler` is a DDPM or DDIM scheduler, or an `LDMPipeline` with those and a `vqvae` that is
/// a `VQModel` or an `AutoencoderKL`. Returns whether it is latent (an `LDMPipeline`).
fn check_model_index(path: &Path) -> Result<bool, DiffusersError> {
    let err = |reason: String| DiffusersError::Pipeline {
        path: path.into(),
        reason,
    };
    if !path.exists() {
        return Err(err(
            "not found: a diffusers pipeline folder has model_index.json, unet/ and scheduler/"
                .into(),
        ));
    }
    let index: Value =
        serde_json::from_str(&read(path)?).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let class = index["_class_name"].as_str().unwrap_or("(missing)");
    if !PIPELINE_CLASSES.contains(&class) {
        return Err(err(format!(
            "_class_name is {class}; diffuse loads {}",
            PIPELINE_CLASSES.join(" and ")
        )));
    }
    let component = |name: &str| index[name][1].as_str().unwrap_or("(missing)").to_string();
    let unet = component("unet");
    if unet != "UNet2DModel" {
        return Err(err(format!("unet is {unet}; diffuse loads UNet2DModel")));
    }
    let scheduler = component("scheduler");
    if scheduler != "DDPMScheduler" && scheduler != "DDIMScheduler" {
        return Err(err(format!(
            "scheduler is {scheduler}; diffuse loads DDPMScheduler and DDIMScheduler"
        )));
    }
    let latent = class == LATENT_PIPELINE;
    if latent {
        let vqvae = component("vqvae");
        if vqvae != VQ_CLASS && vqvae != KL_CLASS {
            return Err(err(format!(
                "vqvae is {vqvae}; diffuse loads {VQ_CLASS} and {KL_CLASS}"
            )));
        }
    }
    Ok(latent)
}

impl Pipeline {
    /// Loads a pipeline folder onto `device`.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, DiffusersError> {
        let latent = check_model_index(&dir.join("model_index.json"))?;
        let scheduler_path = dir.join("scheduler").join("scheduler_config.json");
        let scheduler = SchedulerConfig::from_json(&read(&scheduler_path)?).map_err(|e| {
            DiffusersError::Pipeline {
                path: scheduler_path,
                reason: e.to_string(),
            }
        })?;
        let (unet_config, unet) = Unet::from_diffusers_dir(&dir.join("unet"), device)?;
        let vqvae = if latent {
            let vqvae = Vqvae::from_dir(&dir.join("vqvae"), device)?;
            let channels = vqvae.config.diffusion_channels();
            // Twice the channels out: a learned variance (improved DDPM).
            let out = unet_config.out_channels;
            if unet_config.in_channels != channels || (out != channels && out != 2 * channels) {
                return Err(DiffusersError::Pipeline {
                    path: dir.join("unet").join("config.json"),
                    reason: format!(
                        "the U-Net takes {} and gives {out} channels, but vqvae/'s latents have {channels}",
                        unet_config.in_channels
                    ),
                });
            }
            Some(vqvae)
        } else {
            None
        };
        Ok(Self {
            unet_config,
            unet,
            scheduler,
            vqvae,
        })
    }

    /// The pipeline's images from what its sampler returned: those samples themselves, or for an
    /// `LDMPipeline` the decoder's image of the latents divided by `scaling_factor` (as diffusers'
    /// `LDMPipeline`, which reads no `shift_factor`), before any clamp; decoded `batch` at a time.
    pub fn images(&self, samples: Tensor<4>, batch: usize) -> Tensor<4> {
        match &self.vqvae {
            Some(v) => v.images(samples, batch),
            None => samples,
        }
    }
}

impl Vqvae {
    /// Loads a diffusers autoencoder folder.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, DiffusersError> {
        let (config, model) = Autoencoder::from_diffusers_dir(dir, device)?;
        Ok(Self { config, model })
    }

    /// The decoder's images of scaled latents (divided by `scaling_factor` first), `batch` at a
    /// time, before any clamp.
    pub fn images(&self, latents: Tensor<4>, batch: usize) -> Tensor<4> {
        let latents = latents.div_scalar(self.config.coder.scaling_factor as f32);
        let n = latents.dims()[0];
        let batch = batch.max(1);
        let parts = (0..n)
            .step_by(batch)
            .map(|start| {
                self.model
                    .decode(latents.clone().narrow(0, start, batch.min(n - start)))
            })
            .collect();
        Tensor::cat(parts, 0)
    }
}

fn write_err(path: &Path, e: impl ToString) -> DiffusersError {
    DiffusersError::Pipeline {
        path: path.into(),
        reason: format!("cannot write: {}", e.to_string()),
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), DiffusersError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| write_err(path, e))?;
    Ok(diffuse_fs::write(path, (text + "\n").as_bytes())?)
}

/// Writes a diffusers model folder: `dir/config.json` and `dir/diffusion_pytorch_model.safetensors`
/// (PyTorch layouts and names), each atomically. The same weights give the same bytes (one
/// metadata entry, `format: pt`, as diffusers writes).
pub fn save_unet(dir: &Path, config: &UnetConfig, unet: &Unet) -> Result<(), DiffusersError> {
    let mut config_json = serde_json::to_value(config).map_err(|e| write_err(dir, e))?;
    config_json["_class_name"] = json!("UNet2DModel");
    config_json["_diffusers_version"] = json!(DIFFUSERS_VERSION);
    save_model(dir, &config_json, unet)
}

/// Writes an autoencoder's diffusers model folder (as [`save_unet`]): what
/// `AutoencoderKL.from_pretrained(dir)` or `VQModel.from_pretrained(dir)` loads.
pub fn save_autoencoder(
    dir: &Path,
    config: &AutoencoderConfig,
    model: &Autoencoder,
) -> Result<(), DiffusersError> {
    save_model(dir, &config.to_json(DIFFUSERS_VERSION), model)
}

fn save_model<M: Module>(dir: &Path, config_json: &Value, model: &M) -> Result<(), DiffusersError> {
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    save_weights(&dir.join(WEIGHTS_FILE), model, WeightDtype::Float32)?;
    write_json(&dir.join("config.json"), config_json)
}

/// The weights file of a diffusers model folder.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// Writes `model`'s weights as a diffusers weights file (PyTorch layouts and names, one metadata
/// entry, `format: pt`) in `dtype`, atomically. The same weights give the same bytes.
pub fn save_weights<M: Module>(
    path: &Path,
    model: &M,
    dtype: WeightDtype,
) -> Result<(), DiffusersError> {
    // In memory, then written as any other file: burn's own file writer leaves mode 0600, and
    // its default metadata (several keys in hash-map order) would change the bytes run to run.
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .clear_metadata()
        .metadata("format", "pt");
    model
        .clone()
        .save_into(&mut store)
        .map_err(|e| write_err(path, e))?;
    let bytes = store.get_bytes().map_err(|e| write_err(path, e))?;
    let bytes = crate::dtype::cast(bytes, dtype).map_err(|e| write_err(path, e))?;
    Ok(diffuse_fs::write(path, &bytes)?)
}

/// Writes a whole pipeline folder (see the module docs) that diffusers'
/// `DDIMPipeline.from_pretrained(dir)` / `DDPMPipeline.from_pretrained(dir)` loads.
pub fn save_pipeline(
    dir: &Path,
    unet_config: &UnetConfig,
    unet: &Unet,
    scheduler: &SchedulerConfig,
) -> Result<(), DiffusersError> {
    save_components(dir, unet_config, unet, scheduler, None)
}

/// Writes an `LDMPipeline` folder whose `vqvae/` (an autoencoder of class `vqvae_class`, as
/// [`save_autoencoder`] writes it) is already in `dir`: `LDMPipeline.from_pretrained(dir)`
/// loads it.
pub fn save_latent_pipeline(
    dir: &Path,
    unet_config: &UnetConfig,
    unet: &Unet,
    scheduler: &SchedulerConfig,
    vqvae_class: &str,
) -> Result<(), DiffusersError> {
    save_components(dir, unet_config, unet, scheduler, Some(vqvae_class))
}

fn save_components(
    dir: &Path,
    unet_config: &UnetConfig,
    unet: &Unet,
    scheduler: &SchedulerConfig,
    vqvae: Option<&str>,
) -> Result<(), DiffusersError> {
    save_unet(&dir.join("unet"), unet_config, unet)?;
    let scheduler_dir = dir.join("scheduler");
    std::fs::create_dir_all(&scheduler_dir).map_err(|e| write_err(&scheduler_dir, e))?;
    write_json(&scheduler_dir.join("scheduler_config.json"), scheduler)?;
    let (pipeline, class) = match scheduler.class {
        SchedulerClass::Ddpm => ("DDPMPipeline", "DDPMScheduler"),
        SchedulerClass::Ddim => ("DDIMPipeline", "DDIMScheduler"),
    };
    let mut index = json!({
        "_class_name": pipeline,
        "_diffusers_version": DIFFUSERS_VERSION,
        "scheduler": ["diffusers", class],
        "unet": ["diffusers", "UNet2DModel"],
    });
    if let Some(vqvae) = vqvae {
        index["_class_name"] = json!(LATENT_PIPELINE);
        index["vqvae"] = json!(["diffusers", vqvae]);
    }
    write_json(&dir.join("model_index.json"), &index)
}
