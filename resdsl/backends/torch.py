"""Graph -> ``torch.nn.Module``, by running the generated source.

:func:`build_module` asks :mod:`resdsl.backends.codegen` for the network's
standalone PyTorch source, compiles it (registered with :mod:`linecache`, so
tracebacks show the generated lines) and instantiates the network class. So the
in-memory module and the file ``resdsl compile -o model.py`` writes are the same
program. Submodule names are the spec's labels: ``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``, exactly as torchvision names them.
"""

from __future__ import annotations

import logging
import os
import stat
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence

import networkx as nx
import torch
from torch import nn

from ..errors import Diagnostic, Span, SpecError, UsageError
from ..graph import containers, op_node, op_nodes, residual_units
from ..ops import REGISTRY
from ..ops.base import batch_of
from ..shapes import format_shape
from . import weights as weights_mod
from .weights import format_bytes as _bytes

if TYPE_CHECKING:  # pragma: no cover
    from .codegen import Source


class Net(Protocol):
    """What this back end reads of a checked network (:class:`resdsl.api.Net` has it)."""

    graph: nx.DiGraph
    filename: str
    inputs: tuple[str, ...]

    def source(self) -> "Source":
        """The generated source, made once per net."""

#: A checkpoint may hold this many times the bytes the spec's state dict needs (float64
#: weights for a float32 model, optimizer state beside the weights), plus WEIGHTS_SLACK.
WEIGHTS_FACTOR = 4
WEIGHTS_SLACK = 1 << 20


_log = logging.getLogger("resdsl.weights")


class BatchTooLarge(UsageError, ValueError):
    """The spec fits in memory for one sample, but not for the requested batch (CLI exit 2)."""


def source_of(net: "Net") -> "Source":
    """The generated source of ``net`` (the net makes it once and keeps it)."""
    return net.source()


def build_module(net: "Net", *, zero_init_residual: bool = False,
                 weights: str | os.PathLike | dict | None = None, device: Any = None,
                 dtype: Any = None, weights_map: "str | os.PathLike | Mapping[str, str] | None" = None,
                 weights_by_order: bool = False, inference: bool = False,
                 runtime: str = "auto") -> nn.Module:
    """Instantiate the generated network class; see :meth:`resdsl.api.Net.build`."""
    if inference:
        from .fold import build_inference

        return build_inference(net, zero_init_residual=zero_init_residual, weights=weights,
                               device=device, dtype=dtype, weights_map=weights_map,
                               weights_by_order=weights_by_order, runtime=runtime)
    check_memory(net, 0, dtype=dtype, device=device)
    network_class = source_of(net).module_class()
    with torch.device(device) if device is not None else nullcontext():
        root = network_class()
    if zero_init_residual:
        zero_residual_norms(root, net)
    if dtype is not None:
        root.to(dtype=dtype)
    if weights is not None:
        for note in load_weights(root, net, weights, weights_map=weights_map, by_order=weights_by_order):
            _log.info("%s", note)
    elif weights_map is not None or weights_by_order:
        raise TypeError("weights_map and weights_by_order go with weights=")
    return root


# ---- memory: refuse what cannot fit before allocating it ----------------------------------
def available_memory(device: Any = None) -> int | None:
    """Bytes this process can still allocate on ``device`` (None: unknown, no check).

    CPU: the smaller of /proc/meminfo's MemAvailable (else the free physical pages)
    and the room left under a cgroup memory limit. CUDA: torch's free device memory.
    """
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        try:
            return torch.cuda.mem_get_info(torch.device(device))[0]
        except (RuntimeError, AssertionError, ValueError):  # pragma: no cover - no usable device
            return None
    if kind != "cpu":
        return None
    found = [_meminfo_available(), _cgroup_room()]
    known = [value for value in found if value is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return None


def _cgroup_room() -> int | None:
    """Room under this process's cgroup memory limit (v2, else v1), if there is one."""
    pairs = [("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")]
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("0::"):
                    base = "/sys/fs/cgroup" + line[3:].strip().rstrip("/")
                    pairs.insert(0, (base + "/memory.max", base + "/memory.current"))
    except OSError:
        pass
    for limit_file, usage_file in pairs:
        try:
            with open(limit_file, encoding="ascii") as a, open(usage_file, encoding="ascii") as b:
                limit, usage = a.read().strip(), b.read().strip()
            if limit.isdigit() and usage.isdigit() and int(limit) < 1 << 60:
                return max(0, int(limit) - int(usage))
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class MemoryNeed:
    """What building and running a net needs, in bytes, and the ops that need the most."""

    weights: int  # every parameter, at the build's element sizes
    weights_node: int | None  # the op with the most parameters
    activations: int  # per sample (see activation_elements)
    activations_node: int  # the op whose tensors make up the activation figure

    def total(self, batch: int) -> int:
        return self.weights + batch * self.activations


def _element_size(dtype: Any) -> int:
    return torch.empty((), dtype=dtype).element_size()


def activation_elements(net: "Net", training: bool = False) -> tuple[int, int]:
    """(elements per sample, node) that a forward pass holds at once, at least.

    Inference: the largest of (an op's output + its input), since both are alive while
    the op runs (an op that may run in place counts its output once), and the input
    batch itself. Training (autograd keeps what backward needs; the probes copy the
    tensors they observe): the sum of every op's output, an estimate of the same order.
    """
    graph = net.graph
    first = graph.graph["input"]
    best, node_of_best, total = 0, first, 0
    for data in op_nodes(graph):
        node = data.id
        size = _elements(data.shape)
        total += size
        held = size
        if not REGISTRY[data.op].in_place and data.in_shapes:
            held += _elements(data.in_shapes[0])
        if held > best:
            best, node_of_best = held, node
    return (total, node_of_best) if training else (best, node_of_best)


def _elements(shape: Any) -> int:
    count = 1
    for size in shape or ():
        count *= size
    return count if shape is not None else 0


def memory_need(net: "Net", *, dtype: Any = None, training: bool = False) -> MemoryNeed:
    """The bytes a build (and a batch) of ``net`` needs; see :func:`check_memory`."""
    default = _element_size(torch.get_default_dtype())
    # Modules are made in the default dtype, then converted: both copies exist at once.
    per_param = default + (_element_size(dtype) if dtype is not None and dtype != torch.get_default_dtype()
                           else 0)
    act_size = _element_size(dtype) if dtype is not None else default
    weights_node, most = None, -1
    total = 0
    for data in op_nodes(net.graph):
        node = data.id
        total += data.params
        if data.params > most:
            weights_node, most = node, data.params
    elements, node = activation_elements(net, training)
    return MemoryNeed(total * per_param, weights_node, elements * act_size, node)


def check_memory(net: "Net", batch: int, *, dtype: Any = None, device: Any = None,
                 training: bool = False) -> None:
    """Refuse, before allocating, a build (``batch=0``) or a batch that cannot fit.

    The weights and one sample's activations must fit in the available memory, else a
    SpecError located at the op that needs the most; then the weights and ``batch``
    samples must fit, else :class:`BatchTooLarge` (the CLI's usage error). A meta
    device allocates nothing and is not checked.
    """
    if device is not None and torch.device(device).type == "meta":
        return
    room = available_memory(device)
    if room is None:
        return
    need = memory_need(net, dtype=dtype, training=training)
    one = need.total(min(batch, 1))
    if one > room:
        weights_first = batch == 0 or need.weights >= need.activations
        node = need.weights_node if weights_first and need.weights_node is not None else need.activations_node
        data = op_node(net.graph, node)
        what = (f"{data.params:,} parameters" if weights_first else
                f"its tensors of {format_shape(data.shape)} per sample")
        span = data.span
        raise SpecError([Diagnostic(
            span, f"the network needs {_bytes(one)} of memory ({_bytes(need.weights)} of weights"
            + (f", {_bytes(need.activations)} of activations per sample" if batch else "")
            + f"), more than the {_bytes(room)} available; the largest part is {data.op} with {what}",
            source_line=_source_line(net, span), hint="use smaller sizes, or build on device='meta' to "
            "inspect the module without allocating it")])
    if batch > 1 and need.total(batch) > room:
        fits = max(1, (room - need.weights) // max(1, need.activations))
        raise BatchTooLarge(f"--batch {batch:,}: {_bytes(need.total(batch))} of weights and activations, "
                            f"more than the {_bytes(room)} available (about {fits:,} samples fit)")


def zero_residual_norms(model: nn.Module, net: "Net") -> int:
    """Zero the weight of the last batchnorm in every residual body; returns how many."""
    count = 0
    with torch.no_grad():
        for unit in residual_units(net.graph):
            if unit.last_norm is None or unit.shortcut == "none":
                continue
            norm = model.get_submodule(op_node(net.graph, unit.last_norm).module)
            norm.weight.zero_()
            count += 1
    return count


def load_weights(model: nn.Module, net: "Net", weights: str | os.PathLike | dict, *,
                 weights_map: "str | os.PathLike | Mapping[str, str] | None" = None,
                 by_order: bool = False) -> list[str]:
    """Load a checkpoint strictly into ``model``; returns notes saying what was done
    (a wrapper unwrapped, keys renamed, float tensors cast).

    A difference is one SpecError whose diagnostics are grouped by module subtree and
    spec line (see :mod:`resdsl.backends.weights`). A file is opened once and checked
    before torch reads it (:func:`resdsl.backends.weights.read_checkpoint`), and may be
    at most ``WEIGHTS_FACTOR`` times the spec's state dict plus ``WEIGHTS_SLACK``.
    ``weights_map`` renames keys first (a map file, or ``{regex: replacement}`` rules in
    order); ``by_order`` then takes the checkpoint's tensors by position.
    """
    expected = weights_mod.expected_of(model)
    if isinstance(weights, dict):
        checkpoint = weights_mod.unwrap(weights, Span(net.filename))
    else:
        need = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        checkpoint = weights_mod.read_checkpoint(weights, WEIGHTS_FACTOR * need + WEIGHTS_SLACK, available_memory())
    matched = weights_mod.match(net, expected, checkpoint, weights_mod.rules_of(weights_map), by_order)
    if matched.diagnostics:
        raise SpecError(matched.diagnostics)
    try:
        model.load_state_dict(matched.state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:  # a tensor torch cannot copy from
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
        raise weights_mod.weights_error(checkpoint.where, f"cannot load weights: {reason}") from None
    return matched.notes


def diff_weights(net: "Net", checkpoint: str | os.PathLike, *,
                 weights_map: "str | os.PathLike | Mapping[str, str] | None" = None,
                 by_order: bool = False) -> "weights_mod.Matched":
    """Match a checkpoint file against the spec's keys and shapes without allocating the
    model (it is built on the meta device) or running it: ``resdsl weights-diff``."""
    model = build_module(net, device="meta")
    expected = weights_mod.expected_of(model)
    default = _element_size(torch.get_default_dtype())
    need = sum(_elements(shape) for shape, _ in expected.values()) * default
    loaded = weights_mod.read_checkpoint(checkpoint, WEIGHTS_FACTOR * need + WEIGHTS_SLACK, available_memory())
    return weights_mod.match(net, expected, loaded, weights_mod.rules_of(weights_map), by_order)


def _source_line(net: "Net", span: Span) -> str | None:
    """The spec line of ``span``, read only from a file the net was loaded from (a net
    made by ``loads`` has none: a file of the same name in the working directory is
    not its source)."""
    try:
        if str(os.path.realpath(span.file)) not in net.inputs:
            return None
        fd = os.open(span.file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a FIFO since it was read
            os.close(fd)
            return None
        with open(fd, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if number == span.line:
                    return line[:1000]
                if number > span.line:
                    break
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None


def owner_module(model: nn.Module, graph: nx.DiGraph, node: int) -> nn.Module | None:
    """The submodule whose ``forward`` returns the node's tensor: the op's own module,
    or the container (block, stage) that ends with it. None where the generated
    ``forward`` computes it inline (``out += x``, ``torch.cat``)."""
    modules = dict(model.named_modules())
    if op_node(graph, node).module in modules:
        return modules[op_node(graph, node).module]
    return next((modules[path] for path, box in containers(graph).items()
                 if path and box.output == node and path in modules), None)


@contextmanager
def observe(model: nn.Module, graph: nx.DiGraph, nodes: Sequence[int],
            record: Callable[[int, torch.Tensor], None]) -> Iterator[set[int]]:
    """Call ``record(node, tensor)`` with each of ``nodes``' tensors during the forward
    passes run inside the block (forward hooks, removed on exit); yields the nodes
    that can be seen. The one place resdsl hooks a built module.

    A node is seen as the output of its own submodule or of the container it ends;
    a tensor the generated ``forward`` computes inline (``out += x``, ``torch.cat``)
    as the input of the submodule that consumes it, or as the model's output. An
    inline tensor consumed only inline (a zero-pad shortcut feeding its merge) and
    the graph's input (give ``x`` to it yourself) are not seen.
    """
    handles, seen = [], set()
    modules = dict(model.named_modules())
    ends = {box.output: modules[path] for path, box in containers(graph).items() if path and path in modules}

    def on_output(node: int):
        # A module called its own way (the catalogue's ``call``) may return a tuple whose
        # first element is the tensor (nn.MultiheadAttention: output, weights).
        return lambda _m, _i, output: record(node, output[0] if isinstance(output, tuple) else output)

    def on_input(node: int):
        return lambda _m, inputs: record(node, inputs[0])

    try:
        for node in sorted(set(nodes) - {graph.graph["input"]}):
            owner = modules.get(op_node(graph, node).module) or ends.get(node)
            consumer = next((modules[op_node(graph, s).module] for s in graph.successors(node)
                             if op_node(graph, s).module in modules and op_node(graph, s).inputs[0] == node),
                            None)
            if owner is not None:
                handles.append(owner.register_forward_hook(on_output(node)))
            elif consumer is not None:
                handles.append(consumer.register_forward_pre_hook(on_input(node)))
            elif node == graph.graph["output"]:
                handles.append(model.register_forward_hook(on_output(node)))
            else:
                continue
            seen.add(node)
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def observed_shapes(model: nn.Module, net: "Net", x: torch.Tensor) -> dict[int, tuple[int, ...]]:
    """Run ``x`` through ``model`` and record each op's output shape (batch dimension
    dropped), as :func:`observe` sees them."""
    shapes: dict[int, tuple[int, ...]] = {}

    def record(node: int, tensor: torch.Tensor) -> None:
        data = op_node(net.graph, node)  # an unbatched output (positions) has no batch dim to drop
        shapes[node] = tuple(tensor.shape[0 if batch_of(data.op, data.args) == "none" else 1:])

    with observe(model, net.graph, list(net.graph.nodes), record):
        model(x)
    return shapes
