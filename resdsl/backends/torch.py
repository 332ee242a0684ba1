"""Graph -> ``torch.nn.Module``, by running the generated source.

:func:`build_module` asks :mod:`resdsl.backends.codegen` for the network's
standalone PyTorch source, compiles it (registered with :mod:`linecache`, so
tracebacks show the generated lines) and instantiates the network class. So the
in-memory module and the file ``resdsl compile -o model.py`` writes are the same
program. Submodule names are the spec's labels: ``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``, exactly as torchvision names them.
"""

from __future__ import annotations

import os
import pickle
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import Diagnostic, Span, SpecError
from ..graph import containers, residual_units

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Net
    from .codegen import Source


def source_of(net: "Net") -> "Source":
    """The generated source of ``net`` (made once per Net; a Net never changes)."""
    from .codegen import generate

    if net._source is None:
        net._source = generate(net)
    return net._source


def build_module(net: "Net", *, zero_init_residual: bool = False,
                 weights: str | os.PathLike | None = None, device: Any = None,
                 dtype: Any = None) -> nn.Module:
    """Instantiate the generated network class; see :meth:`resdsl.api.Net.build`."""
    network_class = source_of(net).module_class()
    with torch.device(device) if device is not None else nullcontext():
        root = network_class()
    if zero_init_residual:
        zero_residual_norms(root, net)
    if dtype is not None:
        root.to(dtype=dtype)
    if weights is not None:
        load_weights(root, net, weights)
    return root


def zero_residual_norms(model: nn.Module, net: "Net") -> int:
    """Zero the weight of the last batchnorm in every residual body; returns how many."""
    count = 0
    with torch.no_grad():
        for unit in residual_units(net.graph):
            if unit.last_norm is None or unit.shortcut == "none":
                continue
            norm = model.get_submodule(net.graph.nodes[unit.last_norm]["module"])
            norm.weight.zero_()
            count += 1
    return count


def _module_spans(net: "Net") -> dict[str, Span]:
    return {data["module"]: data["span"] for _, data in net.graph.nodes(data=True) if data["module"]}


def load_weights(model: nn.Module, net: "Net", weights: str | os.PathLike | dict) -> None:
    """Load a state dict strictly; a mismatch names every bad key and its spec line."""
    if isinstance(weights, dict):
        state = weights
    else:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            # torch's weights-only messages run to many lines; the first says what failed.
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SpecError([Diagnostic(Span(str(weights)), f"cannot load weights: {reason}",
                                        hint="pass a file saved with torch.save(model.state_dict(), path)")])
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise SpecError([Diagnostic(Span(str(weights)), f"cannot load weights: the file holds a "
                                        f"{type(state).__name__}, not a state dict",
                                        hint="pass a file saved with torch.save(model.state_dict(), path)")])
    expected = model.state_dict()
    spans = _module_spans(net)
    diagnostics = []

    def span_of(key: str) -> Span:
        module = key.rsplit(".", 1)[0]
        while module and module not in spans:
            module = module.rsplit(".", 1)[0] if "." in module else ""
        return spans.get(module, Span(net.filename))

    def source_line(span: Span) -> str | None:
        return _source_line(net, span)

    for key in expected:
        if key not in state:
            span = span_of(key)
            diagnostics.append(Diagnostic(span, f"weights: missing key '{key}'", source_line=source_line(span),
                                          hint="the checkpoint has no value for this statement's parameter"))
        elif tuple(state[key].shape) != tuple(expected[key].shape):
            span = span_of(key)
            diagnostics.append(Diagnostic(
                span, f"weights: '{key}' has shape {list(state[key].shape)} in the checkpoint but "
                f"{list(expected[key].shape)} in the spec", source_line=source_line(span),
                hint="the statement's arguments differ from the checkpoint's architecture"))
    for key in state:
        if key not in expected:
            diagnostics.append(Diagnostic(
                Span(str(weights) if not isinstance(weights, dict) else net.filename),
                f"weights: unexpected key '{key}' (no statement of the spec makes it)",
                hint="a statement is missing or labelled differently from the checkpoint's module"))
    if diagnostics:
        raise SpecError(diagnostics)
    model.load_state_dict(state, strict=True)


def _source_line(net: "Net", span: Span) -> str | None:
    try:
        with open(span.file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if number == span.line:
                    return line
    except OSError:
        return None
    return None


def observed_shapes(model: nn.Module, net: "Net", x: torch.Tensor) -> dict[int, tuple[int, ...]]:
    """Run ``x`` through ``model`` and record each op's output shape (batch dimension dropped).

    Ops that are submodules are observed by forward hooks. Merges that the
    generated ``forward`` writes inline (``out += identity``, ``torch.cat``) are
    observed as the input of the submodule that consumes them, as the output of
    the container they end, or as the model's output.
    """
    shapes: dict[int, tuple[int, ...]] = {}
    graph = net.graph
    modules = dict(model.named_modules())
    handles = []

    def record(node: int):
        def hook(_module, _inputs, output):
            shapes[node] = tuple(output.shape[1:])
        return hook

    def record_input(node: int):
        def hook(_module, inputs):
            shapes[node] = tuple(inputs[0].shape[1:])
        return hook

    outputs = {box.output: path for path, box in containers(graph).items() if path}
    try:
        for node, data in graph.nodes(data=True):
            if data["module"] is None:
                continue
            if data["module"] in modules:
                handles.append(modules[data["module"]].register_forward_hook(record(node)))
                continue
            consumer = next((graph.nodes[s]["module"] for s in graph.successors(node)
                             if graph.nodes[s]["module"] in modules and graph.nodes[s]["inputs"][0] == node), None)
            if consumer is not None:
                handles.append(modules[consumer].register_forward_pre_hook(record_input(node)))
            elif outputs.get(node) in modules:
                handles.append(modules[outputs[node]].register_forward_hook(record(node)))
            elif node == graph.graph["output"]:
                handles.append(model.register_forward_hook(record(node)))
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return shapes
