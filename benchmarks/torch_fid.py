"""W4 in PyTorch, the same workload as benchmarks/src/bench_fid.rs: pytorch-fid's InceptionV3
(block 3, pool3), batch 50 of 299 x 299 images under no_grad, images/s after one warm-up
batch; then pytorch-fid's `calculate_frechet_distance` (scipy's sqrtm) and np.mean / np.cov of
two 5000 x 2048 clouds. Weights from scripts/reference/inception.py's formula (pytorch-fid's
download replaced), which does not change the time. Prints one JSON line.
"""

import argparse
import json
import time

import pathlib
import sys

import numpy as np
import torch
import pytorch_fid.inception as pfi
from pytorch_fid.fid_score import calculate_frechet_distance

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts" / "reference"))
from inception import formula_state_dict  # noqa: E402  (the fixtures' weights; any weights time the same)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    sd = formula_state_dict()
    pfi.load_state_dict_from_url = lambda *a, **k: sd
    model = pfi.InceptionV3([3]).eval()
    if args.compile:
        model = torch.compile(model)
    x = torch.rand(50, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        for _ in range(args.batches):
            model(x)
        images_per_s = 50 * args.batches / (time.perf_counter() - start)
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (args.n, 2048)).astype(np.float32)
    b = (rng.uniform(-1, 1, (args.n, 2048)) * 1.1 + 0.1).astype(np.float32)
    start = time.perf_counter()
    ma, sa, mb, sb = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    moments_s = time.perf_counter() - start
    start = time.perf_counter()
    d = calculate_frechet_distance(ma, sa, mb, sb)
    frechet_s = time.perf_counter() - start
    print(json.dumps({"inception_images_per_s": images_per_s, "frechet_n": args.n, "frechet": float(d),
                      "moments_s": moments_s, "frechet_s": frechet_s}))


if __name__ == "__main__":
    main()
