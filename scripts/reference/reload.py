"""A model trained by diffuse, loaded by diffusers: the reload check of issue 3.

Takes a pipeline folder written by `diffuse train --dataset ...` (default: the committed fixture
tests/fixtures/trained_mnist, the unet/ + scheduler/ + model_index.json of the README's MNIST run),
loads it with diffusers' own classes, and writes beside it:

- trained_mnist.noise.npy: x_T, float32 [4, 1, 28, 28] (torch seed 0)
- trained_mnist.unet.npy: `unet(x_T, t).sample` at t = (999, 500, 20, 0), one t per image
- trained_mnist.ddim20.npy: diffusers' 20-step DDIM loop (eta 0) from x_T
- trained_mnist.reload.json: the classes diffusers loaded, parameter count and versions

tests/pipelines.rs loads the same folder in diffuse and compares (U-Net 1e-4, loop 1e-3).
CI never runs this; rerun by hand:

    pip install torch diffusers numpy
    python3 scripts/reference/reload.py [PIPELINE_DIR]
"""

import json
import pathlib
import sys

import diffusers
import numpy as np
import torch
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def main():
    folder = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES / "trained_mnist"
    stem = folder.parent / folder.name
    unet = UNet2DModel.from_pretrained(folder / "unet").eval()
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    pipeline = DDIMPipeline.from_pretrained(folder)
    c, size = unet.config.in_channels, unet.config.sample_size

    torch.manual_seed(0)
    x = torch.randn(4, c, size, size)
    t = torch.tensor([999, 500, 20, 0])
    with torch.no_grad():
        out = unet(x, t).sample
    np.save(f"{stem}.noise.npy", x.numpy().astype(np.float32))
    np.save(f"{stem}.unet.npy", out.numpy().astype(np.float32))

    scheduler.set_timesteps(20)
    y = x.clone()
    with torch.no_grad():
        for step in scheduler.timesteps:
            y = scheduler.step(unet(y, step).sample, step, y, eta=0.0).prev_sample
    np.save(f"{stem}.ddim20.npy", y.numpy().astype(np.float32))
    report = {
        "pipeline_class": type(pipeline).__name__,
        "unet_class": type(unet).__name__,
        "scheduler_class": type(scheduler).__name__,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "prediction_type": scheduler.config.prediction_type,
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
    }
    with open(f"{stem}.reload.json", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(report)


if __name__ == "__main__":
    main()
