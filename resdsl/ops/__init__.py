"""The op catalogue. Importing this package registers every op; none imports torch.

>>> from resdsl.ops import REGISTRY
>>> REGISTRY["conv"].category
'weight'
"""

from . import activation, layers, merge, misc, norm, pool  # noqa: F401  (register ops)
from .base import (
    OMIT, REGISTRY, REQUIRED, ArgSpec, OpError, OpSpec, Shape, TorchArgs, ValueArgs, bind, signature_hint,
    user_ops,
)

__all__ = [
    "OMIT", "REGISTRY", "REQUIRED", "ArgSpec", "OpError", "OpSpec", "Shape", "TorchArgs", "ValueArgs", "bind",
    "signature_hint", "user_ops",
]
