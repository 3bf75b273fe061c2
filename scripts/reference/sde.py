"""Reference values for diffuse's SDEs (issues 10 and 23): score_sde's `VPSDE`, `subVPSDE` and
`VESDE` (yang-song/score_sde_pytorch, sde_lib.py) with their default parameters. score_sde is not
a pip package, so its `sde`, `marginal_prob`, `prior_logp`, `discretize`, `reverse` (the reverse
SDE's drift and discretization, and the probability-flow ODE's) and `VPSDE.discrete_betas`, and
sampling.py's `ReverseDiffusionPredictor`, `EulerMaruyamaPredictor` and `LangevinCorrector`
update functions, are transcribed here in torch float64 (the drift evaluated at x = 1 gives the
drift coefficient f(t)); the random draws are passed in instead of drawn.

One liberty: score_sde's `LangevinCorrector` reads `sde.alphas` for VP and sub-VP, which its
`subVPSDE` does not define; here sub-VP uses VP's alphas (its betas are VP's), as diffuse does.

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
        self.alphas = 1. - self.discrete_betas

    def discretize(self, x, t):
        timestep = (t * (self.N - 1)).long()
        beta = self.discrete_betas[timestep]
        alpha = self.alphas[timestep]
        return torch.sqrt(alpha) * x - x, torch.sqrt(beta)

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

    def discretize(self, x, t):
        # score_sde's base SDE.discretize: Euler-Maruyama.
        dt = 1 / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * torch.sqrt(torch.tensor(dt))


class VESDE:
    def __init__(self, sigma_min=0.01, sigma_max=50, N=1000):
        self.sigma_min, self.sigma_max, self.N = sigma_min, sigma_max, N
        self.discrete_sigmas = torch.exp(torch.linspace(np.log(sigma_min), np.log(sigma_max), N))

    def discretize(self, x, t):
        timestep = (t * (self.N - 1)).long()
        sigma = self.discrete_sigmas[timestep]
        adjacent_sigma = torch.where(timestep == 0, torch.zeros_like(t),
                                     self.discrete_sigmas[(timestep - 1).clamp(min=0)])
        return torch.zeros_like(x), torch.sqrt(sigma ** 2 - adjacent_sigma ** 2)

    def sde(self, x, t):
        sigma = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return torch.zeros_like(x), sigma * np.sqrt(2 * (np.log(self.sigma_max) - np.log(self.sigma_min)))

    def marginal_prob(self, x, t):
        return x, self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def prior_logp(self, z):
        n = np.prod(z.shape[1:])
        return -n / 2. * np.log(2 * np.pi * self.sigma_max ** 2) - torch.sum(z ** 2, dim=1) / (2 * self.sigma_max ** 2)


def reverse(sde, score_fn, probability_flow):
    """score_sde's SDE.reverse: the reverse SDE's (or the probability-flow ODE's) `sde` and
    `discretize`."""
    w = 0.5 if probability_flow else 1.

    def rsde(x, t):
        drift, diffusion = sde.sde(x, t)
        return drift - diffusion ** 2 * score_fn(x, t) * w, (0. * diffusion if probability_flow else diffusion)

    def rdiscretize(x, t):
        f, G = sde.discretize(x, t)
        return f - G ** 2 * score_fn(x, t) * w, (0. * G if probability_flow else G)

    return rsde, rdiscretize


def reverse_diffusion_predictor(sde, score_fn, x, t, z):
    f, G = reverse(sde, score_fn, False)[1](x, t)
    x_mean = x - f
    return x_mean + G * z, x_mean


def euler_maruyama_predictor(sde, score_fn, x, t, z):
    dt = -1. / sde.N
    drift, diffusion = reverse(sde, score_fn, False)[0](x, t)
    x_mean = x + drift * dt
    return x_mean + diffusion * np.sqrt(-dt) * z, x_mean


def langevin_corrector(sde, score_fn, x, t, snr, noise):
    if isinstance(sde, VPSDE):  # VP and sub-VP (see the module docs)
        timestep = (t * (sde.N - 1)).long()
        alpha = sde.alphas[timestep]
    else:
        alpha = torch.ones_like(t)
    grad = score_fn(x, t)
    grad_norm = torch.norm(grad.reshape(grad.shape[0], -1), dim=-1).mean()
    noise_norm = torch.norm(noise.reshape(noise.shape[0], -1), dim=-1).mean()
    step_size = (snr * noise_norm / grad_norm) ** 2 * 2 * alpha
    x_mean = x + step_size * grad
    return x_mean + torch.sqrt(step_size * 2) * noise, x_mean


DATA_MEAN, DATA_STD = 0.7, 0.5


def gaussian_score(sde):
    """The exact score of the marginal at t of N(DATA_MEAN, DATA_STD^2) data."""
    def score(x, t):
        mean, std = sde.marginal_prob(torch.tensor(1.0), t)
        var = mean ** 2 * DATA_STD ** 2 + std ** 2
        return -(x - mean * DATA_MEAN) / var
    return score


def steps(sde, x, z):
    """discretize, the reverse drifts and one step of each predictor and the corrector, at
    several times, for N = 1000 and N = 100 (VP with N = 10 has beta = 2 at t = 1, a NaN)."""
    score = gaussian_score(sde)
    out = []
    for n in [1000, 100, 1000]:
        sde.N = n
        if isinstance(sde, VPSDE):
            sde.discrete_betas = torch.linspace(sde.beta_0 / n, sde.beta_1 / n, n)
            sde.alphas = 1. - sde.discrete_betas
        if isinstance(sde, VESDE):
            sde.discrete_sigmas = torch.exp(torch.linspace(np.log(sde.sigma_min), np.log(sde.sigma_max), n))
        if len(out) == 8:
            break  # the last pass only restores N = 1000
        for t in [1e-3, 0.3, 0.55, 1.0]:
            t_ = torch.tensor(t)
            f, G = sde.discretize(x, t_)
            rev_sde = reverse(sde, score, False)[0](x, t_)[0]
            rev_ode = reverse(sde, score, True)[0](x, t_)[0]
            rd = reverse_diffusion_predictor(sde, score, x, t_, z)
            em = euler_maruyama_predictor(sde, score, x, t_, z)
            lc = langevin_corrector(sde, score, x, t_, 0.16, z)
            flat = lambda v: v.flatten().tolist()
            out.append(dict(
                n=n, t=t, f=flat(f), G=float(G),
                reverse_drift=flat(rev_sde), ode_drift=flat(rev_ode),
                reverse_diffusion=[flat(rd[0]), flat(rd[1])],
                euler_maruyama=[flat(em[0]), flat(em[1])],
                langevin=[flat(lc[0]), flat(lc[1])],
            ))
    return out


def main():
    torch.manual_seed(0)
    z = torch.randn(2, 3) * 3
    # float32-representable, so that diffuse's float32 tensors hold them exactly.
    x = (torch.randn(2, 3) * 2).float().double()
    noise = torch.randn(2, 3).float().double()
    out = {"z": z.flatten().tolist(), "x": x.flatten().tolist(), "noise": noise.flatten().tolist(),
           "data_mean": DATA_MEAN, "data_std": DATA_STD, "sdes": []}
    for name, sde in [("vp", VPSDE()), ("sub_vp", subVPSDE()), ("ve", VESDE())]:
        rows = []
        for t in [1e-5, 1e-3, 0.3, 0.7, 1.0]:
            t_ = torch.tensor(t)
            drift, diffusion = sde.sde(torch.tensor(1.0), t_)
            mean, std = sde.marginal_prob(torch.tensor(1.0), t_)
            rows.append(dict(t=t, f=float(drift), g=float(diffusion), mean=float(mean), std=float(std)))
        entry = dict(sde=name, rows=rows, prior_logp=sde.prior_logp(z).tolist(),
                     steps=steps(sde, x, noise))
        if name == "vp":
            entry["discrete_betas"] = sde.discrete_betas.tolist()
        out["sdes"].append(entry)
    OUT.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
