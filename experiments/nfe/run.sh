#!/usr/bin/env bash
# How many network evaluations does each sampler need? Sample quality against NFE on the
# README's default 2-D run (swiss roll, `diffuse train` with no flags), 20,000 points per figure.
#
#   experiments/nfe/run.sh [RUN_DIR] [OUT_DIR]
#
# Trains the default run into RUN_DIR when it has none (about a minute on 2 cores), then for each
# sampler and budget draws 20,000 points (`diffuse sample --n 20000 --seed 1`) and measures their
# sliced Wasserstein distance to 20,000 fresh points of the data, next to the distance between two
# fresh draws (`diffuse eval --samples`). Appends to OUT_DIR/results.jsonl (rows already there are
# skipped, so a rerun finishes an interrupted sweep); table.py prints the table
# and draws the plot. Takes about 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${1:-experiments/nfe/out/run}
OUT=${2:-experiments/nfe/out}
N=${N:-20000}
cargo build --release --quiet
BIN=target/release/diffuse
mkdir -p "$OUT"
[ -f "$RUN/model_ema.safetensors" ] || $BIN train --out "$RUN" --overwrite
touch "$OUT/results.jsonl"   # rows already there are kept (rerun to finish an interrupted sweep)

source experiments/nfe/common.sh
one() { measure "$OUT/results.jsonl" --run "$RUN" "$@"; }

for nfe in 10 20 50 100 1000; do
  one "DDPM @$nfe" --sampler ddpm --steps "$nfe"
  one "DDIM @$nfe" --sampler ddim --steps "$nfe"
  one "Euler @$nfe" --sampler euler --steps "$nfe"
  one "Heun @$nfe" --sampler heun --steps $(( (nfe + 1) / 2 ))
  # DPM-Solver's leading spacing steps T // (n + 1): at most T - 1 steps.
  one "DPM-Solver++(2M) @$nfe" --sampler dpm-solver++ --steps $(( nfe < 1000 ? nfe : 999 ))
  one "DPM-Solver++(2M) Karras @$nfe" --sampler dpm-solver++ --karras --steps "$nfe"
done
for tol in 1e-1 1e-2 1e-3 1e-4 1e-5; do
  one "RK45 @$tol" --sampler ode --rtol "$tol" --atol "$tol"
done
python3 experiments/nfe/table.py "$OUT/results.jsonl"
