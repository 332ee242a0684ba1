"""Instances -> blocks with parameters, and runs of calls -> stages.

Instances of one class whose statements agree in everything but numbers are one block;
the numbers that differ become its parameters (equal columns share one; a column that
is a multiple of another, or the input's channels, becomes an expression). A
``sequential:`` whose children all call one block becomes ``stage block(args) x N``
when its instances' arguments follow the stage's rules (all alike, the first one's
stride apart, or a function of the index).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..ops import REGISTRY
from ..vocab import FUNCTIONS, MODULE_ATTRIBUTES, PARAM_TYPES, RESERVED_NAMES, STATEMENT_WORDS
from .describe import Instance
from .recipes import bind_args
from .stmts import (
    CallStmt, Expr, OpStmt, ParamStmt, ResidualStmt, SeqStmt, StageStmt, Stmt, value_text, walk,
)

_KEYWORDS = {"network", "block", "input", "import", "defaults", "stage", "x", "true", "false", "and", "or",
             "not", "if", "else", "elif", "none", *STATEMENT_WORDS, *FUNCTIONS, *PARAM_TYPES}
_SHORT = {"out_channels": "out", "out_features": "features"}


@dataclass
class Hole:
    """A number in a statement that may become a parameter: ``box[key]`` (``site`` names it);
    ``op``: the op statement whose argument it is."""

    box: Any
    key: Any
    site: str
    op: OpStmt | None = None
    optional: bool = False  # a word some instances leave out (a residual's proj=)
    nested: bool = False  # in a scope of its own (a sequential, a shortcut path): there
    # ``input`` is that scope's input, not the block's, so channels(input) means another thing

    def get_optional(self) -> Any:
        return self.box.get(self.key)

    def get(self) -> Any:
        return self.box[self.key] if isinstance(self.box, (dict, list)) else getattr(self.box, self.key)


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or isinstance(value, bool)


def holes_and_key(stmts: list[Stmt]) -> tuple[tuple, list[Hole]]:
    """The statements' shape with numbers left out (the grouping key) and the numbers."""
    holes: list[Hole] = []
    depth = [0]

    def hole(box: Any, key: Any, site: str, op: OpStmt | None = None, optional: bool = False) -> None:
        holes.append(Hole(box, key, site, op, optional, depth[0] > 0))

    def arg_key(box: dict, site: str, op: OpStmt | None = None, skip: tuple[str, ...] = ()) -> tuple:
        parts = []
        for name, value in box.items():
            if name in skip:
                continue
            if _scalar(value):
                hole(box, name, f"{site}{name}", op)
                parts.append((name, type(value).__name__))
            else:
                parts.append((name, repr(value)))
        return tuple(parts)

    def nested(stmts: list[Stmt]) -> tuple:
        depth[0] += 1
        try:
            return tuple(key(s) for s in stmts)
        finally:
            depth[0] -= 1

    def key(stmt: Stmt) -> tuple:
        if isinstance(stmt, OpStmt):
            return ("op", stmt.label, stmt.op, arg_key(stmt.args, f"{stmt.label or stmt.op}.", stmt))
        if isinstance(stmt, CallStmt):
            return ("call", stmt.label, stmt.block, arg_key(stmt.args, f"{stmt.label or stmt.block}."))
        if isinstance(stmt, SeqStmt):
            return ("seq", stmt.label, nested(stmt.body))
        if isinstance(stmt, ResidualStmt):
            # an identity shortcut has no projection to name: proj= may differ among instances
            hole(stmt.options, "proj", "proj", optional=True)
            # the holes' box is the statement's own dict (a copy's id would name nothing)
            options = arg_key(stmt.options, "", skip=("proj",))
            if stmt.shortcut is not None:
                options += (("proj", stmt.options.get("proj")),)
            return ("residual", options, tuple(key(s) for s in stmt.body),
                    None if stmt.shortcut is None else nested(stmt.shortcut))
        if isinstance(stmt, ParamStmt):
            for k in range(len(stmt.dims)):
                hole(stmt.dims, k, f"{stmt.label}.dim{k}")
            hole(stmt, "init", f"{stmt.label}.init")
            return ("param", stmt.label, len(stmt.dims), stmt.std, stmt.batch)
        if isinstance(stmt, StageStmt):
            return ("stage", stmt.label, stmt.block, arg_key(stmt.args, ""), stmt.count, repr(stmt.options))
        return (type(stmt).__name__, repr(vars(stmt)))

    return tuple(key(s) for s in stmts), holes


def mark_defaults(stmt: OpStmt) -> None:
    """Which keyword arguments are at their defaults for this use (``pad`` = kernel // 2)."""
    op = REGISTRY[stmt.op]
    required = {a.name: stmt.args[a.name] for a in op.positional if a.name in stmt.args}
    try:
        defaults = bind_args(op, required, stmt.in_shape)
    except Exception:
        return
    stmt.defaulted = {spec.name for spec in op.keywords
                      if spec.name in stmt.args and _same_value(stmt.args[spec.name], defaults.get(spec.name))}
    stmt.omit = set(stmt.defaulted)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        ta = a if isinstance(a, tuple) else None
        tb = b if isinstance(b, tuple) else None
        if ta is None:
            return all(x == a for x in tb)
        if tb is None:
            return all(x == b for x in ta)
        return ta == tb
    return a == b and type(a) is type(b)


@dataclass
class Block:
    """A block definition: its name, its parameters (name, type, default) and its body."""

    name: str
    params: list[tuple[str, str, Any]]
    body: list[Stmt]
    subst: dict[tuple[int, Any], Expr] = field(default_factory=dict)
    instances: list[Instance] = field(default_factory=list)
    lets: list[tuple[str, str]] = field(default_factory=list)  # ``let c_in = channels(input)``


def snake(name: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    text = re.sub(r"[^a-z0-9_]", "_", text).strip("_") or "block"
    return text if not text[0].isdigit() else f"b_{text}"


def usable(name: str) -> bool:
    return (name not in _KEYWORDS and name not in REGISTRY and name not in MODULE_ATTRIBUTES
            and name not in RESERVED_NAMES and not name.startswith("__"))


class Grouper:
    """Groups instances (children first) into blocks and fills each call's arguments."""

    def __init__(self, instances: list[Instance], root: Instance):
        # a plain nn.Sequential is written where it stands (its statements are the caller's)
        self.instances = [i for i in instances
                          if i is not root and type(i.module) is not nn.Sequential and not i.inline]
        self.root = root
        self.blocks: list[Block] = []

    def run(self) -> list[Block]:
        for instance in self.instances + [self.root]:
            for stmt in walk(instance.body):
                if isinstance(stmt, OpStmt):
                    mark_defaults(stmt)
        groups: dict[tuple, list[Instance]] = {}
        names: dict[tuple, str] = {}
        taken: set[str] = set()
        for instance in self.instances:
            self._fill_calls(instance.body)
            key = (type(instance.module).__qualname__, holes_and_key(instance.body)[0])
            if key not in groups:
                groups[key] = []
                names[key] = _fresh(snake(type(instance.module).__name__), taken)
            groups[key].append(instance)
            instance.block = names[key]
            if len(groups[key]) == 1:
                pass
            self._parameterise_later = True
        # Parameters per group, in order of first appearance (children's groups come first, so a
        # call's arguments are known before the caller's numbers are compared).
        order = list(groups)
        for key in order:
            self._parameterise(names[key], groups[key])
        self._fill_calls(self.root.body)
        # An nn.Sequential subclass used once (RegNet's AnyStage) is written where it stands,
        # as a sequential (or a stage): a block of its own would say nothing more.
        once = {b.name for b in self.blocks if len(b.instances) == 1 and b.instances[0].sequential}
        self.blocks = [b for b in self.blocks if b.name not in once]
        for body in [self.root.body] + [b.body for b in self.blocks]:
            _inline(body, once)
        return self.blocks

    def _fill_calls(self, stmts: list[Stmt]) -> None:
        for stmt in walk(stmts):
            if isinstance(stmt, CallStmt):
                stmt.block = stmt.instance.block
                stmt.args = dict(stmt.instance.args)

    def _parameterise(self, name: str, members: list[Instance]) -> None:
        for member in members:
            self._fill_calls(member.body)  # children's arguments, now known
        hole_lists = [holes_and_key(m.body)[1] for m in members]
        first = hole_lists[0]
        sole = members[0].sequential and type(members[0].module) is not nn.Sequential  # IS a sequential
        lets: dict[str, str] = {}
        params: list[tuple[str, str, Any]] = []
        columns: list[tuple[str, tuple]] = []  # param name -> its values per instance
        subst: dict[tuple[int, Any], Expr] = {}
        used: set[str] = set(_LET_NAMES.values())  # never a parameter of that name
        for index, hole in enumerate(first):
            if hole.optional:
                words = {h[index].get_optional() for h in hole_lists} - {None}
                if len(words) == 1:
                    hole.box[hole.key] = words.pop()
                continue
            values = tuple(holes[index].get() for holes in hole_lists)
            if hole.op is not None:
                # left out where every instance is at its default (pad = kernel // 2 follows kernel)
                if all(holes[index].key in holes[index].op.defaulted for holes in hole_lists):
                    hole.op.omit.add(hole.key)
                    continue
                hole.op.omit.discard(hole.key)
            if len(set(map(_typed, values))) == 1:
                continue
            if not hole.nested:
                expr = _relation(values, columns, _widths(members))
            elif not sole:  # in a nested scope the block's input is a name bound at its top
                named = [(_LET_NAMES[width], known) for width, known in _widths(members)]
                expr = _relation(values, columns, named)
                for width, _ in _widths(members):
                    if expr is not None and re.search(rf"\b{_LET_NAMES[width]}\b", expr):
                        lets.setdefault(_LET_NAMES[width], width)
            else:
                expr = _relation(values, columns, None)
            if expr is None:
                pname = _param_name(hole.site, used)
                used.add(pname)
                columns.append((pname, values))
                default = Counter(values).most_common(1)[0][0]
                params.append((pname, _type_of(values), default))
                expr = pname
            subst[(id(hole.box), hole.key)] = Expr(expr)
        body = members[0].body
        if members[0].sequential and type(members[0].module) is not nn.Sequential:
            body = [SeqStmt(None, body)]  # the block IS the nn.Sequential subclass
        block = Block(name, params, body, subst, members, sorted(lets.items()))
        self.blocks.append(block)
        for position, member in enumerate(members):
            member.args = {pname: values[position] for pname, values in columns}


def _inline(stmts: list[Stmt], names: set[str]) -> None:
    for index, stmt in enumerate(stmts):
        if isinstance(stmt, CallStmt) and stmt.block in names:
            _inline(stmt.instance.body, names)
            stmts[index] = SeqStmt(stmt.label, stmt.instance.body)
        elif isinstance(stmt, (SeqStmt, ResidualStmt)):
            _inline(stmt.body, names)
            if isinstance(stmt, ResidualStmt) and stmt.shortcut:
                _inline(stmt.shortcut, names)


def _typed(value: Any) -> tuple:
    return (type(value).__name__, value)


def _type_of(values: tuple) -> str:
    kinds = {type(v) for v in values}
    if kinds == {bool}:
        return "bool"
    if kinds <= {int}:
        return "int"
    if kinds <= {int, float}:
        return "float"
    return "str"


#: The names a block binds for its input's width, for expressions in nested scopes.
_LET_NAMES = {"channels(input)": "c_in", "dim(input, -1)": "d_in"}


def _widths(members: list[Instance]) -> list[tuple[str, list[int]]]:
    """What the block input's width is called: its channels, and for a channels-last map or
    a token sequence [.., D] (Swin, ViT) its last dim."""
    widths = [("channels(input)", [m.in_shape[0] for m in members])]
    if all(len(m.in_shape) >= 2 for m in members) and any(m.in_shape[-1] != m.in_shape[0] for m in members):
        widths.append(("dim(input, -1)", [m.in_shape[-1] for m in members]))
    return widths


def _relation(values: tuple, columns: list[tuple[str, tuple]],
              widths: list[tuple[str, list[int]]] | None) -> str | None:
    """An expression for ``values`` from earlier parameters or (``widths`` given) the block
    input's width."""
    widths = widths or []
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        for width, known in widths:
            if list(values) == known:
                return width
        for pname, known in columns:
            if known == values:
                return pname
            if not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in known):
                continue
            ratios = {v / k for v, k in zip(values, known)}
            if len(ratios) == 1:
                ratio = ratios.pop()
                if ratio.is_integer() and ratio > 1:
                    return f"{int(ratio)} * {pname}"
                if ratio > 0 and (1 / ratio).is_integer() and all(k % int(1 / ratio) == 0 for k in known):
                    return f"{pname} // {int(1 / ratio)}"
        for width, known in widths:
            ratios = {v / c for v, c in zip(values, known)}
            if len(ratios) == 1:
                ratio = ratios.pop()
                if ratio.is_integer() and ratio > 1:
                    return f"{int(ratio)} * {width}"
        for width, known in widths:
            for divisor in (2, 3, 4, 6, 8, 16):  # a squeeze-excitation's width: channels(input) // 4
                if all(v == c // divisor for v, c in zip(values, known)) and not any(c % divisor for c in known):
                    return f"{width} // {divisor}"
    else:
        for pname, known in columns:
            if known == values:
                return pname
    return None


def _param_name(site: str, used: set[str]) -> str:
    owner, _, arg = site.rpartition(".")
    short = _SHORT.get(arg, arg)
    for candidate in (short, f"{owner}_{short}" if owner else short):
        candidate = re.sub(r"[^A-Za-z0-9_]", "_", candidate)
        if candidate and not candidate[0].isdigit() and usable(candidate) and candidate not in used:
            return candidate
    return _fresh(re.sub(r"[^A-Za-z0-9_]", "_", f"p_{owner}_{short}"), used)


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 2
    while name in taken or not usable(name):
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


# ---- stages -------------------------------------------------------------------------------
def stages(stmts: list[Stmt], blocks: dict[str, Block], subst: dict) -> list[Stmt]:
    """Each ``sequential:`` of calls of one block, as a stage where the rules allow
    (``subst``: the enclosing block's parameters standing for numbers)."""
    out: list[Stmt] = []
    for stmt in stmts:
        if isinstance(stmt, SeqStmt):
            stmt.body = stages(stmt.body, blocks, subst)
            stage = _as_stage(stmt, blocks, subst)
            if stage is None:
                _labels_or_fail(stmt)
                stmt.body = _runs(stmt.body, blocks, subst)
            out.append(stage if stage is not None else stmt)
        elif isinstance(stmt, ResidualStmt):
            stmt.body = stages(stmt.body, blocks, subst)
            if stmt.shortcut:
                stmt.shortcut = stages(stmt.shortcut, blocks, subst)
            out.append(stmt)
        else:
            out.append(stmt)
    return out


def _runs(body: list[Stmt], blocks: dict[str, Block], subst: dict) -> list[Stmt]:
    """Consecutive positional calls of one block with the same arguments, as one
    ``stage block(args) x N, inline=true`` (MobileNet's flat ``features``)."""
    out: list[Stmt] = []
    k = 0
    while k < len(body):
        stmt, end = body[k], k + 1
        if isinstance(stmt, CallStmt) and stmt.label is None:
            key = _call_key(stmt, subst)
            while end < len(body) and isinstance(body[end], CallStmt) and body[end].label is None \
                    and body[end].block == stmt.block and _call_key(body[end], subst) == key:
                end += 1
        if end - k >= 2:
            defaults = {name: default for name, _, default in blocks[stmt.block].params}
            args = {name: value for name, value in dict(key).items()
                    if name not in defaults or _typed(value) != _typed(defaults[name])}
            out.append(StageStmt(None, stmt.block, args, end - k, {"inline": True}))
        else:
            out.extend(body[k:end])
        k = end
    return out


def _call_key(call: CallStmt, subst: dict) -> tuple:
    return tuple((name, subst.get((id(call.args), name), value)) for name, value in call.args.items())


def _labels_or_fail(seq: SeqStmt) -> None:
    """A sequential's children named ``block4-0`` are a stage's instances (``prefix=``) or
    nothing the language can name: say which, and why no stage formed."""
    odd = [s.label for s in seq.body if getattr(s, "label", None) and not re.match(r"[A-Za-z_]\w*\Z", s.label)]
    if odd:
        from ..errors import Diagnostic, SpecError, Span

        blocks = sorted({s.block for s in seq.body if isinstance(s, CallStmt)})
        raise SpecError([Diagnostic(
            Span("<from-torch>"),
            f"sequential '{seq.label}': its children are named {odd[0]!r} .. {odd[-1]!r}, which only a stage's "
            f"prefix= can name, and they are not one stage (they are {', '.join(blocks) or 'not all blocks'})",
            hint="the first block often differs only at a tiny input (a stride on a 1x1 map): try a larger --input")])


def _as_stage(seq: SeqStmt, blocks: dict[str, Block], subst: dict) -> StageStmt | None:
    calls = seq.body
    if not calls or not all(isinstance(c, CallStmt) for c in calls):
        return None
    if len({c.block for c in calls}) != 1:
        return None
    naming = _naming([c.label for c in calls])
    if naming is None:
        return None
    block = blocks[calls[0].block]
    defaults = {name: default for name, _, default in block.params}
    full = [{**defaults, **{k: subst.get((id(c.args), k), v) for k, v in c.args.items()}} for c in calls]
    args: dict[str, Any] = {}
    options: dict[str, Any] = dict(naming)
    index_used = False
    for name, _, default in block.params:
        values = [f[name] for f in full]
        if len(set(map(_typed, values))) == 1:
            if _typed(values[0]) != _typed(default):
                args[name] = values[0]
            continue
        rest = values[1:]
        if len(calls) < 3 and name != "stride":
            return None  # two calls that differ read better as two calls than as conditions
        if len(set(map(_typed, rest))) == 1:
            if name == "stride":
                options["stride"] = values[0]
                if _typed(rest[0]) != _typed(default):
                    args[name] = rest[0]
                continue
            args[name] = Expr(f"{value_text(values[0])} if i == 0 else {value_text(rest[0])}")
            index_used = True
            continue
        progression = _progression(values) or _alternation(values)
        if progression is None:
            return None
        args[name] = Expr(progression)
        index_used = True
    if index_used:
        options["index"] = Expr("i")
    return StageStmt(seq.label, block.name, args, len(calls), options)


def _naming(labels: list[str | None]) -> dict[str, Any] | None:
    """Stage options that give these instance names: ``0..N-1``, or ``prefix``/``start``."""
    if all(label is None for label in labels):
        return {}
    if any(label is None for label in labels):
        return None
    found = [re.match(r"(.*?)(\d+)\Z", label) for label in labels]
    if not all(found) or len({m.group(1) for m in found}) != 1:
        return None
    numbers = [int(m.group(2)) for m in found]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))) or any(
            m.group(2) != str(int(m.group(2))) for m in found):
        return None
    options: dict[str, Any] = {"prefix": found[0].group(1)}
    if numbers[0]:
        options["start"] = numbers[0]
    return options


def _progression(values: list[Any]) -> str | None:
    """``a + b * i`` when the values step evenly (stochastic depth growing with depth)."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) or len(values) < 2:
        return None
    step = values[1] - values[0]
    if all(isinstance(v, int) for v in values):
        ok = all(values[k] == values[0] + step * k for k in range(len(values)))
    else:
        ok = all(abs(values[k] - (values[0] + step * k)) <= 1e-12 * max(1.0, abs(values[k]))
                 for k in range(len(values)))
    if not ok:
        return None
    start = value_text(values[0])
    return f"{start} + {value_text(step)} * i" if values[0] else f"{value_text(step)} * i"


def _alternation(values: list[Any]) -> str | None:
    """``A if i % 2 == 0 else B`` when the values alternate (Swin's shift: 0, w // 2, 0, ...)."""
    if len(values) < 3 or any(values[k] != values[k % 2] for k in range(len(values))) or any(
            type(values[k]) is not type(values[k % 2]) for k in range(len(values))):
        return None
    return f"{value_text(values[0])} if i % 2 == 0 else {value_text(values[1])}"


__all__ = ["Block", "Grouper", "stages", "mark_defaults", "holes_and_key"]
