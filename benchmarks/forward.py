"""Forward time of our ResNet-18/50 and ViT-B/16 against torchvision's, eager and compiled.

    python benchmarks/forward.py                 # batch 1 and 8, eager and torch.compile
    python benchmarks/forward.py --no-compile    # eager only (fast)
    python benchmarks/forward.py --models vit_b_16 --no-compile

Both sides get the same weights and the same input; ours and torchvision's are
timed in interleaved rounds (A B A B ...) so that load on a shared machine hits
both alike, and each figure is the median of those rounds. The ratio is
ours / torchvision (below 1.02 is the target).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}, torch {torch.__version__}")


def _models(name: str):
    import torchvision

    import resdsl

    ours = resdsl.zoo.load(name).build().eval()
    theirs = getattr(torchvision.models, name)().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def interleaved(a: Callable[[], Any], b: Callable[[], Any], rounds: int, warmup: int = 2) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, timed alternately ``rounds`` times each."""
    for _ in range(warmup):
        a()
        b()
    times_a, times_b = [], []
    for index in range(rounds):
        for fn, sink in ((a, times_a), (b, times_b)) if index % 2 == 0 else ((b, times_b), (a, times_a)):
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def rows(names: tuple[str, ...] = ("resnet18", "resnet50"), batches: tuple[int, ...] = (1, 8),
         compiled: bool = True, rounds: int = 15) -> list[dict[str, Any]]:
    """One row per (model, mode, batch): median ms of ours and torchvision's, and their ratio."""
    import torch

    result = []
    for name in names:
        ours, theirs = _models(name)
        modes = [("eager", ours, theirs)]
        if compiled:
            modes.append(("compiled", torch.compile(ours, dynamic=False), torch.compile(theirs, dynamic=False)))
        for mode, a, b in modes:
            for batch in batches:
                x = torch.randn(batch, 3, 224, 224)
                with torch.inference_mode():
                    if not torch.equal(a(x), b(x)) and not torch.allclose(a(x), b(x), atol=1e-4):
                        raise AssertionError(f"{name} {mode}: outputs differ")
                    ta, tb = interleaved(lambda: a(x), lambda: b(x), rounds)
                result.append({"model": name, "mode": mode, "batch": batch, "ours_ms": ta * 1e3,
                               "torchvision_ms": tb * 1e3, "ratio": ta / tb})
    return result


def format_table(table: list[dict[str, Any]]) -> str:
    lines = ["| model | mode | batch | ours (ms) | torchvision (ms) | ours / torchvision |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in table:
        lines.append(f"| {row['model']} | {row['mode']} | {row['batch']} | {row['ours_ms']:.1f} | "
                     f"{row['torchvision_ms']:.1f} | {row['ratio']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per side (default 15)")
    parser.add_argument("--models", default="resnet18,resnet50,vit_b_16", help="zoo names, comma-separated")
    args = parser.parse_args(argv if argv is not None else [])
    print(f"machine: {machine()}")
    table = rows(tuple(args.models.split(",")), compiled=not args.no_compile, rounds=args.rounds)
    print(format_table(table))
    worst = max(row["ratio"] for row in table)
    print(f"worst ratio {worst:.3f} (target <= 1.02 for the ResNets, <= 1.05 for ViT-B/16)")


if __name__ == "__main__":
    main(sys.argv[1:])
