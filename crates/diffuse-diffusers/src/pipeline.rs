//! Loading and saving diffusers pipeline folders (`DDPMPipeline` / `DDIMPipeline` layout):
//!
//! ```text
//! DIR/model_index.json                            {"_class_name": "DDIMPipeline", "unet": [...], "scheduler": [...]}
//! DIR/unet/config.json                            UNet2DModel config
//! DIR/unet/diffusion_pytorch_model.safetensors    weights by diffusers' names, PyTorch layouts
//! DIR/scheduler/scheduler_config.json             DDPMScheduler or DDIMScheduler config
//! ```
//!
//! Every file is written to a temporary name and renamed into place.

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde_json::{Value, json};

use super::scheduler::{DIFFUSERS_VERSION, SchedulerClass, SchedulerConfig};
use crate::error::DiffusersError;
use diffuse_nn::unet::{Unet, UnetConfig};

/// A loaded pipeline folder: the U-Net and its scheduler config.
pub struct Pipeline {
    pub unet_config: UnetConfig,
    pub unet: Unet,
    pub scheduler: SchedulerConfig,
}

const PIPELINE_CLASSES: [&str; 2] = ["DDPMPipeline", "DDIMPipeline"];

fn read(path: &Path) -> Result<String, DiffusersError> {
    Ok(diffuse_fs::read_to_string(path, diffuse_fs::Limit::CONFIG)?)
}

/// Checks `model_index.json`: a DDPM/DDIM pipeline whose `unet` is a `UNet2DModel` and whose
/// `scheduler` is a DDPM or DDIM scheduler.
fn check_model_index(path: &Path) -> Result<(), DiffusersError> {
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
    Ok(())
}

impl Pipeline {
    /// Loads a pipeline folder onto `device`.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, DiffusersError> {
        check_model_index(&dir.join("model_index.json"))?;
        let scheduler_path = dir.join("scheduler").join("scheduler_config.json");
        let scheduler = SchedulerConfig::from_json(&read(&scheduler_path)?).map_err(|e| {
            DiffusersError::Pipeline {
                path: scheduler_path,
                reason: e.to_string(),
            }
        })?;
        let (unet_config, unet) = Unet::from_diffusers_dir(&dir.join("unet"), device)?;
        Ok(Self {
            unet_config,
            unet,
            scheduler,
        })
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
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let mut config_json = serde_json::to_value(config).map_err(|e| write_err(dir, e))?;
    config_json["_class_name"] = json!("UNet2DModel");
    config_json["_diffusers_version"] = json!(DIFFUSERS_VERSION);
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    // In memory, then written as any other file: burn's own file writer leaves mode 0600, and
    // its default metadata (several keys in hash-map order) would change the bytes run to run.
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .clear_metadata()
        .metadata("format", "pt");
    unet.clone()
        .save_into(&mut store)
        .map_err(|e| write_err(&weights, e))?;
    let bytes = store.get_bytes().map_err(|e| write_err(&weights, e))?;
    diffuse_fs::write(&weights, &bytes)?;
    write_json(&dir.join("config.json"), &config_json)
}

/// Writes a whole pipeline folder (see the module docs) that diffusers'
/// `DDIMPipeline.from_pretrained(dir)` / `DDPMPipeline.from_pretrained(dir)` loads.
pub fn save_pipeline(
    dir: &Path,
    unet_config: &UnetConfig,
    unet: &Unet,
    scheduler: &SchedulerConfig,
) -> Result<(), DiffusersError> {
    save_unet(&dir.join("unet"), unet_config, unet)?;
    let scheduler_dir = dir.join("scheduler");
    std::fs::create_dir_all(&scheduler_dir).map_err(|e| write_err(&scheduler_dir, e))?;
    write_json(&scheduler_dir.join("scheduler_config.json"), scheduler)?;
    let (pipeline, class) = match scheduler.class {
        SchedulerClass::Ddpm => ("DDPMPipeline", "DDPMScheduler"),
        SchedulerClass::Ddim => ("DDIMPipeline", "DDIMScheduler"),
    };
    write_json(
        &dir.join("model_index.json"),
        &json!({
            "_class_name": pipeline,
            "_diffusers_version": DIFFUSERS_VERSION,
            "scheduler": ["diffusers", class],
            "unet": ["diffusers", "UNet2DModel"],
        }),
    )
}
