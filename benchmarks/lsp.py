"""CPU time of the language server's answers on each zoo spec, after the first load.

    python benchmarks/lsp.py            # every zoo spec; prints the worst case per kind

For each spec: the first analysis (parse, imports, check: what didOpen and didChange
do), then a hover, a definition and a completion at every non-comment line, and the
document symbols. Times are ``time.process_time`` (CPU of this process), per request.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resdsl.editor.workspace import Document  # noqa: E402


def measure(path: Path) -> dict[str, float]:
    text = path.read_text()
    start = time.process_time()
    doc = Document(str(path), text, path.parent)
    worst = {"analyse": time.process_time() - start, "hover": 0.0, "definition": 0.0, "completion": 0.0}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for column in range(len(line) - len(line.lstrip()) + 1, len(line) + 1, 3):
            for kind, ask in (("hover", doc.hover), ("definition", doc.definition), ("completion", doc.completions)):
                start = time.process_time()
                ask(number, column)
                worst[kind] = max(worst[kind], time.process_time() - start)
    start = time.process_time()
    doc.symbols()
    worst["symbols"] = time.process_time() - start
    return worst


def main() -> None:
    results = {path.name: measure(path) for path in sorted((ROOT / "resdsl" / "zoo").glob("*.res"))}
    kinds = ["analyse", "hover", "definition", "completion", "symbols"]
    print(f"{'spec':28}" + "".join(f"{k:>12}" for k in kinds) + "   (worst ms of CPU per request)")
    for name, worst in results.items():
        print(f"{name:28}" + "".join(f"{worst[k] * 1000:12.1f}" for k in kinds))
    print(f"{'worst':28}" + "".join(f"{max(w[k] for w in results.values()) * 1000:12.1f}" for k in kinds))


if __name__ == "__main__":
    main()
