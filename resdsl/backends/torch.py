"""Graph -> ``torch.nn.Module``.

Every container of the graph (the network, each block instance, stage, labelled
residual and shortcut path) becomes a :class:`SpecModule`; every op becomes the
submodule its catalogue entry builds, registered under its scope's name. So the
state-dict keys are the spec's labels: ``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``, exactly as torchvision names them.

Each container's ``forward`` runs a precomputed straight list of steps and drops
every intermediate tensor after its last use.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import Diagnostic, Span, SpecError
from ..graph import containers, residual_units
from ..ops import REGISTRY

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Net


class SpecModule(nn.Module):
    """A container: its submodules and the straight-line program that wires them."""

    def __init__(self, kind: str, block: str | None = None):
        super().__init__()
        self.kind = kind
        self.block = block
        self._input = -1
        self._output = -1
        # (submodule name, input node ids, output node id, node ids dead after this step)
        self._program: list[tuple[str, tuple[int, ...], int, tuple[int, ...]]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self._input: x}
        modules = self._modules
        for name, inputs, output, dead in self._program:
            env[output] = modules[name](*[env[i] for i in inputs])
            for node in dead:
                del env[node]
        return env[self._output]

    def __getitem__(self, index: int | str) -> nn.Module:
        """Stages and shortcut paths index like ``nn.Sequential``: ``model.layer1[0]``."""
        if isinstance(index, str):
            return self._modules[index]
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def extra_repr(self) -> str:
        return self.block or ""


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _local(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _child_of(container: str, path: str) -> str | None:
    """The direct child of ``container`` that contains ``path`` (None if it is ``container``)."""
    if path == container:
        return None
    rest = path[len(container) + 1:] if container else path
    head = rest.split(".", 1)[0]
    return f"{container}.{head}" if container else head


def _program(graph, path: str, box) -> list[tuple[str, tuple[int, ...], int, tuple[int, ...]]]:
    steps: list[tuple[str, tuple[int, ...], int]] = []
    entered: set[str] = set()
    boxes = containers(graph)
    for node, data in graph.nodes(data=True):
        if data["module"] is None:
            continue
        where = data["container"]
        if where == path:
            steps.append((_local(data["module"]), tuple(data["inputs"]), node))
            continue
        if not (path == "" or where.startswith(path + ".")):
            continue
        child = _child_of(path, where)
        if child not in entered:
            entered.add(child)
            child_box = boxes[child]
            steps.append((_local(child), (child_box.input,), child_box.output))
    last_use: dict[int, int] = {}
    for index, (_, inputs, _) in enumerate(steps):
        for node in inputs:
            last_use[node] = index
    program = []
    for index, (name, inputs, output) in enumerate(steps):
        dead = tuple(sorted({n for n in inputs if last_use[n] == index and n != box.output}))
        program.append((name, inputs, output, dead))
    return program


def build_module(net: "Net", *, zero_init_residual: bool = False,
                 weights: str | os.PathLike | None = None, device: Any = None,
                 dtype: Any = None) -> nn.Module:
    graph = net.graph
    boxes = containers(graph)
    modules: dict[str, SpecModule] = {}

    def container_module(path: str) -> SpecModule:
        if path not in modules:
            box = boxes[path]
            module = SpecModule(box.kind, box.block)
            modules[path] = module
            if path:
                container_module(_parent(path)).add_module(_local(path), module)
        return modules[path]

    with torch.device(device) if device is not None else nullcontext():
        container_module("")
        for node, data in graph.nodes(data=True):
            if data["module"] is None:
                continue
            op = REGISTRY[data["op"]]
            owner = container_module(data["container"])
            owner.add_module(_local(data["module"]), op.build(data["in_shapes"][0], data["args"]))
    for path, module in modules.items():
        box = boxes[path]
        module._input, module._output = box.input, box.output
        module._program = _program(graph, path, box)
    root = modules[""]
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
        except (OSError, RuntimeError, ValueError) as exc:
            raise SpecError([Diagnostic(Span(str(weights)), f"cannot load weights: {exc}",
                                        hint="pass a file saved with torch.save(model.state_dict(), path)")])
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
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
    """Run ``x`` through ``model`` and record each op's output shape (batch dimension dropped)."""
    shapes: dict[int, tuple[int, ...]] = {}
    handles = []
    for node, data in net.graph.nodes(data=True):
        if data["module"] is None:
            continue
        module = model.get_submodule(data["module"])

        def hook(_module, _inputs, output, node=node):
            shapes[node] = tuple(output.shape[1:])

        handles.append(module.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return shapes
