"""Tiny random diffusers UNet2DModels and their outputs, for diffuse's U-Net parity tests.

Writes tests/fixtures/unet/<name>/: config.json and diffusion_pytorch_model.safetensors (as
`save_pretrained` writes them), input.npy [N, C, H, W], timesteps.npy [N] and output.npy (the
model's `.sample`). CI never runs this; rerun by hand:

    pip install torch diffusers numpy
    python3 scripts/reference/unet.py
"""

import pathlib

import numpy as np
import torch
from diffusers import UNet2DModel

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "unet"

CONFIGS = {
    # Attention at the second level, default time-embedding norm, flip_sin_to_cos.
    "attn_default": dict(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4, flip_sin_to_cos=True, freq_shift=0,
    ),
    # scale_shift, three levels, two layers per block, downsample padding 0, no flip, shift 1,
    # centred inputs, attention heads = channels (attention_head_dim None), 3 channels.
    "scale_shift": dict(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8, 16), layers_per_block=2,
        down_block_types=("AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"),
        norm_num_groups=4, attention_head_dim=None, resnet_time_scale_shift="scale_shift",
        flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, center_input_sample=True, norm_eps=1e-6,
    ),
    # The smallest feature maps (issue 22): a 2x4 input reaches 1x2 in the two-level model; a
    # 4x4 input reaches 2x2 and 1x1 in three levels (attention at 1x1 and in the middle
    # block); a one-level model on 1x1 images. `input_size` overrides the sample size.
    "small_2x4": dict(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4, input_size=(2, 4),
    ),
    "small_4x4": dict(
        sample_size=4, in_channels=1, out_channels=1, block_out_channels=(8, 8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4,
    ),
    "one_level_1x1": dict(
        sample_size=1, in_channels=3, out_channels=3, block_out_channels=(8,), layers_per_block=2,
        down_block_types=("AttnDownBlock2D",), up_block_types=("AttnUpBlock2D",),
        norm_num_groups=4, attention_head_dim=4,
    ),
}


def main():
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(i)
        cfg = dict(cfg)
        h, w = cfg.pop("input_size", (cfg["sample_size"], cfg["sample_size"]))
        model = UNet2DModel(**cfg).eval()
        with torch.no_grad():
            # Perturb every parameter so that norms, biases and zero-initialised layers all matter.
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        out_dir = ROOT / name
        model.save_pretrained(out_dir, safe_serialization=True)
        x = torch.randn(2, cfg["in_channels"], h, w)
        t = torch.tensor([3.0, 917.0])
        with torch.no_grad():
            y = model(x, t).sample
        np.save(out_dir / "input.npy", x.numpy().astype(np.float32))
        np.save(out_dir / "timesteps.npy", t.numpy().astype(np.float32))
        np.save(out_dir / "output.npy", y.numpy().astype(np.float32))
        print(name, sum(p.numel() for p in model.parameters()), "params, output std", float(y.std()))


if __name__ == "__main__":
    main()
