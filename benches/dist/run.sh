#!/usr/bin/env bash
# Data-parallel steps on one machine, two layouts of two cores:
#   1x2: one plain process (no MPI), 2 rayon threads and 2 matrix-product threads;
#   2x1: `mpirun -np 2`, 1 thread each (rayon and matrix products);
# and, for reference, 1x1: one plain process with 1 thread.
# Builds `dist_steps` (cargo feature `mpi`), runs the layouts and writes
# $OUT/<layout>.jsonl and $OUT/<layout>.md for each, and $OUT/results.md (the
# header, 2x1 joined with 1x2, and 2x1 joined with 1x1). Settings from the
# environment: OUT (default target/dist_bench), REPS (7), STEPS (20 W1 steps
# per repetition), EPOCHS (3 MultiMNIST epochs), WARMUP (3), ONLY (w1 or
# mnist; empty: both), BIND (mpirun's --bind-to, default core: rank r on
# core r; with `none` a rank that shares a core with another process, or
# with the other rank, waits a scheduler time slice in collectives, and
# steps take ten times longer; see benches/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-target/dist_bench}
REPS=${REPS:-7}
STEPS=${STEPS:-20}
EPOCHS=${EPOCHS:-3}
WARMUP=${WARMUP:-3}
ONLY=${ONLY:-}
BIND=${BIND:-core}

cargo build --release -p mtl-benches --features mpi --bin dist_steps
BIN=target/release/dist_steps
mkdir -p "$OUT"

args=(--reps "$REPS" --steps "$STEPS" --epochs "$EPOCHS" --warmup "$WARMUP")
if [ -n "$ONLY" ]; then args+=(--only "$ONLY"); fi
root=()
if [ "$(id -u)" = 0 ]; then root=(--allow-run-as-root); fi

load() { cut -d' ' -f1-3 /proc/loadavg; }
model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(load)
t0=$(date +%s)

RAYON_NUM_THREADS=2 MATMUL_NUM_THREADS=2 \
    "$BIN" run --layout 1x2 "${args[@]}" --json "$OUT/1x2.jsonl" >"$OUT/1x2.md"
load_mid=$(load)
RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1 \
    "$BIN" run --layout 1x1 "${args[@]}" --json "$OUT/1x1.jsonl" >"$OUT/1x1.md"
load_mid2=$(load)
RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1 \
    mpirun "${root[@]}" --oversubscribe --bind-to "$BIND" -np 2 \
    -x RAYON_NUM_THREADS -x MATMUL_NUM_THREADS \
    "$BIN" run --layout 2x1 "${args[@]}" --json "$OUT/2x1.jsonl" >"$OUT/2x1.md"

{
    echo "$started; \`lscpu\`: $model, $(nproc) CPUs; load average (1, 5, 15 min)" \
        "$load_start at the start, $load_mid after 1x2, $load_mid2 after 1x1, $(load) at the end (after 2x1);" \
        "$(mpirun --version | head -n1); 2x1 with \`--bind-to $BIND\`; $REPS repetitions of" \
        "$STEPS W1 steps and $EPOCHS MultiMNIST epochs after $WARMUP warm-up steps;" \
        "$(($(date +%s) - t0)) s in all."
    echo
    "$BIN" compare "$OUT/1x2.jsonl" "$OUT/2x1.jsonl"
    echo
    "$BIN" compare "$OUT/1x1.jsonl" "$OUT/2x1.jsonl"
} >"$OUT/results.md"
cat "$OUT/results.md"
