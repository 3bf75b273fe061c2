#!/usr/bin/env bash
# W1 side by side: diffuse (burn-flex) and PyTorch eager on this machine, one run after the other.
# Needs: cargo, and python3 with torch (pip install torch). Prints both JSON lines and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
cargo build --release -q -p diffuse-benchmarks
rust=$(./target/release/bench-2d "${args[@]}")
torch=$(python3 benchmarks/torch_2d.py "${args[@]}")
echo "$rust"
echo "$torch"
python3 - "$rust" "$torch" <<'PY'
import json, sys
r, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"train steps/s (batch 1024): diffuse {r['train_steps_per_s']:.1f}, pytorch {t['train_steps_per_s']:.1f}, "
      f"diffuse/pytorch = {r['train_steps_per_s'] / t['train_steps_per_s']:.2f}x")
print(f"10k samples x 1000 DDPM steps: diffuse {r['sample_10k_1000_steps_s']:.1f} s, pytorch {t['sample_10k_1000_steps_s']:.1f} s, "
      f"diffuse/pytorch speed = {t['sample_10k_1000_steps_s'] / r['sample_10k_1000_steps_s']:.2f}x")
PY
