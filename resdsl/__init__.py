"""resdsl: a language and compiler for residual networks.

Write a network as a short ``.res`` (or YAML) spec; resdsl checks it completely
before any tensor exists, holds it as a networkx graph, and builds a PyTorch
module whose names and numbers match hand-written references.

>>> import resdsl
>>> net = resdsl.loads('''
... network tiny(classes: int = 10):
...     input x: [3, 32, 32]
...     conv1: conv 3x3, 16
...     residual:
...         conv2: conv 3x3, 16
...         relu
...     avgpool: adaptive_avgpool 1
...     flatten
...     fc: linear classes
... ''')
>>> net.output_shape
(10,)
>>> net.num_params
2938

New ops are catalogue entries: :func:`register_op` adds one (see docs/extending.md).
"""

from .api import Net, compile, load, loads
from .archdiff import diff
from .editor.fmt import format_text as format  # noqa: A001 - resdsl.format(text): `resdsl fmt`
from .elaborate import Limits
from .errors import Diagnostic, Span, SpecError
from .ops import register as register_op
from .ops import unregister as unregister_op


def from_torch(module, input_shape, **options):  # type: ignore[no-untyped-def]
    """Write a PyTorch module as a spec (see :func:`resdsl.fromtorch.from_torch`); torch is
    imported only when this is called, so ``import resdsl`` stays torch-free.

    >>> import torchvision, resdsl
    >>> result = resdsl.from_torch(torchvision.models.resnet18(), (3, 64, 64))
    >>> result.exact, "layer2: stage basic_block(128) x 2, stride=2" in result.text
    (True, True)
    """
    from .fromtorch import from_torch as convert

    return convert(module, input_shape, **options)


from . import zoo  # noqa: E402 - resdsl.zoo.load(name): the reference models by name

__version__ = "0.1.0"

__all__ = ["Net", "SpecError", "Diagnostic", "Span", "Limits", "load", "loads", "compile", "diff", "register_op",
           "unregister_op", "zoo", "format", "from_torch", "__version__"]
