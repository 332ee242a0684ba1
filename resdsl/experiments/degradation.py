"""The degradation problem, in small (He et al. 2015, Fig. 1 and 6).

Plain and residual twins of 8, 20 and 56 layers (``resdsl/zoo/cifar_resnet.res``,
n = 1, 3, 9) train on scikit-learn's digits for the same number of SGD steps,
three seeds each; the figure shows the training error against steps, mean
over seeds with the min-max band::

    python -m resdsl.experiments.degradation            # docs/images/science_degradation.png
    python -m resdsl.experiments.degradation --smoke    # seconds: tiny budget, checks the plumbing

Expected: deeper plain networks train worse; deeper residual networks do not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from .training import SPEC, Run, digits, pyplot, save_results, set_threads, spread, train

OUT = Path(__file__).resolve().parents[2] / "docs" / "images"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m resdsl.experiments.degradation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", default="1,3,9", help="values of n (6n+2 layers), default 1,3,9")
    parser.add_argument("--seeds", default="0,1,2", help="seeds (weights, minibatch order)")
    parser.add_argument("--steps", type=int, default=200, help="SGD steps per run (default 200)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNG and JSON")
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run: n=1, one seed, 4 steps")
    args = parser.parse_args(argv)
    if args.smoke:
        args.depths, args.seeds, args.steps = "1", "0", 4
    return args


def run_all(args: argparse.Namespace) -> list[Run]:
    data = digits(limit=128 if args.smoke else None)
    runs = []
    for n in (int(v) for v in args.depths.split(",")):
        for plain in (True, False):
            for seed in (int(v) for v in args.seeds.split(",")):
                run = train(n, plain, seed, data, steps=args.steps, lr=args.lr,
                            eval_every=2 if args.smoke else 25, spec=args.spec)
                print(f"  {'plain' if plain else 'resnet'}-{run.depth:<3} seed {seed}: train error "
                      f"{100 * run.train_error[-1]:5.1f}%, test {100 * run.test_error[-1]:5.1f}% "
                      f"({run.seconds:.1f} s)", flush=True)
                runs.append(run)
    return runs


def summary(runs: list[Run]) -> list[dict]:
    """Final errors per (depth, twin): mean, min and max over seeds."""
    rows = []
    for key in dict.fromkeys((r.depth, r.plain) for r in runs):
        group = [r for r in runs if (r.depth, r.plain) == key]
        row = {"depth": key[0], "plain": key[1], "seeds": [r.seed for r in group]}
        for what in ("train_error", "test_error"):
            finals = [getattr(r, what)[-1] for r in group]
            row[what] = {"mean": sum(finals) / len(finals), "min": min(finals), "max": max(finals)}
        rows.append(row)
    return rows


def plot(runs: list[Run], steps: int):
    """Training error against steps, plain twins left, residual right; returns the figure."""
    plt = pyplot()
    depths = sorted({r.depth for r in runs})
    colors = dict(zip(depths, plt.get_cmap("viridis")([0.85, 0.5, 0.1, 0.3][:len(depths)])))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, plain in zip(axes, (True, False)):
        for depth in depths:
            group = [r for r in runs if r.plain == plain and r.depth == depth]
            mean, low, high = spread([[100 * e for e in r.train_error] for r in group])
            x = group[0].steps
            ax.plot(x, mean, color=colors[depth], label=f"{'plain' if plain else 'ResNet'}-{depth}")
            ax.fill_between(x, low, high, color=colors[depth], alpha=0.2, linewidth=0)
        ax.set_title(("plain" if plain else "residual") + " networks")
        ax.set_xlabel("SGD step (batch 64)")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("training error (%)")
    seeds = sorted({r.seed for r in runs})
    fig.suptitle(f"Degradation on digits: {steps} steps, seeds {seeds} (line: mean, band: min-max)")
    return fig


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    set_threads()
    start = time.perf_counter()
    runs = run_all(args)
    result = {"steps": args.steps, "lr": args.lr, "summary": summary(runs),
              "curves": [{"depth": r.depth, "plain": r.plain, "seed": r.seed, "steps": r.steps,
                          "train_error": r.train_error, "test_error": r.test_error} for r in runs],
              "seconds": round(time.perf_counter() - start, 1)}
    figure = save_results(plot(runs, args.steps), result, args.out, "science_degradation")
    for row in result["summary"]:
        tr, te = row["train_error"], row["test_error"]
        print(f"{'plain' if row['plain'] else 'resnet'}-{row['depth']}: train error "
              f"{100 * tr['mean']:.1f}% ({100 * tr['min']:.1f}-{100 * tr['max']:.1f}), "
              f"test error {100 * te['mean']:.1f}% ({100 * te['min']:.1f}-{100 * te['max']:.1f})")
    print(f"wall time {result['seconds']} s; figure {figure}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
