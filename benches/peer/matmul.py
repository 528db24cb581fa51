"""PyTorch side of the mtl-core comparison (benches/peer/compare_core.sh).

Measures, on 2 CPU threads, f32 matrix-product throughput at n = 256, 512,
1024, 2048 and the forward + backward time of an MLP 784-256-256-10 with
cross-entropy at batch 256: the same cases as `benches/benches/core.rs`.
Prints one JSON object per line.

OpenMP's wait policy decides how PyTorch's threads wait between parallel
regions: by default they spin for a while (fast on an idle machine), with
OMP_WAIT_POLICY=PASSIVE they sleep at once (better when the cores are shared
with other work). `compare_core.sh` runs this script under both and compares
against the faster; the policy in force is printed in the first line.
"""

import argparse
import json
import os
import statistics
import time

import torch

SIZES = (256, 512, 1024, 2048)


def median_time(fn, warmup, reps, min_total_s):
    """Median wall time of `fn` in seconds, after `warmup` calls; at least
    `reps` timed calls, more until `min_total_s` seconds have been spent."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - start < min_total_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def bench_matmul(n, args):
    gen = torch.Generator().manual_seed(n)
    a = torch.randn(n, n, generator=gen, dtype=torch.float32)
    b = torch.randn(n, n, generator=gen, dtype=torch.float32)
    out = torch.empty(n, n, dtype=torch.float32)
    med, reps = median_time(
        lambda: torch.matmul(a, b, out=out), args.warmup, args.reps, args.min_seconds
    )
    flops = 2 * n**3
    return {
        "bench": "matmul_f32",
        "n": n,
        "median_s": med,
        "gflops": flops / med / 1e9,
        "reps": reps,
    }


def bench_mlp(args):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    x = torch.randn(256, 784)
    y = torch.arange(256) % 10
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        model.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()

    med, reps = median_time(step, args.warmup, args.reps, args.min_seconds)
    return {
        "bench": "mlp_784_256_256_10",
        "batch": 256,
        "median_ms": med * 1e3,
        "reps": reps,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10, help="minimum timed repetitions")
    p.add_argument(
        "--min-seconds", type=float, default=1.0, help="minimum timed seconds per case"
    )
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    print(
        json.dumps(
            {
                "bench": "info",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "mkldnn": torch.backends.mkldnn.is_available(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            }
        ),
        flush=True,
    )
    with torch.no_grad():
        for n in SIZES:
            print(json.dumps(bench_matmul(n, args)), flush=True)
    print(json.dumps(bench_mlp(args)), flush=True)


if __name__ == "__main__":
    main()
