"""The op catalogue. Importing this package registers every op; none imports torch.

Each entry (:class:`OpSpec`) holds everything resdsl knows about its op: shape rule,
arguments, parameters, MACs, receptive field, nonlinearity, diagram, torch code.
:func:`register` adds one (docs/extending.md); no pass tests an op's name.

>>> from resdsl.ops import REGISTRY
>>> REGISTRY["conv"].category
'weight'
"""

from . import activation, layers, merge, misc, norm, pool, sequence, window  # noqa: F401  (register ops)
from .base import (
    ANNOTATION, BOX, CATEGORIES, MIXER, GLOBAL, OMIT, POINTWISE, REGISTRY, REQUIRED, ArgSpec, Diagram, OpError,
    OpSpec, Shape, TorchArgs, ValueArgs, Window, bind, field_of, register, registered, signature_hint,
    unregister, user_ops,
)
from .shortcut import projection

__all__ = [
    "ANNOTATION", "BOX", "CATEGORIES", "MIXER", "GLOBAL", "OMIT", "POINTWISE", "REGISTRY", "REQUIRED", "ArgSpec",
    "Diagram", "OpError", "OpSpec", "Shape", "TorchArgs", "ValueArgs", "Window", "bind", "field_of",
    "projection", "register", "registered", "signature_hint", "unregister", "user_ops",
]
