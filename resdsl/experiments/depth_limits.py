"""How deep can a network train, with and without normalization and skips?

The lecture notes' claim: without normalization a plain network trains to a
depth of about 10-12, with batchnorm 20-30, with residual connections to 1000.
Four families of multilayer perceptrons on the 64 pixels of scikit-learn's
digits, all from one spec (``resdsl/experiments/specs/depth_mlp.res``, 2 + 2 * units
weight layers of width 64), train for the same fixed budget at depths 4 to 110,
three seeds each; the final training error is plotted against the depth::

    python -m resdsl.experiments.depth_limits           # docs/images/depth_limits.png (+ .json)
    python -m resdsl.experiments.depth_limits --quick   # under 2 minutes: fewer depths, one seed

A family *stops training* at the shallowest depth where the median final
training error over the seeds is above ``--threshold`` (default 10%; chance is 90%).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .training import Data, Run, digits, fit, pyplot, save_results, set_threads, spread

OUT = Path(__file__).resolve().parents[2] / "docs" / "images"
SPEC = Path(__file__).resolve().parent / "specs" / "depth_mlp.res"
DEPTHS = (4, 8, 12, 20, 32, 56, 110)
QUICK_DEPTHS = (4, 12, 32, 110)
THRESHOLD = 0.10


def he_init(model: torch.nn.Module) -> None:
    """He et al. 2015 ("Delving deep into rectifiers"): weights N(0, 2 / fan_in), zero
    biases, the initialisation that keeps a relu network's signal variance constant.
    PyTorch's default (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1 / (3 fan_in))
    shrinks it by 6 per layer."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class Family:
    """One line of the figure: spec parameters, and an optional re-initialisation."""

    name: str
    plain: bool
    overrides: tuple[tuple[str, bool], ...] = ()
    init: Callable[[torch.nn.Module], None] | None = None
    main: bool = True  # one of the four (the others are ablations, dashed)

    def load(self, units: int, width: int, spec: Path):
        from ..api import load

        return load(spec, units=units, width=width, plain=self.plain, **dict(self.overrides))


FAMILIES = {f.name: f for f in (
    Family("plain", plain=True),
    Family("plain+bn", plain=True, overrides=(("norm", True),)),
    Family("residual (SkipInit)", plain=False, overrides=(("skipinit", True),)),
    Family("residual+bn", plain=False, overrides=(("norm", True),)),
    Family("plain (He init)", plain=True, init=he_init, main=False),
    Family("residual (no SkipInit)", plain=False, main=False),
)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m resdsl.experiments.depth_limits",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)),
                        help="weight layers per network, even, >= 4 (default 4,8,12,20,32,56,110)")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated, from: " + ", ".join(FAMILIES))
    parser.add_argument("--seeds", default="0,1,2", help="seeds (weights, minibatch order)")
    parser.add_argument("--steps", type=int, default=500, help="SGD steps per run (default 500)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help="final training error above which a network has not trained (default 0.1)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNG and JSON")
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--quick", action="store_true",
                        help="depths 4,12,32,110, the four main families, seed 0")
    args = parser.parse_args(argv)
    if args.quick:
        args.depths, args.seeds = ",".join(map(str, QUICK_DEPTHS)), "0"
        if args.families == parser.get_default("families"):
            args.families = ",".join(name for name, f in FAMILIES.items() if f.main)
    args.depths = [int(v) for v in args.depths.split(",")]
    args.seeds = [int(v) for v in args.seeds.split(",")]
    args.families = [v.strip() for v in args.families.split(",")]
    for depth in args.depths:
        if depth < 4 or depth % 2:
            parser.error(f"--depths: {depth} is not an even number >= 4 (2 + 2 * units weight layers)")
    for name in args.families:
        if name not in FAMILIES:
            parser.error(f"--families: unknown family {name!r}; expected one of {', '.join(FAMILIES)}")
    return args


def flat_digits() -> Data:
    """The digits split with each image as a vector of 64 standardised pixels."""
    data = digits(channels=1)
    return Data(data.x_train.flatten(1), data.y_train, data.x_test.flatten(1), data.y_test)


def run_all(args: argparse.Namespace) -> list[dict]:
    data = flat_digits()
    rows = []
    for name in args.families:
        family = FAMILIES[name]
        for depth in args.depths:
            units = (depth - 2) // 2
            net = family.load(units, args.width, args.spec)
            for seed in args.seeds:
                cpu = time.process_time()
                run = fit(net, Run(units, family.plain, seed), data, steps=args.steps, lr=args.lr,
                          eval_every=args.steps, init=family.init)
                rows.append({"family": name, "depth": depth, "seed": seed,
                             "train_error": run.train_error[-1], "test_error": run.test_error[-1],
                             "finite": all(bool(p.isfinite().all()) for p in run.model.parameters()),
                             "seconds": round(run.seconds, 2),
                             "cpu_seconds": round(time.process_time() - cpu, 2)})
                print(f"  {name:<22} depth {depth:<3} seed {seed}: train error "
                      f"{100 * run.train_error[-1]:5.1f}%, test {100 * run.test_error[-1]:5.1f}% "
                      f"({run.seconds:.1f} s)", flush=True)
    return rows


def summary(rows: list[dict], threshold: float) -> dict:
    """Per family: mean/min/max/median final training error per depth, and the depth
    where it stops training (the shallowest whose median is above ``threshold``)."""
    out = {}
    for name in dict.fromkeys(r["family"] for r in rows):
        per_depth = []
        for depth in sorted({r["depth"] for r in rows if r["family"] == name}):
            errors = sorted(r["train_error"] for r in rows if r["family"] == name and r["depth"] == depth)
            tests = [r["test_error"] for r in rows if r["family"] == name and r["depth"] == depth]
            per_depth.append({"depth": depth, "mean": sum(errors) / len(errors), "min": errors[0],
                              "max": errors[-1], "median": errors[len(errors) // 2],
                              "test_mean": sum(tests) / len(tests)})
        failing = [p["depth"] for p in per_depth if p["median"] > threshold]
        trained = [p["depth"] for p in per_depth if p["median"] <= threshold and
                   (not failing or p["depth"] < failing[0])]
        out[name] = {"depths": per_depth, "stops_at": failing[0] if failing else None,
                     "trains_up_to": trained[-1] if trained else None}
    return out


def threshold_margin(result: dict, threshold: float) -> tuple[float, float]:
    """The interval of thresholds around ``threshold`` that give every family the same
    stopping depth: between the highest median at or below it and the lowest above."""
    medians = [p["median"] for fam in result.values() for p in fam["depths"]]
    below = [m for m in medians if m <= threshold]
    above = [m for m in medians if m > threshold]
    return (max(below) if below else 0.0, min(above) if above else 1.0)


def plot(rows: list[dict], args: argparse.Namespace):
    """Final training error against depth (log axis): one line per family (mean over
    seeds), the min-max band; the threshold and chance as horizontal lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = ["tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple", "tab:cyan"]
    for color, name in zip(colors, FAMILIES):
        if name not in args.families:
            continue
        depths = sorted({r["depth"] for r in rows if r["family"] == name})
        per_seed = [[100 * next(r["train_error"] for r in rows if r["family"] == name
                                and r["depth"] == d and r["seed"] == s) for d in depths]
                    for s in args.seeds]
        mean, low, high = spread(per_seed)
        style = "o-" if FAMILIES[name].main else "s--"
        ax.plot(depths, mean, style, color=color, markersize=4, label=name)
        ax.fill_between(depths, low, high, color=color, alpha=0.15, linewidth=0)
    ax.axhline(100 * args.threshold, color="black", linestyle=":", linewidth=1,
               label=f"threshold {100 * args.threshold:g}%")
    ax.axhline(90, color="grey", linestyle="-.", linewidth=0.8, label="chance (90%)")
    ax.set_xscale("log")
    ax.set_xticks(args.depths, [str(d) for d in args.depths])
    ax.minorticks_off()
    ax.set_ylim(-2, 100)
    ax.set_xlabel("depth (weight layers)")
    ax.set_ylabel(f"training error after {args.steps} steps (%)")
    ax.set_title(f"Depth limits on digits (MLP width {args.width}, SGD lr {args.lr}; "
                 f"seeds {args.seeds}: mean, min-max band)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left")
    return fig


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    set_threads()
    # Vanishing activations of deep plain nets become denormal floats, which the CPU
    # handles ten times slower (plain-110: 15.8 s against 4.6 s); flushed to 0 instead.
    torch.set_flush_denormal(True)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        rows = run_all(args)
    finally:
        torch.set_flush_denormal(False)  # torch's default: leave the process as it was
    result = {"spec": "resdsl/experiments/specs/depth_mlp.res", "steps": args.steps, "lr": args.lr,
              "batch": 64, "width": args.width, "threshold": args.threshold, "depths": args.depths,
              "seeds": args.seeds, "families": args.families,
              "summary": summary(rows, args.threshold), "runs": rows,
              "threshold_margin": None,
              "seconds": round(time.perf_counter() - wall, 1),
              "cpu_seconds": round(time.process_time() - cpu, 1)}
    result["threshold_margin"] = threshold_margin(result["summary"], args.threshold)
    figure = save_results(plot(rows, args), result, args.out, "depth_limits")
    for name, fam in result["summary"].items():
        cells = ", ".join(f"{p['depth']}: {100 * p['median']:.1f}%" for p in fam["depths"])
        print(f"{name:<22} median training error {cells}; trains up to {fam['trains_up_to']}, "
              f"stops at {fam['stops_at']}")
    low, high = result["threshold_margin"]
    print(f"every stopping depth is the same for any threshold in [{100 * low:.1f}%, {100 * high:.1f}%)")
    print(f"wall time {result['seconds']} s, CPU time {result['cpu_seconds']} s; figure {figure}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
