#![no_main]
// The library parts of a run config (`[schedule]`, `[model]`, `[train]` with `[train.loss]`),
// as TOML and as JSON: parsed, validated, the schedule built, the learning rate evaluated.
use diffuse_core::ScheduleConfig;
use diffuse_nn::MlpConfig;
use diffuse_train::TrainConfig;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Parts {
    #[serde(default)]
    schedule: ScheduleConfig,
    #[serde(default)]
    model: MlpConfig,
    #[serde(default)]
    train: TrainConfig,
}

fn check(p: Parts) {
    if let Ok(schedule) = p.schedule.build() {
        let _ = schedule.terminal_warning();
    }
    let _ = p.model.validate();
    if p.train.validate().is_ok() {
        for step in [0, p.train.steps / 2, p.train.steps.saturating_sub(1)] {
            let _ = p.train.lr_at(step);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = toml::from_str::<Parts>(text) {
        check(p);
    }
    if let Ok(p) = serde_json::from_str::<Parts>(text) {
        check(p);
    }
});
