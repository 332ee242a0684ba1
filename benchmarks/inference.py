"""The inference build against torchvision's eager module, on the CPU.

    python benchmarks/inference.py                    # the five targets of issue 17, eager
    python benchmarks/inference.py --compile          # also torch.compile on both sides
    python benchmarks/inference.py --memory           # also peak memory (resnet50, batch 8)
    python benchmarks/inference.py --rows resnet18:8  # chosen rows (model:batch, comma-separated)
    python benchmarks/inference.py --device cuda      # GPU: resnet50 batch 64, float16 autocast,
                                                      # channels_last input (issue 17, item 5)

Ours is ``resdsl.zoo.load(NAME).build(inference=True, weights=W)`` with W the
torchvision model's own state dict (a training-build checkpoint: its keys are the
training build's), folded as it loads. The two outputs are checked within 1e-4 of
the output's scale, then timed in interleaved rounds (A B, B A, ...) under
``torch.inference_mode`` with 2 threads, and each figure is the median of the
rounds. "floor" is what a generic rewrite of torchvision's module reaches
(``torch.fx.experimental.optimization.fuse``: batchnorm folded, then
channels_last), timed in the same rounds. The load average is printed before and
after: compare ratios from runs on a quiet machine.

``--device cuda`` builds every module on the GPU (ours is then the portable build:
the oneDNN runtime is the CPU's) and times each forward under
``torch.autocast("cuda", torch.float16)`` on a channels_last input, each call
followed by ``torch.cuda.synchronize()``; outputs are first checked in float32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # memory.py

#: (model, batch) -> the ratio issue 17 asks for, inference build / torchvision eager.
TARGETS = {("resnet50", 8): 0.75, ("resnet50", 1): 0.90, ("resnet18", 8): 0.70,
           ("mobilenet_v2", 8): 0.45, ("efficientnet_b0", 8): 0.60}
TOLERANCE = 1e-4


#: The GPU rows (issue 17, item 5).
CUDA_ROWS = "resnet50:64"


def models(name: str, device: str = "cpu") -> tuple[Any, Any, Any, Any]:
    """Ours (inference build with torchvision's weights, CPU runtime), the same build's
    portable code alone, torchvision's, the generic floor; on ``device``."""
    import torch
    import torchvision
    from torch.fx.experimental.optimization import fuse

    import resdsl

    theirs = getattr(torchvision.models, name)().eval()
    net = resdsl.zoo.load(name)
    ours = net.build(inference=True, weights=theirs.state_dict(), device=device)
    portable = net.build(inference=True, weights=theirs.state_dict(), runtime="portable", device=device)
    floor = fuse(getattr(torchvision.models, name)().eval())
    floor.load_state_dict(fuse(theirs).state_dict())
    floor = floor.to(device=device, memory_format=torch.channels_last)
    return ours, portable, theirs.to(device), floor


def interleaved(fns: list[Callable[[], Any]], rounds: int, warmup: int = 2) -> list[float]:
    """Median seconds of each function, timed in rotating order ``rounds`` times each."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for index in range(rounds):
        order = list(range(len(fns)))
        order = order[index % len(fns):] + order[:index % len(fns)]
        for k in order:
            start = time.perf_counter()
            fns[k]()
            samples[k].append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


def _check(a: Any, b: Any, x: Any, what: str) -> None:
    import torch

    with torch.inference_mode(), torch.autocast(x.device.type, enabled=False):
        want, got = b(x), a(x)
    error = ((got - want).abs().max() / want.abs().max()).item()
    if error > TOLERANCE:
        raise AssertionError(f"{what}: outputs differ by {error:.2e} of their scale")


def rows(chosen: list[tuple[str, int]], rounds: int, compiled: bool,
         device: str = "cpu") -> list[dict[str, Any]]:
    import torch

    table = []
    for name in dict.fromkeys(n for n, _ in chosen):
        ours, portable, theirs, floor = models(name, device)
        modes = [("eager", ours, theirs, [floor, portable])]
        if compiled:
            modes.append(("compiled", torch.compile(ours, dynamic=False),
                          torch.compile(theirs, dynamic=False), []))
        for mode, a, b, others in modes:
            for batch in [b_ for n, b_ in chosen if n == name]:
                x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
                for model in [a, *others]:
                    _check(model, b, x, f"{name} {mode} batch {batch}")
                fns = [_timed(m, x) for m in [a, b, *others]]
                with torch.inference_mode():
                    times = interleaved(fns, rounds)
                row = {"model": name, "mode": mode + (", cuda fp16" if device != "cpu" else ""),
                       "batch": batch, "ours_ms": times[0] * 1e3,
                       "torchvision_ms": times[1] * 1e3, "ratio": times[0] / times[1],
                       "floor": times[2] / times[1] if others else None,
                       "portable": times[3] / times[1] if others else None,
                       "target": TARGETS.get((name, batch), 1.0) if mode == "eager" and device == "cpu"
                       else 1.0}
                table.append(row)
                print(format_table([row]).splitlines()[-1], flush=True)
    return table


def _timed(model: Any, x: Any) -> Callable[[], Any]:
    """One forward of ``model``; on a GPU under float16 autocast, on a channels_last input,
    waiting for the device."""
    import torch

    if x.device.type == "cpu":
        return lambda: model(x)
    x = x.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            model(x)
        torch.cuda.synchronize()

    return run


#: Model setup for the memory rows (benchmarks/memory.py measures): argv[1] is "resdsl"
#: (the inference build), "portable" (its portable code) or "torchvision".
SETUP = """
torch.set_num_threads(2)
import torchvision, resdsl
net = resdsl.zoo.load("resnet50")
settle()
base_kib = status_kib("VmRSS")  # what the model holds is counted from here
state = torchvision.models.resnet50().eval().state_dict()  # freed below, once loaded
if sys.argv[1] == "torchvision":
    model = torchvision.models.resnet50().eval()
    model.load_state_dict(state)
else:
    model = net.build(inference=True, weights=state,
                      runtime="auto" if sys.argv[1] == "resdsl" else "portable")
del state
x = torch.randn(8, 3, 224, 224)
"""
MEMORY_SIDES = ("resdsl", "portable", "torchvision")


def memory(runs: int = 3, warmup: int = 0) -> dict[str, dict[str, float]]:
    """Per side (MEMORY_SIDES), resnet50 at batch 8, each in a fresh process: the peak
    resident-memory rise of one forward (the first, or the one after ``warmup`` others)
    and what the built model holds (MiB)."""
    from memory import medians

    return dict(zip(MEMORY_SIDES, medians(SETUP, runs, "torch.inference_mode", MEMORY_SIDES, warmup)))


def format_table(table: list[dict[str, Any]]) -> str:
    lines = ["| model | mode | batch | ours (ms) | torchvision (ms) | ours / torchvision | target "
             "| generic floor / torchvision | portable build / torchvision |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in table:
        floor, portable = (f"{r[k]:.3f}" if r[k] is not None else "-" for k in ("floor", "portable"))
        lines.append(f"| {r['model']} | {r['mode']} | {r['batch']} | {r['ours_ms']:.1f} | "
                     f"{r['torchvision_ms']:.1f} | {r['ratio']:.3f} | <= {r['target']:.2f} | {floor} "
                     f"| {portable} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import torch

    from forward import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per side (default 15)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile on both sides")
    parser.add_argument("--memory", action="store_true", help="also peak memory, resnet50 batch 8")
    parser.add_argument("--rows", default=None, help="model:batch pairs, comma-separated (default: "
                        "the five CPU targets; with --device cuda, " + CUDA_ROWS + ")")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="cuda: float16 autocast and channels_last on the GPU")
    args = parser.parse_args(argv if argv is not None else [])
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device")
    torch.set_num_threads(2)
    default = ",".join(f"{n}:{b}" for n, b in TARGETS) if args.device == "cpu" else CUDA_ROWS
    chosen = [(item.split(":")[0], int(item.split(":")[1])) for item in (args.rows or default).split(",")]
    gpu = f"; GPU: {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    print(f"machine: {machine()}{gpu}; load average before {os.getloadavg()}")
    table = rows(chosen, args.rounds, args.compile, args.device)
    print(format_table(table))
    for warmup, which in ((0, "first"), (2, "third")) if args.memory else ():
        m = memory(warmup=warmup)
        theirs = m["torchvision"]
        for side in MEMORY_SIDES:
            f = m[side]
            print(f"memory, resnet50 batch 8, {side}: {which} forward's peak rise {f['peak_rise_mib']:.1f} MiB "
                  f"({f['peak_rise_mib'] / theirs['peak_rise_mib']:.3f} of torchvision's; target <= 1.0), "
                  f"model held {f['held_mib']:.1f} MiB, the two together "
                  f"{(f['held_mib'] + f['peak_rise_mib']) / (theirs['held_mib'] + theirs['peak_rise_mib']):.3f}"
                  " of torchvision's")
    missed = [r for r in table if r["ratio"] > r["target"]]
    print(f"load average after {os.getloadavg()}; {len(table) - len(missed)} of {len(table)} ratios "
          "within target")


if __name__ == "__main__":
    main(sys.argv[1:])
