#!/usr/bin/env bash
# Model families side by side (issue 23's experiment): each family's default recipe on the
# swiss roll and a ring of 16 tight Gaussians (3 seeds; 20,000 samples against 20,000 fresh
# points, next to the data-vs-data floor), and on MNIST (the preset; FD_LeNet and pooled-pixel distances of
# 256 samples to the test set, next to train vs test). Writes experiments/families/out/.
#
#   experiments/families/run.sh              # everything (about 75 minutes on 2 cores)
#   experiments/families/run.sh points       # the 2-D part only (ddpm, ncsn; ring16 one seed)
#   experiments/families/run.sh score        # the score SDEs on 2-D data (PC, ODE, bits/dim)
#   DATASETS=swiss_roll SDES="subvp ve" SEEDS=0 NLL_N=300 experiments/families/run.sh score
#   MNIST=../shared/data/mnist experiments/families/run.sh mnist
#   experiments/families/run.sh grids        # a trained MNIST score run: 36 samples per sampler
#                                            # at 200 network evaluations each (ODE: adaptive)
#   experiments/families/run.sh defaults     # every family's default recipe and sampler on the
#                                            # swiss roll, ring16 and two spirals from a file
#                                            # (100,000 samples: 5 chunks of 20,000; about an hour)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet
D=${DIFFUSE:-target/release/diffuse}
OUT=experiments/families/out
mkdir -p "$OUT"
what=${1:-all}
MNIST=${MNIST:-../shared/data/mnist}

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

if [ "$what" = all ] || [ "$what" = points ]; then
  table="$OUT/points.tsv"
  echo -e "dataset\tfamily\tseed\ttrain_s\tsample_s\tnfe\tsw\tfloor\tratio" > "$table"
  for dataset in ${DATASETS:-swiss_roll ring16}; do
    seeds=${SEEDS:-0 1 2}; [ "$dataset" = ring16 ] && seeds=0
    for family in ddpm ncsn; do
      for seed in $seeds; do
        run="$OUT/runs/$dataset-$family-$seed"
        rm -rf "$run"
        "$D" train --dataset "$dataset" --family "$family" --seed "$seed" --out "$run" > /dev/null 2>&1
        start=$(date +%s.%N)
        nfe=$("$D" sample --run "$run" --n 20000 --seed 7 --out "$run/s20k.npy" 2>&1 | grep -o '^[0-9]* network evaluations' | cut -d' ' -f1)
        end=$(date +%s.%N)
        "$D" eval --run "$run" --samples "$run/s20k.npy" > /dev/null
        sw=$(field "$run/s20k.sw.json" sliced_wasserstein)
        floor=$(field "$run/s20k.sw.json" data_vs_data)
        train_s=$(field "$run/metrics.json" train_seconds)
        printf "%s\t%s\t%s\t%.1f\t%.1f\t%s\t%.4f\t%.4f\t%.2f\n" "$dataset" "$family" "$seed" \
          "$train_s" "$(echo "$end - $start" | bc)" "$nfe" "$sw" "$floor" \
          "$(echo "$sw / $floor" | bc -l)" | tee -a "$table"
      done
    done
  done
fi

if [ "$what" = all ] || [ "$what" = score ]; then
  table="$OUT/score.tsv"
  [ -f "$table" ] || echo -e "dataset\tsde\tseed\tsampler\ttrain_s\tsample_s\tnfe\tsw\tfloor\tratio\tbits_per_dim" > "$table"
  for dataset in ${DATASETS:-swiss_roll ring16}; do
    seeds=${SEEDS:-0 1 2}; [ "$dataset" = ring16 ] && seeds=0
    for sde in ${SDES:-vp subvp ve}; do
      for seed in $seeds; do
        run="$OUT/runs/$dataset-score-$sde-$seed"
        rm -rf "$run"
        "$D" train --dataset "$dataset" --family score --sde "$sde" --seed "$seed" --out "$run" > /dev/null 2>&1
        "$D" eval --run "$run" --nll --method ode --n "${NLL_N:-1000}" > /dev/null 2>&1
        bits=$(field "$run/nll_ode.json" bits_per_dim)
        for sampler in pc ode; do
          start=$(date +%s.%N)
          nfe=$("$D" sample --run "$run" --sampler "$sampler" --n 20000 --seed 7 --out "$run/$sampler.npy" 2>&1 | grep -o '^[0-9]* network evaluations' | cut -d' ' -f1)
          end=$(date +%s.%N)
          "$D" eval --run "$run" --samples "$run/$sampler.npy" > /dev/null
          sw=$(field "$run/$sampler.sw.json" sliced_wasserstein)
          floor=$(field "$run/$sampler.sw.json" data_vs_data)
          printf "%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%.4f\t%.4f\t%.2f\t%.3f\n" "$dataset" "$sde" "$seed" "$sampler" \
            "$(field "$run/metrics.json" train_seconds)" "$(echo "$end - $start" | bc)" "$nfe" "$sw" "$floor" \
            "$(echo "$sw / $floor" | bc -l)" "$bits" | tee -a "$table"
        done
      done
    done
  done
fi

if [ "$what" = all ] || [ "$what" = mnist ]; then
  table="$OUT/mnist.tsv"
  [ -f "$table" ] || echo -e "family\ttrain_s\tsample_s\tsw\tsw_floor\tfrechet\tfrechet_floor\tfd_lenet\tfd_lenet_floor" > "$table"
  # FD_LeNet: a LeNet trained on the training split, the test split's statistics once, and the
  # floor: 256 training images (seed 0) against them, the samples' count.
  [ -f "$OUT/lenet/classifier.json" ] || "$D" classifier --dataset mnist --data-dir "$MNIST" --out "$OUT/lenet"
  [ -f "$OUT/lenet_test.npz" ] || "$D" fid --save-stats mnist:test "$OUT/lenet_test.npz" --classifier "$OUT/lenet" --data-dir "$MNIST"
  fd() { "$D" fid "$1" "$OUT/lenet_test.npz" --classifier "$OUT/lenet" --data-dir "$MNIST" 2>/dev/null | tail -1 | cut -d' ' -f2; }
  fd_floor=$(fd mnist:train:256)
  for family in ${MNIST_FAMILIES:-ddpm ncsn score-vp score-ve}; do
    run="$OUT/runs/mnist-$family"
    rm -rf "$run"
    case "$family" in
      score-*) flags="--family score --sde ${family#score-}"; sampler=pc ;;
      ncsn) flags="--family ncsn"; sampler=langevin ;;
      *) flags="--family $family"; sampler=ddim ;;
    esac
    # shellcheck disable=SC2086
    "$D" train --dataset mnist --data-dir "$MNIST" $flags --out "$run" > /dev/null 2>&1
    start=$(date +%s.%N)
    "$D" sample --run "$run" --sampler "$sampler" --n 256 --seed 7 --out "$run/s256.npy" --png "$run/s256.png" > /dev/null 2>&1
    end=$(date +%s.%N)
    "$D" eval --run "$run" --samples "$run/s256.npy" > /dev/null
    j="$run/s256.sw.json"
    printf "%s\t%.1f\t%.1f\t%.4f\t%.4f\t%.4f\t%.4f\t%.3f\t%.3f\n" "$family" "$(field "$run/metrics.json" train_seconds)" \
      "$(echo "$end - $start" | bc)" "$(field "$j" sliced_wasserstein)" "$(field "$j" data_vs_data)" \
      "$(field "$j" frechet)" "$(field "$j" frechet_data_vs_data)" "$(fd "$run/s256.npy")" "$fd_floor" | tee -a "$table"
  done
fi

if [ "$what" = defaults ]; then
  table="$OUT/defaults.tsv"
  [ -f "$table" ] || echo -e "dataset\tfamily\ttrain_s\tsample_s\tnfe\tsw\tsw_se\tfloor\tfloor_se\tratio" > "$table"
  # A cloud no built-in set or test uses, as a file: a million training points, 20,000 held out.
  spirals="$OUT/spirals.csv"
  [ -f "$spirals" ] || python3 experiments/families/spirals.py 1020000 0 > "$spirals"
  printf '[data]\nheld_out = 20000\n' > "$OUT/spirals.toml"
  n=${N:-100000}
  for dataset in ${DATASETS:-swiss_roll ring16 spirals}; do
    for family in ${FAMILIES:-ddpm ncsn score-vp score-subvp score-ve}; do
      run="$OUT/runs/defaults-$dataset-$family"
      rm -rf "$run"
      case "$family" in
        score-*) flags="--family score --sde ${family#score-}" ;;
        *) flags="--family $family" ;;
      esac
      if [ "$dataset" = spirals ]; then
        data="--data $spirals --config $OUT/spirals.toml"
      else
        data="--dataset $dataset"
      fi
      # shellcheck disable=SC2086
      "$D" train $data $flags --seed "${SEED:-0}" --out "$run" > /dev/null 2>&1
      start=$(date +%s.%N)
      nfe=$("$D" sample --run "$run" --n "$n" --seed 7 --out "$run/draws.npy" 2>&1 | grep -o '^[0-9]* network evaluations' | cut -d' ' -f1)
      end=$(date +%s.%N)
      "$D" eval --run "$run" --samples "$run/draws.npy" > /dev/null
      j="$run/draws.sw.json"
      sw=$(field "$j" sliced_wasserstein)
      floor=$(field "$j" data_vs_data)
      printf "%s\t%s\t%.1f\t%.1f\t%s\t%.4f\t%.4f\t%.4f\t%.4f\t%.2f\n" "$dataset" "$family" \
        "$(field "$run/metrics.json" train_seconds)" "$(echo "$end - $start" | bc)" "$nfe" \
        "$sw" "$(field "$j" sliced_wasserstein_se)" "$floor" "$(field "$j" data_vs_data_se)" \
        "$(echo "$sw / $floor" | bc -l)" | tee -a "$table"
    done
  done
fi

if [ "$what" = grids ]; then
  run="$OUT/runs/${GRID_RUN:-mnist-score-vp}"
  table="$OUT/grids.tsv"
  echo -e "sampler\tsteps\tnfe\tsample_s" > "$table"
  for spec in pc:100 sde:200 euler:200 heun:100 dpm-solver++:200 ode:0; do
    sampler=${spec%%:*}; steps=${spec#*:}
    flags="--steps $steps"; [ "$sampler" = ode ] && flags="--rtol 1e-3 --atol 1e-3"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    nfe=$("$D" sample --run "$run" --sampler "$sampler" $flags --n 36 --seed 7 --out "$run/grid-$sampler.npy" --png "$run/grid-$sampler.png" 2>&1 | grep -o '^[0-9]* network evaluations' | cut -d' ' -f1)
    end=$(date +%s.%N)
    printf "%s\t%s\t%s\t%.1f\n" "$sampler" "$steps" "$nfe" "$(echo "$end - $start" | bc)" | tee -a "$table"
  done
fi
