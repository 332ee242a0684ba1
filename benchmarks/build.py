"""Build time: net.build() for resnet50 against torchvision's resnet50() constructor,
plus a meta-device build (no weights allocated), medians over interleaved runs.

    python benchmarks/build.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torchvision  # noqa: E402

import resdsl  # noqa: E402
from common import print_table  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "resnet50.res"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(runs: int = 7) -> dict:
    torch.set_num_threads(1)
    net = resdsl.load(SPEC)
    net.build(), torchvision.models.resnet50()  # warm up allocator and imports
    ours, theirs, meta = [], [], []
    for _ in range(runs):
        ours.append(timed(net.build))
        theirs.append(timed(torchvision.models.resnet50))
        meta.append(timed(lambda: net.build(device="meta")))
    o, t, m = statistics.median(ours), statistics.median(theirs), statistics.median(meta)
    print_table(f"build resnet50 (median of {runs})", ("what", "seconds", "ratio"),
                [("resdsl net.build()", o, o / t), ("torchvision resnet50()", t, 1.0),
                 ('resdsl net.build(device="meta")', m, m / t)])
    print(f"  ratio build / torchvision = {o / t:.3f} (target <= 1.10)")
    return {"build_ratio": o / t, "meta_build_s": m}


if __name__ == "__main__":
    main()
