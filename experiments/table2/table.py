"""Prints the Table 2 results of experiments/table2/run.sh as Markdown: python3 table.py OUT_DIR"""

import json
import math
import pathlib
import sys

ROWS = [(p, l) for p in ("mean", "epsilon") for l in ("vlb_fixed", "vlb_learned", "simple")]
LABELS = {"vlb_fixed": ("L_vlb", "fixed (beta-tilde)"), "vlb_learned": ("L_vlb", "learned (range)"),
          "simple": ("L_simple", "fixed (beta-tilde)")}


def number(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else "diverged (NaN)"


def main():
    out = pathlib.Path(sys.argv[1])
    print("| prediction | objective | Sigma | NLL bound, bits/dim (95% CI) | SW of samples | final loss |")
    print("|---|---|---|---|---|---|")
    data_sw = gauss_sw = None
    for pred, loss in ROWS:
        run = out / f"{pred}_{loss}"
        obj, sigma = LABELS[loss]
        try:
            m = json.loads((run / "metrics.json").read_text())
            n = json.loads((run / "nll.json").read_text())
        except FileNotFoundError:
            print(f"| {pred} | {obj} | {sigma} | failed | failed | |")
            continue
        data_sw, gauss_sw = m["sw_data_vs_data"], m["sw_gaussian_fit"]
        bound = f"{number(n['bits_per_dim'], '.3f')} +- {number(n['bits_per_dim_ci95'], '.3f')}"
        print(f"| {pred} | {obj} | {sigma} | {bound} | {number(m['sw_samples'], '.3f')} | "
              f"{number(m['final_loss_avg100'], '.4g')} |")
    if data_sw is not None:
        print(f"\nSW between two draws of the data: {data_sw:.3f}; of a single fitted Gaussian: {gauss_sw:.3f}.")


if __name__ == "__main__":
    main()
