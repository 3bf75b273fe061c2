#!/usr/bin/env bash
# DDPM Table 2 at small scale: {mean, eps prediction} x {L_vlb with fixed isotropic Sigma, L_vlb
# with learned diagonal Sigma, L_simple}.
#
#   experiments/table2/run.sh [STEPS] [OUT_DIR]          2-D: swiss roll, default MLP and steps
#   experiments/table2/run.sh --mnist [STEPS] [OUT_DIR]  MNIST: the mnist preset U-Net
#   experiments/table2/run.sh --all                      both, with their defaults
#
# 2-D: the NLL bound on held-out points (bits/dim, data units) and the sliced Wasserstein distance
# of 2,000 samples to held-out points. MNIST: the bound on 100 test images (bits/dim, 8-bit
# pixels, 200 of the 1,000 timesteps; also with the x_0 estimate clamped to [-1, 1], as the
# sampler does) and 64 samples from the model's own ancestral sampler (all
# 1,000 DDPM steps), as a grid and as a pixel-space sliced Wasserstein distance to the test set.
# MNIST is read from $MNIST_DIR (default data/mnist, fetched with --download when absent); its
# rows run two at a time, one thread each (on 2 cores 1.56x the throughput of one row on both).
# SEEDS="0 1 2" repeats every row with those training seeds (default "0"); a row's run directory
# is OUT_DIR/<prediction>_<loss>, with _seed<k> appended for seeds other than 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ ${1:-} == --all ]]; then
  "$0" && "$0" --mnist
  exit
fi
mnist=false
if [[ ${1:-} == --mnist ]]; then
  mnist=true
  shift
fi
if $mnist; then
  steps=${1:-2000}
  out=${2:-runs/table2-mnist}
else
  steps=${1:-20000}
  out=${2:-runs/table2}
fi
mkdir -p "$out"
cargo build --release -q
bin=./target/release/diffuse

# Writes $out/$name.toml for one row of the grid.
row_config() {
  local prediction=$1 loss=$2 name=$3 seed=$4 objective variance
  case $loss in
    vlb_fixed)   objective='{ kind = "vlb" }';    variance=fixed_small ;;
    vlb_learned) objective='{ kind = "vlb" }';    variance=learned_range ;;
    simple)      objective='{ kind = "simple" }'; variance=fixed_small ;;
  esac
  {
    echo "prediction = \"$prediction\""
    printf '[train]\nsteps = %s\nseed = %s\n' "$steps" "$seed"
    printf '[train.loss]\nobjective = %s\nvariance = "%s"\n' "$objective" "$variance"
  } > "$out/$name.toml"
}

# A row whose sampling goes non-finite (mean + L_vlb) exits non-zero after saving its weights
# and reverse.csv, without metrics.json; its bound is still evaluated.
run_2d() {
  local name=$1
  $bin train --overwrite --config "$out/$name.toml" --out "$out/$name" \
    || echo "row $name: train exited non-zero (see above)" >&2
  $bin eval --run "$out/$name" --nll
}

run_mnist() {
  local name=$1
  $bin train --dataset mnist --data-dir "${MNIST_DIR:-data/mnist}" --download \
      --config "$out/$name.toml" --out "$out/$name" \
    && $bin eval --run "$out/$name" --nll --n 100 --t-samples 200 \
    && $bin eval --run "$out/$name" --nll --n 100 --t-samples 200 --clip-x0 1 \
    && $bin sample --run "$out/$name" --sampler ddpm --n 64 --seed 0 \
      --out "$out/$name/ddpm_samples.npy" --png "$out/$name/ddpm_samples.png"
}

running=0
for seed in ${SEEDS:-0}; do
  for prediction in mean epsilon; do
    for loss in vlb_fixed vlb_learned simple; do
      name="${prediction}_${loss}"
      if ((seed != 0)); then
        name="${name}_seed$seed"
      fi
      row_config "$prediction" "$loss" "$name" "$seed"
      echo "== $name" >&2
      if $mnist; then
        (RAYON_NUM_THREADS=1 run_mnist "$name" > "$out/$name.log" 2>&1 \
          || echo "   $name failed (see $out/$name.log)" >&2) &
        running=$((running + 1))
        if ((running == 2)); then
          wait
          running=0
        fi
      else
        run_2d "$name" > "$out/$name.log" 2>&1 || echo "   failed (see $out/$name.log)" >&2
      fi
    done
  done
done
wait
if $mnist; then
  python3 experiments/table2/table.py --mnist "${MNIST_DIR:-data/mnist}" "$out"
else
  python3 experiments/table2/table.py "$out"
fi
