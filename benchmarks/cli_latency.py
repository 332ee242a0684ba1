"""CLI latency: whole-process wall time of `resdsl check resdsl/zoo/resnet50.res` against
`python -c "import torch"` on the same machine, medians over interleaved runs.

    python benchmarks/cli_latency.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECK = [sys.executable, "-m", "resdsl", "check", "resdsl/zoo/resnet50.res"]
TORCH = [sys.executable, "-c", "import torch"]


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(runs: int = 7) -> dict:
    wall(CHECK), wall(TORCH)  # warm the OS file cache (resdsl keeps no cache of its own)
    check, torch = [], []
    for _ in range(runs):  # interleaved, so machine noise hits both alike
        check.append(wall(CHECK))
        torch.append(wall(TORCH))
    c, t = statistics.median(check), statistics.median(torch)
    print_table("CLI latency (median of %d, whole process)" % runs, ("command", "seconds"),
                [("resdsl check resdsl/zoo/resnet50.res", c), ('python -c "import torch"', t)])
    print(f"  ratio check / import torch = {c / t:.3f} (target <= 0.25)")
    return {"check_s": c, "torch_import_s": t, "ratio": c / t}


if __name__ == "__main__":
    main()
