"""Reference values for the terms of the variational bound (issue 4), computed with PyTorch in
float64 from torch.distributions (independently of diffuse's formulas):

- normal_kl: torch.distributions.kl_divergence(Normal(m1, s1), Normal(m2, s2)), s = exp(logvar / 2)
- discretized: DDPM eq. 13 by direct integration of Normal(mean, exp(log_scale)) over the 8-bit
  bin of x (width 2/255; the outer bins extended to -inf and +inf), then log
- gaussian: Normal(mean, exp(log_scale)).log_prob(x)

Writes tests/fixtures/vlb.json. CI never runs this; rerun by hand:

    pip install torch numpy
    python3 scripts/reference/vlb.py
"""

import json
import pathlib

import torch
from torch.distributions import Normal, kl_divergence

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "vlb.json"


def main():
    g = torch.Generator().manual_seed(0)
    n = 64
    m1, m2 = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    lv1 = torch.empty(n, dtype=torch.float64).uniform_(-9, 1, generator=g)
    lv2 = torch.empty(n, dtype=torch.float64).uniform_(-9, 1, generator=g)
    kl = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))

    # x on the 8-bit grid, including both ends; scales from 1e-3 to 1; means within ~2 scales of x
    # (so every bin's mass is far above the 1e-12 floor both implementations clamp at).
    pixels = torch.randint(0, 256, (n,), generator=g)
    pixels[:4] = torch.tensor([0, 255, 0, 255])
    x = pixels.double() / 127.5 - 1
    log_scale = torch.empty(n, dtype=torch.float64).uniform_(-7, 0, generator=g)
    mean = x + log_scale.exp() * torch.randn(n, generator=g, dtype=torch.float64)
    dist = Normal(mean, log_scale.exp())
    upper = torch.where(pixels == 255, torch.ones_like(x), dist.cdf(x + 1 / 255))
    lower = torch.where(pixels == 0, torch.zeros_like(x), dist.cdf(x - 1 / 255))
    discretized = (upper - lower).log()
    assert float(discretized.min()) > -20, float(discretized.min())
    gaussian = dist.log_prob(x)

    fixture = {
        "normal_kl": {"mean1": m1.tolist(), "logvar1": lv1.tolist(), "mean2": m2.tolist(),
                      "logvar2": lv2.tolist(), "kl": kl.tolist()},
        "discretized": {"x": x.tolist(), "mean": mean.tolist(), "log_scale": log_scale.tolist(),
                        "log_prob": discretized.tolist()},
        "gaussian": {"x": x.tolist(), "mean": mean.tolist(), "log_scale": log_scale.tolist(),
                     "log_prob": gaussian.tolist()},
        "torch": torch.__version__,
    }
    OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print("wrote", OUT, "min discretized log-prob", float(discretized.min()))


if __name__ == "__main__":
    main()
