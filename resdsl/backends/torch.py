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
import stat
import zipfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import networkx as nx
import torch
from torch import nn

from ..errors import Diagnostic, Span, SpecError, UsageError
from ..graph import containers, op_node, op_nodes, residual_units
from ..ops import REGISTRY
from ..ops.base import batch_of
from ..shapes import format_shape

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
#: Unexpected keys of a checkpoint that a weights mismatch names (the rest are counted).
MAX_DIAGNOSTICS = 1000


class BatchTooLarge(UsageError, ValueError):
    """The spec fits in memory for one sample, but not for the requested batch (CLI exit 2)."""


def source_of(net: "Net") -> "Source":
    """The generated source of ``net`` (the net makes it once and keeps it)."""
    return net.source()


def build_module(net: "Net", *, zero_init_residual: bool = False,
                 weights: str | os.PathLike | None = None, device: Any = None,
                 dtype: Any = None, inference: bool = False) -> nn.Module:
    """Instantiate the generated network class; see :meth:`resdsl.api.Net.build`."""
    if inference:
        from .fold import build_inference

        return build_inference(net, zero_init_residual=zero_init_residual, weights=weights,
                               device=device, dtype=dtype)
    check_memory(net, 0, dtype=dtype, device=device)
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


def _bytes(count: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count} bytes"


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


def _module_spans(net: "Net") -> dict[str, Span]:
    return {data.module: data.span for data in op_nodes(net.graph) if data.module}


def load_weights(model: nn.Module, net: "Net", weights: str | os.PathLike | dict) -> dict:
    """Load a state dict strictly; a mismatch names every bad key and its spec line.
    Returns the state dict loaded (the inference build folds it).

    A file is opened once and checked before torch reads it: a regular file (a FIFO
    or device would block), no larger than the spec's state dict allows (see
    ``WEIGHTS_FACTOR``), and, for torch's zip format, with every entry stored as torch
    writes it (a compressed entry inflates without bound: a zip bomb).
    """
    expected = model.state_dict()
    if isinstance(weights, dict):
        state, where = weights, Span(net.filename)
    else:
        where = Span(str(weights))
        need = sum(t.numel() * t.element_size() for t in expected.values())
        with _open_weights(weights, where) as stream:
            _check_weights_file(stream, where, WEIGHTS_FACTOR * need + WEIGHTS_SLACK)
            try:
                state = torch.load(stream, map_location="cpu", weights_only=True)
            except (OSError, RuntimeError, ValueError, EOFError, TypeError, KeyError, AttributeError,
                    pickle.UnpicklingError, zipfile.BadZipFile) as exc:
                # torch's weights-only messages run to many lines; the first says what failed.
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                raise _weights_error(where, f"cannot load weights: {reason}") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise _weights_error(where, f"cannot load weights: the file holds a "
                                 f"{type(state).__name__}, not a state dict")
    diagnostics = _weight_mismatches(net, expected, state, where)
    if diagnostics:
        raise SpecError(diagnostics)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:  # a tensor torch cannot copy from
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
        raise _weights_error(where, f"cannot load weights: {reason}") from None
    return state


def _weights_error(where: Span, message: str) -> SpecError:
    return SpecError([Diagnostic(where, message,
                                 hint="pass a file saved with torch.save(model.state_dict(), path)")])


def _open_weights(path: str | os.PathLike, where: Span) -> IO[bytes]:
    """Open once, without blocking, and check the opened file: a regular file only."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise _weights_error(where, f"cannot load weights: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _weights_error(where, "cannot load weights: not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_weights_file(stream: IO[bytes], where: Span, limit: int) -> None:
    """Refuse a file bigger than ``limit`` and a zip checkpoint with a compressed entry."""
    size = os.fstat(stream.fileno()).st_size
    if size > limit:
        raise _weights_error(where, f"cannot load weights: the file has {_bytes(size)}, more than "
                             f"the {_bytes(limit)} a checkpoint of this spec can need")
    room = available_memory()
    if room is not None and size > room:
        raise _weights_error(where, f"cannot load weights: the file has {_bytes(size)}, more than the "
                             f"{_bytes(room)} of memory available")
    if not zipfile.is_zipfile(stream):
        stream.seek(0)
        return  # a legacy (pickle) checkpoint: its size is the bound
    try:
        with zipfile.ZipFile(stream) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _weights_error(where, f"cannot load weights: not a valid checkpoint ({exc})") from None
    stored = 0
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size != entry.compress_size:
            raise _weights_error(where, f"cannot load weights: entry '{entry.filename[:80]}' is compressed "
                                 "(torch.save stores entries uncompressed; a compressed one can inflate "
                                 "without bound)")
        stored += entry.file_size
    if stored > limit:
        raise _weights_error(where, f"cannot load weights: the entries hold {_bytes(stored)}, more than "
                             f"the {_bytes(limit)} a checkpoint of this spec can need")
    stream.seek(0)


def _kind(tensor: torch.Tensor) -> str:
    if tensor.dtype == torch.bool:
        return "bool"
    if tensor.is_complex():
        return "complex"
    return "floating-point" if tensor.is_floating_point() else "integer"


def _shown_key(key: Any) -> str:
    text = key if type(key) is str else repr(key) if isinstance(key, (int, tuple)) else type(key).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _weight_mismatches(net: "Net", expected: dict, state: dict, where: Span) -> list[Diagnostic]:
    """Every missing, ill-typed, ill-shaped or unexpected key, each at its statement."""
    spans = _module_spans(net)
    diagnostics: list[Diagnostic] = []

    def span_of(key: str) -> Span:
        module = key.rsplit(".", 1)[0]
        while module and module not in spans:
            module = module.rsplit(".", 1)[0] if "." in module else ""
        return spans.get(module, Span(net.filename))

    def add(key: str, message: str, hint: str) -> None:
        span = span_of(key)
        diagnostics.append(Diagnostic(span, message, source_line=_source_line(net, span), hint=hint))

    for key, want in expected.items():  # the spec's own keys: every one is named
        if key not in state:
            add(key, f"weights: missing key '{key}'", "the checkpoint has no value for this statement's parameter")
            continue
        got = state[key]
        if not isinstance(got, torch.Tensor):
            add(key, f"weights: '{key}' is a {type(got).__name__} in the checkpoint, not a tensor",
                "every value of a state dict is a tensor")
        elif got.layout != torch.strided or got.device.type == "meta":
            add(key, f"weights: '{key}' is a {got.layout} tensor on {got.device.type} in the checkpoint, "
                "not a dense one with values", "save the model's own state_dict()")
        elif _kind(got) != _kind(want):
            add(key, f"weights: '{key}' holds {_kind(got)} values ({got.dtype}) in the checkpoint but the "
                f"spec's parameter is {_kind(want)} ({want.dtype})",
                "the checkpoint was saved from a different kind of model")
        elif tuple(got.shape) != tuple(want.shape):
            add(key, f"weights: '{key}' has shape {list(got.shape)} in the checkpoint but "
                f"{list(want.shape)} in the spec",
                "the statement's arguments differ from the checkpoint's architecture")
    unexpected = [key for key in state if key not in expected]  # the file's: shown up to a cap
    for key in unexpected[:MAX_DIAGNOSTICS]:
        diagnostics.append(Diagnostic(
            where, f"weights: unexpected key '{_shown_key(key)}' (no statement of the spec makes it)",
            hint="a statement is missing or labelled differently from the checkpoint's module"))
    if len(unexpected) > MAX_DIAGNOSTICS:
        diagnostics.append(Diagnostic(where, f"weights: {len(unexpected) - MAX_DIAGNOSTICS:,} more unexpected keys",
                                      hint="is this the checkpoint of another model?"))
    return diagnostics


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
