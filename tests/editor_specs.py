"""Every spec the repository holds, for the editor tests: the .res files and the
```resdsl blocks of the docs (whole specs and fragments)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Golden error specs that are syntax errors on purpose: nothing can format them.
UNPARSABLE = {"tests/golden/errors/missing_comma.res", "tests/golden/errors/tab.res"}
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def res_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "*.res"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    return sorted(listed)


def doc_blocks(language: str = "resdsl") -> list[tuple[str, str]]:
    """(where, text) of every fenced block of ``language`` in the README and docs/."""
    found = []
    for name in DOCS:
        parts = (ROOT / name).read_text(encoding="utf-8").split("```")
        for number, part in enumerate(parts[1::2]):
            info, _, body = part.partition("\n")
            if info.strip() == language:
                found.append((f"{name}#{number}", body))
    return found
