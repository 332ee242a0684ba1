"""Architecture diagrams from the spec's graph: skips typed, blocks collapsed, U-Nets as a U.

:func:`to_dot` makes the DOT text (pure Python, deterministic); :func:`render`
writes ``.svg``, ``.png``, ``.pdf``, ``.dot`` or the interactive ``.html`` through the first renderer found
(Graphviz ``dot``, else the pip-installable ``graphviz-pure``), and when there is
none writes the ``.dot`` beside the requested file (never over an existing one)
and says how to install one. Drawings too large to lay out in seconds are refused
(:data:`MAX_LAYOUT_SIZE`), and the layout program runs with a timeout.
Nothing here imports torch.

>>> import resdsl
>>> net = resdsl.loads('network t:\\n    input x: [4]\\n    fc: linear 2\\n')
>>> "fc 2" in to_dot(net.graph)
True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from ..io import OutputError, atomic_write, check_output
from .dot import (LAYOUTS, LEVELS, STYLES, MAX_DOT_NODES, MAX_LAYOUT_SIZE, DrawingTooLarge, RenderOptionError,
                  build_view, is_u_shaped, layout_size, to_dot)
from .html import page, read_sources
from .graphviz import DPI_RANGE, FORMATS, INSTALL_HINT, PDF_HINT, RenderFailed, RendererMissing, find_renderer


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render` wrote: ``path``, and ``renderer`` (``None`` when it fell back to DOT)."""

    path: Path
    renderer: str | None
    note: str = ""  # one line for the user when the requested format could not be written
    warnings: tuple[str, ...] = ()  # what the layout program warned (a PNG scaled down), one line each


def format_of(path: str | os.PathLike) -> str:
    """The output format from the file name: ``net.svg`` -> ``svg``.

    >>> format_of("docs/images/resnet50.png")
    'png'
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix == "gv":
        return "dot"
    if suffix not in FORMATS:
        raise RenderOptionError(f"cannot tell the format of '{path}': use a file name ending in "
                                + ", ".join("." + f for f in FORMATS))
    return suffix


def plan(path: str | os.PathLike, *, protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Check, before any work, where :func:`render` will write ``path``: the format is
    known, the target may be written, and when no renderer can make the format the
    ``.dot`` beside it does not exist yet (it is never overwritten: the user did not
    name it). Returns the file that will be written; raises
    :class:`RenderOptionError` or :class:`~resdsl.io.OutputError`."""
    fmt = format_of(path)
    target = check_output(path, protect=protect)
    if fmt != "dot" and find_renderer(fmt) is None:
        return _fallback_target(target, fmt, protect)
    return target


def _fallback_target(target: Path, fmt: str, protect: tuple[str | os.PathLike, ...]) -> Path:
    fallback = target.with_suffix(".dot")
    try:
        return check_output(fallback, protect=protect, create_only=True)
    except OutputError as err:
        raise OutputError(f"cannot draw '{target}': {_why_not(fmt)}, and the DOT text cannot go "
                          f"beside it ({err}). Write it with -o {fallback} (replaces that file) "
                          f"or -o another.dot, or {_hint(fmt)}") from None


def _why_not(fmt: str) -> str:
    return "no Graphviz found" if fmt != "pdf" or find_renderer("svg") is None else \
        "PDF needs Graphviz's dot (graphviz-pure, found here, writes only SVG and PNG)"


def _hint(fmt: str) -> str:
    """How to get the format: for PDF with graphviz-pure already there, Graphviz itself."""
    return PDF_HINT if fmt == "pdf" and find_renderer("svg") is not None else INSTALL_HINT


def check_dpi(dpi: int | None) -> None:
    """``--dpi`` must lie in :data:`DPI_RANGE` (raises :class:`RenderOptionError`)."""
    if dpi is not None and not DPI_RANGE[0] <= dpi <= DPI_RANGE[1]:
        raise RenderOptionError(f"--dpi {dpi} is outside {DPI_RANGE[0]}-{DPI_RANGE[1]} "
                                "(Graphviz's default is 96; 300 prints well)")


def render(graph: nx.DiGraph, path: str | os.PathLike, *, level: str = "block",
           layout: str = "auto", shapes: bool = True, expand: bool = False,
           protect: tuple[str | os.PathLike, ...] = (), dpi: int | None = None,
           style: str = "default") -> RenderResult:
    """Draw ``graph`` into ``path``; the format is the file's suffix. ``.html`` is the
    interactive page (:mod:`resdsl.render.html`: stages open on click, hover, search;
    ``level`` and ``expand`` do not apply to it).

    Without any renderer the DOT text goes to ``path`` with the suffix ``.dot``,
    only if no such file exists, and ``note`` says how to install Graphviz.
    ``protect`` lists the inputs (the spec and its imports), never overwritten.
    Raises :class:`DrawingTooLarge` for a drawing over :data:`MAX_LAYOUT_SIZE`
    (image formats) or :data:`MAX_DOT_NODES` (``.dot``), :class:`RenderFailed` if
    the layout program fails or runs past its timeout, and
    :class:`~resdsl.io.OutputError` if ``path`` must not or cannot be written.
    ``style="paper"`` draws He et al.'s (a column) or Ronneberger et al.'s (a U) figure.
    ``dpi`` sets a PNG's resolution (Graphviz's default is 96); ``warnings`` in the
    result say what Graphviz warned, e.g. that a PNG over 32,767 pixels was scaled.
    """
    check_dpi(dpi)
    fmt = format_of(path)
    target = plan(path, protect=protect)
    if fmt == "dot":
        text = to_dot(graph, level=level, layout=layout, shapes=shapes, expand=expand,
                      max_nodes=MAX_DOT_NODES, style=style)
        return RenderResult(atomic_write(target, text, protect=protect), None)
    renderer = find_renderer(fmt)
    if fmt == "html" and renderer is not None:
        try:
            text = page(graph, lambda dot: renderer.render(dot, "svg"), shapes=shapes, layout=layout,
                        sources=read_sources(protect))
        except RendererMissing:
            renderer = None
        else:
            return RenderResult(atomic_write(target, text, protect=protect), renderer.name)
    text = to_dot(graph, level=level, layout=layout, shapes=shapes, expand=expand,
                  max_nodes=MAX_DOT_NODES, max_layout=MAX_LAYOUT_SIZE if renderer else None, style=style)
    if renderer is not None:
        try:
            image, warnings = renderer.draw(text, fmt, dpi if fmt == "png" else None)
        except RendererMissing:
            renderer = None
        else:
            return RenderResult(atomic_write(target, image, protect=protect), renderer.name,
                                warnings=tuple(warnings))
    fallback = _fallback_target(Path(path), fmt, protect)
    atomic_write(fallback, text, protect=protect, create_only=True)
    return RenderResult(fallback, None, f"{_why_not(fmt)}; wrote {fallback} instead of {path}. "
                                        f"To draw it, {_hint(fmt)}")


def svg(graph: nx.DiGraph, *, level: str = "block", layout: str = "auto",
        shapes: bool = True, expand: bool = False) -> str | None:
    """The diagram as SVG text, or ``None`` when no renderer is installed or the
    drawing is too large to lay out (see :data:`MAX_LAYOUT_SIZE`)."""
    renderer = find_renderer("svg")
    if renderer is None:
        return None
    try:
        text = to_dot(graph, level=level, layout=layout, shapes=shapes, expand=expand,
                      max_nodes=MAX_DOT_NODES, max_layout=MAX_LAYOUT_SIZE)
        return renderer.render(text, "svg").decode("utf-8")
    except (RendererMissing, RenderFailed, DrawingTooLarge):
        return None


__all__ = ["to_dot", "render", "plan", "svg", "check_dpi", "build_view", "is_u_shaped", "layout_size", "format_of",
           "RenderResult", "RenderOptionError", "DrawingTooLarge", "RenderFailed", "RendererMissing",
           "find_renderer", "LEVELS", "LAYOUTS", "STYLES", "FORMATS", "MAX_LAYOUT_SIZE", "MAX_DOT_NODES"]
