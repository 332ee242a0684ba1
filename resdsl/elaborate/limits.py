"""The bounds on the work one spec can ask for, and the problems that stop elaboration."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Problem


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one spec can ask for; each hit is a located error."""

    max_nodes: int = 20_000  # elaborated ops: 20-50 us each to check, analyse or draw: under 1 s at the limit
    # Elaboration steps: every statement visited (weighted by the size of its expressions)
    # and every block, stage, residual or shortcut instance opened. Blocks with no op
    # make no node, so max_nodes alone never stops 2**40 empty instances.
    max_work: int = 200_000
    max_depth: int = 64  # nested block calls / residuals
    max_repeat: int = 100_000  # stage x N
    max_tensor_elements: int = 2**34  # per sample, any activation
    max_weight_elements: int = 2**32  # any single op's parameters
    max_file_bytes: int = 65_536  # spec source size: parsing costs ~6-8 us a byte, so ~0.5 s


class LimitProblem(Problem):
    """A limit crossed while elaborating: reported once, and elaboration stops."""


class _Full(Exception):
    """The diagnostic cap is reached: the spec fails anyway, so elaboration stops."""
