//! `--device`: where tensors live. `auto` (the default) is the best backend compiled in: CUDA,
//! then Vulkan, then wgpu, then the CPU (burn-flex). GPU backends are cargo features of the
//! binary (`--features vulkan`, `wgpu`, `cuda`; README, "GPU"); a device whose feature is not
//! compiled in is an error naming the feature.
//!
//! Noise is drawn on the host from the run's seed whatever the device (`diffuse_core::coef::randn`),
//! so a seed draws the same noise on every device.

use std::sync::OnceLock;

use anyhow::Result;
use burn::tensor::Device;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The best compiled backend: cuda, then vulkan, then wgpu, then cpu.
    Auto,
    /// burn-flex on the CPU.
    Cpu,
    /// burn's wgpu backend pinned to Vulkan (cargo feature `vulkan`).
    Vulkan,
    /// burn's wgpu backend on whichever graphics API it finds (cargo feature `wgpu`).
    Wgpu,
    /// burn's CUDA backend (cargo feature `cuda`).
    Cuda,
}

static CHOSEN: OnceLock<(DeviceChoice, Device)> = OnceLock::new();

/// Sets the device every command uses; called once, from the command line.
pub fn choose(choice: DeviceChoice) -> Result<()> {
    let choice = match choice {
        DeviceChoice::Auto => compiled()[0],
        other => other,
    };
    let device = build(choice)?;
    let _ = CHOSEN.set((choice, device));
    Ok(())
}

/// The device chosen with `--device` (the CPU if none was chosen, as in unit tests).
pub fn device() -> Device {
    CHOSEN.get().map(|c| c.1.clone()).unwrap_or_default()
}

/// The backend chosen with `--device`, `auto` resolved (the CPU if none was chosen).
pub fn backend() -> DeviceChoice {
    CHOSEN.get().map_or(DeviceChoice::Cpu, |c| c.0)
}

/// The backends this binary was built with, best first.
pub fn compiled() -> Vec<DeviceChoice> {
    let mut v = Vec::new();
    if cfg!(feature = "cuda") {
        v.push(DeviceChoice::Cuda);
    }
    if cfg!(feature = "vulkan") {
        v.push(DeviceChoice::Vulkan);
    }
    if cfg!(feature = "wgpu") {
        v.push(DeviceChoice::Wgpu);
    }
    v.push(DeviceChoice::Cpu);
    v
}

fn build(choice: DeviceChoice) -> Result<Device> {
    let missing = |feature: &str| {
        anyhow::anyhow!(
            "--device {feature} needs a binary built with it: cargo build --release --features {feature} (this one has: {})",
            compiled()
                .iter()
                .map(|c| format!("{c:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(match choice {
        DeviceChoice::Auto => return build(compiled()[0]),
        DeviceChoice::Cpu => Device::default(),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda => Device::cuda(0),
        #[cfg(feature = "vulkan")]
        DeviceChoice::Vulkan => Device::vulkan(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[allow(unreachable_patterns)]
        other => {
            let name = format!("{other:?}").to_lowercase();
            return Err(missing(&name));
        }
    })
}
