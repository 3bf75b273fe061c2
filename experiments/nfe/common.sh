# Shared by run.sh and mnist.sh: one measured sampler setting.
#
#   measure RESULTS.jsonl TARGET_FLAG TARGET LABEL SAMPLE_FLAGS...
#
# draws $N samples with `diffuse sample TARGET_FLAG TARGET --seed 1 SAMPLE_FLAGS...`, measures them
# with `diffuse eval --samples` and appends {label, sampler, nfe, sw, floor (and for images fd,
# fd_floor)} to RESULTS.jsonl,
# unless LABEL is already there (a rerun finishes an interrupted sweep).
measure() {
  local results=$1 flag=$2 target=$3 label=$4; shift 4
  if grep -q "\"label\": \"$label\"" "$results"; then return; fi
  local file
  file="$(dirname "$results")/$(basename "$results" .jsonl)_$(echo "$label" | tr ' +/@()' '_pp____').npy"
  local log nfe
  log=$($BIN sample "$flag" "$target" --n "$N" --seed 1 --out "$file" "$@" 2>&1 >/dev/null | tr '\r' '\n')
  nfe=$(echo "$log" | grep -o '[0-9]* network evaluations' | tail -1 | cut -d' ' -f1)
  $BIN eval --run "$target" --samples "$file" --seed 2 > /dev/null
  python3 - "$label" "$nfe" "${file%.npy}.sw.json" >> "$results" <<'PY'
import json, sys
label, nfe, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
q = json.load(open(path))
row = {"label": label, "sampler": label.split(" @")[0], "nfe": nfe,
       "sw": q["sliced_wasserstein"], "floor": q["data_vs_data"]}
if "frechet" in q:
    row.update(fd=q["frechet"], fd_floor=q["frechet_data_vs_data"])
print(json.dumps(row))
PY
  tail -1 "$results"
}
