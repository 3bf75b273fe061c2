#!/usr/bin/env bash
# Pixel-space DDPM against latent DDPM on MNIST (issue 26's experiment), the autoencoder's cost
# counted: training time (the autoencoder's and the diffusion model's), the time to draw N
# samples (DDIM, 50 steps; decoding included), FD_LeNet of the samples against the test set
# (floor: N training images), bits/dim of the pixel model's bound (the latent model has none),
# and the distance of the autoencoder's own reconstructions (what latent diffusion can reach).
# DDPM's MNIST preset (5,000 steps, batch 32); a KL autoencoder with f = 4 (widths 16/32/32,
# 7 x 7 x 4 latents; the family's default before stage f2 was measured) for AE_STEPS steps,
# latent DDPM (the preset's U-Net cut to the latents' one level) for 5,000 steps; and latent DDPM with a wider U-Net
# (one level of 64 channels, two blocks: 958,000 parameters) for as many steps as fit the
# pixel model's training time with the autoencoder's counted (3,400). Writes
# experiments/latent/out/ (mnist.tsv: rows are appended; STAGES="latent-wide" reruns one). Stage
# vq: the same with a VQ autoencoder (codebook by moving averages) and latent DDPM on it. Stage
# latent-vdm: the VDM (learned schedule, continuous decoder) on the KL autoencoder's latents,
# same U-Net and steps as latent DDPM, sampled by DDIM-50 on its chain and by its own
# ancestral sampler in 50 steps (a second row). Stage seeds: latent DDPM and latent-vdm again
# with training seeds $SEEDS (default "1 2") on the same autoencoder, for the spread of FD_LeNet.
# Stage f2: an autoencoder with f = 2 and one latent channel (14 x 14 x 1: the same 196 values as
# f = 4's 7 x 7 x 4; the family's default now), and latent DDPM on it (its U-Net keeps two
# levels). Stage f2-families: a VP score SDE and the VDM on stage f2's autoencoder, DDIM-50 rows
# as the others (the score SDE's by DPM-Solver++ in 50 steps: it has no DDIM), and the VDM's own
# ancestral sampler in 50 steps.
#
#   MNIST=../shared/data/mnist experiments/latent/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. experiments/lib.sh   # D (the binary) and field
OUT=experiments/latent/out
mkdir -p "$OUT/runs"
MNIST=${MNIST:-../shared/data/mnist}
N=${N:-1000}
AE_STEPS=${AE_STEPS:-2000}
data=(--dataset mnist --data-dir "$MNIST")
now() { date +%s.%N; }
lenet="$OUT/lenet"
[ -f "$lenet/classifier.json" ] || "$D" classifier "${data[@]}" --out "$lenet" > /dev/null 2>&1
fd() { "$D" fid "$1" mnist:test --classifier "$lenet" --data-dir "$MNIST" 2>/dev/null | grep -o 'FD_LeNet: [0-9.]*' | cut -d' ' -f2; }
# Draws N samples from run $1 into $2; prints the seconds it took.
draw() {
  local start end
  start=$(now)
  "$D" sample --run "$1" --n "$N" --sampler "${SAMPLER:-ddim}" --steps 50 --out "$2" > /dev/null 2>&1
  end=$(now)
  echo "$end - $start" | bc
}
STAGES=${STAGES:-autoencoder pixel latent latent-wide latent-vdm vq f2 f2-families}
has() { [[ " $STAGES " == *" $1 "* ]]; }
table="$OUT/mnist.tsv"
if [ ! -f "$table" ]; then
  echo -e "model\tautoencoder_train_s\tdiffusion_train_s\ttotal_train_s\tsample_s\tfd_lenet\tbits_per_dim" > "$table"
  printf "floor (%s training images)\t-\t-\t-\t-\t%s\t-\n" "$N" "$(fd "mnist:train:$N")" | tee -a "$table"
fi

# Trains the autoencoder runs/$1 for AE_STEPS steps from the config file $2 (written from the
# [autoencoder] fields $4) and prints its row, labelled $3; ae and ae_s are then its run and its
# training seconds.
autoencoder_row() {
  local config="$OUT/$2"
  printf 'family = "autoencoder"\n[autoencoder]\n%b' "$4" > "$config"
  ae="$OUT/runs/$1"; rm -rf "$ae"
  "$D" train --config "$config" "${data[@]}" --steps "$AE_STEPS" --out "$ae" > "$OUT/$1.log" 2>&1
  ae_s=$(field "$ae/metrics.json" train_seconds)
  printf "%s (PSNR %.2f dB)\t%.1f\t-\t%.1f\t-\t%s\t-\n" "$3" "$(field "$ae/metrics.json" psnr_db)" \
    "$ae_s" "$ae_s" "$(fd "$ae/reconstructions.npy")" | tee -a "$table"
}

ae="$OUT/runs/autoencoder"
if has autoencoder; then
  autoencoder_row autoencoder autoencoder_f4.toml "autoencoder reconstructions (1,000 test images)" \
    'block_out_channels = [16, 32, 32]\nlatent_channels = 4\n'
fi
ae_s=$(field "$ae/metrics.json" train_seconds)

# Latent DDPM on the autoencoder: name, then train's extra arguments.
latent_row() {
  local name=$1 run="$OUT/runs/$1" lt_s lt_sample
  shift
  rm -rf "$run"
  "$D" train --family latent --vae "$ae" "${data[@]}" "$@" --out "$run" > "$OUT/$name.log" 2>&1
  lt_s=$(field "$run/metrics.json" train_seconds)
  lt_sample=$(draw "$run" "$OUT/$name.npy")
  printf "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t-\n" "$name" "$ae_s" "$lt_s" "$(echo "$ae_s + $lt_s" | bc)" \
    "$lt_sample" "$(fd "$OUT/$name.npy")" | tee -a "$table"
}

pixel="$OUT/runs/pixel"
if has pixel; then
rm -rf "$pixel"
"$D" train "${data[@]}" --out "$pixel" > "$OUT/pixel.log" 2>&1
px_s=$(field "$pixel/metrics.json" train_seconds)
px_sample=$(draw "$pixel" "$OUT/pixel.npy")
"$D" eval --run "$pixel" --nll --n 100 > /dev/null 2>&1
printf "pixel\t-\t%.1f\t%.1f\t%.1f\t%s\t%.4f\n" "$px_s" "$px_s" "$px_sample" "$(fd "$OUT/pixel.npy")" \
  "$(field "$pixel/nll.json" bits_per_dim)" | tee -a "$table"
fi

has latent && latent_row latent
wide="$OUT/latent_wide.toml"
printf 'family = "latent"\n[unet]\nblock_out_channels = [64]\nlayers_per_block = 2\nattention_head_dim = 32\ndown_block_types = ["AttnDownBlock2D"]\nup_block_types = ["AttnUpBlock2D"]\n' > "$wide"
has latent-wide && latent_row latent-wide --config "$wide" --steps 3400

# The row of latent VDM run $1's samples by its own ancestral sampler in 50 steps.
ancestral_row() {
  local run="$OUT/runs/$1" start end
  start=$(now)
  "$D" sample --run "$run" --n "$N" --steps 50 --out "$OUT/$1-ancestral.npy" > /dev/null 2>&1
  end=$(now)
  printf "%s, ancestral 50 steps\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t-\n" "$1" "$ae_s" \
    "$(field "$run/metrics.json" train_seconds)" \
    "$(echo "$ae_s + $(field "$run/metrics.json" train_seconds)" | bc)" \
    "$(echo "$end - $start" | bc)" "$(fd "$OUT/$1-ancestral.npy")" | tee -a "$table"
}

if has latent-vdm; then
  latent_row latent-vdm --diffusion vdm
  ancestral_row latent-vdm
fi

if has seeds; then
  for seed in ${SEEDS:-1 2}; do
    latent_row "latent-seed$seed" --seed "$seed"
    latent_row "latent-vdm-seed$seed" --diffusion vdm --seed "$seed"
  done
fi

if has f2; then
  autoencoder_row autoencoder-f2 autoencoder_f2.toml "f = 2 autoencoder reconstructions" \
    'block_out_channels = [16, 32]\nlatent_channels = 1\n'
  latent_row latent-f2
  ae="$OUT/runs/autoencoder"; ae_s=$(field "$ae/metrics.json" train_seconds)
fi

if has f2-families; then
  ae="$OUT/runs/autoencoder-f2"; ae_s=$(field "$ae/metrics.json" train_seconds)
  latent_row latent-f2-vdm --diffusion vdm
  ancestral_row latent-f2-vdm
  SAMPLER=dpm-solver++ latent_row latent-f2-score --sde vp
  ae="$OUT/runs/autoencoder"; ae_s=$(field "$ae/metrics.json" train_seconds)
fi

# The same with a VQ autoencoder (3 latent channels, 256 entries, codebook by moving averages).
if has vq; then
  autoencoder_row autoencoder-vq autoencoder_vq.toml "VQ autoencoder reconstructions" \
    'bottleneck = "vq"\nblock_out_channels = [16, 32, 32]\nlatent_channels = 3\ncodebook_ema = 0.99\n'
  latent_row latent-vq
fi
true
