#!/usr/bin/env bash
# Trains one small configuration with `mtl` built with the feature `mpi`,
# once as a single process and once under `mpirun -np 2`, and checks that
# the two test summaries agree to 3 decimals. Usage: mpi_train_check.sh MTL
set -euo pipefail
mtl=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/cfg.toml" <<'TOML'
seed = 3
[data]
builtin = "digits"
[model]
arch = "hps"
[model.encoder]
name = "mlp"
hidden = [16]
[train]
epochs = 1
batch_size = 64
balancer = { name = "upgrad" }
optimizer = { name = "sgd", lr = 0.05 }
TOML
"$mtl" train "$work/cfg.toml" --out "$work/one" --quiet
mpirun --allow-run-as-root --oversubscribe -np 2 "$mtl" train "$work/cfg.toml" --out "$work/two" --quiet
# Every test metric of summary.json (`["name", value]`), one "name value" per line.
scores() {
  tr -d ' \n' < "$1/summary.json" | grep -o '\["[A-Za-z0-9_.]*",-\?[0-9][0-9.eE+-]*\]' \
    | tr -d '[]"' | tr ',' ' ' | sort
}
paste <(scores "$work/one") <(scores "$work/two") | awk '
  { n++; d = $2 - $4; if (d < 0) d = -d;
    if ($1 != $3 || d >= 5e-4) { print "differs: " $0; bad = 1 } }
  END { if (n == 0) { print "no scores in summary.json"; exit 1 }
        if (bad) exit 1; print n " test scores agree between 1 and 2 processes" }'
