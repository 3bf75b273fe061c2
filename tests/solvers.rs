//! diffuse's Euler, Heun and DPM-Solver++(2M) against diffusers' `EulerDiscreteScheduler`,
//! `HeunDiscreteScheduler` and `DPMSolverMultistepScheduler` (diffusers 0.42.1).
//!
//! Fixtures: `python3 scripts/reference/solvers.py` writes tests/fixtures/solver_steps.json and
//! tests/fixtures/solver_pipelines/.

use std::cell::Cell;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use diffuse_core::discrete::timesteps::TimestepSpacing;
use diffuse_core::level::{Clock, Level, Sigma, SigmaTable, Timestep};
use diffuse_core::solver::adapter::{Adapter, DiscreteVp};
use diffuse_core::solver::grid::{Grid, karras_sigmas};
use diffuse_core::solver::steps::dpmpp_2m_step;
use diffuse_core::solver::{DpmOrder, Method, SigmaSolver, Solver};
use diffuse_core::{Denoiser, Prediction, ScheduleConfig};
use diffuse_data::read_npy;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::common::{diffuse, floats, json_fixture, scratch, stderr};

const SHAPE: [usize; 4] = [1, 2, 3, 3];

/// Returns diffusers' recorded model outputs in order, checking that each call sees the model
/// input and timestep diffusers passed.
struct Replay<'a> {
    calls: &'a [Value],
    /// The inputs to expect, where not diffusers' own (`calls[k]["input"]`).
    inputs: Option<&'a [Value]>,
    next: Cell<usize>,
    /// The largest |input - diffusers' input| / max(1, |input|) seen.
    worst: Cell<f64>,
}

impl Denoiser<4> for Replay<'_> {
    fn denoise(&self, x: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        let k = self.next.get();
        let call = &self.calls[k];
        let t: f32 = t.narrow(0, 0, 1).into_scalar();
        assert!(
            (t as f64 - call["t"].as_f64().unwrap()).abs() < 1e-3,
            "call {k}: t {t} vs {}",
            call["t"]
        );
        let got: Vec<f32> = x.into_data().try_to_vec().unwrap();
        let want = match self.inputs {
            Some(inputs) => floats(&inputs[k]),
            None => floats(&call["input"]),
        };
        let g = rel_gap(&got, &want);
        self.worst.set(self.worst.get().max(g));
        self.next.set(k + 1);
        tensor(&floats(&call["output"]))
    }
}

fn tensor(v: &[f64]) -> Tensor<4> {
    let data: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(data, SHAPE), &Device::default())
}

/// max |a - b| / max(1, |b|).
fn rel_gap(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

fn method(name: &str) -> Method {
    match name {
        "euler" => Method::Euler,
        "heun" => Method::Heun,
        _ => Method::DpmSolverPp(DpmOrder {
            second_order: true,
            first_order_last: true,
        }),
    }
}

fn spacing(name: &str) -> TimestepSpacing {
    serde_json::from_value(Value::String(name.into())).unwrap()
}

/// diffuse's grid, from diffusers' float32 sigma table (`SigmaTable::diffusers_f32`), equals
/// diffusers' (sigmas within 1e-5 relative, timesteps within 1e-3), and, on diffusers' own
/// grid, every model call sees diffusers' input and the loop ends at diffusers' sample, within
/// 1e-6 of max(1, |x|).
#[test]
fn one_step_at_a_time_as_diffusers() {
    let cases = json_fixture("solver_steps.json", "scripts/reference/solvers.py");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 36);
    for case in cases {
        let schedule = ScheduleConfig {
            beta_start: case["beta_start"].as_f64().unwrap(),
            beta_end: case["beta_end"].as_f64().unwrap(),
            ..Default::default()
        }
        .build()
        .unwrap();
        let table = SigmaTable::diffusers_f32(&schedule.betas);
        let name = format!(
            "{} {} {} karras={}",
            case["scheduler"], case["prediction"], case["spacing"], case["karras"]
        );
        let (sched, karras) = (
            case["scheduler"].as_str().unwrap(),
            case["karras"].as_bool().unwrap(),
        );
        let sp = spacing(case["spacing"].as_str().unwrap());
        let ours = if sched == "dpm_solver_pp" {
            Grid::dpm(&table, 10, sp, 0, karras, true, false)
        } else {
            Grid::euler(&table, 10, sp, 0, karras)
        }
        .unwrap();
        let (sigmas, timesteps) = (floats(&case["sigmas"]), floats(&case["timesteps"]));
        assert_eq!(ours.len(), sigmas.len(), "{name}");
        // A Karras grid inherits its ends' rounding: its inner sigmas are checked as Karras
        // sigmas between diffusers' own ends.
        let karras_ref = karras_sigmas(
            Sigma(sigmas[sigmas.len() - 1]),
            Sigma(sigmas[0]),
            sigmas.len(),
        );
        for (i, level) in ours.levels.iter().enumerate() {
            if karras && i > 0 && i + 1 < sigmas.len() {
                assert!(
                    (karras_ref[i] / sigmas[i] - 1.0).abs() < 1e-6,
                    "{name}: karras sigma {i}"
                );
                continue;
            }
            let tol = 1e-5; // torch's float32 linspace and cumprod round a little differently
            assert!(
                (level.sigma.0 / sigmas[i] - 1.0).abs() < tol,
                "{name}: sigma {i}: {} vs {}",
                level.sigma.0,
                sigmas[i]
            );
            assert!(
                (level.clock.value() - timesteps[i]).abs() < 1e-3,
                "{name}: t {i}: {:?} vs {}",
                level.clock,
                timesteps[i]
            );
        }
        // DPM-Solver steps x = alpha y and starts from init_noise_sigma = 1 there; diffuse's
        // solvers step y = x / alpha, which starts at sqrt(1 + sigma_max^2).
        let init = match sched {
            "dpm_solver_pp" => (1.0 + sigmas[0] * sigmas[0]).sqrt(),
            _ => case["init_noise_sigma"].as_f64().unwrap(),
        };
        assert!(
            (ours.init_sigma / init - 1.0).abs() < 1e-5,
            "{name}: init {} vs {init}",
            ours.init_sigma
        );

        // diffusers' own grid, to check the steps alone.
        let grid = Grid {
            levels: sigmas
                .iter()
                .zip(&timesteps)
                .map(|(&s, &t)| Level {
                    sigma: Sigma(s),
                    clock: Clock::Discrete(Timestep(t)),
                })
                .collect(),
            final_sigma: Sigma(case["final_sigma"].as_f64().unwrap()),
            init_sigma: init,
        };
        let prediction = match case["prediction"].as_str().unwrap() {
            "epsilon" => Prediction::Epsilon,
            _ => Prediction::VPrediction,
        };
        let solver = SigmaSolver {
            method: method(sched),
            grid,
            adapter: Adapter::DiscreteVp(DiscreteVp {
                prediction,
                learned_variance: false,
                clip_sample: None,
                alphas_cumprod: schedule.alphas_cumprod.clone(),
            }),
            clock: Box::new(table.clone()),
        };
        let calls = case["calls"].as_array().unwrap();
        // DPM-Solver is checked against diffusers' formulas in float64 (its float32 code drifts
        // from them by up to 1.9e-5 here; the script prints each case's drift), the others
        // against diffusers' float32 loop itself.
        let (inputs, final_sample) = match case.get("exact_inputs") {
            Some(inputs) => (
                Some(inputs.as_array().unwrap().as_slice()),
                &case["exact_final"],
            ),
            None => (None, &case["final"]),
        };
        let replay = Replay {
            calls,
            inputs,
            next: Cell::new(0),
            worst: Cell::new(0.0),
        };
        let z = tensor(&floats(&case["z"]));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = solver.sample(&replay, z, &mut rng, &mut |_| {}).unwrap();
        assert_eq!(replay.next.get(), calls.len(), "{name}: model calls");
        assert_eq!(Some(out.nfe), Solver::<4>::model_calls(&solver), "{name}");
        // Ten steps of float32 arithmetic: DPM-Solver's (in y = x / alpha, where y reaches 60)
        // accumulate 1.4e-6; each step alone is held to 1e-6 below.
        let tol = if inputs.is_some() { 1e-5 } else { 1e-6 };
        assert!(
            replay.worst.get() <= tol,
            "{name}: model input off by {:e}",
            replay.worst.get()
        );
        let got: Vec<f32> = out.x0.into_data().try_to_vec().unwrap();
        let gap = rel_gap(&got, &floats(final_sample));
        assert!(gap <= tol, "{name}: final sample off by {gap:e}");
        if let Some(inputs) = inputs {
            dpm_one_step_at_a_time(&name, &solver, calls, inputs, final_sample);
        }
    }
}

/// Each DPM-Solver++ step from the float64 reference's state (and its previous x_0 estimate)
/// lands on the reference's next state within 1e-6 of max(1, |x|).
fn dpm_one_step_at_a_time(
    name: &str,
    solver: &SigmaSolver,
    calls: &[Value],
    inputs: &[Value],
    last: &Value,
) {
    let grid = &solver.grid;
    let alpha = |s: f64| Sigma(s).alpha_sigma_vp().0;
    let x0_at = |i: usize| {
        let output = tensor(&floats(&calls[i]["output"]));
        let net = move |_x: Tensor<4>, _t: Tensor<1>| output.clone();
        let y = tensor(&floats(&inputs[i])).div_scalar(alpha(grid.sigma(i)) as f32);
        (
            solver
                .adapter
                .wrap(&net)
                .x0(y.clone(), grid.levels[i])
                .unwrap(),
            y,
        )
    };
    let n = calls.len();
    for i in 0..n {
        let (s, s_next) = (grid.sigma(i), grid.sigma(i + 1));
        let (x0, y) = x0_at(i);
        let history = (i > 0 && i + 1 < n).then(|| (x0_at(i - 1).0, grid.sigma(i - 1)));
        let x_next = dpmpp_2m_step(y, x0, history, s, s_next).mul_scalar(alpha(s_next) as f32);
        let want = if i + 1 < n {
            floats(&inputs[i + 1])
        } else {
            floats(last)
        };
        let got: Vec<f32> = x_next.into_data().try_to_vec().unwrap();
        let gap = rel_gap(&got, &want);
        assert!(gap <= 1e-6, "{name}: step {i} off by {gap:e}");
    }
}

fn pipelines_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/solver_pipelines")
}

/// `diffuse sample --pipeline DIR --sampler euler | heun | dpm-solver++ [--karras]` on tiny
/// random pipelines from scripts/reference/solvers.py equals diffusers' own loop
/// (`Cls.from_config(pipe.scheduler.config)`), within 1e-3 of max(1, |x|). The reference's
/// float32 and float64 loops agree within 2e-4 of that.
#[test]
fn pipelines_sample_as_diffusers_loops() {
    let dir = pipelines_dir();
    let out_dir = scratch("solver-pipelines");
    for name in [
        "ddpm_eps_leading",
        "ddim_v_trailing_scaled",
        "ddim_eps_linspace",
    ] {
        let noise = dir.join(format!("{name}.noise.npy"));
        let pipeline = dir.join(name);
        for (solver, flag, steps) in [
            ("euler", "euler", "10"),
            ("heun", "heun", "6"),
            ("dpm_solver_pp", "dpm-solver++", "8"),
        ] {
            for karras in [false, true] {
                let tag = if karras {
                    format!("{solver}_karras")
                } else {
                    solver.to_string()
                };
                let out = out_dir.join(format!("{name}.{tag}.npy"));
                let mut args = vec![
                    "sample",
                    "--pipeline",
                    pipeline.to_str().unwrap(),
                    "--sampler",
                    flag,
                    "--steps",
                    steps,
                    "--init-noise",
                    noise.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                ];
                if karras {
                    args.push("--karras");
                }
                let run = diffuse(&args);
                assert!(run.status.success(), "{name} {tag}: {}", stderr(&run));
                let got = read_npy(&out).unwrap();
                let want = read_npy(&dir.join(format!("{name}.{tag}.npy"))).unwrap();
                assert_eq!(got.shape, want.shape);
                let want: Vec<f64> = want.data.iter().map(|&v| v as f64).collect();
                let gap = rel_gap(&got.data, &want);
                assert!(
                    gap <= 1e-3,
                    "{name} {tag}: off diffusers by {gap:e} of max(1, |x|)"
                );
            }
        }
    }
}
