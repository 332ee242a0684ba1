"""The round-trip table of docs/from-torch.md: every torchvision classification model.

``python -m resdsl.fromtorch.table [--only NAME ...] [--write]`` runs ``from_torch`` on
each model (random weights, eval mode), builds the written spec, loads the weights
strictly and compares outputs; ``--write`` stores the rows in docs/from-torch.json and
the table in docs/from-torch.md (between its ``table`` markers).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

#: Input per family: small where the model allows it (every figure is size-independent).
_SHAPES = {"vit": (3, 224, 224), "swin3d": (3, 4, 64, 64), "swin": (3, 64, 64), "inception": (3, 299, 299),
           "maxvit": (3, 224, 224),
           "squeezenet": (3, 96, 96), "r3d": (3, 4, 32, 32), "mc3": (3, 4, 32, 32), "r2plus1d": (3, 4, 32, 32),
           "s3d": (3, 16, 224, 224), "mvit": (3, 16, 224, 224), "swin3d": (3, 4, 64, 64)}

ROOT = Path(__file__).resolve().parents[2]


def models() -> list[str]:
    """Torchvision's classification models, then its video classification models."""
    import torchvision

    return (list(torchvision.models.list_models(module=torchvision.models))
            + list(torchvision.models.list_models(module=torchvision.models.video)))


def make(name: str) -> tuple[Any, tuple[int, ...]]:
    """The model (random weights) and the per-sample input the table uses for it."""
    import torchvision

    video = name in torchvision.models.list_models(module=torchvision.models.video)
    builder = torchvision.models.get_model_builder(name)
    shape = next((s for prefix, s in _SHAPES.items() if name.startswith(prefix)), (3, 64, 64))
    return builder(), shape if not video or name.startswith(tuple(_SHAPES)) else (3, 4, 32, 32)


def row(name: str) -> dict[str, Any]:
    import resdsl
    from . import from_torch

    start = time.process_time()
    model, shape = make(name)
    entry: dict[str, Any] = {"model": name, "input": list(shape)}
    try:
        result = from_torch(model, shape, name=name, source=f"torchvision.models.{name}")
    except resdsl.SpecError as err:
        first = err.diagnostics[0]
        entry.update(exact=False, lines=None, why=first.message)
    else:
        lines = [line for line in result.text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        entry.update(exact=result.exact, lines=len(lines), why="" if result.exact else result.verdict.problem)
    entry["cpu_s"] = round(time.process_time() - start, 1)
    return entry


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| model | input | spec lines | exact | why not |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        why = r["why"].replace("|", "\\|").replace("\n", " ")
        out.append(f"| {r['model']} | {'x'.join(map(str, r['input']))} | {r['lines'] or '-'} | "
                   f"{'yes' if r['exact'] else 'no'} | {why} |")
    exact = sum(r["exact"] for r in rows)
    out.append(f"\n{exact} of {len(rows)} models round-trip exactly.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="these models only")
    parser.add_argument("--write", action="store_true", help="update docs/from-torch.json and .md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    rows = []
    for name in args.only or models():
        rows.append(row(name))
        r = rows[-1]
        print(f"{name}: {'exact' if r['exact'] else 'NO'} {r['lines']} lines {r['cpu_s']} s {r['why'][:120]}",
              flush=True)
    if args.write:
        store = ROOT / "docs" / "from-torch.json"
        if args.only and store.exists():  # update those rows, keep the others
            fresh = {r["model"]: r for r in rows}
            old = {r["model"]: r for r in json.loads(store.read_text())}
            old.update(fresh)
            rows = [old[name] for name in models() if name in old]
        store.write_text(json.dumps(rows, indent=1) + "\n")
        doc = ROOT / "docs" / "from-torch.md"
        text = doc.read_text()
        start, end = "<!-- table -->", "<!-- /table -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = head + start + "\n" + markdown(rows) + "\n" + end + rest.split(end, 1)[1]
            doc.write_text(text)
    else:
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
