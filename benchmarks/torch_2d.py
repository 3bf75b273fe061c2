"""W1 in PyTorch eager, the same workload as benchmarks/src/bench_2d.rs.

MLP denoiser: [x_t, sinusoidal(t, 64)] -> 3 x (Linear 128 + SiLU) -> Linear 2; T = 1000, linear
betas 1e-4..0.02, Adam(lr 1e-3, eps 1e-8), batch 1024, L_simple on eps. Sampling: DDPM ancestral
(fixed_small) over 1000 steps for 10,000 points. Prints one JSON line.

With --score, W3 (benchmarks/src/bench_2d.rs's `--score`): the same MLP as a VP score SDE
(beta 0.1..20): continuous-time denoising score matching (t ~ U(1e-5, 1), the network told 999 t,
its input scaled by 1 / sqrt(mean^2 + std^2), loss 1/2 ||net - z||^2 summed over dimensions),
and 10,000 samples by predictor-corrector as score_sde's sampling.py does it (1000
reverse-diffusion steps, one Langevin corrector step each at snr 0.16).
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


def vp(t, b0=0.1, b1=20.0):
    """mean(t), std(t) of the VP SDE."""
    log_mean = -0.25 * t ** 2 * (b1 - b0) - 0.5 * t * b0
    mean = torch.exp(log_mean)
    return mean, torch.sqrt(1 - torch.exp(2 * log_mean))


def score_workload(a):
    torch.manual_seed(0)
    model = Mlp()
    net = torch.compile(model) if a.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    x0 = torch.randn(1024, 2)
    warmup = 20
    for step in range(warmup + a.train_steps):
        if step == warmup:
            start = time.perf_counter()
        t = 1e-5 + (1 - 1e-5) * torch.rand(1024)
        z = torch.randn_like(x0)
        mean, std = vp(t)
        x_t = mean[:, None] * x0 + std[:, None] * z
        c_in = 1 / torch.sqrt(mean ** 2 + std ** 2)
        loss = (0.5 * ((net(c_in[:, None] * x_t, 999 * t) - z) ** 2).sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
    train_secs = time.perf_counter() - start

    N = a.sample_steps
    betas = torch.linspace(0.1 / N, 20.0 / N, N)
    alphas = 1 - betas
    n = a.samples

    def score(x, t):
        mean, std = vp(torch.tensor(t))
        c_in = 1 / torch.sqrt(mean ** 2 + std ** 2)
        return -net(c_in * x, torch.full((n,), 999 * t)) / std

    x = torch.randn(n, 2)
    with torch.no_grad():
        score(x, 1.0)  # compiles the inference graph (untimed)
    start = time.perf_counter()
    with torch.no_grad():
        for t in torch.linspace(1, 1e-3, N).tolist():
            i = int(t * (N - 1))
            # Langevin corrector (score_sde's LangevinCorrector, one step, snr 0.16).
            g = score(x, t)
            noise = torch.randn_like(x)
            step = (0.16 * noise.norm(dim=1).mean() / g.norm(dim=1).mean()) ** 2 * 2 * alphas[i]
            x = x + step * g + torch.sqrt(2 * step) * noise
            # Reverse-diffusion predictor (VPSDE.discretize, reversed).
            s = score(x, t)
            f = torch.sqrt(alphas[i]) * x - x
            x_mean = x - (f - betas[i] * s)
            x = x_mean + torch.sqrt(betas[i]) * torch.randn_like(x)
    sample_secs = (time.perf_counter() - start) * 1000 / N
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} {'torch.compile' if a.compile else 'eager'}",
        "workload": "score",
        "threads": torch.get_num_threads(),
        "train_steps_per_s": a.train_steps / train_secs,
        "sample_10k_pc_1000_s": sample_secs * 10_000 / n,
        "train_steps_timed": a.train_steps,
        "sample_steps_timed": N,
        "samples": n,
    }))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--sample-steps", type=int, default=1000)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (inductor)")
    p.add_argument("--score", action="store_true", help="W3: the MLP as a VP score SDE")
    a = p.parse_args()
    if a.score:
        return score_workload(a)
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
