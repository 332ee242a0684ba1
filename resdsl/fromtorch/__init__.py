"""From PyTorch to a spec: ``resdsl.from_torch(module, input_shape)``, ``resdsl from-torch``.

The module is traced one level at a time (``torch.fx``), each node recognised through the
op catalogue, residual adds and long skips found in the data flow, instances of one class
grouped into parameterised blocks and runs of them into stages; the spec is written with
the module's own names, so the source's state dict loads strictly into the built spec.
Then the spec is checked the way a user would: built, the source's weights loaded
strictly, outputs compared.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError, UsageError
from .convert import convert
from .verify import Verdict, verify

__all__ = ["FromTorch", "from_torch"]


@dataclass(frozen=True)
class FromTorch:
    """The spec written for a module, and how it compares with the module.

    ``text``: the spec; ``verdict``: keys, strict load and outputs (None if not verified).
    """

    text: str
    verdict: Verdict | None

    @property
    def exact(self) -> bool:
        return self.verdict is not None and self.verdict.exact


def from_torch(module: Any, input_shape: tuple[int, ...], *, name: str | None = None,
               check: bool = True, source: str = "") -> FromTorch:
    """Write ``module`` (an ``nn.Module``) as a spec, for inputs of per-sample ``input_shape``.

    Raises :class:`resdsl.SpecError` naming the module path, its type and where its
    ``forward`` is, for a module the language cannot express.

    >>> import torchvision
    >>> result = from_torch(torchvision.models.resnet18(), (3, 64, 64))
    >>> result.exact, result.text.count("stage basic_block")
    (True, 4)
    """
    from ..editor.fmt import format_text

    if name is not None and (not name.isidentifier() or not name.isascii() or keyword.iskeyword(name)):
        # it is written as `network NAME:`: anything else makes a spec that does not parse
        raise UsageError(f"the network's name must be an ASCII identifier, not a Python keyword; got {name!r:.80}")
    text = convert(module, tuple(input_shape), name=name or _name_of(module), source=source)
    try:
        text = format_text(text)
    except SpecError:
        pass  # a spec that does not parse: the check below says so, with the text as written
    verdict = verify(text, module, tuple(input_shape)) if check else None
    return FromTorch(text, verdict)


def _name_of(module: Any) -> str:
    from .blocks import snake

    return snake(type(module).__name__)
