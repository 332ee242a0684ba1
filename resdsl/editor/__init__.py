"""Editor tooling: the formatter (``resdsl fmt``), the language server (``resdsl lsp``)
and the Pygments lexer. None of it imports torch.

>>> from resdsl.editor import format_text
>>> print(format_text("network n :\\n  input x:[4]\\n  fc : linear 2*3\\n"), end="")
network n:
    input x: [4]
    fc: linear 2 * 3
"""

from .fmt import format_text

__all__ = ["format_text"]
