"""Reference values for diffuse's SDEs (issue 10): score_sde's `VPSDE`, `subVPSDE` and `VESDE`
(yang-song/score_sde_pytorch, sde_lib.py) with their default parameters. score_sde is not a pip
package, so its `sde`, `marginal_prob`, `prior_logp` and `VPSDE.discrete_betas` are transcribed
here verbatim in torch float64 (drift evaluated at x = 1 to give the drift coefficient f(t)).

Writes tests/fixtures/sde.json. CI never runs this; rerun by hand:

    pip install torch numpy
    python3 scripts/reference/sde.py
"""

import json
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "sde.json"
torch.set_default_dtype(torch.float64)


class VPSDE:
    def __init__(self, beta_min=0.1, beta_max=20, N=1000):
        self.beta_0, self.beta_1, self.N = beta_min, beta_max, N
        self.discrete_betas = torch.linspace(beta_min / N, beta_max / N, N)

    def sde(self, x, t):
        beta_t = self.beta_0 + t * (self.beta_1 - self.beta_0)
        return -0.5 * beta_t * x, torch.sqrt(beta_t)

    def marginal_prob(self, x, t):
        log_mean_coeff = -0.25 * t ** 2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0
        return torch.exp(log_mean_coeff) * x, torch.sqrt(1. - torch.exp(2. * log_mean_coeff))

    def prior_logp(self, z):
        n = np.prod(z.shape[1:])
        return -n / 2. * np.log(2 * np.pi) - torch.sum(z ** 2, dim=1) / 2.


class subVPSDE(VPSDE):
    def sde(self, x, t):
        beta_t = self.beta_0 + t * (self.beta_1 - self.beta_0)
        discount = 1. - torch.exp(-2 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t ** 2)
        return -0.5 * beta_t * x, torch.sqrt(beta_t * discount)

    def marginal_prob(self, x, t):
        log_mean_coeff = -0.25 * t ** 2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0
        return torch.exp(log_mean_coeff) * x, 1 - torch.exp(2. * log_mean_coeff)


class VESDE:
    def __init__(self, sigma_min=0.01, sigma_max=50, N=1000):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def sde(self, x, t):
        sigma = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return torch.zeros_like(x), sigma * np.sqrt(2 * (np.log(self.sigma_max) - np.log(self.sigma_min)))

    def marginal_prob(self, x, t):
        return x, self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def prior_logp(self, z):
        n = np.prod(z.shape[1:])
        return -n / 2. * np.log(2 * np.pi * self.sigma_max ** 2) - torch.sum(z ** 2, dim=1) / (2 * self.sigma_max ** 2)


def main():
    torch.manual_seed(0)
    z = torch.randn(2, 3) * 3
    out = {"z": z.flatten().tolist(), "sdes": []}
    for name, sde in [("vp", VPSDE()), ("sub_vp", subVPSDE()), ("ve", VESDE())]:
        rows = []
        for t in [1e-5, 1e-3, 0.3, 0.7, 1.0]:
            t_ = torch.tensor(t)
            drift, diffusion = sde.sde(torch.tensor(1.0), t_)
            mean, std = sde.marginal_prob(torch.tensor(1.0), t_)
            rows.append(dict(t=t, f=float(drift), g=float(diffusion), mean=float(mean), std=float(std)))
        entry = dict(sde=name, rows=rows, prior_logp=sde.prior_logp(z).tolist())
        if name == "vp":
            entry["discrete_betas"] = sde.discrete_betas.tolist()
        out["sdes"].append(entry)
    OUT.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
