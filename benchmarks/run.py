"""Every benchmark in one run, each figure against its reference, as ratios.

    python benchmarks/run.py            # all
    python benchmarks/run.py frontend   # one (frontend, cli, build, memory, forward)

Figures are ratios measured in the same run, so a noisy shared machine affects
both sides alike; absolute times are printed for context only.
"""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SUITES = {"frontend": "frontend", "cli": "cli_latency", "build": "build", "memory": "memory",
          "forward": "forward"}


def machine() -> str:
    import os

    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def main(argv: list[str]) -> None:
    chosen = argv or list(SUITES)
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SUITES)}")
    print(f"machine: {machine()}")
    sys.argv = sys.argv[:1]  # each suite parses its own (default) options
    for name in chosen:
        module = importlib.import_module(SUITES[name])
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
