"""Runs the workloads of `peer_workloads` (ours) and `workloads.py` (PyTorch)
side by side and prints medians and the ratios ours / PyTorch.

For each case and each of ROUNDS rounds it starts one process per side,
alternating which side goes first; each process does its warm-up and
`--reps` timed repetitions and reports its median. The figure of a case is
the median over rounds of those medians; the peak resident set is the
median over rounds of each process's VmHWM. Both sides use 2 threads
(RAYON_NUM_THREADS=2; torch.set_num_threads(2) with OMP_WAIT_POLICY=PASSIVE).

    benches/peer/.venv/bin/python benches/peer/compare_workloads.py
    benches/peer/.venv/bin/python benches/peer/compare_workloads.py --rounds 5 --only w1

Writes target/peer_compare_workloads/{raw.jsonl,results.csv,results.md}.
The MultiMNIST export (W3) goes to target/peer_data/multimnist.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OURS = ROOT / "target" / "release" / "peer_workloads"
MTL = ROOT / "target" / "release" / "mtl"
DATA = ROOT / "target" / "peer_data" / "multimnist"
OUT = ROOT / "target" / "peer_compare_workloads"
BALANCERS = ["equal", "uncertainty", "gradnorm", "mgda-ub", "pcgrad"]

# Target time ratios ours / PyTorch (at most).
TARGETS = {"w1-equal": 0.8, "w1-balancer": 0.6, "w2": 0.3, "w3": 0.8, "w4": 1.25, "memory": 0.5}


def cases(only):
    out = []
    for t in (2, 8):
        for b in BALANCERS:
            out.append(("w1", {"tasks": t, "balancer": b}, f"W1 T={t} {b}"))
    out.append(("w2", {}, "W2 64-64-64 T=2 b16"))
    out.append(("w3", {}, "W3 MultiMNIST epoch"))
    out.append(("w4", {}, "W4 matmul n=1024"))
    return [c for c in out if not only or c[0] in only]


def target_of(workload, params):
    if workload == "w1":
        return TARGETS["w1-equal" if params["balancer"] == "equal" else "w1-balancer"]
    return TARGETS[workload]


def run_side(side, workload, params, args):
    flags = [workload, "--reps", str(args.reps_w3 if workload == "w3" else args.reps)]
    for k, v in params.items():
        flags += [f"--{k}", str(v)]
    if workload == "w3":
        flags += ["--data", str(DATA), "--warmup", "2"]
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    if side == "ours":
        cmd = [str(OURS)] + flags
    else:
        cmd = [sys.executable, str(HERE / "workloads.py")] + flags
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per process")
    p.add_argument("--reps-w3", type=int, default=1, help="timed epochs per W3 process")
    p.add_argument("--only", nargs="*", default=[], help="workloads to run (w1 w2 w3 w4)")
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()

    if not args.no_build:
        subprocess.run(
            ["cargo", "build", "--release", "-p", "mtl-benches", "--bin", "peer_workloads",
             "-p", "mtl-cli", "--bin", "mtl"],
            cwd=ROOT, check=True,
        )
    if not (DATA / "train_x.npy").exists():
        subprocess.run([str(MTL), "datasets", "export", "multimnist", str(DATA)], check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    raw = open(OUT / "raw.jsonl", "w")
    rows = []
    started = time.time()
    for workload, params, label in cases(args.only):
        meds = {"ours": [], "torch": []}
        rss = {"ours": [], "torch": []}
        for r in range(args.rounds):
            order = ["ours", "torch"] if r % 2 == 0 else ["torch", "ours"]
            for side in order:
                res = run_side(side, workload, params, args)
                res["round"] = r
                raw.write(json.dumps(res) + "\n")
                raw.flush()
                meds[side].append(statistics.median(res["times_s"]))
                rss[side].append(res["peak_rss_kib"])
        ours, theirs = statistics.median(meds["ours"]), statistics.median(meds["torch"])
        mo, mt = statistics.median(rss["ours"]), statistics.median(rss["torch"])
        target = target_of(workload, params)
        row = {
            "case": label,
            "time_ratio": ours / theirs,
            "target": target,
            "met": ours / theirs <= target,
            "ours_ms": ours * 1e3,
            "torch_ms": theirs * 1e3,
            "mem_ratio": mo / mt,
            "mem_met": mo / mt <= TARGETS["memory"],
            "ours_peak_mib": mo / 1024,
            "torch_peak_mib": mt / 1024,
        }
        rows.append(row)
        print(f"{label}: ours {row['ours_ms']:.3f} ms, torch {row['torch_ms']:.3f} ms, "
              f"ratio {row['time_ratio']:.2f} (target {target}); peak {row['ours_peak_mib']:.0f} "
              f"/ {row['torch_peak_mib']:.0f} MiB = {row['mem_ratio']:.2f}", flush=True)
    with open(OUT / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"rounds {args.rounds}, {args.reps} repetitions per process "
        f"({args.reps_w3} epoch(s) for W3), {time.time() - started:.0f} s in all",
        "",
        "| case | time ours/PyTorch | target | met | peak memory ours/PyTorch | ours | PyTorch | peak ours | peak PyTorch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['time_ratio']:.2f} | ≤ {r['target']} | {'yes' if r['met'] else 'no'} "
            f"| {r['mem_ratio']:.2f} | {r['ours_ms']:.3f} ms | {r['torch_ms']:.3f} ms "
            f"| {r['ours_peak_mib']:.0f} MiB | {r['torch_peak_mib']:.0f} MiB |"
        )
    text = "\n".join(lines)
    (OUT / "results.md").write_text(text + "\n")
    print()
    print(text)


if __name__ == "__main__":
    main()
