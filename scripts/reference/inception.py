"""pytorch-fid's FID Inception network, with weights from a formula, on small image folders:
the fixtures of tests/inception.rs (the network, `diffuse fid`, `fid --save-stats`, `is`, `kid`
and the Fréchet distance).

The weights come from splitmix64 (below; tests/inception.rs computes the same numbers), so the
95 MB state dict is never committed: tensor NAME's element i is u = 2 * (splitmix64(fnv1a(NAME)
+ (i + 1) * golden) >> 11) * 2^-53 - 1, scaled by the tensor's kind (`weight_values`), rounded
to float32. The network is pytorch-fid's `InceptionV3` (`fid_inception_v3`, its download
replaced by that state dict), run in float32 and, to check that the fixture is not chaotic, in
float64 (the largest relative difference is printed and stored).

Writes tests/fixtures/inception/: `a/` and `b/` (six 40 x 40 PNGs each, one of `a` grayscale),
`tiny.pth` and `tiny_legacy.pth` (a small state dict in every float type, `tiny_pth`, in
`torch.save`'s ZIP format and its format before PyTorch 1.6), `gray.npy` (three 1 x 28 x 28 samples in [-1, 1], as `diffuse sample` writes them), and
`inception.json`: per input, the features at every `--dims` and the logits (the fc layer
without its bias, as the original Inception Score code); folder a's `--save-stats` moments (mu,
and sigma's trace and first row); FID a-b at 64 and 2048 dims (pytorch-fid's, and from the
eigenvalues of sigma_a^(1/2) sigma_b sigma_a^(1/2) by numpy's `eigh`); IS with 1 and 2 splits;
the unbiased polynomial-kernel MMD (torch-fidelity's `mmd2`) of a against b; and Fréchet
distances of clouds drawn from the same splitmix64 (`cloud`), well conditioned and singular,
against scipy's `sqrtm` (pytorch-fid's `calculate_frechet_distance`) and `eigh`.

With `--pth FILE [--seed S]`, writes the weights instead (seed S added to every tensor's stream)
as a `torch.save`d state dict, the file `--inception` reads, for checking diffuse against
`python -m pytorch_fid` on folders of one's own (`scripts/reference/pytorch_fid_with.py`).

CI never runs this; rerun by hand:

    pip install torch torchvision pytorch-fid scipy torch-fidelity pillow numpy
    python3 scripts/reference/inception.py
"""

import argparse
import json
import pathlib

import numpy as np
import torch
from PIL import Image
from scipy import linalg

import pytorch_fid.inception as pfi
from pytorch_fid.fid_score import calculate_frechet_distance
from torch_fidelity.metric_kid import mmd2, kernel_poly

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "inception"
GOLDEN = 0x9E3779B97F4A7C15


def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & ((1 << 64) - 1)
    return h


def splitmix_uniform(seed, count):
    """u in [-1, 1) for i = 0 .. count-1 of stream `seed`."""
    with np.errstate(over="ignore"):
        i = np.arange(1, count + 1, dtype=np.uint64)
        z = np.uint64(seed) + i * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53 * 2.0 - 1.0


def weight_values(name, shape, seed=0):
    u = splitmix_uniform((fnv1a(name) + seed) % (1 << 64), int(np.prod(shape))).reshape(shape)
    if name.endswith("conv.weight"):
        v = u * np.sqrt(6.0 / np.prod(shape[1:]))
    elif name.endswith("bn.weight"):
        v = 1.0 + 0.25 * u
    elif name.endswith("bn.running_var"):
        v = 1.0 + 0.5 * u
    elif name.endswith("bn.bias") or name.endswith("bn.running_mean") or name == "fc.bias":
        v = 0.1 * u
    elif name == "fc.weight":
        v = u * 4.0 * np.sqrt(3.0 / shape[1])
    else:
        raise ValueError(name)
    return torch.from_numpy(v.astype(np.float32))


def formula_state_dict(seed=0):
    # pytorch-fid's own constructor, without its download.
    shapes = {}
    real = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: shapes["sd"]
    template = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, block in [("Mixed_5b", pfi.FIDInceptionA(192, 32)), ("Mixed_5c", pfi.FIDInceptionA(256, 64)),
                        ("Mixed_5d", pfi.FIDInceptionA(288, 64)), ("Mixed_6b", pfi.FIDInceptionC(768, 128)),
                        ("Mixed_6c", pfi.FIDInceptionC(768, 160)), ("Mixed_6d", pfi.FIDInceptionC(768, 160)),
                        ("Mixed_6e", pfi.FIDInceptionC(768, 192)), ("Mixed_7b", pfi.FIDInceptionE_1(1280)),
                        ("Mixed_7c", pfi.FIDInceptionE_2(2048))]:
        setattr(template, name, block)
    sd = {}
    for k, v in template.state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = v
        else:
            sd[k] = weight_values(k, tuple(v.shape), seed)
    shapes["sd"] = sd
    pfi.load_state_dict_from_url = real
    return sd


def model(sd, dims):
    real = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: sd
    try:
        m = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[d] for d in dims]).eval()
        full = pfi.fid_inception_v3().eval()
    finally:
        pfi.load_state_dict_from_url = real
    return m, full.fc.weight.detach()


def load_folder(path):
    # pytorch-fid's ImagePathDataset: PIL, convert("RGB"), ToTensor; files sorted by name.
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    return torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0)
                        .permute(2, 0, 1) for f in files]), [f.name for f in files]


def npy_to_unit(x):
    # diffuse's samples in [-1, 1] as 8-bit images (diffusers' numpy_to_pil), then ToTensor.
    u8 = np.round(np.clip(x / 2 + 0.5, 0, 1) * 255).astype(np.uint8)
    if u8.shape[1] == 1:
        u8 = np.repeat(u8, 3, axis=1)
    return torch.from_numpy(u8.astype(np.float32) / 255.0)


def features(m, fc_w, x, dtype):
    m = m.to(dtype)
    with torch.no_grad():
        outs = m(x.to(dtype))
        pooled = [o.mean(dim=(2, 3)) if o.shape[2] != 1 else o[:, :, 0, 0] for o in outs]
        logits = pooled[-1] @ fc_w.to(dtype).T
    return [p.numpy() for p in pooled], logits.numpy()


def trace_sqrt_eigh(s1, s2):
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum())


def fid_both(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    scipy_value = float(calculate_frechet_distance(mu1, s1, mu2, s2))
    diff = mu1.astype(np.float64) - mu2
    eigh_value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_eigh(s1, s2))
    return {"pytorch_fid": scipy_value, "eigh": eigh_value}


def inception_score(logits, splits):
    # Salimans et al.'s code: contiguous splits, exp(E KL(p(y|x) || p(y))), mean and std.
    p = torch.from_numpy(logits).double().softmax(1).numpy()
    scores = []
    n = len(p)
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    return [float(np.mean(scores)), float(np.std(scores))]


def cloud(seed, n, d, mix, shift):
    """x[i, j] = (u[i, j] + mix u[i, (j + 1) % d]) (1 + j / d) + shift j / d, as float32."""
    u = splitmix_uniform(seed, n * d).reshape(n, d)
    j = np.arange(d)
    x = (u + mix * u[:, (j + 1) % d]) * (1.0 + j / d) + shift * j / d
    return x.astype(np.float32)


def images(seed, count, gray_index):
    out = []
    for k in range(count):
        y, x = np.mgrid[0:40, 0:40]
        u = splitmix_uniform(seed * 100 + k, 40 * 40 * 3).reshape(40, 40, 3)
        phase = np.array([0.0, 2.0, 4.0]) + k
        v = 128 + 70 * np.sin(0.21 * x[..., None] + 0.13 * (k + 1) * y[..., None] + phase) + 40 * u
        img = np.clip(np.round(v), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(img[..., 0], "L") if k == gray_index else Image.fromarray(img, "RGB"))
    return out


def tiny_pth(path):
    """A small state dict in every float type torch.save writes, one a transposed (strided)
    view: values i / 8 - 1 over each tensor's elements in row-major order of its shape."""
    vals = lambda *shape: (torch.arange(int(np.prod(shape)), dtype=torch.float64) / 8 - 1).reshape(shape)
    tensors = {
        "f32": vals(2, 3).float(),
        "f16": vals(4).half(),
        "bf16": vals(2, 2).bfloat16(),
        "f64": vals(3),
        "strided": vals(3, 2).float().t(),  # shape [2, 3], stored column by column
        "steps": torch.tensor(7, dtype=torch.int64),
    }
    torch.save(tensors, path)
    # The format of PyTorch before 1.6 (a pickle, then the storages), as older published
    # weights files are.
    torch.save(tensors, path.with_name("tiny_legacy.pth"), _use_new_zipfile_serialization=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pth")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.pth:
        torch.save(formula_state_dict(args.seed), args.pth)
        return
    torch.set_num_threads(2)
    ROOT.mkdir(parents=True, exist_ok=True)
    for name, seed, gray in [("a", 1, 3), ("b", 2, -1)]:
        (ROOT / name).mkdir(exist_ok=True)
        for k, img in enumerate(images(seed, 6, gray)):
            img.save(ROOT / name / f"{k:02d}.png")
    tiny_pth(ROOT / "tiny.pth")
    gray = (splitmix_uniform(7, 3 * 28 * 28).reshape(3, 1, 28, 28) * 1.2).clip(-1, 1).astype(np.float32)
    np.save(ROOT / "gray.npy", gray)

    sd = formula_state_dict()
    dims = [64, 192, 768, 2048]
    m, fc_w = model(sd, dims)
    inputs = {}
    for name in ["a", "b"]:
        inputs[name], files = load_folder(ROOT / name)
    inputs["gray"] = npy_to_unit(gray)
    out = {"dims": dims, "features": {}, "logits": {}}
    worst = 0.0
    for name, x in inputs.items():
        f32, logits = features(m, fc_w, x, torch.float32)
        f64, logits64 = features(m, fc_w, x, torch.float64)
        for a, b in zip(f32 + [logits], f64 + [logits64]):
            worst = max(worst, float(np.abs(a - b).max() / np.abs(b).max()))
        out["features"][name] = {str(d): f.tolist() for d, f in zip(dims, f32)}
        out["logits"][name] = logits.tolist()
    out["float32_vs_float64_max_relative"] = worst
    print("float32 vs float64, largest difference over largest value:", worst)

    fa = np.array(out["features"]["a"]["2048"], dtype=np.float32)
    fb = np.array(out["features"]["b"]["2048"], dtype=np.float32)
    sa = np.cov(fa, rowvar=False)
    out["stats_a"] = {"mu": fa.mean(0).tolist(), "sigma_trace": float(np.trace(sa)),
                      "sigma_row0": sa[0].tolist()}
    out["fid_ab"] = {}
    for d in [64, 2048]:
        f1 = np.array(out["features"]["a"][str(d)], dtype=np.float32)
        f2 = np.array(out["features"]["b"][str(d)], dtype=np.float32)
        out["fid_ab"][str(d)] = fid_both(f1, f2)
    print("FID a-b:", out["fid_ab"])
    logits = np.concatenate([out["logits"]["a"], out["logits"]["b"]]).astype(np.float32)
    out["is"] = {"1": inception_score(logits, 1), "2": inception_score(logits, 2)}
    k = lambda x, y: kernel_poly(x.astype(np.float64), y.astype(np.float64),
                                 kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                 kid_kernel_poly_coef0=1)
    out["mmd_ab"] = float(mmd2(k(fa, fa), k(fa, fb), k(fb, fb)))

    cases = []
    for (n, d, singular) in [(2000, 128, False), (3000, 256, False), (60, 128, True)]:
        a = cloud(11 + d, n, d, 0.5, 0.0)
        b = cloud(12 + d, n, d, -0.3, 0.7)
        case = {"n": n, "d": d, "seed_a": 11 + d, "seed_b": 12 + d, "mix_a": 0.5, "shift_a": 0.0,
                "mix_b": -0.3, "shift_b": 0.7, "singular": singular}
        case.update(fid_both(a, b))
        cases.append(case)
    out["frechet_cases"] = cases
    print("Fréchet cases:", cases)
    with open(ROOT / "inception.json", "w") as f:
        json.dump(out, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
