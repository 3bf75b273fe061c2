"""How far PyTorch's bfloat16 autocast moves the U-Net fixtures' outputs and input gradients
from float32, for diffuse's mixed-precision test (tests/unet.rs) to compare its own against.

For each model in tests/fixtures/unet/ (written by unet.py), on its input.npy and
timesteps.npy, on the CPU: the output y and the gradient of sum(y * r) with respect to the
input, r_i = sin(0.1 i) over y's elements in row-major order, once in float32 and once under
`torch.autocast("cpu", dtype=torch.bfloat16)`. Writes tests/fixtures/unet/autocast_bf16.json:
per model, max |y_bf16 - y_f32| / max |y_f32| and the same for the input gradient. CI never
runs this; rerun by hand:

    pip install torch diffusers numpy
    python3 scripts/reference/autocast.py
"""

import json
import pathlib

import numpy as np
import torch
from diffusers import UNet2DModel

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "unet"


def run(model, x, t, autocast):
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = model(x, t).sample
    y = y.float()
    r = torch.sin(0.1 * torch.arange(y.numel(), dtype=torch.float32)).reshape(y.shape)
    (y * r).sum().backward()
    return y.detach().numpy(), x.grad.numpy()


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def main():
    out = {}
    for name in ["attn_default", "scale_shift"]:
        d = ROOT / name
        model = UNet2DModel.from_pretrained(d).eval()
        x = torch.from_numpy(np.load(d / "input.npy"))
        t = torch.from_numpy(np.load(d / "timesteps.npy"))
        y32, g32 = run(model, x, t, False)
        assert np.abs(y32 - np.load(d / "output.npy")).max() < 1e-5
        y16, g16 = run(model, x, t, True)
        out[name] = {
            "output_relative_error": relative(y16, y32),
            "input_gradient_relative_error": relative(g16, g32),
        }
        print(name, out[name])
    out["_source"] = f"torch {torch.__version__}, scripts/reference/autocast.py"
    (ROOT / "autocast_bf16.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
