"""Which paths carry the gradient? (Veit et al. 2016, section 6 and Fig. 6.)

A residual network of n units is a collection of 2^n paths; C(n, k) of them cross
k residual bodies (the *path length* here, in units). For ResNet-56 and ResNet-110
(``resdsl/zoo/cifar_resnet.res``, n = 9 and 18 blocks per stage: 27 and 54 units),
at initialisation and after a short training on digits, a batch goes forward
through the whole network; then, in the backward pass, k units chosen at random
pass the gradient through their body only and the others through their shortcut
only (:func:`resdsl.analysis.probes.routed`), and the norm of the gradient that
reaches the input image is recorded: the gradient of one path of length k. Its mean
over samples, times the number of paths C(n, k), is the gradient that all paths of
length k carry together::

    python -m resdsl.experiments.path_gradients           # docs/images/path_gradients.png (+ .json)
    python -m resdsl.experiments.path_gradients --quick   # ResNet-20 and -56, fewer samples

The inputs are the digits images at the network's ``size=8`` (the spec is
size-agnostic: global pooling), not upsampled to 32x32.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..analysis.probes import routed
from ..graph import residual_units
from .training import SPEC, Data, Run, digits, fit, load_net, pyplot, save_results, set_threads

OUT = Path(__file__).resolve().parents[2] / "docs" / "images"
MASS = 0.90  # the effective range holds this share of the total gradient


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m resdsl.experiments.path_gradients",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="9,18", help="blocks per stage (6n+2 layers; default 9,18)")
    parser.add_argument("--seed", type=int, default=0, help="weights, minibatch order, path samples")
    parser.add_argument("--steps", type=int, default=200, help="SGD steps of the short training")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batches", type=int, default=5, help="random training batches (forward passes)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--samples", type=int, default=16, help="paths sampled per length and batch")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--quick", action="store_true",
                        help="ResNet-20 and -56, 100 steps, 2 batches of 2 samples per length")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batches, args.samples = 100, 2, 2
        if args.n == parser.get_default("n"):
            args.n = "3,9"
    args.n = [int(v) for v in args.n.split(",")]
    return args


def path_counts(units: int) -> list[int]:
    """C(units, k), k = 0..units: the number of paths crossing k residual bodies."""
    return [math.comb(units, k) for k in range(units + 1)]


def path_gradients(model: torch.nn.Module, graph, data: Data, *, batches: int, batch: int,
                   samples: int, seed: int) -> dict:
    """Mean norm of the input gradient of one path of each length k (in units).

    The model is run in training mode (batchnorm on batch statistics, as when the
    gradient is used); the loss is the mean cross-entropy of a random training batch.
    Where only one path has length k (k = 0, k = n) it is measured once per batch.
    """
    units = residual_units(graph)
    count = len(units)
    rng = random.Random(seed)
    order = torch.Generator().manual_seed(seed)
    sums, seen, full = [0.0] * (count + 1), [0] * (count + 1), []
    model.train()
    with routed(model, graph, units) as router:
        for _ in range(batches):
            index = torch.randperm(len(data.y_train), generator=order)[:batch]
            x = data.x_train[index].clone().requires_grad_(True)
            loss = F.cross_entropy(model(x), data.y_train[index])
            router.route(None)
            full.append(_input_gradient(loss, x))
            for k in range(count + 1):
                for _ in range(samples if 0 < k < count else 1):
                    chosen = set(rng.sample(range(count), k))
                    router.route([i in chosen for i in range(count)])
                    sums[k] += _input_gradient(loss, x)
                    seen[k] += 1
    model.eval()
    return {"per_path": [s / c for s, c in zip(sums, seen)], "full": sum(full) / len(full),
            "samples": seen}


def _input_gradient(loss: torch.Tensor, x: torch.Tensor) -> float:
    (grad,) = torch.autograd.grad(loss, x, retain_graph=True)
    return torch.linalg.vector_norm(grad).item()


def effective_range(total: Sequence[float], mass: float = MASS) -> tuple[int, int]:
    """The central ``mass`` of a distribution over k: from the first k where the
    cumulative share reaches (1 - mass) / 2 to the first where it reaches (1 + mass) / 2."""
    whole = sum(total)
    low_cut, high_cut = (1 - mass) / 2 * whole, (1 + mass) / 2 * whole
    cumulative, low, high = 0.0, None, None
    for k, value in enumerate(total):
        cumulative += value
        if low is None and cumulative >= low_cut:
            low = k
        if high is None and cumulative >= high_cut:
            high = k
    return low, high


def decay_rate(per_path: Sequence[float]) -> float:
    """Least-squares slope of log(gradient) against k, as a factor per unit crossed."""
    points = [(k, math.log(g)) for k, g in enumerate(per_path) if g > 0]
    mean_k = sum(k for k, _ in points) / len(points)
    mean_g = sum(g for _, g in points) / len(points)
    slope = (sum((k - mean_k) * (g - mean_g) for k, g in points)
             / sum((k - mean_k) ** 2 for k, _ in points))
    return math.exp(slope)


def describe(measured: dict, counts: list[int]) -> dict:
    """Per-path gradient, path counts, their product, and the ranges they span."""
    per_path = measured["per_path"]
    total = [c * g for c, g in zip(counts, per_path)]
    whole = sum(total)
    return {**measured, "total": total, "total_share": [t / whole for t in total],
            "effective_range": effective_range(total),
            "peak": max(range(len(total)), key=total.__getitem__),
            "mean_length": sum(k * t for k, t in enumerate(total)) / whole,
            "count_range": effective_range(counts),
            "decay_per_unit": decay_rate(per_path)}


def measure(args: argparse.Namespace) -> dict:
    data = digits()
    results = {}
    for n in args.n:
        net = load_net(n, plain=False, spec=args.spec)
        units = len(residual_units(net.graph))
        counts = path_counts(units)
        torch.manual_seed(args.seed)
        states = {"init": net.build()}
        run = fit(net, Run(n, False, args.seed), data, steps=args.steps, lr=args.lr,
                  eval_every=args.steps)
        states["trained"] = run.model
        entry = {"units": units, "depth": 6 * n + 2, "counts": counts,
                 "count_share": [c / 2 ** units for c in counts],
                 "train_error": run.train_error[-1], "train_seconds": round(run.seconds, 1)}
        for state, model in states.items():
            start = time.process_time()
            measured = path_gradients(model, net.graph, data, batches=args.batches, batch=args.batch,
                                      samples=args.samples, seed=args.seed)
            entry[state] = describe(measured, counts)
            entry[state]["cpu_seconds"] = round(time.process_time() - start, 1)
            low, high = entry[state]["effective_range"]
            print(f"  ResNet-{6 * n + 2} ({units} units) {state}: gradient per path x "
                  f"{entry[state]['decay_per_unit']:.3f} per unit; {100 * MASS:.0f}% of the total "
                  f"gradient in paths of {low}-{high} units (peak {entry[state]['peak']}); "
                  f"path counts {entry[state]['count_range'][0]}-{entry[state]['count_range'][1]}",
                  flush=True)
        results[f"resnet{6 * n + 2}"] = entry
    return results


def plot(results: dict):
    """One row per network: gradient per path (log), the path-length distribution, and
    the share of the total gradient per length (the effective range shaded)."""
    plt = pyplot()
    rows = len(results)
    fig, axes = plt.subplots(rows, 3, figsize=(13, 3.4 * rows), squeeze=False)
    colors = {"init": "tab:orange", "trained": "tab:blue"}
    for (name, entry), (left, middle, right) in zip(results.items(), axes):
        ks = list(range(entry["units"] + 1))
        label = f"ResNet-{entry['depth']}"
        for state, color in colors.items():
            data = entry[state]
            state_label = state if state == "init" else f"trained ({100 * entry['train_error']:.1f}% error)"
            left.semilogy(ks, data["per_path"], "o-", color=color, markersize=2.5, label=state_label)
            right.plot(ks, [100 * s for s in data["total_share"]], "o-", color=color, markersize=2.5,
                       label=f"{state}: {MASS:.0%} in {data['effective_range'][0]}-"
                             f"{data['effective_range'][1]}")
            low, high = data["effective_range"]
            right.axvspan(low, high, color=color, alpha=0.12, linewidth=0)
        middle.bar(ks, [100 * s for s in entry["count_share"]], color="grey")
        left.set_title(f"{label}: gradient norm at the input, one path")
        middle.set_title(f"{label}: paths per length, C({entry['units']}, k) / 2^{entry['units']}")
        right.set_title(f"{label}: total gradient per length (share)")
        for ax in (left, middle, right):
            ax.set_xlabel("path length k (residual bodies crossed)")
            ax.grid(alpha=0.3)
        middle.set_ylabel("% of paths")
        right.set_ylabel("% of the total gradient")
        left.legend(fontsize=8)
        right.legend(fontsize=8)
    return fig


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    set_threads()
    wall, cpu = time.perf_counter(), time.process_time()
    results = measure(args)
    out = {"networks": results, "seed": args.seed, "steps": args.steps, "lr": args.lr,
           "batches": args.batches, "batch": args.batch, "samples": args.samples, "mass": MASS,
           "seconds": round(time.perf_counter() - wall, 1),
           "cpu_seconds": round(time.process_time() - cpu, 1)}
    figure = save_results(plot(results), out, args.out, "path_gradients")
    print(f"wall time {out['seconds']} s, CPU time {out['cpu_seconds']} s; figure {figure}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
