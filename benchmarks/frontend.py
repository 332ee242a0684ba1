"""Front-end scaling: resdsl.load (parse, elaborate, shapes, validate, graph) for
cifar_resnet at increasing depth. Time per op must not grow with depth.

    python benchmarks/frontend.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import resdsl  # noqa: E402
from common import median_time, print_table  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "cifar_resnet.res"
DEPTHS = (3, 18, 200, 1000, 2000)
LIMITS = resdsl.Limits(max_nodes=100_000)  # n=2000 is 42,008 ops: over the default, on purpose


def rows(depths=DEPTHS) -> list[tuple]:
    resdsl.load(SPEC, n=3)  # grammar and imports warm, as in a long-running tool
    out = []
    for n in depths:
        nodes = resdsl.load(SPEC, n=n, limits=LIMITS).graph.number_of_nodes()
        seconds = median_time(lambda: resdsl.load(SPEC, n=n, limits=LIMITS), repeat=5 if n <= 200 else 3)
        out.append((n, 6 * n + 2, nodes, seconds * 1000, seconds / nodes * 1e6))
    return out


def main() -> dict:
    table = rows()
    print_table("front end: resdsl.load(cifar_resnet, n=N)", ("n", "layers", "ops", "ms", "us/op"), table)
    by_n = {row[0]: row[3] for row in table}
    ratio = by_n[2000] / by_n[200]
    print(f"  time(n=2000) / time(n=200) = {ratio:.2f} (target <= 12; ops grow 10x)")
    print(f"  ResNet-1202 (n=200) front end: {by_n[200]:.0f} ms (target < 150 ms)")
    return {"ratio_2000_200": ratio, "resnet1202_ms": by_n[200]}


if __name__ == "__main__":
    main()
