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

#: Before a setup: reads the process's memory figures. A setup may set ``base_kib``
#: (``status_kib("VmRSS")`` before it builds) to have what the model holds measured.
PRELUDE = """
import ctypes, gc, json, sys, torch

def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

def settle():
    gc.collect()
    try:  # glibc: hand memory freed while building back, so VmRSS is what is held
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
"""

#: After a setup: the peak resident-set rise of one forward under ``{context}`` (after
#: ``{warmup}`` forwards), and what the model holds (resident growth from ``base_kib`` to
#: just before the forward).
PEAK = """
with {context}():
    for _ in range({warmup}):
        model(x)
settle()
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset VmHWM (the peak RSS) to the current RSS
before = status_kib("VmRSS")
with {context}():
    model(x)
held = (before - base_kib) / 1024 if "base_kib" in globals() else None
print(json.dumps({{"peak_rise_mib": (status_kib("VmHWM") - before) / 1024, "held_mib": held}}))
"""


def measure(setup: str, which: str, context: str = "torch.no_grad", warmup: int = 0) -> dict:
    """One forward's peak memory rise (``peak_rise_mib``) and what the model holds
    (``held_mib``, where the setup sets ``base_kib``), in MiB, in a fresh process:
    ``setup`` makes ``model`` and ``x`` for ``which`` (its argv[1]); ``warmup`` forwards
    run first (the one measured is then a later one: a server's)."""
    probe = PRELUDE + setup + PEAK.format(context=context, warmup=warmup)
    out = subprocess.run([sys.executable, "-c", probe, which], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def medians(setup: str, runs: int, context: str = "torch.no_grad",
            which: tuple[str, ...] = ("resdsl", "torchvision"), warmup: int = 0) -> list[dict]:
    """Per ``which`` (in order), the median of each figure over ``runs`` rounds of fresh
    processes, taken in turn."""
    figures: list[list[dict]] = [[] for _ in which]
    for _ in range(runs):
        for index, name in enumerate(which):
            figures[index].append(measure(setup, name, context, warmup))
    return [{key: statistics.median(f[key] for f in runs_of) if runs_of[0][key] is not None else None
             for key in runs_of[0]} for runs_of in figures]


def main(runs: int = 3) -> dict:
    o, t = (m["peak_rise_mib"] for m in medians(SETUP, runs))
    print_table(f"peak memory rise of one no_grad forward, resnet50, batch 8 (median of {runs})",
                ("model", "MiB", "ratio"), [("resdsl", o, o / t), ("torchvision", t, 1.0)])
    print(f"  ratio = {o / t:.3f} (target <= 1.05)")
    return {"memory_ratio": o / t}


if __name__ == "__main__":
    main()
