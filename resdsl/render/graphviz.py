"""DOT -> SVG/PNG/PDF through whichever Graphviz this machine has.

The chain, first found wins:

1. Graphviz's ``dot`` on PATH, run through the ``graphviz`` Python package;
2. ``graphviz-pure`` (a pip-installed, self-contained port of ``dot``; SVG and
   PNG, no PDF), found on PATH or beside the running Python;
3. neither: the caller writes the ``.dot`` and prints :data:`INSTALL_HINT`.

No path ever lets ``graphviz.ExecutableNotFound`` or a subprocess error reach a
user: failures become :class:`RendererMissing` or :class:`RenderFailed`.
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
TIMEOUT_S = 300


class RendererMissing(Exception):
    """No program that can lay out DOT in the requested format is installed."""


class RenderFailed(Exception):
    """The layout program ran and failed (its first stderr line is the message)."""


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
        if self.name == "dot":
            return _run_graphviz_package(dot_text, fmt)
        return _run(self.executable, dot_text, fmt)


def _run_graphviz_package(dot_text: str, fmt: str) -> bytes:
    try:
        import graphviz
    except ImportError:  # dot without the Python package: call it directly
        return _run(shutil.which("dot") or "dot", dot_text, fmt)
    try:
        return graphviz.pipe("dot", fmt, dot_text.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound as exc:
        raise RendererMissing(f"Graphviz 'dot' not found; {INSTALL_HINT}") from exc
    except graphviz.CalledProcessError as exc:
        raise RenderFailed(_first_line(exc.stderr)) from exc


def _run(executable: str, dot_text: str, fmt: str) -> bytes:
    try:
        done = subprocess.run([executable, f"-T{fmt}"], input=dot_text.encode("utf-8"),
                              capture_output=True, timeout=TIMEOUT_S, check=False)
    except OSError as exc:
        raise RendererMissing(f"cannot run {executable}: {exc.strerror or exc}; {INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RenderFailed(f"{Path(executable).name} took over {TIMEOUT_S} s") from exc
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
