#!/usr/bin/env bash
# DDPM Table 2 at 2-D scale: {mean, eps prediction} x {L_vlb with fixed isotropic Sigma, L_vlb
# with learned diagonal Sigma, L_simple}, on the swiss roll, default model and steps otherwise.
# Reports the NLL bound on held-out points (bits/dim, data units) and the sliced Wasserstein
# distance of 2,000 samples to held-out points. Usage: experiments/table2/run.sh [STEPS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-20000}
out=${2:-runs/table2}
mkdir -p "$out"
cargo build --release -q
for prediction in mean epsilon; do
  for loss in vlb_fixed vlb_learned simple; do
    case $loss in
      vlb_fixed)   objective='{ kind = "vlb" }';    variance=fixed_small ;;
      vlb_learned) objective='{ kind = "vlb" }';    variance=learned_range ;;
      simple)      objective='{ kind = "simple" }'; variance=fixed_small ;;
    esac
    name="${prediction}_${loss}"
    cat > "$out/$name.toml" <<TOML
prediction = "$prediction"
[train]
steps = $steps
[train.loss]
objective = $objective
variance = "$variance"
TOML
    echo "== $name" >&2
    ./target/release/diffuse train --config "$out/$name.toml" --out "$out/$name" > "$out/$name.log" 2>&1 \
      && ./target/release/diffuse eval --run "$out/$name" --nll >> "$out/$name.log" 2>&1 \
      || echo "   failed (see $out/$name.log)" >&2
  done
done
python3 experiments/table2/table.py "$out"
