"""A latent diffusion run trained by diffuse, loaded by diffusers as an `LDMPipeline` (issue 26).

Takes a latent run folder written by `diffuse train --family latent` (default: the committed
fixture tests/fixtures/trained_latent: model_index.json, unet/, vqvae/ and scheduler/ of the MNIST
run of experiments/latent), loads it with `LDMPipeline.from_pretrained`, and writes beside it:

- trained_latent.noise.npy: the latent x_T, float32 [4, C, h, w] (torch seed 0)
- trained_latent.ddim20.npy: `LDMPipeline.__call__`'s loop from that noise (20 DDIM steps, eta 0),
  decoded before the clamp: `vqvae.decode(latents / scaling_factor).sample`
- trained_latent.reload.json: the classes diffusers loaded, the largest difference between
  this float32 loop and the same loop in float64, and versions

tests/latent.rs samples the same folder with `diffuse sample --pipeline` and compares (1e-3).
CI never runs this; rerun by hand:

    pip install torch diffusers numpy
    python3 scripts/reference/reload_latent.py [RUN_DIR]
"""

import json
import pathlib
import sys

import diffusers
import numpy as np
import torch
from diffusers import DDIMScheduler, LDMPipeline

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def loop(pipe, noise):
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    x = noise * scheduler.init_noise_sigma
    scheduler.set_timesteps(20)
    for t in scheduler.timesteps:
        x = scheduler.step(pipe.unet(x, t).sample, t, x, eta=0.0).prev_sample
    return pipe.vqvae.decode(x / pipe.vqvae.config.scaling_factor).sample


def main():
    folder = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES / "trained_latent"
    stem = folder.parent / folder.name
    pipe = LDMPipeline.from_pretrained(folder)
    c, size = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    torch.manual_seed(0)
    noise = torch.randn(4, c, size, size)
    with torch.no_grad():
        out = loop(pipe, noise)
        pipe.unet.double()
        pipe.vqvae.double()
        out64 = loop(pipe, noise.double())
    gap = (out.double() - out64).abs().max().item()
    assert gap < 2e-4, f"the float32 and float64 loops differ by {gap}"
    np.save(f"{stem}.noise.npy", noise.numpy().astype(np.float32))
    np.save(f"{stem}.ddim20.npy", out.numpy().astype(np.float32))
    report = {
        "pipeline_class": type(pipe).__name__,
        "vqvae_class": type(pipe.vqvae).__name__,
        "unet_class": type(pipe.unet).__name__,
        "scheduler_class": type(pipe.scheduler).__name__,
        "float32_float64_gap": gap,
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
    }
    with open(f"{stem}.reload.json", "w") as f:
        json.dump(report, f, indent=2)
    print(report)


if __name__ == "__main__":
    main()
