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
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = ("install Graphviz (apt-get install graphviz, brew install graphviz, "
                "or https://graphviz.org/download) or run 'pip install graphviz-pure'")
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

    def render(self, dot_text: str, fmt: str) -> bytes:
        """The image bytes of ``dot_text`` in ``fmt`` (``svg``, ``png``, ``pdf``)."""
        if fmt not in self.formats:
            raise RendererMissing(f"{self.name} cannot write {fmt}; {INSTALL_HINT}")
        return _run(self.executable, dot_text, fmt)


def _run(executable: str, dot_text: str, fmt: str) -> bytes:
    """Run the layout program with a time limit (the ``graphviz`` package's ``pipe`` has
    none); on timeout or any exception, ``subprocess.run`` kills it."""
    try:
        done = subprocess.run([executable, f"-T{fmt}"], input=dot_text.encode("utf-8"),
                              capture_output=True, timeout=TIMEOUT_S, check=False)
    except OSError as exc:
        raise RendererMissing(f"cannot run {executable}: {exc.strerror or exc}; {INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RenderFailed(f"{Path(executable).name} did not finish the layout within {TIMEOUT_S} s "
                           "(stopped); draw less (--level block or stage) or write a .dot file") from exc
    if done.returncode != 0:
        raise RenderFailed(_first_line(done.stderr) or f"{executable} exited {done.returncode}")
    return done.stdout


def _first_line(stderr: bytes | str | None) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0].strip() if lines else "the layout program failed"


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
    dot = shutil.which("dot")
    if dot is not None:
        return Renderer("dot", dot, ("svg", "png", "pdf"))
    pure = shutil.which("graphviz-pure") or _beside_python("graphviz-pure")
    if pure is not None and fmt in ("svg", "png"):
        return Renderer("graphviz-pure", pure, ("svg", "png"))
    return None
