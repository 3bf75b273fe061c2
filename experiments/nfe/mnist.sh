#!/usr/bin/env bash
# The NFE question on the README's MNIST model (tests/fixtures/trained_mnist: the U-Net and
# scheduler of the README's 5,000-step MNIST run). 1,000 samples per figure; the distance is the
# sliced Wasserstein distance between 4x4-average-pooled images (7x7 = 49 features) and as many
# MNIST test images, next to the same distance between training and test images
# (`diffuse eval --samples`, a crude stand-in for FID that needs no network).
#
#   experiments/nfe/mnist.sh [MNIST_DIR] [OUT_DIR]
#
# About 40 minutes on 2 cores (six seconds per network evaluation of 1,000 images).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/data/mnist}
OUT=${2:-experiments/nfe/out}
N=${N:-1000}
cargo build --release --quiet
BIN=target/release/diffuse
RUN="$OUT/mnist"
if [ ! -f "$RUN/diffuse_config.json" ]; then
  # An image run directory for the MNIST preset (one step), then the trained model put in it.
  $BIN train --dataset mnist --data-dir "$DATA" --steps 1 --out "$RUN" --overwrite > /dev/null
  cp tests/fixtures/trained_mnist/unet/* "$RUN/unet/"
  cp tests/fixtures/trained_mnist/scheduler/* "$RUN/scheduler/"
fi
touch "$OUT/mnist.jsonl"

source experiments/nfe/common.sh
one() { measure "$OUT/mnist.jsonl" --pipeline "$RUN" "$@"; }

for nfe in 10 20 50; do
  one "DDIM @$nfe" --sampler ddim --steps "$nfe"
  one "Heun @$nfe" --sampler heun --steps $(( (nfe + 1) / 2 ))
  one "DPM-Solver++(2M) @$nfe" --sampler dpm-solver++ --steps "$nfe"
  one "DPM-Solver++(2M) Karras @$nfe" --sampler dpm-solver++ --karras --steps "$nfe"
done
one "RK45 @1e-2" --sampler ode --rtol 1e-2 --atol 1e-2
python3 experiments/nfe/table.py "$OUT/mnist.jsonl" --mnist
