"""What an op is: its arguments, its shape rule, its cost and its torch module.

An op entry never imports torch at module level: its ``code`` describes the
torch constructor to whichever back end asks, and only building imports torch,
when called, so loading the catalogue (and ``resdsl check``) stays torch-free.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
import re
from typing import Any, Callable, Iterator, Mapping, Union

from ..errors import did_you_mean
from ..expr import Value, describe, type_name
from ..shapes import Shape

REQUIRED = object()


class OpError(Exception):
    """A shape or argument rule failed; ``arg`` names the argument at fault, if one is."""

    def __init__(self, message: str, hint: str | None = None, arg: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.arg = arg


@dataclass(frozen=True)
class ArgSpec:
    """One argument. ``kind`` is int | float | bool | tuple | enum | size | tie.

    ``tuple`` takes an int (a cube of the input's spatial rank) or a kernel such as
    ``3x3`` with one entry per spatial dimension, or one of ``choices`` (a word such as
    conv's ``pad=same``); ``size`` is a positive int; ``tie`` the label of an earlier layer
    of the same scope whose ``weight`` this op's weight is (``linear ..., tie=wte``).
    ``default`` is a value, :data:`REQUIRED`, or a function of the bound arguments.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    doc: str = ""
    same_as: str | None = None  # the default is this other argument (pool stride = kernel)
    # The last positional only: it takes every remaining positional value, as a tuple of
    # ``kind`` values (``permute 1, 2, 0``); errors name the element at fault (``#2``).
    variadic: bool = False


def _zero(*_: Any) -> int:
    return 0


# ---- what the analysis and the diagram read (declared by every entry) ----------------
@dataclass(frozen=True)
class Window:
    """A spatial extent: one output position reads ``kernel`` input positions per
    spatial dimension (already dilated: a 3x3 conv with dilation 2 spans 5x5), and
    adjacent output positions are ``stride / upscale`` input positions apart.

    ``stride`` may be a Fraction (adaptive pooling: ``in / out``); ``upscale`` > 1
    is upsampling (upsample, transposed conv). The analysis applies the usual
    recurrence ``rf += (kernel - 1) * jump; jump *= stride; jump /= upscale``.
    """

    kernel: tuple[int, ...]
    stride: tuple[int | Fraction, ...]
    upscale: tuple[int, ...] | None = None  # None: 1 in every dimension


class _Marker:
    """A named constant receptive field (POINTWISE, GLOBAL), compared by identity."""

    def __init__(self, name: str, doc: str):
        self.name, self.__doc__ = name, doc

    def __repr__(self) -> str:
        return self.name


#: The op mixes nothing across positions: its output position sees what its input's did.
POINTWISE = _Marker("POINTWISE", "each output position depends on the same input position only")
#: Each output position sees every input position (global pooling, flatten of a spatial map).
GLOBAL = _Marker("GLOBAL", "each output position depends on the whole input")

ReceptiveField = Union[Window, _Marker]
#: An entry's ``receptive_field``: a constant, or ``f(in_shape, out_shape, args)``.
FieldRule = Union[ReceptiveField, Callable[[Shape, Shape, dict], ReceptiveField]]


def field_of(op: "OpSpec", in_shape: Shape, out_shape: Shape, args: dict) -> ReceptiveField:
    """The op's receptive-field rule applied to one use of it."""
    rule = op.receptive_field
    field_ = rule(in_shape, out_shape, args) if callable(rule) else rule
    if isinstance(field_, Window):
        dims = len(in_shape) - 1
        if not (len(field_.kernel) == len(field_.stride) == len(field_.upscale or field_.stride) == dims):
            raise ValueError(f"op {op.name!r}: its receptive_field gave {field_} for the "
                             f"{dims}-D input {list(in_shape)}: one entry per spatial dimension")
    elif field_ is not POINTWISE and field_ is not GLOBAL:
        raise ValueError(f"op {op.name!r}: its receptive_field gave {field_!r}, "
                         "not POINTWISE, GLOBAL or a Window")
    return field_


#: How the diagram draws an op: ``kind`` picks the node's shape; ``fold`` draws the op
#: inside the node before it (``label``: its label appended, ``silent``: not shown);
#: ``on_skip``: a drawn shortcut's label names it ("1x1 conv, 512, /2"); ``fill``: a colour
#: that sets the op's box apart (attention, which mixes tokens, in a transformer's stream).
DIAGRAM_KINDS = ("input", "op", "merge")
FOLDS = ("none", "label", "silent")


@dataclass(frozen=True)
class Diagram:
    kind: str = "op"  # input | op | merge (a small circle or box)
    fold: str = "none"
    on_skip: bool = True
    fill: str = ""  # "#rrggbb": the box's fill, where the kind's default would hide what it is


#: Ops that mix the tokens of a sequence (attention): drawn tinted, apart from the
#: per-token layers around them on the residual stream.
MIXER = Diagram(fill="#fff2cc")


#: An op drawn as its own box (weights, pooling, option-A zero padding).
BOX = Diagram()
#: Folded into the box before it and not named on a skip: norms and activations.
ANNOTATION = Diagram(fold="label", on_skip=False)

#: What an op reads (``OpSpec.reads``): float tensors, token ids only, or either.
READS = ("float", "ids", "any")

CATEGORIES = ("weight", "norm", "activation", "pool", "reshape", "regularizer", "merge", "io")


@dataclass(frozen=True)
class OneDNNPost:
    """An activation as oneDNN's post-op (``OpSpec.onednn_post``): oneDNN's name for it, its
    scalars and algorithm, and whether oneDNN also fuses it after a binary post-op (an add)."""

    attr: str
    scalars: tuple[float, ...] = ()
    algorithm: str | None = None
    after_binary: bool = False


@dataclass(frozen=True, kw_only=True)
class OpSpec:
    """One op: everything resdsl knows about it (see docs/extending.md to add one).

    Every field without a default must be given: an op that mixes positions must
    say how in ``receptive_field``, and one that does not says ``POINTWISE``.
    """

    name: str
    positional: tuple[ArgSpec, ...]
    keywords: tuple[ArgSpec, ...]
    infer: Callable[[Shape, dict], Shape]
    category: str  # one of CATEGORIES: the op's kind in docs and reports
    doc: str
    params: Callable[[Shape, dict], int] = _zero
    macs: Callable[[Shape, Shape, dict], int] = _zero
    label: Callable[[dict, Shape, Shape], str]  # the diagram's text: "3x3 conv, 64, /2"
    # The torch module, described once for both back ends: ``code(c)`` calls
    # ``c.call("nn.Conv2d", c.channels(), c.arg("out_channels"), stride=c.kw("stride", 1))``
    # and the like; codegen's ``c`` gives Python source, :class:`ValueArgs` gives values.
    code: Callable[["TorchArgs"], Any] | None = None
    min_rank: int = 1  # input rank (with channels) the op accepts
    internal: bool = False  # made by resdsl itself, not callable from a spec (codegen inlines these)
    # Takes no input: its ``code`` makes a tensor (an nn.Parameter) that ``forward`` reads as
    # an attribute instead of calling it (``parameter``, a learnable tensor).
    source: bool = False

    # ---- ops concern: what the analysis, the diagram and elaboration read ----------
    receptive_field: FieldRule  # POINTWISE, GLOBAL, a Window, or f(in_shape, out_shape, args)
    nonlinear: bool  # an activation function: the analysis counts these on each path
    diagram: Diagram  # how render/dot.py draws it (with ``label``)
    zero_init_norm: bool = False  # zero_init_residual zeroes the weight of a body's last such norm
    # ---- code generation (resdsl/backends/codegen): how the op is written ----------------
    # A merge written inline in ``forward`` rather than as a submodule: ``merge_code(m)``
    # returns its Python expression; ``m`` gives the inputs' names and the arguments (see
    # :class:`resdsl.ops.merge.MergeCode`).
    merge_code: Callable[[Any], str] | None = None
    # An op of one input without a module (chunk, channel_shuffle): ``inline_code(m)`` returns
    # its Python expression in ``forward``, ``m`` as for ``merge_code``. It takes no
    # submodule name and no ``nn.Sequential`` position; ``code`` stays None.
    inline_code: Callable[[Any], str] | None = None
    # A module that ``forward`` does not call as ``module(x)`` (nn.MultiheadAttention takes
    # query, key and value and returns a tuple): ``call(m)`` returns the expression, from
    # ``m.module`` (``self.NAME``), ``m.inputs[0]``, ``m.args``, ``m.lit``, ``m.helper``. Such
    # an op takes no ``nn.Sequential`` position (nn.Sequential calls ``module(x)``).
    call: Callable[[Any], str] | None = None
    # An op that reorders the per-sample dims (permute): ``moves_dims(in_shape, args)[i]`` is
    # the input dim that output dim i is; the analysis follows spatial dims through it.
    moves_dims: Callable[[Shape, dict], tuple[int, ...]] | None = None
    # The output carries the batch dim. False for a tensor without one (a learnable
    # parameter): a broadcasting merge aligns it from the right, as torch does.
    batched: bool = True
    # Takes a tensor without the batch dim (a learnable parameter) beside a batched one, and
    # gives a batched result (broadcasting add and mul). Every other op reads batched inputs.
    takes_unbatched: bool = False
    # Reads a learnable tensor with a batch dim of one (``parameter ..., batch=true``: ViT's
    # class token, position embedding): a broadcasting merge, or a concat that expands it.
    takes_single: bool = False
    # May overwrite its first input when that input is fresh and dead: a module op is then
    # built with ``inplace=True``, a merge ``a + b`` is written ``a += b``.
    in_place: bool = False
    # Returns a new tensor that its own backward does not read: a later in-place op may
    # overwrite it (an activation's output is read by its backward, so it is not).
    fresh_output: bool = False
    # Reads a channels-last tensor [*spatial, C] (Swin's patch_merge): its receptive field's
    # window slides along the input's first dims, not the dims after the channels.
    channels_last: bool = False
    # The arguments that set the output's width (channels or features), first one first.
    width_args: tuple[str, ...] = ()
    # ---- v2: token ids and shared weights ------------------------------------------------
    # What it reads: ``float`` tensors (the default), token ``ids`` only (an int input:
    # embedding), or ``any`` (positions, which reads only the sequence length).
    reads: str = "float"
    # An op that reads ids: the ids it accepts are below ``id_bound(args)`` (the vocabulary);
    # sample inputs draw below the least bound of the input's readers.
    id_bound: Callable[[dict], int] | None = None
    # The shape of its ``weight`` (``linear``: [out, in]; ``embedding``: [num, dim]): what a
    # tied weight (``linear ..., tie=LABEL``) must match.
    weight_shape: Callable[[Shape, dict], Shape] | None = None
    # Its output depends on its input's shape only, not on its values (positions: 0..N-1),
    # so no path of the analysis runs through it (as none runs through a parameter).
    shape_only: bool = False
    # ---- from torch (resdsl/fromtorch): what torch code this op is -----------------------
    # Modules are recognised through ``code`` itself (its recipe, inverted and verified by
    # rebuilding); ``torch_aliases`` names other classes whose instances are this op
    # (torchvision's ``LayerNorm2d`` is ``layernorm``).
    torch_aliases: tuple[str, ...] = ()
    # For a module whose ``code`` cannot be read backwards (it computes its constructor's
    # arguments): ``from_module(m)`` gives the op's arguments for module ``m``, or None.
    from_module: Callable[[Any], dict | None] | None = None
    # Calls in a traced ``forward`` that are this op: ``torch.flatten``, ``Tensor.flatten``
    # (a method), ``operator.add``; ``from_call(call)`` gives the op's arguments for one
    # :class:`TorchCall`, or None when that call is not this op (``torch.flatten(x, 2)``), or a
    # list of (op, arguments) when the call is several ops in a row (``x.mean([2, 3])``).
    # A chain of calls that is one op (``x.flatten(2).transpose(1, 2)`` is ``tokens``) is
    # named by its calls joined with ``+`` (``Tensor.flatten+Tensor.transpose``); its last
    # call's ``before`` is the call before (tried only where that one is no op alone).
    torch_calls: tuple[str, ...] = ()
    from_call: Callable[["TorchCall"], dict | list | None] | None = None
    # An op with ``call`` (a module ``forward`` does not call as ``module(x)``):
    # ``from_module_call(call)`` reads one call of such a module, a :class:`TorchCall` named
    # ``module`` (its tensors in ``inputs``/``distinct``, ``index`` the element taken of a
    # tuple result), and gives the arguments the call sets, or None when the call is not
    # this op's (nn.MultiheadAttention as ``m(x, x, x, need_weights=False)[0]``).
    from_module_call: Callable[["TorchCall"], dict | None] | None = None
    # ---- the inference build (resdsl/backends/inference.py): what eval mode makes of it ------
    # The identity in eval mode (dropout): the inference build leaves it out.
    eval_identity: bool = False
    # Arguments without effect in eval mode, with the value that writes them out of the
    # code (a residual's ``drop_path``: 0.0), as (name, value) pairs.
    eval_args: tuple[tuple[str, Any], ...] = ()
    # In eval mode a per-channel affine map of dim 0, ``x * scale + shift`` with
    # ``scale = weight / sqrt(running_var + eps)``, ``shift = bias - running_mean * scale``
    # (batchnorm): its state-dict entries are ``weight``, ``bias``, ``running_mean``,
    # ``running_var``, and ``eps`` is its argument. It may fold into a weight layer.
    affine_eval: bool = False
    # Such a map right after this op folds exactly into its ``weight`` (output channels on
    # dim 0) and its ``bias`` argument: ``absorbs_after(in_shape, args)`` says whether.
    absorbs_after: Callable[[Shape, dict], bool] | None = None
    # Such a map right before it folds exactly into its weight's input channels (dim 1,
    # per group) and its bias: only where nothing pads the input (a padded border would
    # see 0 where the map gives ``shift``). ``absorbs_before(in_shape, args)`` says whether.
    absorbs_before: Callable[[Shape, dict], bool] | None = None
    # Its kernels run faster on a channels-last tensor (convolutions): a network with such
    # an op on maps of its input's rank runs in that memory format in the inference build.
    fast_channels_last: bool = False
    # ---- the inference build's CPU runtime (resdsl/backends/onednn.py) ---------------------
    # Runs as a oneDNN convolution primitive whose weight is packed once, at build time.
    onednn_conv: bool = False
    # Runs as a oneDNN linear primitive with the activation after it fused in (linear).
    onednn_linear: bool = False
    # Runs fused into the oneDNN convolution right before it: ``onednn_post(args)`` gives
    # its :class:`OneDNNPost`, or None where oneDNN has none.
    onednn_post: Callable[[dict], OneDNNPost | None] | None = None
    # A sum of two tensors (``a + b``, either may be the convolution's output) that the oneDNN
    # convolution feeding it takes as a binary post-op where the shapes are equal: oneDNN's
    # name for it (``add``).
    onednn_binary: str | None = None

    def build(self, in_shape: Shape, args: dict) -> Any:
        """The torch module for this op (imports torch)."""
        if self.code is None:
            raise TypeError(f"op {self.name} is written inline by the code generator, not built")
        return self.code(ValueArgs(in_shape, args))

    @property
    def module(self) -> bool:
        """Whether a use of the op is a submodule (merges and inline ops are not)."""
        return self.code is not None

    @property
    def written_inline(self) -> Callable[[Any], str] | None:
        """How ``forward`` writes the op inline (a merge or an inline op), or None."""
        return self.merge_code or self.inline_code

    @property
    def args(self) -> tuple[ArgSpec, ...]:
        return self.positional + self.keywords

    def arg(self, name: str) -> ArgSpec | None:
        for spec in self.args:
            if spec.name == name:
                return spec
        return None

    @property
    def weighted(self) -> bool:
        return self.category == "weight"


@dataclass(frozen=True)
class TorchCall:
    """One function or method call of a traced ``forward``, as ``from_call`` sees it:
    ``inputs`` are the per-sample shapes of its tensor arguments (in order), ``args`` and
    ``kwargs`` its other arguments: after the first when that is a tensor (``self`` of a
    method, ``x`` of ``torch.flatten(x, 1)``, input 0); a tensor argument appears as its
    index into ``inputs``, wrapped in :class:`TensorRef`. ``shape``: the output's per-sample
    shape."""

    name: str
    args: tuple
    kwargs: Mapping[str, Any]
    inputs: tuple[Shape, ...]
    shape: Shape | None
    index: int | None = None  # the element taken of a call that returns several (x.chunk(2, 1)[i])
    # The call that made input 0, when no op is that call alone and only this call reads its
    # result (``x.reshape(n, c, h * w)`` before ``.permute(0, 2, 1)``): the chain is one op.
    # ``name`` is then the chain's, the calls' names joined by ``+`` (``Tensor.reshape+Tensor.permute``),
    # and ``inputs[0]`` is ``before.shape``; ``before.inputs`` are the chain's inputs.
    before: "TorchCall | None" = None
    # For each input, the index of its first occurrence among ``inputs``: one tensor passed
    # three times (``attention(x, x, x)``) is ``(0, 0, 0)``.
    distinct: tuple[int, ...] = ()

    def arg(self, index: int, keyword: str, default: Any = None) -> Any:
        """Argument ``index`` (after the tensor ``self`` of a method) or keyword ``keyword``."""
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(keyword, default)


@dataclass(frozen=True)
class TensorRef:
    """A tensor argument of a :class:`TorchCall`: ``index`` into its ``inputs``."""

    index: int


def sample_dim(dim: Any, rank: int) -> int | None:
    """A torch dim of a batched tensor of ``rank`` per-sample dims as a per-sample dim
    (``1`` -> ``0``, ``-1`` -> ``rank - 1``), or None for the batch dim or a non-int."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        return None
    full = dim + rank + 1 if dim < 0 else dim
    return full - 1 if 1 <= full <= rank else None


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


#: Returned by ``kw`` when a keyword argument is left at torch's default.
OMIT = _Omit()


class TorchArgs:
    """What an op's ``code`` function may ask: the interface both back ends implement."""

    in_shape: Shape
    args: dict

    @property
    def rank(self) -> int:
        """Spatial rank of the input (0 for a flat tensor)."""
        return len(self.in_shape) - 1

    def arg(self, name: str) -> Any:  # pragma: no cover - interface
        """The resolved argument ``name``."""
        raise NotImplementedError

    def value(self, name: str) -> Any:  # pragma: no cover - interface
        """The argument's value, to choose a spelling by; not a record of it as written
        (write what the choice depends on through ``arg``, ``kw`` or ``args[name]``)."""
        raise NotImplementedError

    def channels(self) -> Any:  # pragma: no cover - interface
        """The input's channels (its first dimension)."""
        raise NotImplementedError

    def features(self) -> Any:  # pragma: no cover - interface
        """The input's last dimension (what ``nn.Linear`` reads)."""
        raise NotImplementedError

    def lit(self, value: Any) -> Any:  # pragma: no cover - interface
        """A constant."""
        raise NotImplementedError

    def kw(self, name: str, torch_default: Any) -> Any:  # pragma: no cover - interface
        """The argument, or :data:`OMIT` where it equals torch's default and the spec left it."""
        raise NotImplementedError

    def call(self, callee: str, *positional: Any, **keywords: Any) -> Any:  # pragma: no cover
        """``callee(*positional, **keywords)`` with :data:`OMIT` keywords left out.

        ``callee`` is ``nn.NAME`` or a helper of :mod:`resdsl.ops.torch_layers`.
        """
        raise NotImplementedError


class ValueArgs(TorchArgs):
    """Builds the module directly: arguments are the resolved values."""

    def __init__(self, in_shape: Shape, args: dict):
        self.in_shape = in_shape
        self.args = args

    def arg(self, name: str) -> Any:
        return self.args[name]

    def value(self, name: str) -> Any:
        return self.args[name]

    def channels(self) -> int:
        return self.in_shape[0]

    def features(self) -> int:
        return self.in_shape[-1]

    def lit(self, value: Any) -> Any:
        return value

    def kw(self, name: str, torch_default: Any) -> Any:
        return self.args[name]

    def call(self, callee: str, *positional: Any, **keywords: Any) -> Any:
        from torch import nn

        from . import torch_layers

        owner, _, attr = callee.rpartition(".")
        target = getattr(nn if owner == "nn" else torch_layers, attr)
        return target(*positional, **{k: v for k, v in keywords.items() if v is not OMIT})


REGISTRY: dict[str, OpSpec] = {}


def batch_of(op: str, args: Mapping[str, Any]) -> str:
    """An op's output batch dim: ``full`` (the network's batch), ``one`` (a learnable tensor
    declared with a batch dim of one, ``batch=true``) or ``none`` (one without)."""
    if REGISTRY[op].batched:
        return "full"
    return "one" if args.get("batch") else "none"
def is_ids(node: Any) -> bool:
    """Whether a graph node's output is token ids: the network's ``int`` input."""
    return node.op == "input" and node.args.get("dtype") == "int"


_OP_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def register(spec: OpSpec) -> OpSpec:
    r"""Add an op to the catalogue; a spec may name it from then on (``resdsl.register_op``).

    Raises ValueError for a name already taken or an entry that declares a field
    wrongly, so a mistake shows at import, not as a wrong figure later.

    >>> from resdsl.ops import ANNOTATION, POINTWISE, OpSpec, register, unregister
    >>> op = register(OpSpec(
    ...     name="softsign", doc="x / (1 + |x|)", category="activation", positional=(), keywords=(),
    ...     infer=lambda s, a: s, label=lambda a, i, o: "softsign", receptive_field=POINTWISE,
    ...     nonlinear=True, diagram=ANNOTATION, code=lambda c: c.call("nn.Softsign")))
    >>> import resdsl
    >>> resdsl.loads("network n:\n    input x: [4]\n    softsign\n").output_shape
    (4,)
    >>> unregister("softsign").name
    'softsign'
    """
    problem = entry_problem(spec)
    if problem:
        raise ValueError(f"op {spec.name!r}: {problem}")
    if spec.name in REGISTRY:
        raise ValueError(f"op {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> OpSpec:
    """Remove an op added with :func:`register` (tests, notebooks); returns its entry."""
    return REGISTRY.pop(name)


@contextmanager
def registered(spec: OpSpec) -> Iterator[OpSpec]:
    """``with registered(op): ...``: the op is in the catalogue for the block only."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.name)


def entry_problem(spec: OpSpec) -> str | None:
    """What is wrong with an entry's declarations, or None (register's check)."""
    checks = (
        (bool(_OP_NAME.match(spec.name)), "the name must be lower case letters, digits and '_'"),
        (spec.category in CATEGORIES, f"category must be one of {', '.join(CATEGORIES)}"),
        (isinstance(spec.doc, str) and bool(spec.doc), "doc must say what the op computes"),
        (all(callable(f) for f in (spec.infer, spec.params, spec.macs, spec.label)),
         "infer, params, macs and label must be callables"),
        (isinstance(spec.receptive_field, (Window, _Marker)) or callable(spec.receptive_field),
         "receptive_field must be POINTWISE, GLOBAL, a Window or a function returning one"),
        (type(spec.nonlinear) is bool and type(spec.zero_init_norm) is bool,
         "nonlinear and zero_init_norm must be True or False"),
        (isinstance(spec.diagram, Diagram) and spec.diagram.kind in DIAGRAM_KINDS
         and spec.diagram.fold in FOLDS and re.fullmatch(r"(#[0-9a-fA-F]{6})?", spec.diagram.fill) is not None,
         "diagram must be a Diagram (kind input|op|merge, fold none|label|silent, fill '' or #rrggbb)"),
        (spec.internal or (spec.code is None) != (spec.inline_code is None),
         "an op a spec may name needs its torch ``code`` or, without a module, its ``inline_code``"),
        (spec.call is None or spec.code is not None, "``call`` writes how a module is called: it needs ``code``"),
        (not any(a.variadic for a in spec.positional[:-1] + spec.keywords)
         and not any(a.variadic and a.kind == "tuple" for a in spec.positional),
         "only the last positional argument may be variadic, and not of kind tuple"),
        (type(spec.min_rank) is int and spec.min_rank >= 1, "min_rank must be an int >= 1"),
        (spec.reads in READS, f"reads must be one of {', '.join(READS)}"),
        ((spec.id_bound is not None) == (spec.reads == "ids"), "an op that reads ids needs its id_bound"),
    )
    return next((message for ok, message in checks if not ok), None)


def user_ops() -> dict[str, OpSpec]:
    """The ops a spec may name."""
    return {name: op for name, op in REGISTRY.items() if not op.internal}


# ---- argument checking ------------------------------------------------------------
def check_value(spec: ArgSpec, value: Value, spatial_rank: int | None) -> Value:
    """Type- and range-check one argument value, normalising tuples to the input's rank.

    ``spatial_rank`` is ``None`` when the input shape is unknown (after an earlier
    error): values are still checked, only their rank is not.
    """
    kind = spec.kind
    if kind == "tie":  # a label, resolved by elaboration (the module must exist, its weight match)
        if not isinstance(value, str):
            raise OpError(f"'{spec.name}' names a labelled layer, not {describe(value)}",
                          hint=f"write {spec.name}=LABEL, the label of an earlier embedding or linear",
                          arg=spec.name)
        return None if value == "none" else value  # tie=none: a weight of its own
    if kind == "bool":
        if not isinstance(value, bool):
            raise OpError(f"'{spec.name}' must be true or false, not {describe(value)}",
                          arg=spec.name)
        return value
    if kind == "enum":
        if not isinstance(value, str) or value not in spec.choices:
            raise OpError(
                f"'{spec.name}' must be one of {', '.join(spec.choices)}, not {describe(value)}",
                hint=f"write e.g. {spec.name}={spec.choices[0]}", arg=spec.name,
            )
        return value
    if kind == "tuple":
        return _check_tuple(spec, value, spatial_rank)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OpError(f"'{spec.name}' must be a number, not {describe(value)} ({type_name(value)})",
                          hint=_unknown_name_hint(value), arg=spec.name)
        return _check_range(spec, float(value))
    # int and size
    if isinstance(value, bool) or not isinstance(value, int):
        raise OpError(f"'{spec.name}' must be an integer, not {describe(value)} ({type_name(value)})",
                      hint=_unknown_name_hint(value), arg=spec.name)
    return _check_range(spec, value)


def _unknown_name_hint(value: Value) -> str | None:
    if isinstance(value, str):
        return f"'{value}' is not a parameter in scope"
    if isinstance(value, float) and value.is_integer():
        return f"use '//' for integer division, or write {int(value)}"
    return None


def _check_range(spec: ArgSpec, value):
    if spec.min is not None and value < spec.min:
        raise OpError(f"'{spec.name}' must be at least {_fmt(spec.min)}, not {_fmt(value)}", arg=spec.name)
    if spec.max is not None and value > spec.max:
        raise OpError(f"'{spec.name}' must be at most {_fmt(spec.max)}, not {_fmt(value)}", arg=spec.name)
    return value


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _check_tuple(spec: ArgSpec, value: Value, rank: int | None) -> tuple[int, ...] | str:
    if isinstance(value, str) and value in spec.choices:
        return value  # a word the op gives a meaning (conv's pad=same)
    if isinstance(value, bool) or not isinstance(value, (int, tuple)):
        words = "".join(f" or {w}" for w in spec.choices)
        raise OpError(
            f"'{spec.name}' must be an integer or a size such as 3x3{words}, not {describe(value)}",
            hint=_unknown_name_hint(value), arg=spec.name,
        )
    if rank is None:
        dims = (value,) if isinstance(value, int) else value
        for dim in dims:
            _check_range(spec, dim)
        return tuple(dims)
    if rank == 0:
        raise OpError(f"'{spec.name}' needs a spatial input, but the input is flat",
                      hint="spatial ops need an input such as [C, H, W]", arg=spec.name)
    dims = (value,) * rank if isinstance(value, int) else value
    if len(dims) != rank:
        raise OpError(
            f"'{spec.name}' {describe(value)} has {len(dims)} dimensions but the input "
            f"has {rank} spatial dimensions",
            hint=f"write a single number for a cube, or {'x'.join(['3'] * rank)}",
            arg=spec.name,
        )
    for dim in dims:
        _check_range(spec, dim)
    return tuple(dims)


def bind(
    op: OpSpec,
    positional: list[Value],
    keywords: Mapping[str, Value],
    defaults: Mapping[str, Value],
    in_shape: Shape,
) -> dict[str, Value]:
    """Match values to the op's arguments, apply defaults, check every value.

    Raises :class:`OpError` naming the argument at fault (``arg`` is ``"#N"`` for the
    N-th positional argument).
    """
    rank = None if in_shape is None else max(len(in_shape) - 1, 0)
    variadic = bool(op.positional) and op.positional[-1].variadic
    if variadic:
        return _bind_variadic(op, positional, keywords, defaults, in_shape)
    if len(positional) > len(op.positional):
        raise OpError(
            f"takes {len(op.positional)} positional argument"
            f"{'' if len(op.positional) == 1 else 's'}, got {len(positional)}",
            hint=signature_hint(op), arg=f"#{len(op.positional)}",
        )
    raw: dict[str, Value] = {}
    for index, value in enumerate(positional):
        raw[op.positional[index].name] = value
    for name, value in keywords.items():
        if op.arg(name) is None:
            close = did_you_mean(name, [a.name for a in op.args])
            hint = f"{close} ({signature_hint(op)})" if close and close.startswith("did") else signature_hint(op)
            raise OpError(f"no argument '{name}'", hint=hint, arg=name)
        if name in raw:
            raise OpError(f"got '{name}' both by position and by keyword", arg=name)
        raw[name] = value
    bound: dict[str, Value] = {}
    for index, spec in enumerate(op.args):
        where = f"#{index}" if index < len(positional) else spec.name
        if spec.name in raw:
            try:
                bound[spec.name] = check_value(spec, raw[spec.name], rank)
            except OpError as err:
                err.arg = where if spec.name not in keywords else spec.name
                raise
        elif spec.name in defaults:
            bound[spec.name] = check_value(spec, defaults[spec.name], rank)
        elif spec.default is REQUIRED:
            raise OpError(f"needs '{spec.name}'", hint=signature_hint(op))
        elif callable(spec.default):
            bound[spec.name] = spec.default(bound)
        else:
            bound[spec.name] = check_value(spec, spec.default, rank) if spec.kind == "tuple" else spec.default
    return bound


def _bind_variadic(op: OpSpec, positional: list[Value], keywords: Mapping[str, Value],
                   defaults: Mapping[str, Value], in_shape: Shape) -> dict[str, Value]:
    """``bind`` for an op whose last positional takes the rest (``permute 1, 2, 0``)."""
    last = op.positional[-1]
    fixed = len(op.positional) - 1
    if last.name in keywords:
        raise OpError(f"'{last.name}' takes its values by position", hint=signature_hint(op), arg=last.name)
    if len(positional) <= fixed:
        raise OpError(f"needs '{last.name}'", hint=signature_hint(op))
    rest = positional[fixed:]
    for index, value in enumerate(rest):
        try:
            check_value(last, value, None)
        except OpError as err:
            err.arg = f"#{fixed + index}"
            raise
    head = replace(op, positional=op.positional[:-1])  # the op without its tail, bound as usual
    bound = bind(head, positional[:fixed], keywords, defaults, in_shape)
    return {**{a.name: bound[a.name] for a in op.positional[:-1]}, last.name: tuple(rest),
            **{a.name: bound[a.name] for a in op.keywords}}


def signature_hint(op: OpSpec) -> str:
    parts = [a.name + (", ..." if a.variadic else "") for a in op.positional]
    parts += [f"{a.name}={_default_text(a)}" for a in op.keywords]
    return f"usage: {op.name} {', '.join(parts)}".rstrip()


def _default_text(spec: ArgSpec) -> str:
    if spec.default is REQUIRED:
        return "?"
    if callable(spec.default):
        return spec.doc or "auto"
    if spec.default is None:  # an optional reference (tie=none)
        return "none"
    return describe(spec.default)
