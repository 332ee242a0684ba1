"""Architecture diagrams from the spec's graph: skips typed, blocks collapsed, U-Nets as a U.

:func:`to_dot` makes the DOT text (pure Python, deterministic); :func:`render`
writes ``.svg``, ``.png``, ``.pdf`` or ``.dot`` through the first renderer found
(Graphviz ``dot``, else the pip-installable ``graphviz-pure``), and when there is
none writes the ``.dot`` beside the requested file and says how to install one.
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

from ..io import atomic_write
from .dot import LAYOUTS, LEVELS, RenderOptionError, build_view, is_u_shaped, to_dot
from .graphviz import FORMATS, INSTALL_HINT, RenderFailed, RendererMissing, find_renderer


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render` wrote: ``path``, and ``renderer`` (``None`` when it fell back to DOT)."""

    path: Path
    renderer: str | None
    note: str = ""  # one line for the user when the requested format could not be written


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


def render(graph: nx.DiGraph, path: str | os.PathLike, *, level: str = "block",
           layout: str = "auto", shapes: bool = True, expand: bool = False,
           protect: tuple[str | os.PathLike, ...] = ()) -> RenderResult:
    """Draw ``graph`` into ``path``; the format is the file's suffix.

    Without any renderer the DOT text goes to ``path`` with the suffix ``.dot`` and
    ``note`` says how to install Graphviz. Raises :class:`RenderFailed` if the
    layout program itself fails, :class:`~resdsl.io.OutputError` if ``path``
    cannot be written.
    """
    fmt = format_of(path)
    text = to_dot(graph, level=level, layout=layout, shapes=shapes, expand=expand)
    if fmt == "dot":
        return RenderResult(atomic_write(path, text, protect=protect), None)
    renderer = find_renderer(fmt)
    if renderer is not None:
        try:
            image = renderer.render(text, fmt)
        except RendererMissing:
            renderer = None
        else:
            return RenderResult(atomic_write(path, image, protect=protect), renderer.name)
    fallback = Path(path).with_suffix(".dot")
    atomic_write(fallback, text, protect=protect)
    why = "no Graphviz found" if fmt != "pdf" or find_renderer("svg") is None else \
        "PDF needs Graphviz's dot"
    return RenderResult(fallback, None, f"{why}; wrote {fallback} instead of {path}. To draw it, "
                                        f"{INSTALL_HINT}")


def svg(graph: nx.DiGraph, *, level: str = "block", layout: str = "auto",
        shapes: bool = True, expand: bool = False) -> str | None:
    """The diagram as SVG text, or ``None`` when no renderer is installed."""
    renderer = find_renderer("svg")
    if renderer is None:
        return None
    text = to_dot(graph, level=level, layout=layout, shapes=shapes, expand=expand)
    try:
        return renderer.render(text, "svg").decode("utf-8")
    except (RendererMissing, RenderFailed):
        return None


__all__ = ["to_dot", "render", "svg", "build_view", "is_u_shaped", "format_of", "RenderResult",
           "RenderOptionError", "RenderFailed", "RendererMissing", "find_renderer", "LEVELS",
           "LAYOUTS", "FORMATS"]
