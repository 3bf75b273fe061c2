#!/usr/bin/env bash
# The bounded fuzz run CI makes: each data-parser target for SECONDS (default 15) from its seeds,
# in a scratch corpus. Installs cargo-fuzz when it is missing. Exits non-zero on a crash, leaving
# the crashing input under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${SECONDS_PER_TARGET:-15}
if ! command -v cargo-fuzz > /dev/null; then
  cargo install --locked cargo-fuzz
fi
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p artifacts
for t in npy npz csv idx cifar image; do
  mkdir -p "$corpus/$t"
  # Nightly flags on the stable toolchain (cargo-fuzz passes -Z options).
  if ! RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none -O "$t" "$corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -artifact_prefix="artifacts/$t-" \
    > "$corpus/$t.log" 2>&1; then
    tail -n 40 "$corpus/$t.log" >&2
    echo "fuzz target $t failed (a crash leaves its input under fuzz/artifacts/)" >&2
    exit 1
  fi
  grep -E "^Done" "$corpus/$t.log" | sed "s/^/fuzz $t: /"
done
echo "fuzz: 6 targets ran ${seconds}s each without a crash"
