"""Reference values for diffuse's sigma solvers (issue 10), from diffusers 0.42.1:
`EulerDiscreteScheduler`, `HeunDiscreteScheduler` and `DPMSolverMultistepScheduler` (2M,
dpmsolver++, midpoint).

1. tests/fixtures/solver_steps.json: for each scheduler x prediction (epsilon, v_prediction)
   x timestep_spacing (leading, trailing, linspace) x use_karras_sigmas, on DDPM's default chain
   (linear betas, T = 1000, each class's default beta_start and beta_end) with 10 inference steps: the grid (sigmas, timesteps,
   init_noise_sigma), the standard-normal draw z, and for every model call the scaled model
   input diffusers passes, the timestep, and the model output (random normal, as a replayed
   model), then the final sample of the loop

       x = z * scheduler.init_noise_sigma
       for t in scheduler.timesteps:
           inp = scheduler.scale_model_input(x, t)
           x = scheduler.step(output, t, x).prev_sample

   A replayed output does not depend on x, so the loop is affine and float32 rounding is not
   amplified: diffuse's steps are checked call by call at 1e-6 of max(1, |x|).

2. tests/fixtures/solver_pipelines/<name>/: three tiny random pipelines diffuse has never seen
   (different U-Nets, seeds and scheduler configs from scripts/reference/pipelines.py), and for
   each, <name>.noise.npy (z) and <name>.<solver>[_karras].npy: diffusers' own loop above with the
   real U-Net, the scheduler built as `Cls.from_config(pipe.scheduler.config)`. Each loop is run
   in float32 and float64 (U-Net and scheduler); they must agree within 2e-4 of max(1, |x|) or
   the script stops (random weights can be chaotic).

CI never runs this; rerun by hand:

    pip install torch diffusers numpy
    python3 scripts/reference/solvers.py
"""

import json
import pathlib

import numpy as np
import torch
from diffusers import (DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler,
                       DPMSolverMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler,
                       UNet2DModel)

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"
SCHEDULERS = {
    "euler": EulerDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "dpm_solver_pp": DPMSolverMultistepScheduler,
}
STEPS = {"euler": 10, "heun": 6, "dpm_solver_pp": 8}
SHAPE = (1, 2, 3, 3)


def grid(name, sched):
    """The evaluation sigmas and timesteps, without Heun's repeats, and the final sigma."""
    s = sched.sigmas.double().numpy()
    t = sched.timesteps.double().numpy()
    if name == "heun":
        s = np.concatenate([s[:1], s[1:-1][::2], s[-1:]])
        t = np.concatenate([t[:1], t[1:][::2]])
    return s[:-1].tolist(), t.tolist(), float(s[-1])


def dpm_exact(case):
    """DPMSolverMultistepScheduler's dpmsolver++ 2M midpoint loop (convert_model_output,
    dpm_solver_first_order_update, multistep_dpm_solver_second_order_update) transcribed in
    float64 on diffusers' own grid: diffusers runs it in float32, which drifts from its own
    formulas by up to about 2e-5 of max(1, |x|) over 10 steps; diffuse is held to 1e-6 of this."""
    sig = np.array(case["sigmas"] + [case["final_sigma"]])
    alpha = 1 / np.sqrt(1 + sig ** 2)
    sig_vp = sig * alpha
    lam = np.where(sig > 0, np.log(alpha) - np.log(np.where(sig > 0, sig_vp, 1)), np.inf)
    x = np.array(case["z"])
    inputs, previous = [], None
    n = len(case["calls"])
    for i, call in enumerate(case["calls"]):
        inputs.append(x.tolist())
        out = np.array(call["output"])
        if case["prediction"] == "epsilon":
            x0 = (x - sig_vp[i] * out) / alpha[i]
        else:
            x0 = alpha[i] * x - sig_vp[i] * out
        h = lam[i + 1] - lam[i]
        ratio = sig_vp[i + 1] / sig_vp[i]
        if previous is None or i == n - 1:
            x = ratio * x - alpha[i + 1] * np.expm1(-h) * x0
        else:
            r0 = (lam[i] - lam[i - 1]) / h
            d1 = (x0 - previous) / r0
            x = ratio * x - alpha[i + 1] * np.expm1(-h) * x0 - 0.5 * alpha[i + 1] * np.expm1(-h) * d1
        previous = x0
    return inputs, x.tolist()


def step_cases():
    cases = []
    gen = torch.Generator().manual_seed(0)
    for name, cls in SCHEDULERS.items():
        for prediction in ["epsilon", "v_prediction"]:
            for spacing in ["leading", "trailing", "linspace"]:
                for karras in [False, True]:
                    sched = cls(prediction_type=prediction, timestep_spacing=spacing,
                                use_karras_sigmas=karras)
                    sched.set_timesteps(10)
                    z = torch.randn(SHAPE, generator=gen)
                    x = z * sched.init_noise_sigma
                    calls = []
                    for t in sched.timesteps:
                        inp = sched.scale_model_input(x, t)
                        out = torch.randn(SHAPE, generator=gen)
                        calls.append(dict(t=float(t), input=inp.flatten().tolist(),
                                          output=out.flatten().tolist()))
                        x = sched.step(out, t, x).prev_sample
                    sigmas, timesteps, final = grid(name, sched)
                    cases.append(dict(
                        scheduler=name, beta_start=sched.config.beta_start,
                        beta_end=sched.config.beta_end, prediction=prediction, spacing=spacing, karras=karras,
                        steps=10, sigmas=sigmas, timesteps=timesteps, final_sigma=final,
                        init_noise_sigma=float(sched.init_noise_sigma), z=z.flatten().tolist(),
                        calls=calls, final=x.flatten().tolist()))
                    if name == "dpm_solver_pp":
                        inputs, final = dpm_exact(cases[-1])
                        cases[-1]["exact_inputs"], cases[-1]["exact_final"] = inputs, final
                        drift = max(float(np.max(np.abs(np.array(a) - np.array(c["input"])) / np.maximum(1, np.abs(a))))
                                    for a, c in zip(inputs, calls))
                        print("dpm", prediction, spacing, karras, "float32 diffusers vs float64 formulas", drift)
    return cases


UNET = dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16),
            layers_per_block=1, down_block_types=("AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D"), norm_num_groups=4, attention_head_dim=4)

PIPELINES = {
    # diffusers' DDPM defaults: epsilon, leading spacing, clip_sample (Heun clips x_0).
    "ddpm_eps_leading": (DDPMPipeline, DDPMScheduler, dict()),
    # v prediction, trailing spacing, scaled_linear betas.
    "ddim_v_trailing_scaled": (DDIMPipeline, DDIMScheduler, dict(
        prediction_type="v_prediction", timestep_spacing="trailing", beta_schedule="scaled_linear",
        beta_start=0.00085, beta_end=0.012, clip_sample=False)),
    # epsilon, linspace spacing, steps_offset 1, 500 training steps.
    "ddim_eps_linspace": (DDIMPipeline, DDIMScheduler, dict(
        timestep_spacing="linspace", steps_offset=1, num_train_timesteps=500, clip_sample=False)),
}


def loop(unet, cls, config, karras, steps, z, dtype):
    sched = cls.from_config(config, use_karras_sigmas=karras)
    sched.set_timesteps(steps)
    unet = unet.to(dtype)
    x = z.to(dtype) * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            out = unet(sched.scale_model_input(x, t), t).sample
            x = sched.step(out, t, x).prev_sample
    unet.to(torch.float32)
    return x


def pipelines():
    root = FIXTURES / "solver_pipelines"
    root.mkdir(parents=True, exist_ok=True)
    for i, (name, (pipe_cls, sched_cls, kwargs)) in enumerate(PIPELINES.items()):
        torch.manual_seed(700 + i)
        unet = UNet2DModel(**UNET).eval()
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(0.02 * torch.randn_like(p))
        pipe_cls(unet=unet, scheduler=sched_cls(**kwargs)).save_pretrained(root / name, safe_serialization=True)
        unet = UNet2DModel.from_pretrained(root / name / "unet").eval()
        config = sched_cls.from_pretrained(root / name / "scheduler").config
        z = torch.randn(2, 2, 8, 8)
        np.save(root / f"{name}.noise.npy", z.numpy().astype(np.float32))
        for solver, cls in SCHEDULERS.items():
            for karras in [False, True]:
                x = loop(unet, cls, config, karras, STEPS[solver], z, torch.float32)
                x64 = loop(unet, cls, config, karras, STEPS[solver], z, torch.float64)
                gap = float(((x.double() - x64).abs() / x64.abs().clamp(min=1)).max())
                assert gap < 2e-4, f"{name} {solver} karras={karras}: float32 vs float64 {gap}"
                tag = f"{solver}_karras" if karras else solver
                np.save(root / f"{name}.{tag}.npy", x.numpy().astype(np.float32))
                print(name, tag, "std", float(x.std()), "float32 vs float64", gap)


def main():
    (FIXTURES / "solver_steps.json").write_text(json.dumps(step_cases()))
    pipelines()


if __name__ == "__main__":
    main()
