"""Peak memory of an inference forward (torch.no_grad, resnet50, batch 8), ours against
torchvision's, measured the same way for both, in a fresh subprocess each time: the
process's peak resident set size is reset just before the forward (Linux
/proc/self/clear_refs), and the peak reached during it, minus the resident size
before it, is the forward's memory. (ru_maxrss alone fails here: building the model
can set a higher mark than the forward ever reaches.)

    python benchmarks/memory.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Model setup of this benchmark: ``model`` and ``x`` for argv[1] (resdsl or torchvision).
SETUP = """
torch.set_num_threads(1)
if sys.argv[1] == "resdsl":
    import resdsl
    model = resdsl.load("resdsl/zoo/resnet50.res").build().eval()
else:
    import torchvision
    model = torchvision.models.resnet50().eval()
x = torch.randn(8, 3, 224, 224)
"""

#: After a setup: the peak resident-set rise of one forward under ``{context}``.
PEAK = """
def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset VmHWM (the peak RSS) to the current RSS
before = status_kib("VmRSS")
with {context}():
    model(x)
print(json.dumps({{"peak_rise_mib": (status_kib("VmHWM") - before) / 1024}}))
"""


def measure(setup: str, which: str, context: str = "torch.no_grad") -> float:
    """One forward's peak memory rise (MiB) in a fresh process: ``setup`` makes ``model``
    and ``x`` for ``which`` (its argv[1])."""
    probe = "import json, sys, torch\n" + setup + PEAK.format(context=context)
    out = subprocess.run([sys.executable, "-c", probe, which], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rise_mib"]


def medians(setup: str, runs: int, context: str = "torch.no_grad") -> tuple[float, float]:
    """Median peak rise of ours and torchvision's over ``runs`` alternating processes."""
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(measure(setup, "resdsl", context))
        theirs.append(measure(setup, "torchvision", context))
    return statistics.median(ours), statistics.median(theirs)


def main(runs: int = 3) -> dict:
    o, t = medians(SETUP, runs)
    print_table(f"peak memory rise of one no_grad forward, resnet50, batch 8 (median of {runs})",
                ("model", "MiB", "ratio"), [("resdsl", o, o / t), ("torchvision", t, 1.0)])
    print(f"  ratio = {o / t:.3f} (target <= 1.05)")
    return {"memory_ratio": o / t}


if __name__ == "__main__":
    main()
