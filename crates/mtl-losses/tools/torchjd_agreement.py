"""Agreement of mtl-losses' balancers with TorchJD on the same matrices.

Usage (from the repository root, with torchjd installed in a virtual
environment, e.g. `python3 -m venv /tmp/venv && /tmp/venv/bin/pip install
"torchjd[full]"`):

    python crates/mtl-losses/tools/torchjd_agreement.py cases > /tmp/cases.json
    cargo run -q -p mtl-losses --example agreement -- /tmp/cases.json > /tmp/ours.json
    python crates/mtl-losses/tools/torchjd_agreement.py table /tmp/cases.json /tmp/ours.json

`cases` writes the test matrices (float32 values, a fixed seed) and the
method list; the Rust example runs every method of the list on every case
and prints its directions; `table` computes TorchJD's directions in float64
on the same float32 values and prints one Markdown row per method: the
largest relative difference `‖d − d_TorchJD‖ / ‖d_TorchJD‖` and the worst
cosine over every step of every case, with the number of steps compared.
"""

import json
import sys

import numpy as np

SEED = 20261204


def f32(a):
    return np.asarray(a, dtype=np.float32)


def single(name, rows, losses=None, rows2=None):
    """A case of one step."""
    rows = f32(rows)
    t = rows.shape[0]
    step = {
        "rows": rows.ravel().tolist(),
        "losses": (f32(losses) if losses is not None else f32(np.ones(t))).tolist(),
    }
    if rows2 is not None:
        step["rows2"] = f32(rows2).ravel().tolist()
    return {"name": name, "tasks": t, "cols": rows.shape[1], "steps": [step]}


def sequence(name, steps):
    """A case of several steps (for stateful methods)."""
    t, p = f32(steps[0]["rows"]).shape
    out = []
    for s in steps:
        step = {"rows": f32(s["rows"]).ravel().tolist(), "losses": f32(s["losses"]).tolist()}
        if "rows2" in s:
            step["rows2"] = f32(s["rows2"]).ravel().tolist()
        out.append(step)
    return {"name": name, "tasks": t, "cols": p, "steps": out}


def make_cases():
    rng = np.random.default_rng(SEED)
    cases = []
    for t, p in [(2, 5), (3, 8), (5, 12), (4, 3)]:
        for k in range(3):
            rows = rng.standard_normal((t, p))
            losses = rng.uniform(0.2, 3.0, t)
            rows2 = rows + 0.3 * rng.standard_normal((t, p))
            cases.append(single(f"random T={t} P={p} #{k}", rows, losses, rows2))
    g = rng.standard_normal(6)
    h = rng.standard_normal(6)
    cases.append(single("conflicting g, -g+h/2", [g, -g + 0.5 * h], [1.0, 2.0], [g, -g + 0.4 * h]))
    cases.append(single("conflicting 3 (g, -2g, h)", [g, -2 * g, h], [1.0, 0.5, 2.0], [g, -2 * g, h]))
    cases.append(single("near-parallel", [g, g + 1e-4 * h, g - 1e-4 * h], [1.0, 1.0, 1.0],
                        [g, g + 2e-4 * h, g]))
    rows = rng.standard_normal((3, 6))
    rows[1] = 0.0
    cases.append(single("zero row", rows, [1.0, 0.5, 2.0], rows + 0.1 * rng.standard_normal((3, 6))))
    rows = rng.standard_normal((4, 7)) * np.array([[1e-3], [1e-1], [1e1], [1e3]])
    cases.append(single("norms 1e-3..1e3", rows, [1.0, 2.0, 0.5, 3.0],
                        rows * (1 + 0.1 * rng.standard_normal((4, 7)))))
    rows = rng.standard_normal((4, 5))
    rows[2] = rows[0]
    cases.append(single("duplicated row", rows, [1.0, 1.0, 1.0, 1.0], rows))
    for t, p in [(3, 6), (4, 9)]:
        steps = []
        for _ in range(6):
            r = rng.standard_normal((t, p)) * rng.uniform(0.5, 2.0, (t, 1))
            steps.append({"rows": r, "losses": rng.uniform(0.2, 3.0, t),
                          "rows2": r + 0.2 * rng.standard_normal((t, p))})
        cases.append(sequence(f"6 steps T={t} P={p}", steps))
    return cases


# Each method: our configuration, the TorchJD factory, which cases apply,
# and the factor our direction is multiplied by before the comparison
# (TorchJD's sum-scale aggregators are T times our mean-scale ones).
METHODS = [
    # label, our config, kind, options
    ("equal", {"name": "equal"}, "mean", {}),
    ("upgrad", {"name": "upgrad"}, "upgrad", {}),
    ("dualproj", {"name": "dualproj"}, "dualproj", {}),
    ("mgda", {"name": "mgda"}, "mgda", {}),
    ("pcgrad (T = 2)", {"name": "pcgrad", "reduction": "sum"}, "pcgrad", {"max_tasks": 2}),
    ("imtl (IMTL-G)", {"name": "imtl", "mode": "gradient"}, "imtlg", {}),
    ("cagrad c=0.5", {"name": "cagrad", "c": 0.5, "rescale": 0}, "cagrad", {}),
    ("aligned-mtl", {"name": "aligned-mtl"}, "alignedmtl", {}),
    ("config (×T)", {"name": "config"}, "config", {"factor_t": True}),
    ("gradvac (T = 2)", {"name": "gradvac", "reduction": "sum"}, "gradvac", {"max_tasks": 2}),
    ("nash-mtl", {"name": "nash-mtl"}, "nashmtl", {}),
    ("krum f=0", {"name": "krum"}, "krum", {"min_tasks": 3}),
    ("krum f=1, m=2", {"name": "krum", "n_byzantine": 1, "n_selected": 2}, "krum", {"min_tasks": 4}),
    ("trimmed-mean k=1", {"name": "trimmed-mean"}, "trimmedmean", {"min_tasks": 3}),
    ("fairgrad α=1", {"name": "fairgrad"}, "fairgrad", {"alpha": 1.0}),
    ("fairgrad α=2", {"name": "fairgrad", "alpha": 2.0}, "fairgrad", {"alpha": 2.0}),
    ("excess-mtl", {"name": "excess-mtl"}, "excessmtl", {}),
    ("modo", {"name": "modo"}, "modo", {}),
    ("sdmgrad", {"name": "sdmgrad"}, "sdmgrad", {}),
    ("pcd", {"name": "pcd"}, "pcd", {}),
    ("cr-mogm (upgrad)", {"name": "cr-mogm", "inner": "upgrad"}, "crmogm", {"inner": "upgrad"}),
    ("cr-mogm (mgda)", {"name": "cr-mogm", "inner": "mgda"}, "crmogm", {"inner": "mgda"}),
    ("gls (GeometricMean)", {"name": "gls"}, "gls", {}),
    ("stch μ=1", {"name": "stch"}, "stch", {"mu": 1.0}),
    ("stch μ=0.1", {"name": "stch", "mu": 0.1}, "stch", {"mu": 0.1}),
]


def applies(case, opts):
    t = case["tasks"]
    return opts.get("min_tasks", 1) <= t <= opts.get("max_tasks", 99)


def cmd_cases():
    cases = make_cases()
    methods = [{"label": label, "config": cfg} for label, cfg, _, _ in METHODS]
    json.dump({"cases": cases, "methods": methods}, sys.stdout)


def torchjd_directions(kind, opts, case):
    """TorchJD's direction at every step of `case`, in float64."""
    import torch
    from torchjd import aggregation as A
    from torchjd import scalarization as S

    torch.manual_seed(0)
    t, p = case["tasks"], case["cols"]
    factory = {
        "mean": lambda: A.Mean(),
        "upgrad": lambda: A.UPGrad(),
        "dualproj": lambda: A.DualProj(),
        # Frank-Wolfe run to convergence: its default stopping tolerance (1e-3)
        # leaves the weights visibly away from the min-norm point.
        "mgda": lambda: A.MGDA(epsilon=1e-12, max_iters=100_000),
        "pcgrad": lambda: A.PCGrad(),
        "imtlg": lambda: A.IMTLG(),
        "cagrad": lambda: A.CAGrad(c=0.5),
        "alignedmtl": lambda: A.AlignedMTL(),
        "config": lambda: A.ConFIG(),
        "gradvac": lambda: A.GradVac(),
        "nashmtl": lambda: A.NashMTL(n_tasks=t),
        "krum": None,
        "trimmedmean": lambda: A.TrimmedMean(trim_number=1),
        "fairgrad": lambda: A.FairGrad(alpha=opts.get("alpha", 1.0)),
        "excessmtl": lambda: A.ExcessMTL(),
        "pcd": lambda: A.PCD(),
    }
    out = []
    if kind == "krum":
        cfg = next(c for label, c, k, o in METHODS if k == "krum" and o is opts)
        agg = A.Krum(n_byzantine=cfg.get("n_byzantine", 0), n_selected=cfg.get("n_selected", 1))
    elif kind == "modo":
        weighting = A.MoDoWeighting()
    elif kind == "sdmgrad":
        weighting = A.SDMGradWeighting()
    elif kind == "crmogm":
        inner = {
            "upgrad": lambda: A.UPGradWeighting(),
            "mgda": lambda: A.MGDAWeighting(epsilon=1e-12, max_iters=100_000),
        }[opts["inner"]]()
        agg = A.GramianWeightedAggregator(A.CRMOGMWeighting(inner))
    elif kind in ("gls", "stch"):
        pass
    else:
        agg = factory[kind]()
    for step in case["steps"]:
        j = torch.tensor(np.array(step["rows"], dtype=np.float64).reshape(t, p))
        losses = torch.tensor(np.array(step["losses"], dtype=np.float64), requires_grad=True)
        if kind in ("modo", "sdmgrad"):
            j2 = torch.tensor(np.array(step["rows2"], dtype=np.float64).reshape(t, p))
            w = weighting(j @ j2.T)
            d = 0.5 * (j + j2).T @ w
        elif kind in ("gls", "stch"):
            scal = S.GeometricMean() if kind == "gls" else S.STCH(mu=opts["mu"])
            (grad,) = torch.autograd.grad(scal(losses), losses)
            w = grad * (t if kind == "stch" else 1.0)
            d = j.T @ w
        else:
            d = agg(j)
        out.append(d.detach().numpy().astype(np.float64))
    return out


def compare(ours, theirs, scale):
    """(relative difference, cosine) of two directions; `scale` is the
    largest row norm, below 1e-9 of which a direction counts as zero."""
    na, nb = np.linalg.norm(ours), np.linalg.norm(theirs)
    zero = 1e-9 * max(scale, 1e-300)
    if na <= zero and nb <= zero:
        return 0.0, 1.0
    rel = np.linalg.norm(ours - theirs) / max(nb, zero)
    cos = float(ours @ theirs / (na * nb)) if na > 0 and nb > 0 else 0.0
    return float(rel), cos


def cmd_table(cases_path, ours_path):
    from importlib.metadata import version

    data = json.load(open(cases_path))
    ours = json.load(open(ours_path))
    rows = []
    for label, cfg, kind, opts in METHODS:
        worst_rel, worst_cos, n, worst_case = 0.0, 1.0, 0, ""
        failures = []
        for case in data["cases"]:
            if not applies(case, opts):
                continue
            mine = ours.get(label, {}).get(case["name"])
            if mine is None or "error" in mine:
                failures.append(f"{case['name']}: {mine and mine.get('error')}")
                continue
            try:
                theirs = torchjd_directions(kind, opts, case)
            except Exception as e:  # noqa: BLE001 - reported in the table
                failures.append(f"{case['name']}: torchjd {type(e).__name__}: {e}")
                continue
            t, p = case["tasks"], case["cols"]
            factor = t if opts.get("factor_t") else 1.0
            for step, d_mine, d_theirs in zip(case["steps"], mine["directions"], theirs):
                j = np.array(step["rows"], dtype=np.float64).reshape(t, p)
                scale = np.linalg.norm(j, axis=1).max()
                rel, cos = compare(factor * np.array(d_mine, dtype=np.float64), d_theirs, scale)
                n += 1
                if rel > worst_rel:
                    worst_rel, worst_case = rel, case["name"]
                worst_cos = min(worst_cos, cos)
        rows.append((label, worst_rel, worst_cos, n, worst_case, failures))
    print(f"TorchJD {version('torchjd')}, torch {version('torch')}, numpy {np.__version__}\n")
    print("| method | steps compared | largest relative difference | worst cosine | worst case |")
    print("|---|---|---|---|---|")
    for label, rel, cos, n, case, failures in rows:
        print(f"| {label} | {n} | {rel:.1e} | {cos:.6f} | {case} |")
    for label, rel, cos, n, case, failures in rows:
        for f in failures:
            print(f"\n- {label}: {f}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:2] == ["cases"]:
        cmd_cases()
    elif sys.argv[1:2] == ["table"] and len(sys.argv) == 4:
        cmd_table(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
