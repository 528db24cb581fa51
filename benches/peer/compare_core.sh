#!/usr/bin/env bash
# Side-by-side comparison of mtl-core's kernels with PyTorch on the CPU.
#
# Runs, alternately and for several rounds, the criterion bench
# `benches/benches/core.rs` and `benches/peer/matmul.py` (2 threads each),
# then prints, for f32 matrix products at n = 256..2048, both GFLOP/s figures
# and their ratio, and the ratio of the MLP 784-256-256-10 training-step
# times at batch 256. PyTorch runs twice per round, with OpenMP's default
# wait policy and with OMP_WAIT_POLICY=PASSIVE; both are printed and the
# ratio is taken against the faster. Each figure is the median over the
# rounds of each run's median.
#
# Usage: benches/peer/compare_core.sh            (ROUNDS=3 by default)
#        ROUNDS=5 benches/peer/compare_core.sh
# Needs benches/peer/.venv (benches/peer/setup.sh creates it). Raw results
# are kept in target/peer_compare_core/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="$here/.venv/bin/python"
rounds="${ROUNDS:-3}"
out="$root/target/peer_compare_core"
crit="$root/target/criterion"
sizes=(256 512 1024 2048)
bench_args=(bench -p mtl-benches --bench core -- --warm-up-time 1 --measurement-time 3)

if [[ ! -x "$python" ]]; then
    echo "missing $python: run benches/peer/setup.sh first" >&2
    exit 1
fi

cd "$root"
rm -rf "$out"
mkdir -p "$out"

# Build once, so that compilation is not inside the first timed round.
cargo bench -p mtl-benches --bench core --no-run >&2

run_ours() {
    local r="$1"
    echo "== round $r: cargo ${bench_args[*]}" >&2
    cargo "${bench_args[@]}" >"$out/criterion_$r.txt" 2>&1
    # Criterion overwrites new/estimates.json on every run: keep this round's.
    local id
    for id in "${sizes[@]/#/matmul_f32/mtl_core/}" "${sizes[@]/#/matmul_f32/gemm_crate/}" \
        mlp_784_256_256_10/forward_backward_b256; do
        mkdir -p "$out/$r/$id"
        cp "$crit/$id/new/estimates.json" "$out/$r/$id/estimates.json"
    done
}

run_torch() {
    local r="$1"
    echo "== round $r: benches/peer/matmul.py (default wait policy, then PASSIVE)" >&2
    env -u OMP_WAIT_POLICY "$python" "$here/matmul.py" >"$out/torch_default_$r.jsonl"
    OMP_WAIT_POLICY=PASSIVE "$python" "$here/matmul.py" >"$out/torch_passive_$r.jsonl"
}

for ((r = 1; r <= rounds; r++)); do
    # Alternate which side runs first, so that neither always follows the other.
    if ((r % 2)); then
        run_ours "$r"
        run_torch "$r"
    else
        run_torch "$r"
        run_ours "$r"
    fi
done

"$python" - "$out" "$rounds" "${sizes[@]}" <<'PY'
import json
import statistics
import subprocess
import sys
from pathlib import Path

out, rounds, sizes = Path(sys.argv[1]), int(sys.argv[2]), [int(s) for s in sys.argv[3:]]


def crit_median_ns(r, group_id):
    est = json.loads((out / str(r) / group_id / "estimates.json").read_text())
    return est["median"]["point_estimate"]


def torch_rows(policy, r):
    path = out / f"torch_{policy}_{r}.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines() if l]


def med(xs):
    return statistics.median(xs)


rs = range(1, rounds + 1)
runs = {p: [torch_rows(p, r) for r in rs] for p in ("default", "passive")}
info = runs["default"][0][0]
model = next((l.split(":", 1)[1].strip() for l in subprocess.run(
    ["lscpu"], capture_output=True, text=True).stdout.splitlines()
    if l.startswith("Model name:")), "unknown")
load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
print(f"rounds: {rounds}; torch {info['torch']}, {info['threads']} threads; "
      f"lscpu: {model}; load average at the end {load}")
print()
print("| n | ours/PyTorch best | mtl-core GFLOP/s | PyTorch default GFLOP/s "
      "| PyTorch PASSIVE GFLOP/s | gemm crate GFLOP/s |")
print("|---|---|---|---|---|---|")
for n in sizes:
    flops = 2 * n**3
    ours = med([flops / crit_median_ns(r, f"matmul_f32/mtl_core/{n}") for r in rs])
    gemm = med([flops / crit_median_ns(r, f"matmul_f32/gemm_crate/{n}") for r in rs])
    theirs = {p: med([row["gflops"] for run in runs[p] for row in run
                      if row["bench"] == "matmul_f32" and row["n"] == n]) for p in runs}
    best = max(theirs.values())
    print(f"| {n} | {ours / best:.2f} | {ours:.1f} | {theirs['default']:.1f} "
          f"| {theirs['passive']:.1f} | {gemm:.1f} |")
print()
ours_ms = med([crit_median_ns(r, "mlp_784_256_256_10/forward_backward_b256") / 1e6 for r in rs])
theirs_ms = {p: med([row["median_ms"] for run in runs[p] for row in run
                     if row["bench"] == "mlp_784_256_256_10"]) for p in runs}
best_ms = min(theirs_ms.values())
print("| MLP 784-256-256-10, forward + backward, batch 256 | ours/PyTorch best (time) "
      "| mtl-core | PyTorch default | PyTorch PASSIVE |")
print("|---|---|---|---|---|")
print(f"| step time | {ours_ms / best_ms:.2f} | {ours_ms:.2f} ms | {theirs_ms['default']:.2f} ms "
      f"| {theirs_ms['passive']:.2f} ms |")
PY
