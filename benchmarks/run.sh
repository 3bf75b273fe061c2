#!/usr/bin/env bash
# Side by side: diffuse (burn-flex) and PyTorch eager on this machine, one run after the other.
#   benchmarks/run.sh [ARGS]         W1, the 2-D MLP workload (bench-2d, torch_2d.py)
#   benchmarks/run.sh --unet [ARGS]  W2, the 28x28 U-Net workload (bench-unet, torch_unet.py)
# Needs: cargo, and python3 with torch (W2: and diffusers). Prints both JSON lines and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
workload=2d
if [[ "${1:-}" == "--unet" ]]; then
  workload=unet
  shift
fi
args=("$@")
cargo build --release -q -p diffuse-benchmarks
if [[ $workload == 2d ]]; then
  rust=$(./target/release/bench-2d "${args[@]}")
  torch=$(python3 benchmarks/torch_2d.py "${args[@]}")
else
  rust=$(./target/release/bench-unet "${args[@]}")
  torch=$(python3 benchmarks/torch_unet.py "${args[@]}")
fi
echo "$rust"
echo "$torch"
python3 - "$workload" "$rust" "$torch" <<'PY'
import json, sys
w, r, t = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
if w == "2d":
    print(f"train steps/s (batch 1024): diffuse {r['train_steps_per_s']:.1f}, pytorch {t['train_steps_per_s']:.1f}, "
          f"diffuse/pytorch = {r['train_steps_per_s'] / t['train_steps_per_s']:.2f}x")
    print(f"10k samples x 1000 DDPM steps: diffuse {r['sample_10k_1000_steps_s']:.1f} s, pytorch {t['sample_10k_1000_steps_s']:.1f} s, "
          f"diffuse/pytorch speed = {t['sample_10k_1000_steps_s'] / r['sample_10k_1000_steps_s']:.2f}x")
else:
    assert r["params"] == t["params"], f"models differ: {r['params']} vs {t['params']} parameters"
    for key, name in [("train_steps_per_s_b64", "train steps/s (batch 64)"),
                      ("forward_per_s_b256", "forward passes/s (batch 256)")]:
        print(f"{name}: diffuse {r[key]:.3f}, pytorch {t[key]:.3f}, diffuse/pytorch = {r[key] / t[key]:.2f}x")
PY
