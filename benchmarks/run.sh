#!/usr/bin/env bash
# Side by side: diffuse (burn-flex) and PyTorch eager on this machine, one run after the other.
#   benchmarks/run.sh [ARGS]         W1, the 2-D MLP workload (bench-2d, torch_2d.py)
#   benchmarks/run.sh --unet [ARGS]  W2, the 28x28 U-Net workload (bench-unet, torch_unet.py)
#   benchmarks/run.sh --score [ARGS] W3, W1's MLP as a VP score SDE (bench-2d --score)
#   benchmarks/run.sh --fid [ARGS]   W4, the FID Inception and the Fréchet distance (bench-fid,
#                                    torch_fid.py; needs pytorch-fid and scipy)
#   benchmarks/run.sh --autoencoder [ARGS]  W5, latent diffusion's AutoencoderKL, encode and
#                                    decode (bench-autoencoder, torch_autoencoder.py; diffusers)
# Needs: cargo, and python3 with torch (W2: and diffusers). Runs PyTorch twice, eager and with
# torch.compile (inductor; --no-compile skips it), and prints every JSON line and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
workload=2d
if [[ "${1:-}" == "--unet" ]]; then
  workload=unet
  shift
elif [[ "${1:-}" == "--score" ]]; then
  workload=score
elif [[ "${1:-}" == "--fid" ]]; then
  workload=fid
  shift
elif [[ "${1:-}" == "--autoencoder" ]]; then
  workload=autoencoder
  shift
fi
compile=1
args=()
for a in "$@"; do
  if [[ $a == --no-compile ]]; then compile=0; else args+=("$a"); fi
done
cargo build --release -q -p diffuse-benchmarks
if [[ $workload == 2d || $workload == score ]]; then
  script=benchmarks/torch_2d.py
  rust=$(./target/release/bench-2d "${args[@]}")
elif [[ $workload == fid ]]; then
  script=benchmarks/torch_fid.py
  rust=$(./target/release/bench-fid "${args[@]}")
elif [[ $workload == autoencoder ]]; then
  script=benchmarks/torch_autoencoder.py
  rust=$(./target/release/bench-autoencoder "${args[@]}")
else
  script=benchmarks/torch_unet.py
  rust=$(./target/release/bench-unet "${args[@]}")
fi
torch=$(python3 "$script" "${args[@]}")
compiled='{}'
if ((compile)); then
  compiled=$(python3 "$script" --compile "${args[@]}")
fi
echo "$rust"
echo "$torch"
((compile)) && echo "$compiled"
python3 - "$workload" "$rust" "$torch" "$compiled" <<'PY'
import json, sys
w, r, t, c = sys.argv[1], *(json.loads(a) for a in sys.argv[2:])
if w == "2d":
    figures = [("train_steps_per_s", "train steps/s (batch 1024)", False),
               ("sample_10k_1000_steps_s", "10k samples x 1000 DDPM steps, s", True)]
elif w == "score":
    figures = [("train_steps_per_s", "score SDE train steps/s (batch 1024)", False),
               ("sample_10k_pc_1000_s", "10k samples x 1000 PC steps (2000 evaluations), s", True)]
elif w == "autoencoder":
    assert r["params"] == t["params"], f"models differ: {r['params']} vs {t['params']} parameters"
    figures = [("encode_per_s_b4", "AutoencoderKL encodes/s (batch 4, 3x128x128)", False),
               ("decode_per_s_b4", "AutoencoderKL decodes/s (batch 4, 4x16x16 latents)", False)]
elif w == "fid":
    figures = [("inception_images_per_s", "FID Inception images/s (batch 50, 299x299)", False),
               ("frechet_s", "Frechet distance of two 2048-wide fits, s", True),
               ("moments_s", "mean and covariance of two 5000 x 2048 clouds, s", True)]
else:
    assert r["params"] == t["params"], f"models differ: {r['params']} vs {t['params']} parameters"
    figures = [("train_steps_per_s_b64", "train steps/s (batch 64)", False),
               ("forward_per_s_b256", "forward passes/s (batch 256)", False)]
for key, name, seconds in figures:
    # diffuse's speed over PyTorch's: for a time, the inverse ratio.
    speed = lambda o: (o[key] / r[key]) if seconds else (r[key] / o[key])
    line = f"{name}: diffuse {r[key]:.3f}, pytorch {t[key]:.3f}, diffuse/pytorch = {speed(t):.2f}x"
    if c:
        line += f"; pytorch compiled {c[key]:.3f}, diffuse/compiled = {speed(c):.2f}x"
    print(line)
PY
