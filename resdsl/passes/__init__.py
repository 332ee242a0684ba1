"""Passes over the elaborated graph, run in order (like sqlglot's optimizer: a plain list).

Each pass is ``(graph, errors) -> None``: it checks or annotates the graph and
records located problems in ``errors``.
"""

from .validate import validate

PIPELINE = [validate]

__all__ = ["PIPELINE", "validate"]
