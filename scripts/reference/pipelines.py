"""Tiny random diffusers pipelines and diffusers' own 20-step DDIM loop on them, for diffuse's
pipeline parity tests (issue 3: `diffuse sample --pipeline DIR --init-noise NOISE.npy`).

Writes tests/fixtures/pipelines/<name>/: a pipeline folder as `DDIMPipeline.save_pretrained` (or
`DDPMPipeline`) writes it (model_index.json, unet/, scheduler/), plus, beside it,
<name>.noise.npy (x_T, float32 [N, C, H, W]) and <name>.ddim20.npy: the result of

    scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    scheduler.set_timesteps(20)
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x, eta=0).prev_sample

Each fixture must be well conditioned for a 1e-3 bound to mean anything: the same loop in float64
(U-Net and scheduler) must agree with the float32 loop within 2e-4 (a fifth of the bound), or the script stops. (Random
weights can make the loop chaotic: with every weight perturbed by 0.1, the first epsilon pipeline
amplified float32 rounding to 0.02 over 20 steps.)

CI never runs this; rerun by hand:

    pip install torch diffusers numpy
    python3 scripts/reference/pipelines.py
"""

import pathlib

import numpy as np
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "pipelines"

UNETS = {
    "small": dict(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4,
    ),
    "rgb_scale_shift": dict(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=2,
        down_block_types=("AttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "AttnUpBlock2D"),
        norm_num_groups=4, attention_head_dim=None, resnet_time_scale_shift="scale_shift", freq_shift=1,
        flip_sin_to_cos=False,
    ),
}

# name: (unet, pipeline class, scheduler class, scheduler kwargs)
PIPELINES = {
    # epsilon, diffusers' DDIM defaults (leading spacing, clip to [-1, 1], alpha-bar 1 at the end).
    "ddim_epsilon": ("small", DDIMPipeline, DDIMScheduler, dict(prediction_type="epsilon")),
    # v prediction, trailing spacing, scaled_linear betas, no clipping, set_alpha_to_one False.
    "ddim_v_trailing": ("rgb_scale_shift", DDIMPipeline, DDIMScheduler, dict(
        prediction_type="v_prediction", timestep_spacing="trailing", beta_schedule="scaled_linear",
        beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False)),
    # v prediction from a DDPM pipeline folder, cosine betas, steps_offset 1, clip range 2.
    "ddpm_v_cosine": ("small", DDPMPipeline, DDPMScheduler, dict(
        prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2", steps_offset=1,
        clip_sample_range=2.0, num_train_timesteps=500)),
    # epsilon with trained_betas (a geometric schedule no named schedule gives), linspace spacing.
    "ddim_trained_betas": ("small", DDIMPipeline, DDIMScheduler, dict(
        trained_betas=np.geomspace(1e-4, 0.05, 300).tolist(), num_train_timesteps=300,
        timestep_spacing="linspace")),
    # Attention weights under the names of early diffusers checkpoints (query / key / value /
    # proj_attn, as in google/ddpm-cifar10-32), which diffusers still renames on load.
    "ddim_legacy_attention_names": ("small", DDIMPipeline, DDIMScheduler, dict(prediction_type="v_prediction")),
}

LEGACY = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def rename_to_legacy(path):
    tensors = load_file(path)
    renamed = {}
    for key, value in tensors.items():
        for new, old in LEGACY.items():
            key = key.replace(f".{new}.", f".{old}.")
        renamed[key] = value
    assert renamed.keys() != tensors.keys()
    save_file(renamed, path, metadata={"format": "pt"})


PERTURB = 0.02  # std of the noise added to every U-Net weight


def ddim20(unet, config, x, dtype):
    ddim = DDIMScheduler.from_config(config)
    ddim.set_timesteps(20)
    ddim.alphas_cumprod = ddim.alphas_cumprod.to(dtype)
    ddim.final_alpha_cumprod = ddim.final_alpha_cumprod.to(dtype)
    unet = unet.to(dtype)
    x = x.to(dtype)
    with torch.no_grad():
        for t in ddim.timesteps:
            x = ddim.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    unet.to(torch.float32)
    return x, ddim.timesteps


def main():
    ROOT.mkdir(parents=True, exist_ok=True)
    for i, (name, (unet_name, pipe_cls, sched_cls, kwargs)) in enumerate(PIPELINES.items()):
        torch.manual_seed(100 + i)
        cfg = UNETS[unet_name]
        unet = UNet2DModel(**cfg).eval()
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(PERTURB * torch.randn_like(p))
        scheduler = sched_cls(**kwargs)
        pipe_cls(unet=unet, scheduler=scheduler).save_pretrained(ROOT / name, safe_serialization=True)
        if "legacy" in name:
            rename_to_legacy(ROOT / name / "unet" / "diffusion_pytorch_model.safetensors")
        # The expected output comes from the folder as written (diffusers reads it back).
        unet = UNet2DModel.from_pretrained(ROOT / name / "unet").eval()

        noise = torch.randn(3, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"])
        np.save(ROOT / f"{name}.noise.npy", noise.numpy().astype(np.float32))
        x, timesteps = ddim20(unet, scheduler.config, noise, torch.float32)
        x64, _ = ddim20(unet, scheduler.config, noise, torch.float64)
        conditioning = float((x.double() - x64).abs().max())
        assert conditioning < 2e-4, f"{name}: float32 vs float64 loops differ by {conditioning}"
        np.save(ROOT / f"{name}.ddim20.npy", x.numpy().astype(np.float32))
        print(name, [int(t) for t in timesteps[:3]], "... output std", float(x.std()),
              "float32 vs float64", conditioning)


if __name__ == "__main__":
    main()
