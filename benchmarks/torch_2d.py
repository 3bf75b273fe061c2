"""W1 in PyTorch eager, the same workload as benchmarks/src/bench_2d.rs.

MLP denoiser: [x_t, sinusoidal(t, 64)] -> 3 x (Linear 128 + SiLU) -> Linear 2; T = 1000, linear
betas 1e-4..0.02, Adam(lr 1e-3, eps 1e-8), batch 1024, L_simple on eps. Sampling: DDPM ancestral
(fixed_small) over 1000 steps for 10,000 points. Prints one JSON line.
"""

import argparse
import json
import math
import time

import torch
from torch import nn


def timestep_embedding(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class Mlp(nn.Module):
    def __init__(self, width=128, layers=3, temb=64):
        super().__init__()
        self.temb = temb
        dims = [2 + temb] + [width] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(width, 2)

    def forward(self, x, t):
        h = torch.cat([x, timestep_embedding(t, self.temb)], dim=1)
        for layer in self.hidden:
            h = torch.nn.functional.silu(layer(h))
        return self.out(h)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--sample-steps", type=int, default=1000)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (inductor)")
    a = p.parse_args()
    torch.manual_seed(0)
    T = 1000
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    ac = torch.cumprod(1 - betas, 0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    sqrt_ac, sqrt_1m = ac.sqrt().float(), (1 - ac).sqrt().float()
    model = Mlp()
    net = torch.compile(model) if a.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    x0 = torch.randn(1024, 2)
    warmup = 20
    for step in range(warmup + a.train_steps):
        if step == warmup:
            start = time.perf_counter()
        t = torch.randint(0, T, (1024,))
        eps = torch.randn_like(x0)
        x_t = sqrt_ac[t, None] * x0 + sqrt_1m[t, None] * eps
        loss = ((net(x_t, t) - eps) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # diffuse reads the loss every step too
    train_secs = time.perf_counter() - start

    # DDPM ancestral sampling over a strided walk of sample-steps (all 1000 by default).
    ts = list(range(0, T, T // a.sample_steps))[::-1]
    x = torch.randn(a.samples, 2)
    with torch.no_grad():
        net(x, torch.full((a.samples,), ts[0]))  # compiles the inference graph (untimed)
    start = time.perf_counter()
    with torch.no_grad():
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            abar, abar_prev = ac[t].item(), (ac[prev].item() if prev >= 0 else 1.0)
            alpha, beta = abar / abar_prev, 1 - abar / abar_prev
            eps = net(x, torch.full((a.samples,), t))
            x0_hat = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
            mean = (math.sqrt(abar_prev) * beta / (1 - abar)) * x0_hat + (math.sqrt(alpha) * (1 - abar_prev) / (1 - abar)) * x
            if t > 0:
                var = (1 - abar_prev) / (1 - abar) * beta
                x = mean + math.sqrt(var) * torch.randn_like(x)
            else:
                x = mean
    sample_secs = (time.perf_counter() - start) * T / a.sample_steps
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} {'torch.compile' if a.compile else 'eager'}",
        "threads": torch.get_num_threads(),
        "train_steps_per_s": a.train_steps / train_secs,
        "sample_10k_1000_steps_s": sample_secs * 10_000 / a.samples,
        "train_steps_timed": a.train_steps,
        "sample_steps_timed": a.sample_steps,
        "samples": a.samples,
    }))


if __name__ == "__main__":
    main()
