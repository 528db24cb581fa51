"""PyTorch side of the workload comparison (benches/peer/compare_workloads.py).

Mirrors `benches/src/bin/peer_workloads.rs`: same workloads, shapes,
optimizer and balancer math, 2 threads, warm-up excluded. Prints one JSON
line: the seconds of each repetition and the process's peak resident set
(VmHWM, KiB).

    python workloads.py w1 --tasks 8 --balancer pcgrad --reps 5
    python workloads.py w3 --data target/peer_data/multimnist --reps 1

W1: MLP 784-256-256 (ReLU after each layer), T linear heads of 10 classes,
cross-entropy, batch 256, Adam 1e-3, one training step. Balancers:
  equal        sum_t L_t / T
  uncertainty  Kendall et al. 2018, sum_t 0.5 exp(-s_t) L_t + 0.5 s_t with
               learnable log-variances s (Adam, lr 0.025, as ours)
  gradnorm     Chen et al. 2018 at the last shared layer: per-task gradients
               of that layer, G_t = w_t ||grad_W L_t||, L_grad = sum_t
               |G_t - mean(G) r_t^alpha| (alpha 1.5, targets constant),
               w by Adam (lr 0.025), renormalised to sum T; the step uses
               w_t / T
  mgda-ub      Sener & Koltun 2018: gradients of each loss at the shared
               representation, min-norm point (closed form for T = 2,
               Frank-Wolfe otherwise), one trunk backward of sum_t a_t L_t
  pcgrad       Yu et al. 2020: per-task gradients of every parameter; the
               shared parts projected off conflicting tasks in a random
               order, averaged; heads get their own gradient / T
W2: the same with 64-64-64, T = 2, batch 16, equal weighting.
W3: one epoch of the default MultiMNIST job (LeNet hard sharing, conv 10 and
    20 of 5x5, max-pool 2 then ReLU, dense 100; heads left/right (10 classes,
    cross-entropy) and sum (regression, L1); batch 256, shuffled; Adam 1e-3,
    equal weighting) on the NPY files of `mtl datasets export`.
W4: f32 matrix product at n = 1024.
"""

import argparse
import json
import os
import time

# OMP_WAIT_POLICY is read by OpenMP when torch loads: the driver runs this
# script once with it unset (OpenMP's default, spin-waiting for a while) and
# once with PASSIVE, and compares against the faster.

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Hps(nn.Module):
    """Hard parameter sharing: an encoder and one linear head per task."""

    def __init__(self, encoder, rep_width, head_widths):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleList(nn.Linear(rep_width, w) for w in head_widths)

    def forward(self, x):
        z = self.encoder(x)
        return z, [h(z) for h in self.heads]


def mlp_encoder(inputs, hidden):
    layers, width = [], inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers)


def lenet_encoder(fc=100):
    return nn.Sequential(
        nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(10, 20, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(20 * 6 * 6, fc), nn.ReLU(),
    )


def min_norm(grads):
    """Min-norm point of the convex hull of the rows of `grads` [T, P]."""
    t = grads.shape[0]
    if t == 2:
        g1, g2 = grads[0], grads[1]
        d = g1 - g2
        dd = torch.dot(d, d)
        if dd <= 0:
            return torch.tensor([0.5, 0.5])
        a = torch.clamp(torch.dot(g2 - g1, g2) / dd, 0.0, 1.0)
        return torch.stack([a, 1 - a])
    gram = (grads @ grads.T).double()
    # Frank-Wolfe from the best vertex, exact line search (Sener & Koltun).
    sol = torch.zeros(t, dtype=torch.float64)
    sol[torch.argmin(torch.diagonal(gram))] = 1.0
    for _ in range(250):
        grad_dir = gram @ sol
        i = int(torch.argmin(grad_dir))
        v1v1 = sol @ gram @ sol
        v1v2 = grad_dir[i]
        v2v2 = gram[i, i]
        if v1v2 >= v1v1:
            gamma = 0.0
        elif v1v2 >= v2v2:
            gamma = 1.0
        else:
            gamma = float((v2v2 - v1v2) / (v1v1 + v2v2 - 2 * v1v2))
        new = (1 - gamma) * sol
        new[i] += gamma
        if torch.sum(torch.abs(new - sol)) < 1e-6:
            sol = new
            break
        sol = new
    return sol.float()


class Stepper:
    """One training step of a hard-sharing model with a balancer."""

    def __init__(self, model, losses_fn, balancer, tasks, gen):
        self.model = model
        self.losses_fn = losses_fn
        self.balancer = balancer
        self.t = tasks
        self.gen = gen
        self.shared = list(model.encoder.parameters())
        self.head_params = [list(h.parameters()) for h in model.heads]
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        if balancer == "uncertainty":
            self.log_vars = torch.zeros(tasks, requires_grad=True)
            self.aux = torch.optim.Adam([self.log_vars], lr=0.025)
        elif balancer == "gradnorm":
            self.w = torch.ones(tasks, requires_grad=True)
            self.aux = torch.optim.Adam([self.w], lr=0.025)
            self.initial = None
            lin = [m for m in model.encoder if isinstance(m, nn.Linear)][-1]
            self.last = list(lin.parameters())

    def step(self, x, ys):
        m, t = self.model, self.t
        self.opt.zero_grad(set_to_none=False)
        if self.balancer == "equal":
            _, outs = m(x)
            loss = sum(self.losses_fn(outs, ys)) / t
            loss.backward()
        elif self.balancer == "uncertainty":
            self.aux.zero_grad(set_to_none=False)
            _, outs = m(x)
            ls = torch.stack(self.losses_fn(outs, ys))
            s = self.log_vars
            loss = torch.sum(0.5 * torch.exp(-s) * ls + 0.5 * s)
            loss.backward()
            self.aux.step()
        elif self.balancer == "gradnorm":
            _, outs = m(x)
            ls = self.losses_fn(outs, ys)
            norms = []
            for l_t in ls:
                g = torch.autograd.grad(l_t, self.last, retain_graph=True)
                norms.append(torch.sqrt(sum(torch.sum(gi * gi) for gi in g)))
            norms = torch.stack(norms).detach()
            lv = torch.stack(ls).detach()
            if self.initial is None:
                self.initial = lv.clone()
            w_now = self.w.detach().clone()
            loss = torch.sum(w_now / t * torch.stack(ls))
            loss.backward()
            # GradNorm update of the weights: G_t = w_t n_t, targets constant.
            self.aux.zero_grad(set_to_none=False)
            gw = self.w * norms
            ratio = lv / self.initial
            r = ratio / ratio.mean()
            target = (gw.mean() * r**1.5).detach()
            torch.sum(torch.abs(gw - target)).backward()
            self.aux.step()
            with torch.no_grad():
                self.w.clamp_(min=1e-8)
                self.w.mul_(t / self.w.sum())
        elif self.balancer == "mgda-ub":
            z = m.encoder(x)
            zd = z.detach().requires_grad_(True)
            outs = [h(zd) for h in m.heads]
            ls = self.losses_fn(outs, ys)
            rows = torch.stack(
                [torch.autograd.grad(l_t, zd, retain_graph=True)[0].reshape(-1) for l_t in ls]
            )
            a = min_norm(rows)
            loss = sum(a[i] * ls[i] for i in range(t))
            loss.backward()
            z.backward(zd.grad)
        elif self.balancer == "pcgrad":
            _, outs = m(x)
            ls = self.losses_fn(outs, ys)
            params = self.shared
            rows, heads = [], []
            for i, l_t in enumerate(ls):
                g = torch.autograd.grad(
                    l_t, params + self.head_params[i], retain_graph=i < t - 1
                )
                rows.append(torch.cat([gi.reshape(-1) for gi in g[: len(params)]]))
                heads.append(g[len(params):])
            rows = torch.stack(rows)
            proj = rows.clone()
            for i in range(t):
                order = torch.randperm(t, generator=self.gen)
                for j in order.tolist():
                    if j == i:
                        continue
                    dot = torch.dot(proj[i], rows[j])
                    if dot < 0:
                        proj[i] -= dot / torch.dot(rows[j], rows[j]) * rows[j]
            shared = proj.mean(0)
            off = 0
            for p in params:
                n = p.numel()
                p.grad.copy_(shared[off:off + n].view_as(p))
                off += n
            for i in range(t):
                for p, g in zip(self.head_params[i], heads[i]):
                    p.grad.copy_(g / t)
        else:
            raise SystemExit(f"unknown balancer {self.balancer}")
        self.opt.step()


def ce_losses(outs, ys):
    return [F.cross_entropy(o, y) for o, y in zip(outs, ys)]


def mlp_stepper(inputs, hidden, tasks, batch, balancer):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = Hps(mlp_encoder(inputs, hidden), hidden[-1], [10] * tasks)
    x = torch.randn(batch, inputs, generator=gen)
    ys = [torch.randint(0, 10, (batch,), generator=gen) for _ in range(tasks)]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    return Stepper(model, ce_losses, balancer, tasks, gen), x, ys


def time_steps(stepper, x, ys, args, inner):
    for _ in range(args.warmup):
        stepper.step(x, ys)
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            stepper.step(x, ys)
        times.append((time.perf_counter() - t0) / inner)
    return times


def w3(args):
    d = args.data
    x = torch.from_numpy(np.load(os.path.join(d, "train_x.npy")))
    left = torch.from_numpy(np.load(os.path.join(d, "train_left.npy")))
    right = torch.from_numpy(np.load(os.path.join(d, "train_right.npy")))
    total = torch.from_numpy(np.load(os.path.join(d, "train_sum.npy")))
    torch.manual_seed(0)
    model = Hps(lenet_encoder(100), 100, [10, 10, 1])
    for p in model.parameters():
        p.grad = torch.zeros_like(p)

    def losses(outs, ys):
        return [
            F.cross_entropy(outs[0], ys[0]),
            F.cross_entropy(outs[1], ys[1]),
            F.l1_loss(outs[2], ys[2]),
        ]

    gen = torch.Generator().manual_seed(0)
    stepper = Stepper(model, losses, "equal", 3, gen)
    batch = 256
    n = x.shape[0]
    for _ in range(args.warmup):
        stepper.step(x[:batch], [left[:batch], right[:batch], total[:batch]])
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            stepper.step(x[idx], [left[idx], right[idx], total[idx]])
        times.append(time.perf_counter() - t0)
    return times


def w4(args, n=1024):
    gen = torch.Generator().manual_seed(n)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    inner = args.inner or 10
    with torch.no_grad():
        for _ in range(args.warmup):
            torch.matmul(a, b, out=out)
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for _ in range(inner):
                torch.matmul(a, b, out=out)
            times.append((time.perf_counter() - t0) / inner)
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("workload", choices=["w1", "w2", "w3", "w4"])
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--balancer", default="equal")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--inner", type=int, default=None)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default="target/peer_data/multimnist")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.workload == "w1":
        st, x, ys = mlp_stepper(784, [256, 256], args.tasks, 256, args.balancer)
        times = time_steps(st, x, ys, args, args.inner or 10)
    elif args.workload == "w2":
        st, x, ys = mlp_stepper(64, [64, 64], 2, 16, args.balancer)
        times = time_steps(st, x, ys, args, args.inner or 200)
    elif args.workload == "w3":
        times = w3(args)
    else:
        times = w4(args)
    print(json.dumps({
        "side": "torch",
        "workload": args.workload,
        "tasks": args.tasks,
        "balancer": args.balancer,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "times_s": times,
        "peak_rss_kib": peak_rss_kib(),
    }))


if __name__ == "__main__":
    main()
