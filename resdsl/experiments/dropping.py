"""Dropping blocks at test time (Veit et al. 2016, "residual networks behave like
ensembles of relatively shallow networks"; "dropping some layers does not even hurt").

ResNet-20 and its plain twin (``resdsl/zoo/cifar_resnet.res``, n = 3) train on digits
(three seeds); n = 3 because the plain 56-layer twin does not train at all in
this budget (see the degradation experiment), and removing a block from a
network at chance says nothing. Then, at test time, one residual unit at a time is removed and
the test accuracy measured. A removed residual unit outputs its shortcut (``x``
for an identity unit, the zero-pad path for the two that downsample); a removed
plain block is replaced by the identity, which is possible only where the block
keeps the shape (the two downsampling blocks of the plain twin are skipped). A
second panel removes k random shape-keeping blocks at once::

    python -m resdsl.experiments.dropping             # docs/images/science_dropping.png
    python -m resdsl.experiments.dropping --smoke     # seconds
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Sequence

from ..graph import op_node, residual_units
from ..analysis.probes import dropped, shortcut_node
from .training import SPEC, Run, digits, error, pyplot, save_results, set_threads, spread, train

OUT = Path(__file__).resolve().parents[2] / "docs" / "images"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m resdsl.experiments.dropping",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3, help="6n+2 layers (default 3: 20 layers)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--draws", type=int, default=20, help="random subsets per k (second panel)")
    parser.add_argument("--max-drop", type=int, default=7, help="largest k in the second panel")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run: n=1, one seed, 4 steps")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.seeds, args.steps, args.draws, args.max_drop = 1, "0", 4, 2, 1
    return args


def accuracy(run: Run, data, units: Sequence = ()) -> float:
    """Test accuracy of the trained model with ``units`` removed."""
    with dropped(run.model, run.net.graph, units):
        return 1.0 - error(run.model, data.x_test, data.y_test)


def drop_each(run: Run, data) -> list[float | None]:
    """Test accuracy with each unit removed alone; None where it cannot be removed."""
    graph = run.net.graph
    return [accuracy(run, data, [u]) if shortcut_node(graph, u) is not None else None
            for u in residual_units(graph)]


def drop_random(run: Run, data, candidates: list[int], max_drop: int, draws: int,
                seed: int) -> list[float]:
    """Mean test accuracy with k random units (among ``candidates``) removed, k = 0..max_drop."""
    units = residual_units(run.net.graph)
    rng = random.Random(seed)
    means = []
    for k in range(max_drop + 1):
        picks = [rng.sample(candidates, k) for _ in range(draws if k else 1)]
        means.append(sum(accuracy(run, data, [units[i] for i in p]) for p in picks) / len(picks))
    return means


def measure(args: argparse.Namespace) -> dict:
    data = digits(limit=128 if args.smoke else None)
    results: dict = {"plain": [], "residual": [], "units": None, "shape_keeping": None}
    for seed in (int(v) for v in args.seeds.split(",")):
        runs = {plain: train(args.n, plain, seed, data, steps=args.steps, lr=args.lr, spec=args.spec)
                for plain in (False, True)}
        graph = runs[True].net.graph
        keeping = [i for i, u in enumerate(residual_units(graph)) if shortcut_node(graph, u) is not None]
        results["units"] = [op_node(runs[False].net.graph, u.merge).module.rsplit(".", 1)[0]
                            for u in residual_units(runs[False].net.graph)]
        results["shape_keeping"] = keeping
        for plain, run in runs.items():
            row = {"seed": seed, "baseline": accuracy(run, data), "each": drop_each(run, data),
                   "random": drop_random(run, data, keeping, args.max_drop, args.draws, seed)}
            results["plain" if plain else "residual"].append(row)
            print(f"  {'plain' if plain else 'resnet'}-{run.depth} seed {seed}: test accuracy "
                  f"{100 * row['baseline']:.1f}%, worst single drop "
                  f"{100 * min(a for a in row['each'] if a is not None):.1f}%", flush=True)
    return results


def plot(results: dict, depth: int):
    """Accuracy with one block removed (left) and with several (right); returns the figure."""
    plt = pyplot()

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    units = results["units"]
    for name, color in (("residual", "tab:blue"), ("plain", "tab:red")):
        rows = results[name]
        label = f"{'ResNet' if name == 'residual' else 'plain'}-{depth}"
        # NaN leaves a gap where a block cannot be removed, instead of a line across it.
        each = [[100 * a if a is not None else float("nan") for a in r["each"]] for r in rows]
        mean, low, high = spread(each)
        x = list(range(1, len(units) + 1))
        left.plot(x, mean, "o-", color=color, markersize=3, label=label)
        left.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
        base = sum(r["baseline"] for r in rows) / len(rows)
        left.axhline(100 * base, color=color, linestyle=":", linewidth=1)
        mean, low, high = spread([[100 * a for a in r["random"]] for r in rows])
        ks = list(range(len(mean)))
        right.plot(ks, mean, "o-", color=color, markersize=3, label=label)
        right.fill_between(ks, low, high, color=color, alpha=0.2, linewidth=0)
    for i, unit in enumerate(units):
        if unit.endswith(".0") and i:  # a downsampling unit starts the stage
            left.axvline(i + 1, color="grey", linewidth=0.8, linestyle="--")
    left.set_xlabel("block removed (1 = first; dashed: downsampling blocks)")
    left.set_ylabel("test accuracy (%)")
    left.set_title("one block removed at test time (dotted: nothing removed)")
    right.set_xlabel("number of random shape-keeping blocks removed")
    right.set_title("several blocks removed (mean over draws)")
    for ax in (left, right):
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")
    return fig


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    set_threads()
    start = time.perf_counter()
    results = measure(args)
    depth = 6 * args.n + 2
    results.update(n=args.n, steps=args.steps, seconds=round(time.perf_counter() - start, 1))
    figure = save_results(plot(results, depth), results, args.out, "science_dropping")
    for name in ("residual", "plain"):
        rows = results[name]
        singles = [a for r in rows for a in r["each"] if a is not None]
        print(f"{name}-{depth}: baseline {100 * sum(r['baseline'] for r in rows) / len(rows):.1f}%, "
              f"one block removed: mean {100 * sum(singles) / len(singles):.1f}%, "
              f"worst {100 * min(singles):.1f}%")
    print(f"wall time {results['seconds']} s; figure {figure}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
