"""Elaboration: IR -> flat graph with shapes.

Parameters and ``-D`` overrides are evaluated, ``defaults`` applied, blocks and
stages instantiated, residual shortcuts chosen from shapes, long skips resolved,
and every op's arguments and output shape checked before any tensor exists.
Problems are collected (one run reports every independent error) and raised
together as one :class:`~resdsl.errors.SpecError`.

The package splits the elaborator by concept: ``core`` (graph construction,
work accounting, statements, ops), ``params``, ``blocks`` (and stages),
``residuals`` (shortcuts and merges), ``refs`` (long skips), with ``limits``,
``scope`` and ``values`` beside them.
"""

from __future__ import annotations

from typing import Any, Mapping

import networkx as nx

from .. import ir
from ..errors import ErrorList, Problem
from ..vocab import SHORTCUT_POLICIES
from .core import Elaborator
from .limits import LimitProblem, Limits, _Full
from .scope import Scope, Tensor

__all__ = ["Elaborator", "LimitProblem", "Limits", "Scope", "Tensor", "SHORTCUT_POLICIES", "elaborate"]


def elaborate(
    network: ir.Network,
    blocks: Mapping[str, ir.Block],
    errors: ErrorList,
    overrides: Mapping[str, Any] | None = None,
    plain: bool = False,
    limits: Limits = Limits(),
    shortcut: str | None = None,
) -> nx.DiGraph:
    """IR of one network -> graph; problems are recorded in ``errors``.

    ``plain`` drops every skip; ``shortcut`` forces one policy (auto, A, B, C,
    identity, none) on every residual that has no explicit ``shortcut:`` path.
    """
    if shortcut is not None and shortcut not in SHORTCUT_POLICIES:
        raise ValueError(f"shortcut must be one of {', '.join(SHORTCUT_POLICIES)}, not {shortcut!r}")
    elaborator = Elaborator(network, blocks, errors, overrides, plain, limits, shortcut)
    try:
        return elaborator.run()
    except _Full:  # the diagnostic cap is reached: more work would only be dropped
        return elaborator.graph
    except Problem as problem:  # a limit hit: stop here
        try:
            elaborator.report(problem)
        except _Full:
            pass
        return elaborator.graph
    except RecursionError:
        errors.add(network.span, "the spec is nested too deeply to elaborate",
                   hint="reduce the nesting of blocks and residuals")
        return elaborator.graph
