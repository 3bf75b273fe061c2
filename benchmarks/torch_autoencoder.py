"""W5 in PyTorch eager, the same workload as benchmarks/src/bench_autoencoder.rs.

diffusers' AutoencoderKL in Stable Diffusion's layout at half its width: channels 64/128/256/256,
two residual blocks per level, attention in the middle blocks, 32 groups, 4 latent channels, on
3 x 128 x 128 images at batch 4 under no_grad: encodes/s (posterior mean and log-variance) and
decodes/s. Prints one JSON line.
"""

import argparse
import json
import time

import torch
from diffusers import AutoencoderKL


def w5_model():
    return AutoencoderKL(
        block_out_channels=(64, 128, 256, 256),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=128,
    )


def rate(passes, f):
    f()
    start = time.perf_counter()
    for _ in range(passes):
        f()
    return passes / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (inductor)")
    a = p.parse_args()
    torch.manual_seed(0)
    model = w5_model().eval()
    params = sum(p.numel() for p in model.parameters())
    encoder = torch.compile(model.encode) if a.compile else model.encode
    decoder = torch.compile(model.decode) if a.compile else model.decode
    x = torch.randn(4, 3, 128, 128)
    z = torch.randn(4, 4, 16, 16)

    def encode():
        d = encoder(x).latent_dist
        return (d.mean.sum() + d.logvar.sum()).item()

    with torch.no_grad():
        enc = rate(a.passes, encode)
        dec = rate(a.passes, lambda: decoder(z).sample.sum().item())
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} {'torch.compile' if a.compile else 'eager'} ({torch.get_num_threads()} threads)",
        "params": params,
        "encode_per_s_b4": enc,
        "decode_per_s_b4": dec,
        "passes_timed": a.passes,
    }))


if __name__ == "__main__":
    main()
