"""Runs the workloads of `peer_workloads` (ours) and `workloads.py` (PyTorch)
side by side and prints medians, the ratios ours / PyTorch, the floating-point
work of each workload and the share of the machine's GEMM rate it reaches.

PyTorch runs twice per round: with OpenMP's default wait policy (threads
spin for a while before sleeping, OMP_WAIT_POLICY unset) and with
OMP_WAIT_POLICY=PASSIVE (threads sleep at once). Which is faster depends on
the machine and its load, so the ratio is taken against the faster of the two
and both are reported.

For each case and each of ROUNDS rounds it starts one process per side
(ours, PyTorch default, PyTorch PASSIVE), rotating which goes first; each
process does its warm-up and `--reps` timed repetitions and reports its
median. The figure of a case is the median over rounds of those medians; the
peak resident set is the median over rounds of each process's VmHWM. All sides
use 2 threads (RAYON_NUM_THREADS=2; torch.set_num_threads(2)).

On a shared machine a whole process can run slower than another of the same
case, from its first repetition to its last (on both sides alike), so the
table also gives the range of the process medians of ours and of the PyTorch
setting counted, and the run ends with how many processes of each side took
at least SLOW times the fastest of their side in their case. Five rounds by
default: the median of five processes is slow only if three are.

FLOP counts come from the layer shapes (`flops()` below: every matrix product
and convolution of the forward and backward passes, 2 per multiply-add;
element-wise work, losses and the optimizer are not counted). The GEMM peak is
the faster of the two f32 products at n = 1024 (W4) measured in the same run.

    benches/peer/.venv/bin/python benches/peer/compare_workloads.py
    benches/peer/.venv/bin/python benches/peer/compare_workloads.py --rounds 5 --only w1 w4

Writes target/peer_compare_workloads/{raw.jsonl,results.csv,results.md}.
The MultiMNIST export (W3) goes to target/peer_data/multimnist.
"""

import argparse
import csv
import datetime
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
SIDES = ["ours", "torch-default", "torch-passive"]

# Target time ratios ours / PyTorch at its faster setting (at most), and the
# least share of the GEMM peak for W3.
TARGETS = {"w1-equal": 0.7, "w1-balancer": 0.6, "w2": 0.3, "w3": 0.6, "w4": 1.0, "memory": 0.5}
W3_PEAK_SHARE = 0.25
# A process whose median is at least SLOW times the fastest process median
# of its side in its case counts as a slow process.
SLOW = 1.3

# Shapes of the workloads (as in peer_workloads.rs and workloads.py).
W1 = {"inputs": 784, "hidden": [256, 256], "classes": 10, "batch": 256}
W2 = {"inputs": 64, "hidden": [64, 64], "classes": 10, "batch": 16, "tasks": 2}
W3_EXAMPLES = 20_000
W4_N = 1024


def mlp_flops(inputs, hidden, classes, batch, tasks, balancer):
    """FLOPs of one training step of the hard-sharing MLP with `tasks` linear
    heads, for the algorithm each balancer runs (both sides run the same)."""
    widths = [inputs] + hidden
    trunk = [(a, b) for a, b in zip(widths, widths[1:])]
    rep = widths[-1]
    mm = lambda i, o: 2 * batch * i * o  # noqa: E731 - one product [B, i] x [i, o]
    fwd = sum(mm(i, o) for i, o in trunk) + tasks * mm(rep, classes)
    # Trunk backward: every weight gradient, every input gradient but the data's.
    trunk_bwd = sum(mm(i, o) for i, o in trunk) + sum(mm(i, o) for i, o in trunk[1:])
    head_dw = mm(rep, classes)
    head_dx = mm(rep, classes)
    full_bwd = trunk_bwd + tasks * (head_dw + head_dx)
    shared = sum(i * o + o for i, o in trunk)
    if balancer in ("equal", "uncertainty"):
        return fwd + full_bwd
    if balancer == "gradnorm":
        # Per task: the head's input gradient and the last shared layer's
        # weight gradient; then one weighted full backward.
        last_i, last_o = trunk[-1]
        return fwd + tasks * (head_dx + mm(last_i, last_o)) + full_bwd
    if balancer == "mgda-ub":
        # Per task: the head's input gradient at z; then one backward of the
        # weighted sum through heads and trunk.
        return fwd + tasks * head_dx + full_bwd
    if balancer == "pcgrad":
        # Per task a full backward of its own loss; the projections are
        # counted as one dot product per ordered pair (the conditional
        # projection is data-dependent and left out) and the mean.
        per_task = trunk_bwd + head_dw + head_dx
        return fwd + tasks * per_task + tasks * (tasks - 1) * 2 * shared + tasks * shared
    raise ValueError(balancer)


def lenet_flops_per_example():
    """FLOPs of one MultiMNIST example through the default job's LeNet
    (conv 1->10 5x5 on 36x36, pool 2, conv 10->20 5x5, pool 2, dense 720->100,
    heads 10 + 10 + 1), forward and backward (no input gradient of conv1)."""
    conv1 = 2 * 10 * (1 * 5 * 5) * 32 * 32
    conv2 = 2 * 20 * (10 * 5 * 5) * 12 * 12
    fc = 2 * 720 * 100
    heads = 2 * 100 * (10 + 10 + 1)
    fwd = conv1 + conv2 + fc + heads
    bwd = conv1 + 2 * conv2 + 2 * fc + 2 * heads
    return fwd + bwd


def flops(workload, params):
    if workload == "w1":
        return mlp_flops(W1["inputs"], W1["hidden"], W1["classes"], W1["batch"],
                         params["tasks"], params["balancer"])
    if workload == "w2":
        return mlp_flops(W2["inputs"], W2["hidden"], W2["classes"], W2["batch"],
                         W2["tasks"], "equal")
    if workload == "w3":
        return W3_EXAMPLES * lenet_flops_per_example()
    return 2 * W4_N**3


def cases(only):
    out = []
    for t in (2, 8):
        for b in BALANCERS:
            out.append(("w1", {"tasks": t, "balancer": b}, f"W1 T={t} {b}"))
    out.append(("w2", {}, "W2 64-64-64 T=2 b16"))
    out.append(("w3", {}, "W3 MultiMNIST epoch"))
    out.append(("w4", {}, f"W4 matmul n={W4_N}"))
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
    env.pop("OMP_WAIT_POLICY", None)
    if side == "ours":
        cmd = [str(OURS)] + flags
    else:
        if side == "torch-passive":
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        cmd = [sys.executable, str(HERE / "workloads.py")] + flags
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine():
    """`lscpu` model name, core count and the load average, for the record."""
    model = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return model, os.cpu_count(), load


def fmt_time(s):
    return f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.3f} ms"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 5)))
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
    model, cores, load_start = machine()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    raw = open(OUT / "raw.jsonl", "w")
    rows = []
    slow = {s: 0 for s in SIDES}
    torch_version = "?"
    started = time.time()
    # W4 first, so that the GEMM peak is known for every row printed.
    todo = sorted(cases(args.only), key=lambda c: c[0] != "w4")
    for workload, params, label in todo:
        meds = {s: [] for s in SIDES}
        rss = {s: [] for s in SIDES}
        for r in range(args.rounds):
            order = SIDES[r % len(SIDES):] + SIDES[:r % len(SIDES)]
            for side in order:
                res = run_side(side, workload, params, args)
                res["round"] = r
                res["side"] = side
                torch_version = res.get("torch", torch_version)
                raw.write(json.dumps(res) + "\n")
                raw.flush()
                meds[side].append(statistics.median(res["times_s"]))
                rss[side].append(res["peak_rss_kib"])
        t = {s: statistics.median(meds[s]) for s in SIDES}
        m = {s: statistics.median(rss[s]) for s in SIDES}
        best = min(("torch-default", "torch-passive"), key=lambda s: t[s])
        for side in SIDES:
            slow[side] += sum(x >= SLOW * min(meds[side]) for x in meds[side])
        work = flops(workload, params)
        target = target_of(workload, params)
        if workload == "w4":
            # Throughput, not time: ours / MKL GFLOP/s.
            ratio = t[best] / t["ours"]
        else:
            ratio = t["ours"] / t[best]
        met = ratio >= target if workload == "w4" else ratio <= target
        row = {
            "case": label,
            "workload": workload,
            "ours_s": t["ours"],
            "torch_default_s": t["torch-default"],
            "torch_passive_s": t["torch-passive"],
            "ours_min_s": min(meds["ours"]),
            "ours_max_s": max(meds["ours"]),
            "torch_best_min_s": min(meds[best]),
            "torch_best_max_s": max(meds[best]),
            "torch_best": best.removeprefix("torch-"),
            "ratio": ratio,
            "target": target,
            "met": met,
            "gflop": work / 1e9,
            "ours_gflops": work / t["ours"] / 1e9,
            "torch_gflops": work / t[best] / 1e9,
            "ours_peak_mib": m["ours"] / 1024,
            "torch_peak_mib": m[best] / 1024,
        }
        rows.append(row)
        print(f"{label}: ours {fmt_time(t['ours'])}, PyTorch default {fmt_time(t['torch-default'])},"
              f" PASSIVE {fmt_time(t['torch-passive'])}, ratio {ratio:.2f} (target {target});"
              f" {row['ours_gflops']:.1f} / {row['torch_gflops']:.1f} GFLOP/s", flush=True)
    peak = None
    for r in rows:
        if r["workload"] == "w4":
            peak = max(r["ours_gflops"], r["torch_gflops"])
    for r in rows:
        r["ours_pct_peak"] = 100 * r["ours_gflops"] / peak if peak else None
        r["torch_pct_peak"] = 100 * r["torch_gflops"] / peak if peak else None
        if r["workload"] == "w3" and peak:
            r["met"] = r["met"] and r["ours_pct_peak"] >= 100 * W3_PEAK_SHARE
    _, _, load_end = machine()
    with open(OUT / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    pct = lambda v: "–" if v is None else f"{v:.0f} %"  # noqa: E731
    lines = [
        f"{started_at:%Y-%m-%d %H:%M} UTC; `lscpu`: {model}, {cores} CPUs; load average "
        f"(1, 5, 15 min) {load_start} at the start, {load_end} at the end; PyTorch "
        f"{torch_version}; {args.rounds} rounds, {args.reps} repetitions per process "
        f"({args.reps_w3} epoch(s) for W3), {time.time() - started:.0f} s in all. "
        f"GEMM peak (faster f32 product at n = {W4_N} in this run): "
        + (f"{peak:.0f} GFLOP/s." if peak else "not measured (W4 not run)."),
        "",
        "| case | ours | PyTorch default | PyTorch PASSIVE | ours/PyTorch best | target | met "
        "| GFLOP | ours GFLOP/s | ours % peak | PyTorch GFLOP/s | PyTorch % peak "
        "| peak RSS ours | peak RSS PyTorch | process medians ours | process medians PyTorch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    span = lambda lo, hi: f"{fmt_time(lo)} – {fmt_time(hi)}"  # noqa: E731
    for r in rows:
        op = "≥" if r["workload"] == "w4" else "≤"
        extra = f", ≥ {W3_PEAK_SHARE:.0%} peak" if r["workload"] == "w3" else ""
        lines.append(
            f"| {r['case']} | {fmt_time(r['ours_s'])} | {fmt_time(r['torch_default_s'])} "
            f"| {fmt_time(r['torch_passive_s'])} | {r['ratio']:.2f} ({r['torch_best']}) "
            f"| {op} {r['target']}{extra} | {'yes' if r['met'] else 'no'} | {r['gflop']:.3g} "
            f"| {r['ours_gflops']:.1f} | {pct(r['ours_pct_peak'])} | {r['torch_gflops']:.1f} "
            f"| {pct(r['torch_pct_peak'])} | {r['ours_peak_mib']:.0f} MiB "
            f"| {r['torch_peak_mib']:.0f} MiB | {span(r['ours_min_s'], r['ours_max_s'])} "
            f"| {span(r['torch_best_min_s'], r['torch_best_max_s'])} |"
        )
    lines += [
        "",
        "W4's ratio is a throughput ratio (ours / MKL GFLOP/s, higher is better); "
        "every other ratio is a time ratio (lower is better). Process medians: the fastest "
        "and slowest process of ours and of the PyTorch setting counted.",
        "",
        f"Slow processes (median at least {SLOW} times the fastest of their side in their "
        "case): " + ", ".join(
            f"{side} {slow[side]} of {len(rows) * args.rounds}" for side in SIDES) + ".",
    ]
    text = "\n".join(lines)
    (OUT / "results.md").write_text(text + "\n")
    print()
    print(text)


if __name__ == "__main__":
    main()
