"""The inference build's CPU runtime: convolutions as oneDNN primitives, fused.

Eager PyTorch runs a convolution, then its activation, then a residual add, each over
the whole tensor, and re-lays-out the convolution's weight for oneDNN on every call.
:func:`accelerate` rewrites a built inference module, in place, so that on the CPU

- every convolution the catalogue marks ``onednn_conv`` runs as one oneDNN primitive
  over a weight packed once, when the module is built;
- the activation right after it (``onednn_post``: relu, relu6, silu, gelu, ...) runs
  inside that primitive as a post-op;
- a merge right after it (``onednn_binary``: ``conv(x) + identity``) is a binary post-op,
  and a relu after the merge joins it (oneDNN fuses no other activation after an add);
- a linear layer (``onednn_linear``) and the activation right after it run as one oneDNN
  primitive (its weight as it is: oneDNN's linear needs no packing).

Only pairs inside one ``forward`` are fused, where the first member's output feeds
nothing else. What runs is exactly what the portable code computes (within float
rounding): each fused convolution keeps its weight and bias as parameters, so the
state dict, its keys and their order do not change, and falls back to the portable
computation (``_conv_forward``, the add, the activation module) wherever the fast path
does not apply: another device or dtype, autograd, TorchScript, tracing, ``torch.export``,
ONNX export and ``torch.compile`` (which fuse on their own). A module whose ``forward``
torch.fx cannot trace keeps its own, unfused. The packed weights are a second copy of
the convolution weights (they live beside the parameters, never in the state dict);
``build(inference=True, runtime="portable")`` does without them.

Every decision reads the op catalogue through the checked graph's module paths, never
an op's name; oneDNN's post-op names are the catalogue's.
"""

from __future__ import annotations

import copy
import types
from dataclasses import dataclass
from typing import Any, Optional

import networkx as nx
import torch
from torch import fx, nn
from torch.nn import functional as F
from torch.multiprocessing.reductions import StorageWeakRef

from ..graph import op_nodes
from ..ops import REGISTRY
from ..ops.base import OneDNNPost


def available() -> bool:
    """Whether this torch has oneDNN's fused convolution (x86 and Arm CPU builds do)."""
    return torch.backends.mkldnn.is_available() and \
        hasattr(torch.ops.mkldnn, "_convolution_pointwise") and \
        hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")


@dataclass(frozen=True)
class Report:
    """What :func:`accelerate` did: convolutions packed, activations (after a conv or a
    linear) and adds fused, linear layers fused with their activation, and the modules with
    a conv or linear child whose ``forward`` could not be traced (kept as written: their
    convs are packed, not fused)."""

    packed: int
    activations: int
    adds: int
    linears: int
    untraced: tuple[str, ...]


class _Fused:
    """A convolution (an ``nn.Conv2d`` or ``nn.Conv3d`` whose class is swapped for a
    subclass) that may add ``other`` to its output and apply ``post`` after that."""

    def _setup(self, post: nn.Module, onednn_post: OneDNNPost | None, binary: str | None,
               in_shape: tuple[int, ...] | None) -> None:
        self.post = post  # the activation module (nn.Identity when none): the portable path's
        self.onednn_post = onednn_post
        self.binary = binary  # oneDNN's name of the merge with ``other`` (an add), or None
        # oneDNN lays a packed weight out for an input shape; a layout made for batch 1 is
        # slow at batch 8 and the other way round, so there are two: batch 1 and batch > 1
        self.sample_shape = tuple(in_shape) if in_shape is not None else None
        self._packed: dict[bool, tuple[Any, Any]] = {}

    def forward(self, input: torch.Tensor, other: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._portable(input, other)
        else:
            return self._dispatch(input, other)

    def _portable(self, input: torch.Tensor, other: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self._conv_forward(input, self.weight, self.bias)
        if other is not None:
            out = out + other
        if self.binary is None or other is not None:  # a merge's activation follows the merge
            out = self.post(out)
        return out

    @torch.jit.unused
    def _dispatch(self, input: torch.Tensor, other: Optional[torch.Tensor]) -> torch.Tensor:
        if not self._fast(input, other):
            return self._portable(input, other)
        weight = self._weight(input.shape[0] == 1)
        post = self.onednn_post if self.binary is None or other is not None else None
        scalars, algorithm = (list(post.scalars), post.algorithm) if post is not None else ([], None)
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(
                input, weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
                post.attr if post is not None else "none", scalars, algorithm)
        return torch.ops.mkldnn._convolution_pointwise.binary(
            input, other, weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            self.binary, None, post.attr if post is not None else None, scalars, algorithm)

    def _fast(self, input: torch.Tensor, other: Optional[torch.Tensor]) -> bool:
        weight = self.weight
        if not _applies(input, other, weight, self.bias) or input.dim() != weight.dim() or \
                input.shape[1] != weight.shape[1] * self.groups:
            return False
        return other is None or tuple(other.shape) == self._output_shape(input)

    def _output_shape(self, input: torch.Tensor) -> tuple[int, ...]:
        sizes = [(size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in
                 zip(input.shape[2:], self.padding, self.dilation, self.kernel_size, self.stride)]
        return (input.shape[0], self.out_channels, *sizes)

    def _weight(self, single: bool) -> torch.Tensor:
        """The weight packed for oneDNN for batch 1 (``single``) or more, packed again when
        the parameter has changed."""
        weight = self.weight
        key = _identity(weight)
        packed = self._packed.get(single)
        if packed is None or key is None or packed[0] != key:
            shape = [1 if single else 2, *self.sample_shape] if self.sample_shape else None
            with torch.no_grad():
                packed = key, torch.ops.mkldnn._reorder_convolution_weight(
                    weight.detach(), list(self.padding), list(self.stride), list(self.dilation),
                    self.groups, shape)
            if key is not None:
                self._packed[single] = packed
        return packed[1]

    def __getstate__(self) -> dict:
        # the packed weight is opaque to pickle and deepcopy: it is made again on first use
        state = super().__getstate__() if hasattr(super(), "__getstate__") else dict(self.__dict__)
        return {**state, "_packed": {}}


def _applies(input: Any, other: Any, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether oneDNN's fused primitive may run here: float32 strided CPU tensors, no
    autograd (it has no backward), and no tracer, exporter or compiler recording."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export() \
            or isinstance(input, fx.Proxy) or isinstance(other, fx.Proxy):  # fx records the portable way
        return False
    tensors = [t for t in (input, other, weight, bias) if t is not None]
    if any(t.device.type != "cpu" or t.dtype != torch.float32 or t.layout != torch.strided for t in tensors):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _identity(weight: torch.Tensor) -> tuple | None:
    """What a packed weight was made from: the weight's storage (a weak reference, which
    keeps the storage's address from being reused while it is held: ``model.half().float()``
    often gets the old address back), its view and its version (bumped by every in-place
    change); None for an inference tensor, which has no version counter but can be changed
    in place in inference mode (it is packed on every call)."""
    if weight.is_inference():
        return None
    return (StorageWeakRef(weight.untyped_storage()), weight.storage_offset(), tuple(weight.shape),
            weight.stride(), weight._version)


class FusedConv2d(_Fused, nn.Conv2d):
    """``nn.Conv2d`` run as a fused oneDNN primitive on the CPU (see the module's doc)."""


class FusedConv3d(_Fused, nn.Conv3d):
    """``nn.Conv3d`` run as a fused oneDNN primitive on the CPU (see the module's doc)."""


_FUSED = {nn.Conv2d: FusedConv2d, nn.Conv3d: FusedConv3d}


class FusedLinear(nn.Linear):
    """``nn.Linear`` with the activation after it inside one oneDNN primitive on the CPU
    (its weight is not packed: oneDNN's linear reads it as it is). Elsewhere: ``F.linear``,
    then the activation module it holds as ``post``."""

    def _setup(self, post: nn.Module, onednn_post: OneDNNPost) -> None:
        self.post = post
        self.onednn_post = onednn_post

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._portable(input)
        else:
            return self._dispatch(input)

    def _portable(self, input: torch.Tensor) -> torch.Tensor:
        return self.post(F.linear(input, self.weight, self.bias))

    @torch.jit.unused
    def _dispatch(self, input: torch.Tensor) -> torch.Tensor:
        if not _applies(input, None, self.weight, self.bias) or input.dim() == 0 or \
                input.shape[-1] != self.in_features:
            return self._portable(input)
        post = self.onednn_post
        return torch.ops.mkldnn._linear_pointwise(input, self.weight, self.bias, post.attr,
                                                  list(post.scalars), post.algorithm)


class FusedAway(nn.Identity):
    """Where an activation fused into the conv before it was: the identity, so that the
    container's own class ``forward`` (which ``torch.fx.symbolic_trace`` of the whole
    model reads) computes what its rewritten one does."""

    def __init__(self, into: str) -> None:
        super().__init__()
        self.into = into

    def extra_repr(self) -> str:
        return f"fused into {self.into}"


class _OneLevel(fx.Tracer):
    """Traces one ``forward``: every child module is one call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def accelerate(model: nn.Module, graph: nx.DiGraph) -> Report:
    """Make ``model`` (a built inference module of the checked ``graph``: an
    :func:`resdsl.backends.inference.inference_plan`'s) run its convolutions as fused
    oneDNN primitives on the CPU, in place; see the module's doc.

    >>> import resdsl, torch
    >>> net = resdsl.loads('''
    ... network n:
    ...     input x: [3, 8, 8]
    ...     conv1: conv 3x3, 4
    ...     relu
    ... ''')
    >>> model = net.build(inference=True, runtime="portable")
    >>> accelerate(model, net.inference_plan().graph)
    Report(packed=1, activations=1, adds=0, linears=0, untraced=())
    """
    if not available():
        return Report(0, 0, 0, 0, ())
    ops = {data.module: data for data in op_nodes(graph) if data.module}
    convs = {path for path, data in ops.items() if REGISTRY[data.op].onednn_conv}
    linears = {path for path, data in ops.items() if REGISTRY[data.op].onednn_linear}
    counts = {"activations": 0, "adds": 0, "linears": 0}
    untraced = []
    for path, container in _containers_of(model, convs | linears):
        try:
            traced = _OneLevel().trace(container)
        except Exception:  # data-dependent control flow: this forward stays as written
            untraced.append(path or type(container).__name__)
            continue
        if _fuse(container, traced, path, ops, convs, linears, counts):
            _install(container, traced)
    packed = 0
    for path, module in list(model.named_modules()):
        if path in convs and type(module) in _FUSED and _packable(module):
            _swap(module, nn.Identity(), None, None, ops[path])
        if isinstance(module, _Fused):
            module._weight(single=False)  # packed now for batches over 1 (batch 1: on first use)
            packed += 1
    return Report(packed, counts["activations"], counts["adds"], counts["linears"], tuple(untraced))


def _containers_of(model: nn.Module, layers: set[str]) -> list[tuple[str, nn.Module]]:
    """The modules with one of ``layers`` among their children: the forwards where a
    fusion can be."""
    found = []
    for path, module in model.named_modules():
        prefix = f"{path}." if path else ""
        if any(prefix + name in layers for name, _ in module.named_children()):
            found.append((path, module))
    return found


def _packable(conv: nn.Module) -> bool:
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str) and \
        conv.weight.device.type == "cpu" and conv.weight.dtype == torch.float32


def _swap(conv: nn.Module, post: nn.Module, onednn_post: OneDNNPost | None, binary: str | None,
          data: Any) -> None:
    conv.__class__ = _FUSED[type(conv)]
    # a copy of the (stateless) activation: a module held at two paths is found at the first
    # one only (``named_modules``), and its own path must keep naming it
    conv._setup(copy.deepcopy(post), onednn_post, binary, tuple(data.in_shapes[0]) if data.in_shapes else None)


def _fuse(container: nn.Module, traced: fx.Graph, path: str, ops: dict, convs: set[str],
          linears: set[str], counts: dict[str, int]) -> bool:
    """Fuse each conv's activation and add, and each linear's activation, in ``traced`` (the
    container's one-level graph)."""
    prefix = f"{path}." if path else ""
    calls: dict[str, int] = {}
    for node in traced.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    changed = False
    for node in list(traced.nodes):
        if node.op == "call_module" and prefix + node.target in linears and calls[node.target] == 1:
            changed |= _fuse_linear(container, traced, node, prefix, ops, calls, counts)
        if node.op != "call_module" or prefix + node.target not in convs or calls[node.target] != 1:
            continue
        conv = container.get_submodule(node.target)
        if type(conv) not in _FUSED or not _packable(conv) or len(node.users) != 1:
            continue
        merge = _binary_merge(node)
        if merge is not None:
            add, other, binary = merge
            post, attr, tail = _activation(container, add, prefix, ops, calls)
            if attr is not None and not attr.after_binary:
                post, attr, tail = None, None, add
            _swap(conv, post if post is not None else nn.Identity(), attr, binary, ops[prefix + node.target])
            _rewire(traced, node, tail, (node.args[0], other), [add] + ([tail] if tail is not add else []))
            counts["adds"] += 1
            counts["activations"] += attr is not None
            changed = True
            continue
        post, attr, tail = _activation(container, node, prefix, ops, calls)
        if attr is not None:
            _swap(conv, post, attr, None, ops[prefix + node.target])
            _take_activation(container, traced, node, tail)
            counts["activations"] += 1
            changed = True
    return changed


def _fuse_linear(container: nn.Module, traced: fx.Graph, node: fx.Node, prefix: str, ops: dict,
                 calls: dict[str, int], counts: dict[str, int]) -> bool:
    """A linear layer and the activation that is its only reader, as one primitive."""
    linear = container.get_submodule(node.target)
    if type(linear) is not nn.Linear or linear.weight.device.type != "cpu" or \
            linear.weight.dtype != torch.float32 or len(node.users) != 1:
        return False
    post, attr, tail = _activation(container, node, prefix, ops, calls)
    if attr is None:
        return False
    linear.__class__ = FusedLinear
    linear._setup(copy.deepcopy(post), attr)  # a copy: as in _swap
    _take_activation(container, traced, node, tail)
    counts["activations"] += 1
    counts["linears"] += 1
    return True


def _take_activation(container: nn.Module, traced: fx.Graph, layer: fx.Node, tail: fx.Node) -> None:
    """The activation ``tail`` now runs inside ``layer``: the graph skips it, and its place
    in the container holds a FusedAway (for the class's own ``forward``)."""
    container.set_submodule(tail.target, FusedAway(layer.target))
    _rewire(traced, layer, tail, (layer.args[0],), [tail])


def _binary_merge(conv: fx.Node) -> tuple[fx.Node, Any, str] | None:
    """``conv(x) + other`` as the conv's only reader (a merge the catalogue marks
    ``onednn_binary``), its other input and oneDNN's name for it."""
    from ..fromtorch.trace import call_name

    (user,) = conv.users
    if user.op not in ("call_function", "call_method") or len(user.args) != 2 or user.kwargs:
        return None
    name = call_name(user)
    binary = next((spec.onednn_binary for spec in REGISTRY.values()
                   if spec.onednn_binary and name in spec.torch_calls), None)
    first, second = user.args
    other = second if first is conv else first
    if binary is None or other is conv or not isinstance(other, fx.Node):
        return None
    return user, other, binary


def _activation(container: nn.Module, node: fx.Node, prefix: str, ops: dict,
                calls: dict[str, int]) -> tuple[Any, Any, fx.Node]:
    """The activation module that is ``node``'s only reader and its oneDNN post-op, with the
    node that ends the fused run; (None, None, node) where there is none."""
    if len(node.users) != 1:
        return None, None, node
    (user,) = node.users
    data = ops.get(prefix + str(user.target)) if user.op == "call_module" else None
    rule = REGISTRY[data.op].onednn_post if data is not None else None
    attr = rule(data.args) if rule is not None else None
    if attr is None or calls[user.target] != 1 or user.args != (node,) or user.kwargs:
        return None, None, node
    return container.get_submodule(user.target), attr, user


def _rewire(graph: fx.Graph, conv: fx.Node, tail: fx.Node, args: tuple, gone: list[fx.Node]) -> None:
    """``conv`` now computes what ``tail`` did, from ``args``; the nodes in ``gone`` go."""
    conv.args = args
    tail.replace_all_uses_with(conv)
    for node in reversed(gone):
        graph.erase_node(node)
    # the conv must run after ``other`` is made: move it to where the tail was
    for arg in args:
        if isinstance(arg, fx.Node) and _after(arg, conv):
            arg.append(conv)
            break


def _after(a: fx.Node, b: fx.Node) -> bool:
    """Whether node ``a`` comes after node ``b`` in their graph."""
    node = b.next
    while node.op != "root":
        if node is a:
            return True
        node = node.next
    return False


def _install(container: nn.Module, graph: fx.Graph) -> None:
    """Run ``graph`` as ``container``'s forward (bound to this instance, class unchanged)."""
    graph.lint()
    for node in graph.nodes:  # fx names annotations by aliases TorchScript cannot resolve
        node.type = None  # unannotated is Tensor to TorchScript, as the generated forward says
    program = fx.GraphModule(container, graph, class_name=type(container).__name__)
    container.forward = types.MethodType(type(program).forward, container)
