#!/usr/bin/env python3
"""A 2-D cloud none of diffuse's built-in sets or tests use: two interleaved spirals (the shape
of FFJORD's `2spirals` toy set), written as `x,y` lines for `diffuse train --data`.

    python3 experiments/families/spirals.py N SEED > spirals.csv

Standard library only. Each point: an angle theta = 3 pi sqrt(u), u ~ U(0, 1), on one of the
two arms, +-(theta cos theta, -theta sin theta), plus N(0, 0.3^2) noise on each coordinate.
"""
import math
import random
import sys


def main() -> None:
    n, seed = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    out = sys.stdout
    for _ in range(n):
        theta = 3.0 * math.pi * math.sqrt(rng.random())
        sign = 1.0 if rng.random() < 0.5 else -1.0
        x = sign * theta * math.cos(theta) + 0.3 * rng.gauss(0.0, 1.0)
        y = -sign * theta * math.sin(theta) + 0.3 * rng.gauss(0.0, 1.0)
        out.write(f"{x:.6f},{y:.6f}\n")


if __name__ == "__main__":
    main()
