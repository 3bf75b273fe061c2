#!/usr/bin/env bash
# Likelihood bounds side by side (issue 25's experiment): bits/dim on held-out data of the VAE
# (ELBO, IWAE K = 100), the Markovian HVAE (ELBO), DDPM (its variational bound and the
# probability-flow ODE) and the VDM (learned and fixed linear schedule, continuous-time bound),
# each at its default recipe, on a 2-D mixture with a known density (mixture.py) and on MNIST.
# Writes experiments/bounds/out/.
#
#   experiments/bounds/run.sh points     # the 2-D mixture: 100,000 training points, 20,000 test
#   MNIST=../shared/data/mnist experiments/bounds/run.sh mnist
set -euo pipefail
cd "$(dirname "$0")/../.."
. experiments/lib.sh   # D (the binary) and field
OUT=experiments/bounds/out
mkdir -p "$OUT"
what=${1:-all}
MNIST=${MNIST:-../shared/data/mnist}
fixed="$OUT/fixed.toml"
printf 'family = "vdm"\n[vdm.gamma]\nkind = "fixed_linear"\n' > "$fixed"
# The learned schedule without the variance minimization: its interior on the bound's gradient.
vlb_schedule="$OUT/vlb_schedule.toml"
printf 'family = "vdm"\n[vdm]\nminimize_variance = false\n' > "$vlb_schedule"
# A VAE with a 2-D latent, for the picture of MNIST's latent space coloured by digit.
vae2d="$OUT/vae_2d.toml"
printf 'family = "vae"\n[vae]\nlatent_dim = 2\n' > "$vae2d"

row() { # table family bound file train_seconds
  printf "%s\t%s\t%.4f\t%.4f\t%s\n" "$2" "$3" "$(field "$4" bits_per_dim)" "$(field "$4" bits_per_dim_ci95)" "$5" | tee -a "$1"
}

if [ "$what" = all ] || [ "$what" = points ]; then
  mix="$OUT/mixture"; mkdir -p "$mix"
  python3 experiments/bounds/mixture.py "$mix"
  table="$OUT/points.tsv"
  echo -e "family\tbound\tbits_per_dim\tci95\ttrain_s" > "$table"
  printf "truth\texact\t%.4f\t%.4f\t-\n" "$(field "$mix/truth.json" bits_per_dim)" "$(field "$mix/truth.json" bits_per_dim_ci95)" | tee -a "$table"
  for family in vae hvae vdm vdm-fixed ddpm; do
    run="$OUT/runs/mixture-$family"; rm -rf "$run"
    case $family in
      vdm-fixed) args=(--config "$fixed") ;;
      *) args=(--family "$family") ;;
    esac
    "$D" train "${args[@]}" --data "$mix/train.csv" --out "$run" > /dev/null 2>&1
    t=$(field "$run/metrics.json" train_seconds)
    "$D" eval --run "$run" --nll --data "$mix/test.csv" > /dev/null 2>&1
    case $family in
      vae) row "$table" vae iwae "$run/nll_data.json" "$t"
           printf "vae\telbo\t%.4f\t%.4f\t%s\n" "$(field "$run/nll_data.json" elbo_bits_per_dim)" "$(field "$run/nll_data.json" elbo_bits_per_dim_ci95)" "$t" | tee -a "$table" ;;
      ddpm) row "$table" ddpm vlb "$run/nll_data.json" "$t"
            "$D" eval --run "$run" --nll --method ode --data "$mix/test.csv" --n 2000 > /dev/null 2>&1
            row "$table" ddpm "ode (2,000 points)" "$run/nll_ode_data.json" "$t" ;;
      *) row "$table" "$family" "$(field "$run/nll_data.json" bound)" "$run/nll_data.json" "$t" ;;
    esac
  done
fi

if [ "$what" = all ] || [ "$what" = mnist ]; then
  table="$OUT/mnist.tsv"   # rows are appended: FAMILIES="vdm" reruns one family
  [ -f "$table" ] || echo -e "family\tbound\tbits_per_dim\tci95\ttrain_s\tfd_lenet" > "$table"
  lenet="$OUT/lenet"
  [ -f "$lenet/classifier.json" ] || "$D" classifier --dataset mnist --data-dir "$MNIST" --out "$lenet" > /dev/null 2>&1
  for family in ${FAMILIES:-vae vae-2d hvae vdm vdm-fixed vdm-vlb-schedule}; do
    run="$OUT/runs/mnist-$family"; rm -rf "$run"
    case $family in
      vdm-fixed) args=(--config "$fixed") ;;
      vdm-vlb-schedule) args=(--config "$vlb_schedule") ;;
      vae-2d) args=(--config "$vae2d") ;;
      *) args=(--family "$family") ;;
    esac
    "$D" train "${args[@]}" --dataset mnist --data-dir "$MNIST" --out "$run" > /dev/null 2>&1
    t=$(field "$run/metrics.json" train_seconds)
    "$D" eval --run "$run" --nll --n ${NLL_N:-100} > /dev/null 2>&1
    fd=$("$D" fid "$run/samples.npy" mnist:test --classifier "$lenet" --data-dir "$MNIST" 2>/dev/null | grep -o 'FD_LeNet: [0-9.]*' | cut -d' ' -f2 || true)
    printf "%s\t%s\t%.4f\t%.4f\t%s\t%s\n" "$family" "$(field "$run/nll.json" bound)" "$(field "$run/nll.json" bits_per_dim)" "$(field "$run/nll.json" bits_per_dim_ci95)" "$t" "$fd" | tee -a "$table"
  done
fi
