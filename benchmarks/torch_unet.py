"""W2 in PyTorch eager, the same workload as benchmarks/src/bench_unet.rs.

diffusers' UNet2DModel on 28x28x1: channels 32/64/64, two residual blocks per level, attention at
7x7 (AttnDownBlock2D / AttnUpBlock2D) and in the middle block, 8 groups, head dim 32. T = 1000
linear betas, Adam(lr 1e-4, eps 1e-8), batch 64, L_simple on eps, loss read every step. Forward
passes at batch 256 under no_grad. Prints one JSON line.
"""

import argparse
import json
import time

import torch
from diffusers import UNet2DModel


def w2_model():
    return UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        norm_num_groups=8,
        attention_head_dim=32,
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--forward", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (inductor)")
    a = p.parse_args()
    torch.manual_seed(0)
    T = 1000
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    ac = torch.cumprod(1 - betas, 0)
    sqrt_ac, sqrt_1m = ac.sqrt().float(), (1 - ac).sqrt().float()
    model = w2_model()
    params = sum(p.numel() for p in model.parameters())
    net = torch.compile(model) if a.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-8)
    x0 = torch.randn(64, 1, 28, 28)
    warmup = 3
    for step in range(warmup + a.train_steps):
        if step == warmup:
            start = time.perf_counter()
        t = torch.randint(0, T, (64,))
        eps = torch.randn_like(x0)
        x_t = sqrt_ac[t].view(-1, 1, 1, 1) * x0 + sqrt_1m[t].view(-1, 1, 1, 1) * eps
        loss = ((net(x_t, t).sample - eps) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    train = a.train_steps / (time.perf_counter() - start)

    model.eval()
    x = torch.randn(256, 1, 28, 28)
    t = torch.full((256,), 500)
    with torch.no_grad():
        net(x, t).sample.sum().item()
        start = time.perf_counter()
        for _ in range(a.forward):
            net(x, t).sample.sum().item()
    fwd = a.forward / (time.perf_counter() - start)
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} {'torch.compile' if a.compile else 'eager'} ({torch.get_num_threads()} threads)",
        "params": params,
        "train_steps_per_s_b64": train,
        "forward_per_s_b256": fwd,
        "train_steps_timed": a.train_steps,
        "forwards_timed": a.forward,
    }))


if __name__ == "__main__":
    main()
