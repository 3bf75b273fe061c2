"""Prints the Table 2 results of experiments/table2/run.sh as Markdown.

    python3 table.py OUT_DIR                    2-D rows (metrics.json and nll.json of each run,
                                                every seed found)
    python3 table.py --mnist MNIST_DIR OUT_DIR  MNIST rows, plus a pixel-space sliced Wasserstein
                                                distance of each run's ddpm_samples.npy to the test set
"""

import gzip
import json
import math
import pathlib
import struct
import sys
import zlib

ROWS = [(p, l) for p in ("mean", "epsilon") for l in ("vlb_fixed", "vlb_learned", "simple")]
LABELS = {"vlb_fixed": ("L_vlb", "fixed (beta-tilde)"), "vlb_learned": ("L_vlb", "learned (range)"),
          "simple": ("L_simple", "fixed (beta-tilde)")}
# Test images the MNIST samples are compared with, and projections of the sliced distance.
REFERENCE_IMAGES = 1000
PROJECTIONS = 2000


def number(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else "diverged (NaN)"


def bound(n):
    return f"{number(n['bits_per_dim'], '.3f')} +- {number(n['bits_per_dim_ci95'], '.3f')}"


def seed_runs(out, name):
    """The run directories of one row: OUT/name (seed 0) and OUT/name_seed<k>, by seed."""
    runs = [(0, out / name)] if (out / name).is_dir() else []
    for d in out.glob(f"{name}_seed*"):
        if d.is_dir() and d.name[len(name) + 5:].isdigit():
            runs.append((int(d.name[len(name) + 5:]), d))
    return sorted(runs)


def per_seed(values, fmt):
    """'a / b / c (mean m)' over seeds, or the one value; diverged runs count as such."""
    text = " / ".join(number(v, fmt) for v in values)
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(values) > 1 and len(finite) == len(values):
        text += f" (mean {format(sum(finite) / len(finite), fmt)})"
    return text


def table_2d(out):
    seeds = sorted({s for p, l in ROWS for s, _ in seed_runs(out, f"{p}_{l}")})
    label = "seed " + ", ".join(map(str, seeds)) if len(seeds) > 1 else f"seed {seeds[0] if seeds else 0}"
    print(f"| prediction | objective | Sigma | NLL bound, bits/dim ({label}) | 95% CI (seed {seeds[0] if seeds else 0}) "
          f"| SW of samples ({label}) | final loss |")
    print("|---|---|---|---|---|---|---|")
    baselines = {}  # seed -> (data vs data, fitted Gaussian); the same for every row of a seed
    for pred, loss in ROWS:
        obj, sigma = LABELS[loss]
        bounds, cis, sws, finals = [], [], [], []
        for seed, run in seed_runs(out, f"{pred}_{loss}"):
            try:
                n = json.loads((run / "nll.json").read_text())
            except FileNotFoundError:
                continue
            # Since issue 9, a run whose sampling goes non-finite exits with an error and writes
            # no metrics.json (its loss.csv, reverse.csv and bound are there): count it diverged.
            try:
                m = json.loads((run / "metrics.json").read_text())
                baselines[seed] = (m["sw_data_vs_data"], m["sw_gaussian_fit"])
            except FileNotFoundError:
                import numpy as np
                losses = np.loadtxt(run / "loss.csv", delimiter=",", skiprows=1)[:, 1]
                m = {"sw_samples": float("nan"), "final_loss_avg100": float(losses[-100:].mean())}
            bounds.append(n["bits_per_dim"])
            cis.append(n["bits_per_dim_ci95"])
            sws.append(m["sw_samples"])
            finals.append(m["final_loss_avg100"])
        if not bounds:
            print(f"| {pred} | {obj} | {sigma} | failed | | failed | |")
            continue
        print(f"| {pred} | {obj} | {sigma} | {per_seed(bounds, '.3f')} | +- {number(cis[0], '.3f')} | "
              f"{per_seed(sws, '.3f')} | {number(finals[0], '.4g')} |")
    if baselines:
        seeds = sorted(baselines)
        print(f"\nSW between two draws of the data: {per_seed([baselines[k][0] for k in seeds], '.3f')}; "
              f"of a single fitted Gaussian: {per_seed([baselines[k][1] for k in seeds], '.3f')} "
              f"(seed {', '.join(map(str, seeds))}).")


def mnist_test_images(mnist_dir):
    """The MNIST test images as float64 rows in [0, 1]."""
    import numpy as np

    raw = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    n, h, w = (int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, h * w) / 255.0


def sliced_wasserstein(a, b, rng):
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the projected
    clouds, quantile functions compared at max(len(a), len(b)) levels (as diffuse-eval does)."""
    import numpy as np

    dirs = rng.standard_normal((a.shape[1], PROJECTIONS))
    dirs /= np.linalg.norm(dirs, axis=0)
    levels = (np.arange(max(len(a), len(b))) + 0.5) / max(len(a), len(b))
    pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
    qa = pa[np.minimum((levels * len(a)).astype(int), len(a) - 1)]
    qb = pb[np.minimum((levels * len(b)).astype(int), len(b) - 1)]
    return float(np.abs(qa - qb).mean())


def write_gray_png(path, pixels):
    """An 8-bit grayscale PNG of a [H, W] uint8 array (zlib only, no imaging library)."""
    h, w = pixels.shape
    rows = b"".join(b"\x00" + pixels[i].tobytes() for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def samples_figure(out, per_row=16, gap=2):
    """OUT/samples.png: the first `per_row` DDPM samples of each run, one row per table row in
    table order (gray for a missing or non-finite run)."""
    import numpy as np

    size = 28
    figure = np.full((len(ROWS) * (size + gap) + gap, per_row * (size + gap) + gap), 128, np.uint8)
    for r, (pred, loss) in enumerate(ROWS):
        try:
            x = np.load(out / f"{pred}_{loss}" / "ddpm_samples.npy")[:per_row, 0]
        except FileNotFoundError:
            continue
        if not np.isfinite(x).all():
            continue
        x = np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8)
        for c, image in enumerate(x):
            top, left = gap + r * (size + gap), gap + c * (size + gap)
            figure[top:top + size, left:left + size] = image
    write_gray_png(out / "samples.png", figure)
    print(f"\n{out / 'samples.png'}: the first {per_row} DDPM samples of each run, rows in table order.")


def table_mnist(mnist_dir, out):
    import numpy as np

    test = mnist_test_images(mnist_dir)
    reference = test[:REFERENCE_IMAGES]
    print("| prediction | objective | Sigma | NLL bound, bits/dim (95% CI) | prior / decoder / KL terms "
          "| bound, x_0 clamped to [-1, 1] | pixel SW of 64 samples | final loss |")
    print("|---|---|---|---|---|---|---|---|")
    n_samples = 64
    for pred, loss in ROWS:
        run = out / f"{pred}_{loss}"
        obj, sigma = LABELS[loss]
        try:
            m = json.loads((run / "metrics.json").read_text())
            n = json.loads((run / "nll.json").read_text())
            x = np.load(run / "ddpm_samples.npy").astype(np.float64)
        except FileNotFoundError:
            print(f"| {pred} | {obj} | {sigma} | failed | | | failed | |")
            continue
        try:
            clamped = bound(json.loads((run / "nll_clip_x0.json").read_text()))
        except FileNotFoundError:
            clamped = "not run"
        n_samples = len(x)
        if np.isfinite(x).all():
            # The 8-bit pixels of the sample grid, as the test images are stored.
            pixels = np.round((np.clip(x, -1, 1) + 1) * 127.5).reshape(len(x), -1) / 255.0
            sw = sliced_wasserstein(pixels, reference, np.random.default_rng(0))
        else:
            sw = math.nan
        terms = " / ".join(number(n[k], ".3f") for k in
                           ("prior_bits_per_dim", "decoder_bits_per_dim", "kl_terms_bits_per_dim"))
        print(f"| {pred} | {obj} | {sigma} | {bound(n)} | {terms} | {clamped} | {number(sw, '.3f')} | "
              f"{number(m['final_loss_avg100'], '.4g')} |")
    others = test[REFERENCE_IMAGES:REFERENCE_IMAGES + n_samples]
    rng = np.random.default_rng(0)
    data_sw = sliced_wasserstein(others, reference, rng)
    mean_image = np.repeat(reference.mean(axis=0, keepdims=True), n_samples, axis=0)
    mean_sw = sliced_wasserstein(mean_image, reference, np.random.default_rng(0))
    samples_figure(out)
    print(f"\nPixel SW of {n_samples} other test images: {data_sw:.3f}; of the mean test image "
          f"repeated: {mean_sw:.3f} (to the first {REFERENCE_IMAGES} test images, pixels in [0, 1]).")


def main():
    if sys.argv[1] == "--mnist":
        table_mnist(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
    else:
        table_2d(pathlib.Path(sys.argv[1]))


if __name__ == "__main__":
    main()
