"""The first diagnostic of a spec that fails, and a check that it is located and explained:
one helper for the tests of ops and specs that assert on errors."""

from __future__ import annotations

import pytest

import resdsl
from resdsl.errors import Diagnostic, SpecError


def error(text: str) -> Diagnostic:
    """The first diagnostic of ``text``, which must not compile."""
    with pytest.raises(SpecError) as info:
        resdsl.loads(text)
    return info.value.first


def located(diag: Diagnostic, line: int, column: int, *words: str) -> None:
    """``diag`` points at line:column, has a hint, and says each of ``words``."""
    assert (diag.span.line, diag.span.column) == (line, column), diag.render()
    assert diag.hint, diag.render()
    for word in words:
        assert word in diag.message + " " + diag.hint, diag.render()
