# Sourced by the experiments' run.sh scripts, from the repository root. Builds the binary and
# sets D to a copy of it (cargo test may rebuild target/ while an experiment runs), or to
# $DIFFUSE; `field FILE KEY` prints a field of a JSON file (None when absent).
cargo build --release --quiet
BIN=$(mktemp -d)/diffuse
cp target/release/diffuse "$BIN"
D=${DIFFUSE:-$BIN}
field() { python3 -c "import json,sys; v=json.load(open(sys.argv[1])); print(v.get(sys.argv[2]))" "$1" "$2"; }
