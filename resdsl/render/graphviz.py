"""DOT -> SVG/PNG/PDF through whichever Graphviz this machine has.

The chain, first found wins:

1. Graphviz's ``dot`` on PATH (run directly, with :data:`TIMEOUT_S`);
2. ``graphviz-pure`` (a pip-installed, self-contained port of ``dot``; SVG and
   PNG, no PDF), found on PATH or beside the running Python;
3. neither: the caller writes the ``.dot`` and prints :data:`INSTALL_HINT`.

No subprocess error reaches a user: failures become :class:`RendererMissing` or
:class:`RenderFailed`, and a layout that runs past :data:`TIMEOUT_S` is stopped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("svg", "png", "pdf", "dot", "html")  # html: the interactive page (SVG inside)
INSTALL_HINT = ("install Graphviz (apt-get install graphviz, brew install graphviz, "
                "or https://graphviz.org/download) or run 'pip install graphviz-pure'")
#: PDF needs Graphviz itself: graphviz-pure writes SVG and PNG only.
PDF_HINT = ("install Graphviz for PDF (apt-get install graphviz, brew install graphviz, "
            "or https://graphviz.org/download); graphviz-pure writes only .svg and .png")
DPI_RANGE = (24, 600)  # --dpi: below 24 text is unreadable, above 600 a diagram is a poster
TIMEOUT_S = 30  # the drawing is capped (MAX_LAYOUT_SIZE) to lay out in seconds; this backs it up


class RendererMissing(Exception):
    """No program that can lay out DOT in the requested format is installed."""


class RenderFailed(Exception):
    """The layout program ran and failed or ran out of time (the message says which)."""


@dataclass(frozen=True)
class Renderer:
    """A program that turns DOT text into an image."""

    name: str  # "dot" | "graphviz-pure"
    executable: str
    formats: tuple[str, ...]

    def render(self, dot_text: str, fmt: str, dpi: int | None = None) -> bytes:
        """The image bytes of ``dot_text`` in ``fmt`` (``svg``, ``png``, ``pdf``)."""
        return self.draw(dot_text, fmt, dpi)[0]

    def draw(self, dot_text: str, fmt: str, dpi: int | None = None) -> tuple[bytes, list[str]]:
        """The image bytes and the program's warnings, each made one line for a user
        (a PNG over Graphviz's 32,767-pixel limit is scaled down: that is said)."""
        if fmt not in self.formats:
            raise RendererMissing(f"{self.name} cannot write {fmt}; "
                                  + (PDF_HINT if fmt == "pdf" else INSTALL_HINT))
        image, stderr = _run(self.executable, dot_text, fmt, dpi)
        return image, [_warning(line) for line in _lines(stderr)]


def _warning(line: str) -> str:
    scaled = re.search(r"too large for .*bitmaps\. Scaling by ([0-9.]+)", line)
    if scaled:
        return (f"the PNG was over Graphviz's 32,767-pixel limit and was scaled by "
                f"{float(scaled.group(1)):.2f} (text smaller); write .svg or .pdf, or pass a lower --dpi")
    return line.removeprefix("Warning: ").strip()


def _run(executable: str, dot_text: str, fmt: str, dpi: int | None = None) -> tuple[bytes, bytes]:
    """Run the layout program with a time limit (the ``graphviz`` package's ``pipe`` has
    none); on timeout or any exception, ``subprocess.run`` kills it."""
    command = [executable, f"-T{fmt}"] + ([f"-Gdpi={int(dpi)}"] if dpi is not None else [])
    try:
        done = subprocess.run(command, input=dot_text.encode("utf-8"),
                              capture_output=True, timeout=TIMEOUT_S, check=False)
    except OSError as exc:
        raise RendererMissing(f"cannot run {executable}: {exc.strerror or exc}; {INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RenderFailed(f"{Path(executable).name} did not finish the layout within {TIMEOUT_S} s "
                           "(stopped); draw less (--level block or stage) or write a .dot file") from exc
    if done.returncode != 0:
        raise RenderFailed(_first_line(done.stderr) or f"{executable} exited {done.returncode}")
    return done.stdout, done.stderr


def _lines(stderr: bytes | str | None) -> list[str]:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    return [line.strip() for line in text.splitlines() if line.strip()][:5]


def _first_line(stderr: bytes | str | None) -> str:
    lines = _lines(stderr)
    return lines[0] if lines else "the layout program failed"


def _beside_python(name: str) -> str | None:
    """A console script installed with this Python but not on PATH (a venv not activated)."""
    for directory in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_renderer(fmt: str = "svg") -> Renderer | None:
    """The first renderer of the chain that can write ``fmt``, or ``None``.

    >>> find_renderer("svg") is None or find_renderer("svg").name in ("dot", "graphviz-pure")
    True
    """
    fmt = "svg" if fmt == "html" else fmt  # the page holds SVG
    dot = shutil.which("dot")
    if dot is not None:
        return Renderer("dot", dot, ("svg", "png", "pdf"))
    pure = shutil.which("graphviz-pure") or _beside_python("graphviz-pure")
    if pure is not None and fmt in ("svg", "png"):
        return Renderer("graphviz-pure", pure, ("svg", "png"))
    return None
