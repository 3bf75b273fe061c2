#![no_main]
// diffusers configs: a U-Net or autoencoder (`AutoencoderKL`, `VQModel`) `config.json` and a
// scheduler `scheduler_config.json` (parsed, validated, and the scheduler's noise schedule and
// samplers built, the sigma solvers too).
use diffuse_core::discrete::sampler::{DdimSampler, DdpmSampler};
use diffuse_nn::{AutoencoderConfig, UnetConfig};
use diffuse_diffusers::{SchedulerConfig, SigmaScheduler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = UnetConfig::from_json(text);
    if let Ok(a) = AutoencoderConfig::from_json(text) {
        let _ = (a.downsampling(), a.diffusion_channels(), a.to_json("0"));
    }
    if let Ok(s) = SchedulerConfig::from_json(text)
        && let Ok(schedule) = s.schedule()
    {
        let _ = DdpmSampler::new(&schedule, s.ddpm(Some(10)));
        let _ = DdimSampler::new(&schedule, s.ddim(10, 0.5));
        for which in [SigmaScheduler::Euler, SigmaScheduler::Heun, SigmaScheduler::DpmSolverPp] {
            for karras in [false, true] {
                let _ = s.sigma_solver(which, 10, karras);
            }
        }
    }
});
