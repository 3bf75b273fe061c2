"""Prints the NFE table of experiments/nfe/run.sh (or mnist.sh) and draws
docs/images/nfe_swiss_roll.svg (or nfe_mnist.svg), with the standard library only.

    python3 experiments/nfe/table.py experiments/nfe/out/results.jsonl
    python3 experiments/nfe/table.py experiments/nfe/out/mnist.jsonl --mnist
"""

import json
import math
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def load(path, key="sw", floor_key="floor"):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    series, tols = {}, []
    for r in rows:
        series.setdefault(r["sampler"], []).append((r["nfe"], r[key], r[floor_key]))
        if r["sampler"] == "RK45":
            tols.append(r["label"].split("@")[1])
    return series, tols


def table(series, tols, budgets, metric="sliced Wasserstein"):
    floor = sum(f for pts in series.values() for _, _, f in pts) / sum(len(p) for p in series.values())
    print("| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |")
    print("|---|" + "---|" * len(budgets))
    for name, pts in series.items():
        if name.startswith("RK45"):
            continue
        by_nfe = {}
        for nfe, sw, _ in pts:
            key = min(budgets, key=lambda b: abs(b - nfe))
            by_nfe[key] = f"{sw:.4f}" + ("" if nfe == key else f" ({nfe})")
        print(f"| {name} | " + " | ".join(by_nfe.get(b, "") for b in budgets) + " |")
    rk = series.get("RK45", [])
    print()
    print(f"| RK45 rtol = atol | NFE | {metric} |")
    print("|---|---|---|")
    for tol, (nfe, sw, _) in zip(tols, rk):
        print(f"| {tol} | {nfe} | {sw:.4f} |")
    print()
    print(f"data vs data (floor, mean over draws): {floor:.4f}")
    return floor


def svg(series, floor, path, title, y_label="sliced Wasserstein"):
    w, h, m = 760, 440, 70
    xs = [n for pts in series.values() for n, _, _ in pts]
    ys = [s for pts in series.values() for _, s, _ in pts] + [floor]
    lx0, lx1 = math.log10(min(xs)) - 0.05, math.log10(max(xs)) + 0.05
    ly0, ly1 = math.log10(min(ys)) - 0.05, math.log10(max(ys)) + 0.05
    X = lambda n: m + (math.log10(n) - lx0) / (lx1 - lx0) * (w - 2 * m)
    Y = lambda s: h - m + (-(math.log10(s) - ly0) / (ly1 - ly0)) * (h - 2 * m)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w/2}" y="24" text-anchor="middle" font-size="15">{title}</text>',
           f'<line x1="{m}" y1="{h-m}" x2="{w-m}" y2="{h-m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h-m}" stroke="black"/>',
           f'<text x="{w/2}" y="{h-25}" text-anchor="middle">network evaluations (log)</text>',
           f'<text x="18" y="{h/2}" text-anchor="middle" transform="rotate(-90 18 {h/2})">{y_label} (log)</text>']
    for n in [10, 20, 50, 100, 200, 500, 1000, 2000]:
        if lx0 <= math.log10(n) <= lx1:
            out.append(f'<line x1="{X(n):.1f}" y1="{h-m}" x2="{X(n):.1f}" y2="{h-m+5}" stroke="black"/><text x="{X(n):.1f}" y="{h-m+18}" text-anchor="middle">{n}</text>')
    k = math.floor(ly0)
    while k <= ly1:
        for mult in [1, 2, 5]:
            v = mult * 10 ** k
            if ly0 <= math.log10(v) <= ly1:
                out.append(f'<line x1="{m-5}" y1="{Y(v):.1f}" x2="{m}" y2="{Y(v):.1f}" stroke="black"/><text x="{m-8}" y="{Y(v)+4:.1f}" text-anchor="end">{v:g}</text>')
        k += 1
    out.append(f'<line x1="{m}" y1="{Y(floor):.1f}" x2="{w-m}" y2="{Y(floor):.1f}" stroke="gray" stroke-dasharray="6 4"/>')
    out.append(f'<text x="{w-m-4}" y="{Y(floor)-6:.1f}" text-anchor="end" fill="gray">data vs data</text>')
    for i, (name, pts) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        line = " ".join(f"{X(n):.1f},{Y(s):.1f}" for n, s, _ in pts)
        # Euler is DDIM in sigma coordinates (same points): dashed, so both show.
        dash = ' stroke-dasharray="6 4"' if name == "Euler" else ""
        out.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{X(n):.1f}" cy="{Y(s):.1f}" r="3" fill="{c}"/>' for n, s, _ in pts]
        out.append(f'<rect x="{w-m-190}" y="{m+i*18-10}" width="12" height="3" fill="{c}"/><text x="{w-m-172}" y="{m+i*18-5}">{name}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))
    print(f"wrote {path}")


def main():
    if "--mnist" in sys.argv:
        for key, floor_key, name in [("sw", "floor", "sliced Wasserstein"), ("fd", "fd_floor", "Fréchet distance")]:
            series, tols = load(sys.argv[1], key, floor_key)
            print(f"\n{name} of 4x4-pooled images\n")
            floor = table(series, tols, [10, 20, 50], name)
        svg(series, floor, ROOT / "docs" / "images" / "nfe_mnist.svg",
            "MNIST (README model), 1,000 samples: Fréchet distance of pooled images vs evaluations",
            "Fréchet distance, 4x4-pooled pixels")
    else:
        series, tols = load(sys.argv[1])
        floor = table(series, tols, [10, 20, 50, 100, 1000])
        svg(series, floor, ROOT / "docs" / "images" / "nfe_swiss_roll.svg",
            "Swiss roll, 20,000 samples: sliced Wasserstein vs network evaluations")


if __name__ == "__main__":
    main()
