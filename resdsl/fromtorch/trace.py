"""Tracing: each module's ``forward`` as a graph over its direct children, with values.

A module is traced by ``torch.fx`` one level deep (every submodule a leaf), so its graph
speaks of its own children, which is where a spec's statements and names come from.
One eval-mode run of the whole model with forward pre-hooks records every module's
first input; re-running each traced graph on that input records every node's value
(a tensor's per-sample shape, or a plain value such as a size), so a recogniser sees
``x.reshape(n, c, h * w)`` with numbers rather than proxies.
"""

from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import torch
from torch import fx, nn

from ..ops import REGISTRY
from .source import resolve


class TraceFailure(Exception):
    """``module`` could not be traced (data-dependent control flow, an unsupported call)."""

    def __init__(self, path: str, module: nn.Module, reason: str):
        super().__init__(reason)
        self.path, self.module, self.reason = path, module, reason


@dataclass(frozen=True)
class Value:
    """What a node produced: a tensor (``shape`` per sample, ``batched``) or a plain value."""

    shape: tuple[int, ...] | None = None
    batched: bool = True
    dtype: str = ""
    plain: Any = None

    @property
    def tensor(self) -> bool:
        return self.shape is not None


@dataclass
class Traced:
    """One module instance's forward as an fx graph, each node's value recorded."""

    path: str
    module: nn.Module
    graph: fx.Graph
    values: dict[fx.Node, Value] = field(default_factory=dict)


@lru_cache(maxsize=1)
def wrapped_functions() -> tuple[Callable, ...]:
    """Plain Python functions the catalogue recognises (ShuffleNet's ``channel_shuffle``):
    traced as one call each instead of through their bodies."""
    found = []
    for op in REGISTRY.values():
        for name in (part for chain in op.torch_calls for part in chain.split("+")):
            plain = "." in name and not name.startswith(("Tensor.", "torch.", "_operator."))
            target = resolve(name) if plain else None
            if inspect.isfunction(target):
                found.append(target)
    return tuple(found)


class _OneLevel(fx.Tracer):
    def __init__(self, root: nn.Module):
        super().__init__(autowrap_functions=wrapped_functions())
        self._root = root

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return module is not self._root


@dataclass
class Called:
    """One module call seen by hooks: its tensor input and output, and the calls of its
    direct children in order (what a module fx cannot trace is rebuilt from)."""

    module: nn.Module
    input: Any
    output: Any = None
    children: list["Called"] = field(default_factory=list)


@dataclass
class Recording:
    """Each module's arguments at its first call, and that call as hooks saw it."""

    inputs: dict[nn.Module, tuple]
    calls: dict[nn.Module, Called]


class TooLarge(Exception):
    """The tensors kept for tracing outgrew the memory allowed (``record_inputs``' budget)."""


def record_inputs(model: nn.Module, example: torch.Tensor, budget: int | None = None) -> Recording:
    """One eval-mode forward of ``example``, each module's first call recorded.

    Every module's input and output is kept, so the forward holds all its activations at
    once: past ``budget`` bytes of them (None: no bound) it stops with :class:`TooLarge`."""
    inputs: dict[nn.Module, tuple] = {}
    calls: dict[nn.Module, Called] = {}
    stack: list[Called] = []
    handles = []
    kept: dict[int, int] = {}  # storage address -> bytes: a tensor passed on is counted once
    total = [0]  # their sum

    def before(module: nn.Module, args: tuple, kwargs: dict) -> None:
        # a list argument is copied: DenseNet appends to it after the call
        inputs.setdefault(module, (tuple(list(a) if isinstance(a, list) else a for a in args), kwargs))
        count(*args, *kwargs.values())
        call = Called(module, args[0] if args else None)
        if stack:
            stack[-1].children.append(call)
        calls.setdefault(module, call)
        stack.append(call)

    def after(module: nn.Module, args: tuple, output: Any) -> None:
        stack.pop().output = output  # the tensors stay referenced: their ids are not reused
        count(output)

    def count(*values: Any) -> None:
        if budget is None:
            return
        for value in values:
            for tensor in (value if isinstance(value, (list, tuple)) else [value]):
                if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in kept:
                    kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
                    total[0] += tensor.untyped_storage().nbytes()
        if total[0] > budget:
            raise TooLarge(total[0])

    for module in model.modules():
        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return Recording(inputs, calls)


def _summary(value: Any) -> Value:
    if isinstance(value, torch.Tensor):
        return Value(tuple(value.shape[1:]), True, str(value.dtype).removeprefix("torch."))
    if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
        # several results (x.chunk(2, 1); attention's (output, None)): each summarised
        return Value(plain=tuple(_summary(v) for v in value))
    if isinstance(value, torch.Size):
        return Value(plain=tuple(value))
    return Value(plain=value)


class _Recorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule, values: dict[fx.Node, Value]):
        super().__init__(module)
        self._values = values

    def run_node(self, node: fx.Node) -> Any:
        result = super().run_node(node)
        self._values[node] = _summary(result)
        return result


def trace(path: str, module: nn.Module, args: tuple, kwargs: dict) -> Traced:
    """``module``'s forward, one level deep, with the value of every node for ``args``."""
    concrete, flat = None, args
    if len(args) == 1 and isinstance(args[0], (list, tuple)) and args[0] and not kwargs:
        # a list of tensors (DenseNet's layers): one placeholder per tensor
        first = next(iter(inspect.signature(module.forward).parameters))
        concrete, flat = {first: [fx.PH] * len(args[0])}, tuple(args[0])
    try:
        graph = _OneLevel(module).trace(module, concrete_args=concrete)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, NotImplementedError)
        raise TraceFailure(path, module, _first_line(exc)) from None
    traced = Traced(path, module, graph)
    gm = fx.GraphModule(module, graph)
    with torch.no_grad():
        try:
            _Recorder(gm, traced.values).run(*flat, **kwargs)
        except Exception as exc:
            raise TraceFailure(path, module, f"re-running its traced forward failed: {_first_line(exc)}") from None
    return traced


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def call_name(node: fx.Node) -> str:
    """``torch.flatten``, ``Tensor.permute``, ``_operator.add``: how the catalogue names a call."""
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    if target is getattr:
        return "builtins.getattr"
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    if module.startswith("torch") and hasattr(torch, name) and getattr(torch, name) is target:
        return f"torch.{name}"
    if module == "torch.nn.functional" or getattr(torch.nn.functional, name, None) is target:
        return f"torch.nn.functional.{name}"
    if getattr(operator, name, None) is target:
        return f"_operator.{name}"
    return f"{module}.{name}"


def forward_line(module: nn.Module) -> str:
    """Where ``module``'s ``forward`` is defined: ``file.py:LINE``, for error messages."""
    try:
        forward = type(module).forward
        source = inspect.getsourcefile(forward) or "?"
        return f"{source}:{inspect.getsourcelines(forward)[1]}"
    except (TypeError, OSError):
        return "(source not available)"
