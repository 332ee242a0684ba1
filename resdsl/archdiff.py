"""The architecture difference of two specs: ``resdsl diff A B`` and :func:`diff`.

Two elaborated networks are aligned by their module paths (``layer3.6.conv1``),
never by line numbers, so a spec that moved, a YAML twin or a spec read through
a zoo name compares by what it builds. The difference has three parts:

- statements added, removed and changed (an op, its arguments, its inputs, a
  block's parameters, a stage's count), each with the spec lines of both sides,
  repetitive ones grouped (``layer3.6 .. layer3.22 added (17 blocks of bottleneck)``);
- parameters per top-level statement before and after, and the totals;
- the checkpoint keys added, removed and reshaped, and whether a checkpoint of A
  loads into B. The keys and shapes come from a build on torch's ``meta`` device
  (no memory for weights, no forward pass); everything else is torch-free.

The work is linear in the networks' size: one dictionary per side, one pass
over each graph, one sort of the differences.

>>> import resdsl
>>> a = resdsl.loads('''
... network mlp(width: int = 32):
...     input x: [16]
...     fc1: linear width
...     relu
...     head: linear 4
... ''')
>>> b = resdsl.loads('''
... network mlp(width: int = 32):
...     input x: [16]
...     fc1: linear width
...     relu
...     fc2: linear width
...     head: linear 4
... ''')
>>> d = resdsl.diff(a, b, keys=False)
>>> d.same
False
>>> print(d.changes[0].line())
+ fc2 added: fc 32  (inline.res:6)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import networkx as nx

from .errors import Span
from .graph import Container, OpNode, containers, op_node, op_nodes, top_level_groups
from .shapes import format_dims, format_shape

#: Lines of each section in the default rendering (``render(full=True)`` shows every line).
MAX_CHANGE_LINES = 18
MAX_PARAM_ROWS = 14
MAX_KEY_LINES = 8

#: Change kinds, in the order a reader wants them: what was written differently, then
#: what only follows from it (a shape or a parameter count).
KINDS = ("added", "removed", "changed", "reshaped")
_MARK = {"added": "+", "removed": "-", "changed": "~", "reshaped": "="}
_PACKAGE = Path(__file__).resolve().parent
#: Digits in a path: instance indices (layer3.[6]), also inside names (denselayer[25], block1-[0]).
_INDEX = re.compile(r"\d+")


@dataclass(frozen=True)
class Change:
    """One line of the statement difference: one change, or a group of like ones."""

    kind: str  # one of KINDS
    first: str  # module path (the first of the group)
    last: str  # the last of the group (``first`` when alone)
    count: int  # members of the group
    what: str  # "kernel 7x7 -> 3x3", "stage bottleneck x 6 -> x 23", "bottleneck" (added)
    unit: str  # what a member is, for the count: "blocks of bottleneck", "ops"
    a: str | None  # A's spec line ("resnet50.res:20"), None for an added statement
    b: str | None  # B's spec line, None for a removed statement
    paths: tuple[str, ...] = ()  # every member's path, in network order

    def line(self) -> str:
        """The change as one line of text."""
        where = self.first if self.count == 1 else f"{self.first} .. {self.last}"
        if self.kind in ("added", "removed") and self.count > 1:
            # a group of blocks says what they are in its unit ("17 blocks of bottleneck")
            text = f"{where} {self.kind} ({self.count} {self.unit})" + \
                (f": {self.what}" if self.unit == "ops" else "")
        elif self.kind in ("added", "removed"):
            text = f"{where} {self.kind}: {self.what}"
        else:
            unit = self.unit.split(" of ")[0]  # the text names the block already
            text = f"{where}: {self.what}" + (f" ({self.count} {unit})" if self.count > 1 else "")
        return f"{_MARK[self.kind]} {text}  ({_locations(self.a, self.b)})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "first": self.first, "last": self.last, "count": self.count,
                "what": self.what, "unit": self.unit, "a": self.a, "b": self.b, "paths": list(self.paths)}


@dataclass(frozen=True)
class ParamRow:
    """Parameters of one top-level statement on each side (None: not there)."""

    name: str
    a: int | None
    b: int | None

    @property
    def delta(self) -> int:
        return (self.b or 0) - (self.a or 0)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "a": self.a, "b": self.b, "delta": self.delta}


@dataclass(frozen=True)
class KeyDiff:
    """The state-dict keys of both sides compared (shapes as tuples)."""

    a_count: int
    b_count: int
    added: tuple[tuple[str, tuple[int, ...]], ...]  # in B only: missing from a checkpoint of A
    removed: tuple[tuple[str, tuple[int, ...]], ...]  # in A only: unexpected in B
    reshaped: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # key, A's shape, B's

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.reshaped)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a_count, "b": self.b_count,
                "added": [{"key": k, "shape": list(s)} for k, s in self.added],
                "removed": [{"key": k, "shape": list(s)} for k, s in self.removed],
                "reshaped": [{"key": k, "a": list(sa), "b": list(sb)} for k, sa, sb in self.reshaped]}


@dataclass(frozen=True)
class Side:
    """What the report says about one of the two networks."""

    name: str
    file: str
    params: dict[str, Any]
    num_ops: int
    num_params: int
    shortcut: str | None = None  # a policy forced on every residual ("none": the plain twin)

    def title(self) -> str:
        given = ", ".join([f"{k}={_value(v)}" for k, v in self.params.items()] +
                          ([f"shortcut {self.shortcut}"] if self.shortcut else []))
        return f"{self.name} ({_shown_file(self.file)}{'; ' + given if given else ''})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": _shown_file(self.file), "params": self.params,
                "shortcut": self.shortcut, "num_ops": self.num_ops, "num_params": self.num_params}


@dataclass(frozen=True)
class SpecDiff:
    """The difference of two networks A and B (made by :func:`diff`).

    ``changes`` are grouped and in B's network order; ``params`` has a row per
    top-level statement of either side; ``keys`` is None when not computed.
    ``str(d)`` is the default text, ``d.render(full=True)`` every line.
    """

    a: Side
    b: Side
    changes: tuple[Change, ...]
    params: tuple[ParamRow, ...]
    keys: KeyDiff | None = None
    counts: Mapping[str, int] = field(default_factory=dict)  # ungrouped changes per kind

    @property
    def same(self) -> bool:
        """Same architecture: same ops, arguments, wiring and shapes (and keys, when compared)."""
        return not self.changes and (self.keys is None or self.keys.same)

    @property
    def loads(self) -> bool | None:
        """Whether a checkpoint of A loads strictly into B (None: keys not compared)."""
        return None if self.keys is None else self.keys.same

    def verdict(self) -> str:
        """One line: does a checkpoint of A load into B?"""
        if self.keys is None:
            return "checkpoint keys not compared"
        k = self.keys
        if k.same:
            return f"a checkpoint of A loads into B: yes - the same {k.a_count:,} keys and shapes"
        common = k.a_count - len(k.removed)
        partial = f"; strict=False loads the {common:,} common keys" if not k.reshaped and common else ""
        return (f"a checkpoint of A loads into B: no - {len(k.added):,} keys missing{_where(k.added)}, "
                f"{len(k.removed):,} unexpected{_where(k.removed)}, {len(k.reshaped):,} reshaped{partial}")

    def render(self, full: bool = False) -> str:
        """The difference as text: a screenful, or every line with ``full``."""
        lines = [f"A: {self.a.title()}", f"B: {self.b.title()}"]
        if self.same:
            keys = f", {self.keys.a_count:,} checkpoint keys" if self.keys is not None else ""
            lines.append(f"A and B are the same architecture: {self.b.num_ops:,} ops{keys}, "
                         f"{self.b.num_params:,} parameters")
            return "\n".join(lines)
        lines += ["", *_change_lines(self, full), "", *_param_lines(self.params, full)]
        if self.keys is not None:
            lines += ["", *_key_lines(self.keys, full)]
        lines.append(self.verdict())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def to_dict(self) -> dict[str, Any]:
        """The difference as data (``resdsl diff --json``): every change, row and key."""
        return {"a": self.a.to_dict(), "b": self.b.to_dict(), "same": self.same, "loads": self.loads,
                "counts": dict(self.counts), "changes": [c.to_dict() for c in self.changes],
                "params": [r.to_dict() for r in self.params],
                "total": {"a": self.a.num_params, "b": self.b.num_params,
                          "delta": self.b.num_params - self.a.num_params},
                "keys": None if self.keys is None else self.keys.to_dict(), "verdict": self.verdict()}


# ---- the public function ----------------------------------------------------------------

def diff(a: Any, b: Any, *, keys: bool = True, **params: Any) -> SpecDiff:
    """The architecture difference of ``a`` and ``b``: each a :class:`resdsl.Net`, a spec
    path or a zoo name (``params`` override network parameters of both, as ``-D`` does).

    ``keys`` compares the checkpoint keys and shapes too (a build on the ``meta``
    device: imports torch, allocates no weights).

    >>> import resdsl
    >>> d = resdsl.diff("cifar_resnet20", "cifar_resnet32", keys=False)
    >>> print(d.changes[1].line())
    + layer1.3 .. layer1.4 added (2 blocks of basic)  (resdsl/zoo/cifar_resnet.res:31)
    >>> [(row.name, row.delta) for row in d.params if row.delta]
    [('layer1', 9344), ('layer2', 37120), ('layer3', 147968)]
    """
    return diff_nets(_net(a, params), _net(b, params), keys=keys)


def diff_nets(net_a: Any, net_b: Any, *, keys: bool = True) -> SpecDiff:
    """:func:`diff` of two loaded :class:`resdsl.Net` s (what ``resdsl diff`` calls)."""
    changes, counts = compare(net_a.graph, net_b.graph)
    key_diff = compare_keys(state_shapes(net_a), state_shapes(net_b)) if keys else None
    return SpecDiff(_side(net_a), _side(net_b), changes, param_rows(net_a, net_b), key_diff, counts)


def _net(spec: Any, params: Mapping[str, Any]) -> Any:
    from .api import Net, load

    if isinstance(spec, Net):
        if params:
            raise TypeError("params apply to specs given by path or zoo name, not to a loaded Net")
        return spec
    if isinstance(spec, str) and not os.path.lexists(spec):
        from . import zoo

        if spec in zoo.names():
            return zoo.load(spec, **params)
    return load(spec, **params)


def _side(net: Any) -> Side:
    return Side(net.name, net.filename, dict(net.params), net.num_ops, net.num_params, net.shortcut)


# ---- statements ---------------------------------------------------------------------------

@dataclass
class _Found:
    """One ungrouped difference, placed in B's network order (``at``)."""

    at: float
    kind: str
    path: str
    what: str
    unit: str
    a: str | None
    b: str | None


def compare(graph_a: nx.DiGraph, graph_b: nx.DiGraph) -> tuple[tuple[Change, ...], dict[str, int]]:
    """The grouped statement differences of two graphs, and the ungrouped count per kind.

    Linear: nodes and containers are matched by path through one dictionary per side.
    """
    nodes_a = {_path(n): n for n in op_nodes(graph_a)}
    nodes_b = {_path(n): n for n in op_nodes(graph_b)}
    boxes_a, boxes_b = containers(graph_a), containers(graph_b)
    found: list[_Found] = []
    found += _container_changes(boxes_a, boxes_b, nodes_a, nodes_b)
    found += _node_changes(nodes_a, nodes_b, boxes_a, boxes_b)
    counts = {kind: 0 for kind in KINDS}
    for item in found:
        counts[item.kind] += 1
    return _grouped(found), counts


def _path(node: OpNode) -> str:
    return node.module if node.module is not None else "input"  # one input, whatever its label


def _container_changes(boxes_a: dict[str, Container], boxes_b: dict[str, Container],
                       nodes_a: dict[str, OpNode], nodes_b: dict[str, OpNode]) -> Iterable[_Found]:
    places = _places(nodes_a, nodes_b)
    parent_a, parent_b = _parents(boxes_a), _parents(boxes_b)
    for path, box in boxes_b.items():
        if not path:
            continue
        other = boxes_a.get(path)
        if other is None:
            if parent_b.get(path, "") in boxes_a:  # the topmost new one: its contents are in it
                yield _Found(box.input + 0.5, "added", path, _box_name(box), _unit(box), None,
                             _loc(box.span))
            continue
        what = _container_what(other, box)
        if what:
            yield _Found(box.input + 0.5, "changed", path, what, _unit(box), _loc(other.span), _loc(box.span))
    for path, box in boxes_a.items():
        if path and path not in boxes_b and parent_a.get(path, "") in boxes_b:
            yield _Found(places.get(box.input, -1) + 0.5, "removed", path, _box_name(box), _unit(box),
                         _loc(box.span), None)


def _parents(boxes: dict[str, Container]) -> dict[str, str]:
    """Each container's parent, from the children lists (a path's prefix need not be one)."""
    return {child: path for path, box in boxes.items() for child in box.children}


def _unit(box: Container) -> str:
    return f"blocks of {box.block}" if box.kind == "block" and box.block else f"{box.kind}s"


def _container_what(a: Container, b: Container) -> str:
    """How two containers of one path differ ("" when alike): kind, block, count, parameters."""
    if a.kind != b.kind or a.block != b.block:
        return f"{_box_name(a)} -> {_box_name(b)}"
    if a.kind == "stage" and len(a.children) != len(b.children):
        return f"stage {a.block} x {len(a.children)} -> x {len(b.children)}"
    changed = _arg_changes(a.args, b.args)
    return f"{a.block} {changed}" if changed and a.block else changed


def _box_name(box: Container) -> str:
    return f"{box.kind} {box.block}" if box.block else box.kind


def _node_changes(nodes_a: dict[str, OpNode], nodes_b: dict[str, OpNode], boxes_a: dict[str, Container],
                  boxes_b: dict[str, Container]) -> Iterable[_Found]:
    paths_a = {n.id: p for p, n in nodes_a.items()}
    paths_b = {n.id: p for p, n in nodes_b.items()}
    for path, node in nodes_b.items():
        other = nodes_a.get(path)
        if other is None:
            if node.container in boxes_a:  # else its container is new, and says so
                yield _Found(node.id, "added", path, _describe(node), "ops", None, _loc(node.span))
            continue
        kind, what = _node_what(other, node, paths_a, paths_b, nodes_a, nodes_b)
        if kind:
            yield _Found(node.id, kind, path, what, "ops", _loc(other.span), _loc(node.span))
    places = _places(nodes_a, nodes_b)
    for path, node in nodes_a.items():
        if path not in nodes_b and node.container in boxes_b:
            yield _Found(places[node.id] + 0.25, "removed", path, _describe(node), "ops", _loc(node.span), None)


def _places(nodes_a: dict[str, OpNode], nodes_b: dict[str, OpNode]) -> dict[int, float]:
    """Each node of A's position in B's order: its own, or that of the last matched node before it."""
    places, last = {}, -1.0
    for path, node in nodes_a.items():  # id order
        match = nodes_b.get(path)
        if match is not None:
            last = float(match.id)
        places[node.id] = last
    return places


def _node_what(a: OpNode, b: OpNode, paths_a: dict[int, str], paths_b: dict[int, str],
               nodes_a: Mapping[str, OpNode], nodes_b: Mapping[str, OpNode]) -> tuple[str, str]:
    """("changed", text) for an op, argument or input written differently; ("reshaped", text)
    when only the shape or the parameter count differs; ("", "") when alike."""
    parts = []
    if a.op != b.op:
        parts.append(f"{_describe(a)} -> {_describe(b)}")
    else:
        parts.append(_arg_changes(a.args, b.args))
    if _rewired(a, b, paths_a, paths_b, nodes_a, nodes_b):
        inputs_a = [_relative(paths_a[i], a.container) for i in a.inputs]
        inputs_b = [_relative(paths_b[i], b.container) for i in b.inputs]
        parts.append(f"inputs {', '.join(inputs_a) or '-'} -> {', '.join(inputs_b) or '-'}")
    if a.label != b.label and a.module is None:  # the input's label: a module's is in its path
        parts.append(f"label {a.label} -> {b.label}")
    written = "; ".join(p for p in parts if p)
    if written:
        return "changed", written
    derived = []
    if a.shape != b.shape:
        derived.append(f"output {format_shape(a.shape)} -> {format_shape(b.shape)}")
    if a.params != b.params:
        derived.append(f"parameters {a.params:,} -> {b.params:,}")
    return ("reshaped", ", ".join(derived)) if derived else ("", "")


def _rewired(a: OpNode, b: OpNode, paths_a: dict[int, str], paths_b: dict[int, str],
             nodes_a: Mapping[str, OpNode], nodes_b: Mapping[str, OpNode]) -> bool:
    """Whether the node reads other tensors. An input that is new in B (or gone from A) is no
    rewiring: the node after a stage reads the stage's new last block, which is reported as added."""
    if len(a.inputs) != len(b.inputs):
        return True
    return any(pa != pb and pa in nodes_b and pb in nodes_a
               for pa, pb in ((paths_a[i], paths_b[j]) for i, j in zip(a.inputs, b.inputs)))


def _relative(path: str, container: str) -> str:
    """An input's path as seen from the node's container (so instances of a block read alike)."""
    return path[len(container) + 1:] if container and path.startswith(container + ".") else path


def _arg_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """``kernel 7x7 -> 3x3, stride 2 -> 1`` ("" when alike), in A's argument order."""
    names = list(a) + [n for n in b if n not in a]
    return ", ".join(f"{n} {_value(a.get(n))} -> {_value(b.get(n))}" for n in names if a.get(n) != b.get(n))


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return format_dims(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return f"{value:.6g}"  # a drop-path rate 0.017391304347826087 reads 0.0173913
    return str(value)


def _describe(node: OpNode) -> str:
    """An op as the diagram labels it ("3x3 conv, 64, /2"), or its name."""
    from .ops import REGISTRY

    entry = REGISTRY.get(node.op)
    try:
        text = entry.label(node.args, node.in_shapes[0] if node.in_shapes else None, node.shape) if entry else ""
    except Exception:  # a label rule that does not expect this node: the op's name will do
        text = ""
    return text or node.op


#: A description longer than this is cut (a string argument may be long): lines stay lines.
MAX_WHAT = 200


def _short(text: str) -> str:
    return text if len(text) <= MAX_WHAT else text[:MAX_WHAT - 3] + "..."


def _grouped(found: list[_Found]) -> tuple[Change, ...]:
    """Like differences (same kind, text and spec lines, paths that differ only in their numbers:
    layer3.6 and layer3.22, enc1.conv1 and dec4.conv1) as one line each."""
    found.sort(key=lambda f: (f.at, KINDS.index(f.kind), f.path))
    groups: dict[tuple, list[_Found]] = {}
    for item in found:
        key = (item.kind, _INDEX.sub("#", item.path), item.what, item.a, item.b)
        groups.setdefault(key, []).append(item)
    return tuple(Change(m[0].kind, m[0].path, m[-1].path, len(m), _short(m[0].what), m[0].unit, m[0].a, m[0].b,
                        tuple(f.path for f in m)) for m in groups.values())


def _loc(span: Span) -> str:
    return f"{_shown_file(span.file)}:{span.line}"


def _shown_file(name: str) -> str:
    """A file as the report shows it: the package's own (zoo, std) as ``resdsl/...`` wherever it
    is installed, so the output does not depend on the installation; others as given."""
    try:
        resolved = Path(name).resolve()
    except (OSError, ValueError, RuntimeError):
        return name
    if resolved.is_relative_to(_PACKAGE):
        return "resdsl/" + resolved.relative_to(_PACKAGE).as_posix()
    return name


def _locations(a: str | None, b: str | None) -> str:
    if a is None or b is None:
        return a or b or ""
    return a if a == b else f"{a} -> {b}"


# ---- parameters per statement ----------------------------------------------------------------

def param_rows(net_a: Any, net_b: Any) -> tuple[ParamRow, ...]:
    """Parameters per top-level statement (as ``resdsl compile`` counts them), in B's order
    with A's statements that B lacks where A had them."""
    a = _statement_params(net_a.graph)
    b = _statement_params(net_b.graph)
    rows, pending = [], [name for name in a if name not in b]
    order_a = {name: i for i, name in enumerate(a)}
    for name in b:
        if name in order_a:
            while pending and order_a[pending[0]] < order_a[name]:
                gone = pending.pop(0)
                rows.append(ParamRow(gone, a[gone], None))
        rows.append(ParamRow(name, a.get(name), b[name]))
    rows += [ParamRow(gone, a[gone], None) for gone in pending]
    return tuple(rows)


def _statement_params(graph: nx.DiGraph) -> dict[str, int]:
    return {name: sum(op_node(graph, n).params for n in nodes) for name, nodes in top_level_groups(graph)}


# ---- checkpoint keys ------------------------------------------------------------------------

def state_shapes(net: Any) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the net's module and its shape, in order, from a build on the
    ``meta`` device (imports torch; no weights are allocated and nothing runs forward)."""
    model = net.build(device="meta")
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def compare_keys(a: Mapping[str, tuple[int, ...]], b: Mapping[str, tuple[int, ...]]) -> KeyDiff:
    """Keys in B only (added), in A only (removed), in both with other shapes (reshaped)."""
    added = tuple((k, s) for k, s in b.items() if k not in a)
    removed = tuple((k, s) for k, s in a.items() if k not in b)
    reshaped = tuple((k, a[k], s) for k, s in b.items() if k in a and a[k] != s)
    return KeyDiff(len(a), len(b), added, removed, reshaped)


def _subtree(key: str) -> str:
    """The module a key belongs to, up to its first index: ``layer3.7.conv1.weight`` -> ``layer3.7``."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[:i + 1])
    return parts[0] if len(parts) > 1 else key


def _subtrees(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(_subtree(k) for k in keys))


def _where(keys: tuple[tuple[str, tuple[int, ...]], ...]) -> str:
    return f" ({_span_text(_subtrees(key for key, _ in keys))})" if keys else ""


def _span_text(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return f"{names[0]} .. {names[-1]}: {len(names)} subtrees"


# ---- text ----------------------------------------------------------------------------------

def _change_lines(d: SpecDiff, full: bool) -> list[str]:
    written = [c for c in d.changes if c.kind != "reshaped"]
    derived = [c for c in d.changes if c.kind == "reshaped"]
    counts = ", ".join(f"{d.counts.get(k, 0):,} {k}" for k in KINDS)
    lines = [f"statements: {counts}"]
    shown = written if full else written[:MAX_CHANGE_LINES]
    lines += ["  " + c.line() for c in shown]
    if len(shown) < len(written):
        lines.append(f"  ... {len(written) - len(shown):,} more lines (--all shows them)")
    if full:
        lines += ["  " + c.line() for c in derived]
    elif derived:
        per_top: dict[str, int] = {}
        for c in derived:
            top = c.first.split(".", 1)[0]
            per_top[top] = per_top.get(top, 0) + c.count
        listed = ", ".join(f"{t} ({n})" for t, n in list(per_top.items())[:6])
        more = ", ..." if len(per_top) > 6 else ""
        total = sum(per_top.values())
        lines.append(f"  = {total:,} ops change only in shape or parameter count: {listed}{more}")
    if not written and not derived:
        lines.append("  (none: the statements agree; only the checkpoint keys differ)")
    return lines


def _param_lines(rows: tuple[ParamRow, ...], full: bool) -> list[str]:
    weighted = [r for r in rows if r.a or r.b]
    shown = weighted if full or len(weighted) <= MAX_PARAM_ROWS else [r for r in weighted if r.delta][:MAX_PARAM_ROWS]
    total_a = sum(r.a or 0 for r in rows)
    total_b = sum(r.b or 0 for r in rows)
    table = [(r.name, _count(r.a), _count(r.b), _delta(r.delta)) for r in shown]
    table.append(("total", f"{total_a:,}", f"{total_b:,}", _delta(total_b - total_a)))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = ["parameters per statement (A -> B):"]
    for name, a, b, delta in table:
        lines.append(f"  {name:<{widths[0]}}  {a:>{widths[1]}} -> {b:>{widths[2]}}  {delta:>{widths[3]}}".rstrip())
    hidden = len(weighted) - len(shown)
    if hidden:
        lines.insert(-1, f"  ... {hidden:,} more statements (--all shows them)")
    return lines


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _delta(value: int) -> str:
    return f"{value:+,}" if value else ""


def _key_lines(k: KeyDiff, full: bool) -> list[str]:
    lines = [f"checkpoint keys: {k.a_count:,} -> {k.b_count:,} ({len(k.added):,} added, "
             f"{len(k.removed):,} removed, {len(k.reshaped):,} reshaped)"]
    if full:
        lines += [f"  + {key} {format_shape(s)}" for key, s in k.added]
        lines += [f"  - {key} {format_shape(s)}" for key, s in k.removed]
        lines += [f"  ~ {key} {format_shape(sa)} -> {format_shape(sb)}" for key, sa, sb in k.reshaped]
        return lines
    grouped = _key_groups(k)
    lines += grouped[:MAX_KEY_LINES]
    if len(grouped) > MAX_KEY_LINES:
        lines.append(f"  ... {len(grouped) - MAX_KEY_LINES:,} more lines (--all lists every key)")
    return lines


def _key_groups(k: KeyDiff) -> list[str]:
    """One line per top-level module and kind: how many keys, in which subtrees, one example."""
    lines = []
    for mark, keys in (("+", [key for key, _ in k.added]), ("-", [key for key, _ in k.removed])):
        by_top: dict[str, list[str]] = {}
        for key in keys:
            by_top.setdefault(key.split(".", 1)[0], []).append(key)
        for top, members in by_top.items():
            lines.append(f"  {mark} {top}: {len(members):,} keys in {_span_text(_subtrees(members))}")
    by_top_r: dict[str, list[tuple[str, tuple, tuple]]] = {}
    for item in k.reshaped:
        by_top_r.setdefault(item[0].split(".", 1)[0], []).append(item)
    for top, members in by_top_r.items():
        key, sa, sb = members[0]
        more = f" and {len(members) - 1:,} more" if len(members) > 1 else ""
        lines.append(f"  ~ {top}: {len(members):,} keys reshaped, e.g. {key} "
                     f"{format_shape(sa)} -> {format_shape(sb)}{more}")
    return lines


__all__ = ["Change", "KeyDiff", "ParamRow", "Side", "SpecDiff", "compare", "compare_keys", "diff", "diff_nets",
           "param_rows", "state_shapes"]
