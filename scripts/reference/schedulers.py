"""Reference fixtures for diffuse's schedules and sampler steps, from diffusers.

Writes tests/fixtures/schedulers.json. CI never runs this; rerun it by hand:

    pip install torch diffusers numpy
    python3 scripts/reference/schedulers.py

Produced with torch 2.15.0 and diffusers 0.42.1 (the versions are recorded in the fixture).

Two kinds of numbers:

* Schedules. diffusers builds betas and alphas_cumprod in float32. diffuse computes them in
  float64 (ARCHITECTURE.md, invariant 2), so a float32 reference can only check it to float32
  precision. The script therefore records both diffusers' own float32 `alphas_cumprod` and a
  float64 transcription of the same formulas (`f64_betas` below), and asserts here that the
  transcription agrees with diffusers to float32 precision before writing anything.
* Steps. `DDPMScheduler.step` and `DDIMScheduler.step` are run unchanged, on float64 tensors,
  after the scheduler's alphas_cumprod is replaced by the float64 schedule; so every number is
  diffusers' own step logic, computed at a precision that leaves the tolerance to diffuse's float32.
"""

import json
import math
import pathlib

import diffusers
import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "schedulers.json"


def f64_betas(schedule, T, beta_start, beta_end):
    """diffusers' beta schedules (scheduling_ddpm.py), transcribed to float64."""
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    if schedule == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return torch.tensor(
            [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float64
        )
    if schedule == "sigmoid":
        x = torch.linspace(-6, 6, T, dtype=torch.float64)
        return torch.sigmoid(x) * (beta_end - beta_start) + beta_start
    raise ValueError(schedule)


def tolist(t):
    return [float(v) for v in t.reshape(-1).tolist()]


SCHEDULES = [
    ("linear", 1000, 1e-4, 0.02),
    ("linear", 10, 1e-4, 0.02),
    ("linear", 1, 1e-4, 0.02),
    ("scaled_linear", 1000, 0.00085, 0.012),
    ("squaredcos_cap_v2", 1000, 1e-4, 0.02),
    ("squaredcos_cap_v2", 50, 1e-4, 0.02),
    ("sigmoid", 1000, 1e-4, 0.02),
]


def schedules():
    out = []
    for name, T, b0, b1 in SCHEDULES:
        sched = DDPMScheduler(num_train_timesteps=T, beta_schedule=name, beta_start=b0, beta_end=b1)
        ac64 = torch.cumprod(1.0 - f64_betas(name, T, b0, b1), dim=0)
        ac32 = sched.alphas_cumprod
        rel = ((ac64 - ac32.double()).abs() / ac64).max().item()
        assert rel < 2e-5, f"float64 transcription of {name} disagrees with diffusers: {rel}"
        out.append(
            {
                "beta_schedule": name,
                "num_train_timesteps": T,
                "beta_start": b0,
                "beta_end": b1,
                "alphas_cumprod_f64": tolist(ac64),
                "alphas_cumprod_diffusers_f32": tolist(ac32),
            }
        )
    return out


def f64_scheduler(cls, **kw):
    s = cls(**kw)
    cfg = s.config
    ac = torch.cumprod(
        1.0 - f64_betas(cfg.beta_schedule, cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end), 0
    )
    s.alphas_cumprod = ac
    s.one = torch.tensor(1.0, dtype=torch.float64)
    if cls is DDIMScheduler:
        s.final_alpha_cumprod = (
            torch.tensor(1.0, dtype=torch.float64) if cfg.set_alpha_to_one else ac[0]
        )
    return s


SHAPE = (3, 2, 2, 2)


def step_case(gen, cls, kind, num_inference_steps, step_index, eta, **kw):
    s = f64_scheduler(cls, **kw)
    if num_inference_steps is not None:
        s.set_timesteps(num_inference_steps)
    t = int(s.timesteps[step_index])
    sample = torch.randn(SHAPE, generator=gen, dtype=torch.float64) * 1.5
    # A learned-variance model outputs twice the channels: (parameterization output, v).
    out_shape = (SHAPE[0], 2 * SHAPE[1]) + SHAPE[2:] if kw.get("variance_type") == "learned_range" else SHAPE
    model_output = torch.randn(out_shape, generator=gen, dtype=torch.float64)
    noise = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    if cls is DDIMScheduler:
        out = s.step(model_output, t, sample, eta=eta, variance_noise=noise)
    else:
        # DDPMScheduler draws its own noise from `generator`; replay it to record the same draw.
        g = torch.Generator().manual_seed(1234)
        out = s.step(model_output, t, sample, generator=g)
        g = torch.Generator().manual_seed(1234)
        noise = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    case = {
        "sampler": kind,
        "config": {k: v for k, v in kw.items()},
        "num_inference_steps": num_inference_steps,
        "timesteps": [int(v) for v in s.timesteps.tolist()],
        "t": t,
        "eta": eta,
        "shape": list(SHAPE),
        "output_shape": list(out_shape),
        "sample": tolist(sample),
        "model_output": tolist(model_output),
        "noise": tolist(noise),
        "prev_sample": tolist(out.prev_sample),
        "pred_original_sample": tolist(out.pred_original_sample),
    }
    return case


def steps():
    gen = torch.Generator().manual_seed(0)
    cases = []
    ddpm = lambda n, i, **kw: cases.append(step_case(gen, DDPMScheduler, "ddpm", n, i, 0.0, **kw))  # noqa: E731
    ddim = lambda n, i, eta, **kw: cases.append(step_case(gen, DDIMScheduler, "ddim", n, i, eta, **kw))  # noqa: E731
    base = dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, num_train_timesteps=1000)
    # DDPM, full chain: t = 500, 999 (first step), 0 (last, no noise).
    ddpm(None, 499, **base, prediction_type="epsilon", variance_type="fixed_small", clip_sample=False)
    ddpm(None, 0, **base, prediction_type="epsilon", variance_type="fixed_large", clip_sample=False)
    ddpm(None, 999, **base, prediction_type="epsilon", variance_type="fixed_small", clip_sample=False)
    ddpm(None, 600, **base, prediction_type="v_prediction", variance_type="fixed_small", clip_sample=True, clip_sample_range=1.0)
    cos = dict(base, beta_schedule="squaredcos_cap_v2")
    ddpm(None, 990, **cos, prediction_type="sample", variance_type="fixed_large", clip_sample=False)
    # DDPM with fewer steps (diffusers walks its timestep list).
    ddpm(50, 10, **base, prediction_type="epsilon", variance_type="fixed_small", clip_sample=False, timestep_spacing="leading")
    ddpm(50, 49, **base, prediction_type="epsilon", variance_type="fixed_small", clip_sample=False, timestep_spacing="trailing")
    ddpm(37, 5, **cos, prediction_type="v_prediction", variance_type="fixed_large", clip_sample=False, timestep_spacing="linspace")
    # DDIM: eta, spacing, set_alpha_to_one, steps_offset, clipping, prediction types.
    ddim(50, 10, 0.0, **base, prediction_type="epsilon", clip_sample=False, timestep_spacing="leading", set_alpha_to_one=True)
    ddim(50, 49, 0.0, **base, prediction_type="epsilon", clip_sample=False, timestep_spacing="leading", set_alpha_to_one=False, steps_offset=1)
    ddim(50, 49, 0.0, **base, prediction_type="epsilon", clip_sample=False, timestep_spacing="leading", set_alpha_to_one=True)
    ddim(20, 3, 0.5, **base, prediction_type="v_prediction", clip_sample=False, timestep_spacing="trailing", set_alpha_to_one=True)
    ddim(25, 7, 1.0, **cos, prediction_type="sample", clip_sample=True, clip_sample_range=1.5, timestep_spacing="linspace", set_alpha_to_one=False)
    ddim(1000, 500, 1.0, **base, prediction_type="epsilon", clip_sample=False, timestep_spacing="leading", set_alpha_to_one=True)
    ddim(10, 0, 0.3, **dict(base, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012), prediction_type="epsilon", clip_sample=True, clip_sample_range=1.0, timestep_spacing="trailing", set_alpha_to_one=False)
    # DDPM with a learned variance (improved DDPM's learned range), full chain and strided.
    ddpm(None, 500, **base, prediction_type="epsilon", variance_type="learned_range", clip_sample=False)
    ddpm(50, 10, **cos, prediction_type="v_prediction", variance_type="learned_range", clip_sample=False, timestep_spacing="leading")
    return cases


def timestep_lists():
    out = []
    for spacing in ["leading", "trailing", "linspace"]:
        for T, n, offset in [(1000, 50, 0), (1000, 50, 1), (1000, 7, 0), (1000, 1000, 0), (100, 33, 0), (10, 3, 1)]:
            s = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
            s.set_timesteps(n)
            out.append({"spacing": spacing, "num_train_timesteps": T, "num_inference_steps": n,
                        "steps_offset": offset, "timesteps": [int(v) for v in s.timesteps.tolist()]})
    return out


def main():
    fixture = {
        "generated_by": "scripts/reference/schedulers.py",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "schedules": schedules(),
        "steps": steps(),
        "timesteps": timestep_lists(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    np.random.seed(0)
    main()
