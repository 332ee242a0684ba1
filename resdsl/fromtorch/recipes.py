"""Which catalogue op a torch module is, read from the catalogue's own ``code``.

Every op with a module describes its torch constructor once, in ``code(c)``. Run with a
:class:`_Probe` for ``c``, that description becomes a *recipe*: the class it calls and,
for each constructor argument, the op argument it came from. A module is then matched by
its class, its constructor arguments are read back from its attributes into op
arguments, and the guess is verified by building the op and comparing the two modules
(their ``extra_repr`` and state shapes). Nothing here lists ops by name: a new catalogue
entry is recognised as soon as it is registered.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

import torch
from torch import nn

from ..ops import REGISTRY, OpError, OpSpec, bind
from ..ops import torch_layers
from ..ops.base import OMIT, TorchArgs, TorchCall
from .source import resolve

_PROBE_SIZE = 8  # the spatial size a probe pretends its input has


@dataclass(frozen=True)
class _Ref:
    """An op argument, as ``code`` passed it on: ``name`` (or the input's width)."""

    name: str


_WIDTH = _Ref("<width>")  # c.channels() / c.features(): read from the input, not an argument


@dataclass(frozen=True)
class Recipe:
    """How ``op`` (with ``fixed`` arguments, e.g. an enum's choice) makes a module of ``cls``."""

    op: OpSpec
    rank: int
    fixed: tuple[tuple[str, Any], ...]
    cls: type
    bound: tuple[tuple[str, Any], ...]  # constructor argument -> _Ref | literal


class _ArgView(dict):
    """``c.args`` of a probe: the fixed choices, and a :class:`_Ref` for anything else."""

    def __missing__(self, key: str) -> Any:
        return _Ref(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


class _Probe(TorchArgs):
    def __init__(self, rank: int, fixed: dict[str, Any]):
        self.in_shape = (_PROBE_SIZE,) * (rank + 1)
        self.args = _ArgView(fixed)

    def arg(self, name: str) -> Any:
        return self.args[name]

    def value(self, name: str) -> Any:
        return self.args[name]

    def channels(self) -> Any:
        return _WIDTH

    def features(self) -> Any:
        return _WIDTH

    def lit(self, value: Any) -> Any:
        return value

    def kw(self, name: str, torch_default: Any) -> Any:
        return self.args[name]

    def call(self, callee: str, *positional: Any, **keywords: Any) -> tuple:
        owner, _, attr = callee.rpartition(".")
        cls = getattr(nn if owner == "nn" else torch_layers, attr)
        return cls, positional, {k: v for k, v in keywords.items() if v is not OMIT}


def _choices(op: OpSpec) -> Iterator[dict[str, Any]]:
    """Every combination of the op's word-valued arguments (enums, ``pad=same``)."""
    options = [[(spec.name, choice) for choice in spec.choices] + ([] if spec.kind == "enum" else [None])
               for spec in op.args if spec.choices]
    for combo in itertools.product(*options):
        yield {name: value for item in combo if item is not None for name, value in [item]}


def _recipes_of(op: OpSpec) -> Iterator[Recipe]:
    for rank, fixed in itertools.product(range(4), list(_choices(op))):
        try:
            cls, positional, keywords = op.code(_Probe(rank, fixed))
        except (TypeError, KeyError, AttributeError, IndexError, ValueError, OpError):
            continue  # this rank or choice is not one the op's code handles
        if not isinstance(cls, type):
            continue
        try:
            params = list(inspect.signature(cls.__init__).parameters)[1:]
        except (TypeError, ValueError):
            continue
        bound = dict(zip(params, positional))
        bound.update(keywords)
        yield Recipe(op, rank, tuple(sorted(fixed.items())), cls, tuple(bound.items()))


@lru_cache(maxsize=1)
def _by_class() -> dict[type, list[Recipe]]:
    table: dict[type, list[Recipe]] = {}
    for op in REGISTRY.values():
        if op.code is None or op.internal:
            continue
        aliases = [cls for cls in map(resolve, op.torch_aliases) if cls is not None]
        if op.from_module is not None:  # read by the entry itself, at any rank
            for cls in aliases:
                table.setdefault(cls, []).extend(Recipe(op, rank, (), cls, ()) for rank in range(4))
            continue
        for recipe in _recipes_of(op):
            for cls in [recipe.cls, *aliases]:
                entries = table.setdefault(cls, [])
                if recipe not in entries:
                    entries.append(Recipe(op, recipe.rank, recipe.fixed, cls, recipe.bound)
                                   if cls is not recipe.cls else recipe)
    return table


def _read(module: nn.Module, attribute: str) -> Any:
    """The module's value of a constructor argument: a bias Parameter is ``bias=True``."""
    value = getattr(module, attribute)
    if isinstance(value, nn.Parameter) or (value is None and attribute == "bias"):
        return value is not None
    return value


def _as_arg(value: Any) -> Any:
    """A torch attribute value as an op argument value (tuples of ints, plain numbers)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_arg(v) for v in value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**31:
        return value  # the argument's kind decides (an int factor is written as an int)
    return value


def coerce_args(op: OpSpec, args: dict[str, Any]) -> dict[str, Any]:
    """Values to the kinds the op's arguments take (a float 2.0 factor -> 2)."""
    out = {}
    for name, value in args.items():
        spec = op.arg(name)
        if spec is not None and spec.kind in ("int", "size") and isinstance(value, float) and value.is_integer():
            value = int(value)
        if spec is not None and spec.kind == "tuple" and isinstance(value, tuple) and len(set(value)) == 1:
            value = value[0] if isinstance(value[0], int) else value
        out[name] = value
    return out


_IGNORED = {"inplace", "training"}  # in place is the code generator's choice per use


def _plain(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool, tuple, list)) or value is None


def _equal(a: Any, b: Any) -> bool:
    """Equal constructor values, a size ``3`` being ``(3, 3)`` as torch takes it."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (tuple, list)):
        return all(_equal(x, b) for x in a)
    if isinstance(b, (tuple, list)):
        return all(_equal(a, y) for y in b)
    return a == b and type(a) is type(b) if isinstance(a, bool) or isinstance(b, bool) else a == b


def _same(ours: nn.Module, theirs: nn.Module) -> bool:
    """The same configuration (plain attributes) and the same state shapes."""
    def settings(module: nn.Module) -> dict[str, Any]:
        return {k: v for k, v in vars(module).items()
                if not k.startswith("_") and k not in _IGNORED and _plain(v)}

    mine, others = settings(ours), settings(theirs)
    if mine.keys() != others.keys() or not all(_equal(mine[k], others[k]) for k in mine):
        return False
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    return shapes == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


@dataclass(frozen=True)
class Match:
    """A module recognised as ``op`` with ``args`` (as a spec would write them)."""

    op: OpSpec
    args: dict[str, Any]


def _recipes_for(cls: type) -> list[Recipe]:
    """The recipes of ``cls``, or of the nearest base class whose ``forward`` it keeps (a
    ``Conv3d`` subclass that only changes ``__init__``, as torchvision's ``Conv3DSimple``)."""
    table = _by_class()
    for base in cls.__mro__:
        if base in table and (base is cls or getattr(cls, "forward", None) is getattr(base, "forward", None)):
            return table[base]
    return []


def _plain_call(call: TorchCall | None) -> bool:
    """``module(x)``: one tensor, nothing else, the whole result."""
    return call is None or (len(call.inputs) == 1 and not call.args and not call.kwargs and call.index is None)


def _call_args(op: OpSpec, call: TorchCall | None) -> dict[str, Any] | None:
    """The arguments a call of the module sets ({} for ``module(x)``), or None when the op
    is not called that way (an op with ``call`` is read by its ``from_module_call``)."""
    if op.call is None:
        return {} if _plain_call(call) else None
    if op.from_module_call is None or call is None:
        return None
    return op.from_module_call(call)


def recognise_module(module: nn.Module, in_shape: tuple[int, ...], call: TorchCall | None = None) -> Match | None:
    """The catalogue op that ``module`` is for an input of per-sample ``in_shape``, or None.
    ``call``: how ``forward`` calls it, when not ``module(x)`` (nn.MultiheadAttention's
    ``m(x, x, x, need_weights=False)[0]``).

    >>> import torch
    >>> match = recognise_module(torch.nn.Conv2d(3, 8, 3, stride=2, bias=False), (3, 32, 32))
    >>> match.op.name, match.args["out_channels"], match.args["stride"], match.args["bias"]
    ('conv', 8, 2, False)
    """
    rank = len(in_shape) - 1
    for recipe in _recipes_for(type(module)):
        if recipe.rank != rank:
            continue
        called = _call_args(recipe.op, call)
        if called is None:
            continue
        args = dict(recipe.fixed)
        if recipe.op.from_module is not None:
            found = recipe.op.from_module(module)
            if found is not None and _verified(recipe.op, module, in_shape, {**found, **called}):
                return Match(recipe.op, {**found, **called})
            continue
        try:
            for attribute, source in recipe.bound:
                if isinstance(source, _Ref) and source is not _WIDTH and source.name not in args:
                    args[source.name] = _as_arg(_read(module, attribute))
        except AttributeError:
            continue
        args = coerce_args(recipe.op, {**args, **called})
        if _verified(recipe.op, module, in_shape, args):
            return Match(recipe.op, args)
    return None


def bind_args(op: OpSpec, args: dict[str, Any], in_shape: tuple[int, ...]) -> dict[str, Any]:
    """The op's arguments with defaults, checked as a spec's would be (OpError if not)."""
    keywords = dict(args)
    positional: list[Any] = []
    if op.positional and op.positional[-1].variadic:
        positional = list(keywords.pop(op.positional[-1].name, ()))
    return bind(op, positional, keywords, {}, in_shape)


def _verified(op: OpSpec, module: nn.Module, in_shape: tuple[int, ...], args: dict[str, Any]) -> bool:
    try:
        bound = bind_args(op, args, in_shape)
        op.infer(in_shape, bound)
        with torch.device("meta"):
            built = op.build(in_shape, bound)
    except (OpError, TypeError, ValueError, KeyError):
        return False
    if op.from_module is not None and type(built) is not type(module):
        # another class (torchvision's ShiftedWindowAttention for resdsl's): its attributes
        # are named otherwise and were read by ``from_module``; the state must be the same,
        # key for key, in order
        return _state(built) == _state(module)
    return _same(built, module)


def _state(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in module.state_dict().items()]
