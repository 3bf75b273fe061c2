#!/usr/bin/env python3
"""A 2-D Gaussian mixture no diffuse run has seen, with its exact density.

Writes OUT/train.csv (100,000 points), OUT/test.csv (20,000 points) and OUT/truth.json (the
test points' mean -log2 p(x) per dimension, the true NLL a bound must lie above). Pure Python
(no numpy): seeded, so the files are the same on every machine.

    python3 experiments/bounds/mixture.py OUT
"""
import json
import math
import random
import sys

# (weight, mean, covariance): four anisotropic components, one of them thin.
COMPONENTS = [
    (0.3, (-1.5, 0.0), ((0.30, 0.12), (0.12, 0.08))),
    (0.2, (1.0, 1.2), ((0.05, 0.0), (0.0, 0.20))),
    (0.2, (1.2, -1.0), ((0.02, -0.01), (-0.01, 0.03))),
    (0.3, (0.0, -1.6), ((0.50, 0.0), (0.0, 0.01))),
]


def cholesky(c):
    a = math.sqrt(c[0][0])
    b = c[1][0] / a
    return a, b, math.sqrt(c[1][1] - b * b)


def draw(rng):
    u, acc = rng.random(), 0.0
    for w, m, c in COMPONENTS:
        acc += w
        if u <= acc:
            break
    a, b, d = cholesky(c)
    z0, z1 = rng.gauss(0, 1), rng.gauss(0, 1)
    return m[0] + a * z0, m[1] + b * z0 + d * z1


def density(x, y):
    p = 0.0
    for w, m, c in COMPONENTS:
        det = c[0][0] * c[1][1] - c[0][1] * c[1][0]
        dx, dy = x - m[0], y - m[1]
        q = (c[1][1] * dx * dx - 2 * c[0][1] * dx * dy + c[0][0] * dy * dy) / det
        p += w * math.exp(-0.5 * q) / (2 * math.pi * math.sqrt(det))
    return p


def main():
    out = sys.argv[1]
    rng = random.Random(2026)
    for name, n in [("train", 100_000), ("test", 20_000)]:
        pts = [draw(rng) for _ in range(n)]
        with open(f"{out}/{name}.csv", "w") as f:
            for x, y in pts:
                f.write(f"{x!r},{y!r}\n")
        if name == "test":
            nll = [-math.log(density(x, y)) for x, y in pts]
            mean = sum(nll) / n
            sd = math.sqrt(sum((v - mean) ** 2 for v in nll) / (n - 1))
            bits = mean / 2 / math.log(2)
            ci = 1.96 * sd / math.sqrt(n) / 2 / math.log(2)
            with open(f"{out}/truth.json", "w") as f:
                json.dump({"examples": n, "bits_per_dim": bits, "bits_per_dim_ci95": ci}, f, indent=2)
            print(f"true NLL of the test points: {bits:.4f} +- {ci:.4f} bits/dim")


if __name__ == "__main__":
    main()
