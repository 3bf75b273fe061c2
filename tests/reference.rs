//! diffuse against diffusers. Fixtures: tests/fixtures/schedulers.json, written by
//!     python3 scripts/reference/schedulers.py   (torch 2.15.0, diffusers 0.42.1)

use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::discrete::sampler::{
    DdimConfig, DdimSampler, DdpmConfig, DdpmSampler, Sampler, VarianceType,
};
use diffuse_core::discrete::timesteps::{TimestepSpacing, spaced_timesteps};
use diffuse_core::{BetaSchedule, Prediction, ScheduleConfig};
use serde_json::Value;

use crate::common::{floats, json_fixture};

fn fixture() -> Value {
    json_fixture("schedulers.json", "scripts/reference/schedulers.py")
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap()
}

fn schedule_config(c: &Value) -> ScheduleConfig {
    ScheduleConfig {
        num_train_timesteps: c["num_train_timesteps"].as_u64().unwrap() as usize,
        beta_schedule: parse::<BetaSchedule>(&c["beta_schedule"]),
        beta_start: c["beta_start"].as_f64().unwrap(),
        beta_end: c["beta_end"].as_f64().unwrap(),
    }
}

/// alphas_cumprod for every schedule: <= 1e-12 relative to the float64 transcription of
/// diffusers' formulas, and <= 2e-5 relative to diffusers' own float32 arrays (float32 rounding
/// accumulated over up to 1000 products; the script checks its transcription to the same bound).
#[test]
fn alphas_cumprod_match_diffusers() {
    let fx = fixture();
    for case in fx["schedules"].as_array().unwrap() {
        let sched = schedule_config(case).build().unwrap();
        let name = format!(
            "{} T={}",
            case["beta_schedule"], case["num_train_timesteps"]
        );
        for (ours, theirs) in sched
            .alphas_cumprod
            .iter()
            .zip(floats(&case["alphas_cumprod_f64"]))
        {
            assert!(
                ((ours - theirs) / theirs).abs() <= 1e-12,
                "{name}: {ours} vs {theirs}"
            );
        }
        for (ours, theirs) in sched
            .alphas_cumprod
            .iter()
            .zip(floats(&case["alphas_cumprod_diffusers_f32"]))
        {
            assert!(
                ((ours - theirs) / theirs).abs() <= 2e-5,
                "{name}: {ours} vs {theirs} (f32)"
            );
        }
        assert_eq!(
            sched.alphas_cumprod.len(),
            floats(&case["alphas_cumprod_f64"]).len()
        );
    }
}

/// `set_timesteps(n)` of DDIMScheduler for every spacing: identical lists.
#[test]
fn timesteps_match_diffusers() {
    for case in fixture()["timesteps"].as_array().unwrap() {
        let spacing: TimestepSpacing = parse(&case["spacing"]);
        let get = |k: &str| case[k].as_u64().unwrap() as usize;
        let ours = spaced_timesteps(
            spacing,
            get("num_train_timesteps"),
            get("num_inference_steps"),
            get("steps_offset"),
        )
        .unwrap();
        let theirs: Vec<usize> = parse(&case["timesteps"]);
        assert_eq!(ours, theirs, "{case:?}");
    }
}

fn tensor(v: &Value, shape: [usize; 4], device: &Device) -> Tensor<4> {
    let data: Vec<f32> = floats(v).into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// |ours - theirs| <= tol * max(1, |theirs|) elementwise.
fn assert_close(ours: Tensor<4>, theirs: &Value, tol: f64, what: &str) {
    let ours: Vec<f32> = ours.into_data().try_to_vec().unwrap();
    for (i, (a, b)) in ours.iter().zip(floats(theirs)).enumerate() {
        assert!(
            (*a as f64 - b).abs() <= tol * b.abs().max(1.0),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

/// One `step()` of DDPMScheduler / DDIMScheduler (diffusers' code on float64 tensors) with
/// injected noise, over several configs: <= 1e-6 relative (max(1, |x|)) for diffuse's float32.
#[test]
fn sampler_steps_match_diffusers() {
    let device = Device::default();
    let fx = fixture();
    let cases = fx["steps"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let c = &case["config"];
        let schedule = schedule_config(c).build().unwrap();
        let prediction: Prediction = parse(&c["prediction_type"]);
        let clip = c["clip_sample"]
            .as_bool()
            .unwrap_or(false)
            .then(|| c["clip_sample_range"].as_f64().unwrap_or(1.0));
        let spacing: TimestepSpacing = c.get("timestep_spacing").map(parse).unwrap_or_default();
        let offset = c.get("steps_offset").and_then(Value::as_u64).unwrap_or(0) as usize;
        let n = case["num_inference_steps"].as_u64().map(|n| n as usize);
        let shape: [usize; 4] = parse(&case["shape"]);
        let t = case["t"].as_u64().unwrap() as usize;
        let output_shape: [usize; 4] = case.get("output_shape").map(parse).unwrap_or(shape);
        let (sample, output, noise) = (
            tensor(&case["sample"], shape, &device),
            tensor(&case["model_output"], output_shape, &device),
            tensor(&case["noise"], shape, &device),
        );
        let expected_timesteps: Vec<usize> = parse(&case["timesteps"]);
        let what = format!("{} {c} t={t}", case["sampler"]);
        let out = if case["sampler"] == "ddpm" {
            let s = DdpmSampler::new(
                &schedule,
                DdpmConfig {
                    prediction,
                    variance_type: parse::<VarianceType>(&c["variance_type"]),
                    clip_sample: clip,
                    num_inference_steps: n,
                    timestep_spacing: spacing,
                    steps_offset: offset,
                },
            )
            .unwrap();
            assert_eq!(s.timesteps(), expected_timesteps.as_slice(), "{what}");
            s.step(output, t, sample, s.needs_noise(t).then_some(noise))
                .unwrap()
        } else {
            let s = DdimSampler::new(
                &schedule,
                DdimConfig {
                    prediction,
                    num_inference_steps: n.unwrap(),
                    eta: case["eta"].as_f64().unwrap(),
                    timestep_spacing: spacing,
                    steps_offset: offset,
                    set_alpha_to_one: c["set_alpha_to_one"].as_bool().unwrap(),
                    clip_sample: clip,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(s.timesteps(), expected_timesteps.as_slice(), "{what}");
            s.step(output, t, sample, s.needs_noise(t).then_some(noise))
                .unwrap()
        };
        assert_close(
            out.prev_sample,
            &case["prev_sample"],
            1e-6,
            &format!("{what} prev_sample"),
        );
        assert_close(
            out.pred_x0,
            &case["pred_original_sample"],
            1e-6,
            &format!("{what} pred_x0"),
        );
    }
}

/// The sinusoidal timestep embedding against diffusers' `get_timestep_embedding` (float32 on both
/// sides), for both orders, both frequency shifts and an odd width: <= 1e-4 absolute (sin/cos of
/// arguments up to 999 in float32). Fixture: python3 scripts/reference/embedding.py
#[test]
fn timestep_embedding_matches_diffusers() {
    let device = Device::default();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/timestep_embedding.json"
    ))
    .unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let t: Vec<f32> = floats(&case["t"]).into_iter().map(|v| v as f32).collect();
        let n = t.len();
        let dim = case["dim"].as_u64().unwrap() as usize;
        let emb = diffuse_nn::embedding::timestep_embedding(
            Tensor::from_data(TensorData::new(t, [n]), &device),
            dim,
            case["flip_sin_to_cos"].as_bool().unwrap(),
            case["freq_shift"].as_f64().unwrap(),
            10_000.0,
        );
        assert_eq!(emb.dims(), [n, dim]);
        let ours: Vec<f32> = emb.into_data().try_to_vec().unwrap();
        for (i, (a, b)) in ours.iter().zip(floats(&case["embedding"])).enumerate() {
            assert!((*a as f64 - b).abs() <= 1e-4, "dim {dim} [{i}]: {a} vs {b}");
        }
    }
}
