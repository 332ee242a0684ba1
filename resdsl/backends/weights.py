"""Checkpoints: read one safely, match it to a spec, explain every difference in groups.

Four steps, each usable alone (``load_weights`` in :mod:`resdsl.backends.torch` and
``resdsl weights-diff`` chain them):

1. :func:`read_checkpoint` opens the file once, bounds it, and lets
   ``torch.load(weights_only=True)`` read it; a dict wrapping the state dict
   (``{"state_dict": ...}``, ``{"model": ...}``) is unwrapped, and the notes say so.
2. :func:`read_map` / :func:`rename` apply a ``--weights-map`` file (ordered
   ``REGEX -> REPLACEMENT`` rules), :func:`by_order` a ``--weights-by-order`` load.
3. :func:`compare` sorts the differences: missing, unexpected, another shape,
   another kind of value, not a tensor.
4. :func:`report` groups them by module subtree and spec line, counts first, then
   at most about :data:`DETAIL_LINES` lines of detail: a stage with more blocks in
   the checkpoint is one line, not one error per tensor.

>>> import torch
>>> spec = {"fc.weight": ((2, 4), torch.float32), "fc.bias": ((2,), torch.float32)}
>>> found = compare(spec, {"fc.weight": torch.zeros(2, 4), "head.bias": torch.zeros(2)})
>>> found.counts()
{'missing': 1, 'unexpected': 1, 'shape': 0, 'kind': 0, 'not_tensor': 0}
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import zipfile
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Iterable, Mapping

import torch

from ..shapes import format_shape
from ..errors import Diagnostic, Span, SpecError, did_you_mean
from ..graph import containers, op_nodes

if TYPE_CHECKING:  # pragma: no cover
    from .torch import Net

#: key -> (shape, dtype): what a spec's state dict holds, in its order.
Expected = dict[str, tuple[tuple[int, ...], torch.dtype]]

#: Entries of a checkpoint dict that may hold the state dict, tried in this order
#: (Lightning and timm: state_dict; torchvision's reference scripts: model).
WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights")
#: Detail lines a report shows after its counts (the rest are counted).
DETAIL_LINES = 20
#: Bounds of a --weights-map file and of the regex work it may cause (docs/security.md).
MAX_MAP_BYTES = 65_536
MAX_RULES = 1_000
MAX_PATTERN_CHARS = 200
MAX_KEY_CHARS = 256
MAX_MATCH_WORK = 10**10


def format_bytes(count: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count} bytes"


def weights_error(where: Span, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(where, message, hint=hint or
                                 "pass a file saved with torch.save(model.state_dict(), path)")])


def expected_of(model: torch.nn.Module) -> Expected:
    """The spec's keys, shapes and dtypes, read from a built module (a meta one will do)."""
    return {key: (tuple(value.shape), value.dtype) for key, value in model.state_dict().items()}


# ---- 1. reading ------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """A loaded checkpoint: its state dict (file order), where it came from, what was done."""

    state: dict[Any, Any]
    where: Span
    notes: list[str] = field(default_factory=list)


def read_checkpoint(path: str | os.PathLike, limit: int, room: int | None = None) -> Checkpoint:
    """Open ``path`` once and load it with torch's weights-only unpickler.

    Before torch reads it: a regular file (a FIFO would block, a directory or device is
    refused; a symbolic link is followed to one), at most ``limit`` bytes and ``room``
    (free memory), every zip entry stored (a compressed one is a zip bomb), and for the
    legacy (non-zip) format, storages and tensor extents no larger than the file
    itself (torch would allocate what the pickle declares before reading the data).
    """
    where = Span(str(path))
    with _open_regular(path, where) as stream:
        legacy = _check_file(stream, where, limit, room)
        if legacy:
            _check_legacy_sizes(stream, where)
        try:
            loaded = torch.load(stream, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, TypeError, KeyError, AttributeError,
                IndexError, OverflowError, MemoryError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            raise weights_error(where, f"cannot load weights: {_first_line(exc)}") from None
    return unwrap(loaded, where)


def _first_line(exc: BaseException) -> str:
    """torch's messages run to many lines (weights-only ones to a page); the first says
    what failed. Its allocator's and record checks' wording is put in plain terms."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "record size" in text or "not resizable" in text or "can't allocate memory" in text:
        return f"the file is corrupt: a tensor declares more data than the file holds ({text[:160]})"
    return text[:300]


def _open_regular(path: str | os.PathLike, where: Span) -> IO[bytes]:
    """Open once, without blocking, and check the opened file: a regular file only."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise weights_error(where, f"cannot load weights: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise weights_error(where, f"cannot load weights: not a regular file ({what})")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_file(stream: IO[bytes], where: Span, limit: int, room: int | None) -> bool:
    """Refuse a file bigger than ``limit`` or ``room``, or a zip with a compressed entry.
    Returns True for the legacy (non-zip) format; the stream is left at its start.
    The format is told as torch tells it, by the first bytes: a pickle with a zip
    directory at its end is still read as a pickle by torch, so it is checked as one."""
    size = os.fstat(stream.fileno()).st_size
    if size > limit:
        raise weights_error(where, f"cannot load weights: the file has {format_bytes(size)}, more than "
                            f"the {format_bytes(limit)} a checkpoint of this spec can need")
    if room is not None and size > room:
        raise weights_error(where, f"cannot load weights: the file has {format_bytes(size)}, more than the "
                            f"{format_bytes(room)} of memory available")
    if size == 0:
        raise weights_error(where, "cannot load weights: the file is empty")
    if stream.read(4) != b"PK\x03\x04":
        stream.seek(0)
        return True
    try:
        with zipfile.ZipFile(stream) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise weights_error(where, f"cannot load weights: not a valid checkpoint, the zip is truncated or "
                            f"corrupt ({exc})") from None
    stored = 0
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size != entry.compress_size:
            raise weights_error(where, f"cannot load weights: entry '{entry.filename[:80]}' is compressed "
                                "(torch.save stores entries uncompressed; a compressed one can inflate "
                                "without bound)")
        stored += entry.file_size
    if stored > limit:
        raise weights_error(where, f"cannot load weights: the entries hold {format_bytes(stored)}, more than "
                            f"the {format_bytes(limit)} a checkpoint of this spec can need")
    stream.seek(0)
    return False


def _check_legacy_sizes(stream: IO[bytes], where: Span) -> None:
    """A legacy checkpoint's storages are allocated at the size its pickle declares, and a
    tensor may declare a shape beyond its storage (torch then grows the storage): read the
    pickle first with torch's weights-only unpickler and storages on the meta device
    (which allocates nothing), and refuse any declared size larger than the file. The zip
    format needs no such pass: torch checks each record's size and never grows a storage."""
    from torch import _weights_only_unpickler as safe

    size = os.fstat(stream.fileno()).st_size
    declared: dict[Any, int] = {}  # root key -> bytes
    storages: list[tuple[Any, int]] = []  # (meta storage, its declared bytes)

    def persistent_load(pid: Any) -> Any:
        if not (type(pid) is tuple and len(pid) >= 5 and type(pid[4]) is int and pid[4] >= 0
                and isinstance(getattr(pid[1], "dtype", None), torch.dtype)):
            raise ValueError("a storage reference of an unknown form")
        nbytes = pid[4] * torch._utils._element_size(pid[1].dtype)
        declared[pid[2]] = max(declared.get(pid[2], 0), nbytes)
        if sum(declared.values()) > size:
            raise _Oversized(f"its storages declare {format_bytes(sum(declared.values()))}")
        meta = torch.UntypedStorage(nbytes, device="meta")
        storages.append((meta, nbytes))
        return torch.storage.TypedStorage(wrap_storage=meta, dtype=pid[1].dtype, _internal=True)

    try:
        for _ in range(3):  # magic number, protocol version, system info
            safe.Unpickler(stream, encoding="utf-8").load()
        unpickler = safe.Unpickler(stream, encoding="utf-8")
        unpickler.persistent_load = persistent_load
        unpickler.load()
    except _Oversized as exc:
        raise weights_error(where, f"cannot load weights: the file is corrupt: {exc}, more than the "
                            f"file's {format_bytes(size)}") from None
    except Exception:  # noqa: BLE001 - anything else the pickle provokes: torch.load reads it
        pass  # again below, stops at the same point and words the failure
    finally:
        stream.seek(0)
    # A tensor shaped beyond its storage grew the meta storage (torch would grow the real
    # one): checked however the reading ended, since torch gets as far before it fails.
    grown = max((meta.nbytes() for meta, nbytes in storages if meta.nbytes() > nbytes), default=0)
    if grown:
        raise weights_error(where, f"cannot load weights: the file is corrupt: a tensor's shape needs "
                            f"{format_bytes(grown)} of storage, more than its storage declares and the file's "
                            f"{format_bytes(size)}")


class _Oversized(Exception):
    pass


def unwrap(loaded: Any, where: Span) -> Checkpoint:
    """The state dict in ``loaded``: itself, or the first of :data:`WRAPPERS` holding one."""
    if not isinstance(loaded, dict):
        raise weights_error(where, f"cannot load weights: the file holds a {type(loaded).__name__}, "
                            "not a state dict")
    if any(isinstance(value, torch.Tensor) for value in loaded.values()):
        return Checkpoint(loaded, where)
    for name in WRAPPERS:
        inner = loaded.get(name)
        if isinstance(inner, dict) and any(isinstance(value, torch.Tensor) for value in inner.values()):
            others = sorted(_shown_key(key) for key in loaded if key != name)
            also = f" (also there: {', '.join(others[:6])}{', ...' if len(others) > 6 else ''})" if others else ""
            return Checkpoint(inner, where, [f"the checkpoint is a dict; its state dict is entry '{name}'{also}"])
    if not loaded:
        raise weights_error(where, "cannot load weights: the file holds an empty dict")
    shown = ", ".join(sorted(_shown_key(key) for key in loaded)[:8])
    raise weights_error(where, f"cannot load weights: the file holds a dict of no tensors (keys: {shown})",
                        hint=f"a checkpoint that wraps its state dict keeps it under one of: {', '.join(WRAPPERS)}")


def rules_of(weights_map: "str | os.PathLike | Mapping[str, str] | None") -> list[Rule]:
    """The rules of a map file, or of ``{pattern: replacement}`` in order (API callers)."""
    if weights_map is None:
        return []
    if isinstance(weights_map, Mapping):
        rules, where = [], "<weights_map>"
        for number, (source, replacement) in enumerate(weights_map.items(), 1):
            try:
                rules.append(make_rule(str(source), str(replacement), Span(where, number, 1)))
            except ValueError as exc:
                raise SpecError([Diagnostic(Span(where, number, 1), f"weights map: rule {number} "
                                            f"({_shown_key(str(source))!r}): {exc}")]) from None
        return rules
    return read_map(weights_map)


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _shown_key(key: Any) -> str:
    text = key if type(key) is str else repr(key) if isinstance(key, (int, float, tuple)) else type(key).__name__
    return text if len(text) <= 80 else text[:77] + "..."


# ---- 2. mapping ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One ``REGEX -> REPLACEMENT`` line of a weights map."""

    pattern: re.Pattern
    replacement: str
    span: Span
    degree: int  # one search costs at most branches * (len(key) + 1) ** degree steps
    branches: int


def read_map(path: str | os.PathLike) -> list[Rule]:
    """Read a ``--weights-map`` file (at most :data:`MAX_MAP_BYTES`, a regular file)."""
    where = Span(str(path))
    with _open_regular(path, where) as stream:
        data = stream.read(MAX_MAP_BYTES + 1)
    if len(data) > MAX_MAP_BYTES:
        raise weights_error(where, f"weights map: more than {MAX_MAP_BYTES:,} bytes", hint="a map holds rules, "
                            "one a line; a rule with a group (\\1) covers many keys")
    try:
        text = data.decode("utf-8-sig")  # a map saved by Notepad starts with a BOM: not part of a rule
    except UnicodeDecodeError as exc:
        raise weights_error(where, f"weights map: not UTF-8 text (byte {exc.start})") from None
    return parse_map(text, str(path))


_RULE = re.compile(r"(?P<pattern>\S.*?)\s+->(?:\s+(?P<replacement>.*?))?\s*")


def parse_map(text: str, filename: str = "<map>") -> list[Rule]:
    """Rules from ``REGEX -> REPLACEMENT`` lines; blank lines and ``#`` lines are skipped.

    >>> [rule.pattern.pattern for rule in parse_map("# DataParallel\\n^module\\\\. -> \\n")]
    ['^module\\\\.']
    """
    rules, problems = [], []
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        column = len(line) - len(line.lstrip()) + 1
        span = Span(filename, number, column, number, len(line.rstrip()) + 1)
        try:
            rules.append(_rule(stripped, span))
        except ValueError as exc:
            problems.append(Diagnostic(span, f"weights map: {exc}", source_line=line,
                                       hint="each line is `REGEX -> REPLACEMENT` (Python re syntax, "
                                       "\\1 for a group; an empty replacement deletes the match)"))
        if len(rules) > MAX_RULES:
            problems.append(Diagnostic(span, f"weights map: more than {MAX_RULES:,} rules"))
            break
    if problems:
        raise SpecError(problems[:20])
    return rules


def _rule(text: str, span: Span) -> Rule:
    found = _RULE.fullmatch(text)
    if found is None:
        raise ValueError("expected `REGEX -> REPLACEMENT`")
    return make_rule(found["pattern"], found["replacement"] or "", span)


def make_rule(source: str, replacement: str, span: Span) -> Rule:
    """A checked rule: the pattern compiles, is short and cannot backtrack exponentially,
    and the replacement names only groups the pattern has (Python checks it eagerly)."""
    if len(source) > MAX_PATTERN_CHARS or len(replacement) > MAX_KEY_CHARS:
        raise ValueError(f"a pattern has at most {MAX_PATTERN_CHARS} characters and a replacement at most "
                         f"{MAX_KEY_CHARS}")
    try:
        pattern = re.compile(source)
        pattern.sub(replacement, "")
    except (re.error, IndexError) as exc:
        raise ValueError(str(exc)) from None
    except RecursionError:  # a pattern nested hundreds deep: sre's parser recurses
        raise ValueError("the pattern is nested too deeply") from None
    return Rule(pattern, replacement, span, *_pattern_work(pattern))


def _parser() -> tuple[Any, Any]:
    """Python's own regex parser and its opcode constants (``re._parser`` since 3.11)."""
    try:
        from re import _constants as constants, _parser as parser  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_constants as constants
        import sre_parse as parser
    return parser, constants


def _pattern_work(pattern: re.Pattern) -> tuple[int, int]:
    """How much backtracking one search may cost, as (degree, branches): a search costs
    at most ``branches * (len(key) + 1) ** degree`` steps. Or raise.

    Python's ``re`` backtracks: a repeated group holding a repetition or an alternation,
    ``(a+)+`` or ``(a|aa)*``, is exponential in the key's length, so it is refused, and
    so are backreferences, lookarounds and conditionals. What is left is polynomial:
    each variable-width repetition and an unanchored start (``re.search`` tries every
    position) add one degree; alternations and short repetitions (``a?``: two ways)
    multiply the branches.
    """
    parser, c = _parser()
    repeats = {c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)}
    refused = {c.GROUPREF, c.GROUPREF_EXISTS, c.ASSERT, c.ASSERT_NOT}

    def nested(op: Any, value: Any) -> list:
        if op in repeats:
            return [value[2]]
        if op == c.SUBPATTERN:
            return [value[-1]]
        if op == c.BRANCH:
            return list(value[1])
        if op == getattr(c, "ATOMIC_GROUP", None):
            return [value]
        return []

    def holds(items: Iterable[Any], ops: set) -> bool:
        return any(op in ops or any(holds(sub, ops) for sub in nested(op, value)) for op, value in items)

    def walk(items: Iterable[Any]) -> tuple[int, int]:
        degree, branches = 0, 1
        for op, value in items:
            if op in refused:
                raise ValueError("backreferences, lookarounds and conditionals are not allowed in a weights map")
            if op in repeats:
                low, high, body = value
                if holds(body, repeats | {c.BRANCH} | refused):
                    raise ValueError("a repeated group that holds a repetition or `|` can take exponential "
                                     "time; write it without nesting")
                if high == c.MAXREPEAT or high - low > 8:
                    degree += 1
                else:
                    branches *= high - low + 1
            elif op == c.BRANCH:
                results = [walk(alternative) for alternative in value[1]]
                degree += max(d for d, _ in results)
                branches *= sum(b for _, b in results)
            else:
                for sub in nested(op, value):
                    d, b = walk(sub)
                    degree, branches = degree + d, branches * b
        return degree, branches

    items = list(parser.parse(pattern.pattern, pattern.flags))
    degree, branches = walk(items)
    anchored = bool(items) and items[0] == (c.AT, c.AT_BEGINNING)
    return degree + (0 if anchored else 1), branches


def _rule_cost(rule: Rule, key_chars: int) -> int:
    return rule.branches * (key_chars + 1) ** rule.degree


def rename(state: dict[Any, Any], rules: list[Rule], where: Span) -> tuple[dict[Any, Any], list[str]]:
    """Rename every key by the first rule whose pattern it contains; returns the new dict
    (same order) and notes saying how many keys were renamed, with up to three examples."""
    keys = [key for key in state if type(key) is str]
    long = next((key for key in keys if len(key) > MAX_KEY_CHARS), None)
    if long is not None:
        raise weights_error(where, f"weights map: the checkpoint has a key of {len(long):,} characters, more "
                            f"than the {MAX_KEY_CHARS} a map is matched against ('{_shown_key(long)}')")
    work = sum(_rule_cost(rule, len(key)) for rule in rules for key in keys)
    if work > MAX_MATCH_WORK:
        raise SpecError([Diagnostic(rules[0].span if rules else where, f"weights map: {len(rules):,} rules x "
                                    f"{len(keys):,} keys could cost {work:.1e} regex steps, more than the "
                                    f"{MAX_MATCH_WORK:.0e} allowed", hint="anchor patterns with ^ and use fewer "
                                    "`.*` (each one multiplies the work by the key's length)")])
    renamed: dict[Any, Any] = {}
    sources: dict[Any, Any] = {}
    examples, count = [], 0
    for key, value in state.items():
        new = _apply(rules, key) if type(key) is str else key
        if new in renamed:
            raise weights_error(where, f"weights map: '{_shown_key(sources[new])}' and '{_shown_key(key)}' "
                                f"both become '{_shown_key(new)}'", hint="make the rules tell them apart")
        renamed[new], sources[new] = value, key
        if new != key:
            count += 1
            if len(examples) < 3:
                examples.append(f"'{_shown_key(key)}' -> '{_shown_key(new)}'")
    note = f"weights map: renamed {count:,} of {len(state):,} keys" + (f", e.g. {', '.join(examples)}" if examples else "")
    return renamed, [note]


def _apply(rules: list[Rule], key: str) -> str:
    for rule in rules:
        found = rule.pattern.search(key)
        if found is not None:
            try:
                new = key[:found.start()] + found.expand(rule.replacement) + key[found.end():]
            except (re.error, IndexError) as exc:
                raise SpecError([Diagnostic(rule.span, f"weights map: cannot rename '{_shown_key(key)}': {exc}")]) \
                    from None
            if len(new) > MAX_KEY_CHARS:
                raise SpecError([Diagnostic(rule.span, f"weights map: renaming '{_shown_key(key)}' makes a key of "
                                            f"{len(new):,} characters, more than {MAX_KEY_CHARS}")])
            return new
    return key


def by_order(expected: Expected, state: dict[Any, Any], net: "Net", where: Span) -> tuple[dict, list[str]]:
    """The checkpoint's values under the spec's names, by position, when every shape matches
    in order; else a SpecError at the first position where they diverge."""
    values = list(state.items())
    for position, ((key, (shape, dtype)), (theirs, value)) in enumerate(zip(expected.items(), values)):
        problem = _value_problem(value, shape, dtype)
        if problem is not None:
            span = spans_of(net).get(_module(key), Span(net.filename))
            raise SpecError([Diagnostic(
                span, f"weights by order: tensor {position + 1} differs: the spec's '{key}' is "
                f"{_shape(shape)}; the checkpoint's '{_shown_key(theirs)}' {problem}",
                source_line=source_line(net, span),
                notes=(f"tensors 1-{position} match in shape and order" if position else
                       "the first tensor already differs",),
                hint="loading by position needs the same tensors in the same order; "
                "`resdsl weights-diff SPEC CHECKPOINT` shows the differences by name")])
    if len(values) != len(expected):
        raise weights_error(where, f"weights by order: the spec makes {len(expected):,} tensors, the checkpoint "
                            f"holds {len(values):,}; the first {min(len(values), len(expected)):,} match in "
                            "shape and order", hint="loading by position needs the same number of tensors")
    pairs = [(theirs, ours) for (theirs, _), ours in zip(values, expected) if theirs != ours]
    swapped = _swapped(dict(pairs))
    if swapped:  # equal shapes cannot tell these apart, but their names do: by position is wrong
        raise weights_error(where, "weights by order: the checkpoint names the spec's tensors in another order: "
                            + ", ".join(f"its '{_shown_key(a)}' would fill the spec's '{b}'" for a, b in swapped[:3]),
                            hint="load by name (without --weights-by-order); by position, tensors of one shape "
                            "are told apart only by where they stand")
    shown = ", ".join(f"'{_shown_key(a)}' -> '{b}'" for a, b in pairs[:3])
    note = f"weights by order: {len(values):,} tensors matched by position, {len(pairs):,} renamed" + \
        (f", e.g. {shown}" if shown else "")
    return {ours: value for ours, (_, value) in zip(expected, values)}, [note]


def _swapped(renames: dict[Any, str]) -> list[tuple[Any, str]]:
    """Renames that go round in a cycle (``a -> b``, ``b -> a``): the checkpoint holds those
    names itself, in another order. A chain (``conv_1 -> conv_0``, ``conv_2 -> conv_1``) is
    a renumbering and is left alone."""
    done: set[Any] = set()  # each key walked once: linear in the keys
    for start in renames:
        path: dict[Any, None] = {}
        key = start
        while key in renames and key not in done and key not in path:
            path[key] = None
            key = renames[key]
        if key in path:
            cycle = list(path)[list(path).index(key):]
            return [(a, renames[a]) for a in cycle]
        done.update(path)
    return []


# ---- 3. comparing ----------------------------------------------------------------------------
@dataclass
class Mismatch:
    """Every difference between a spec's state dict and a checkpoint's."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[Any] = field(default_factory=list)
    shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    kind: list[tuple[str, str]] = field(default_factory=list)  # (key, what the checkpoint holds)
    not_tensor: list[tuple[str, str]] = field(default_factory=list)  # (key, type name)
    spec_tensors: int = 0
    checkpoint_tensors: int = 0
    cast: dict[tuple[str, str], int] = field(default_factory=dict)  # (from, to) -> count, floats only

    def counts(self) -> dict[str, int]:
        return {"missing": len(self.missing), "unexpected": len(self.unexpected), "shape": len(self.shape),
                "kind": len(self.kind), "not_tensor": len(self.not_tensor)}

    def __bool__(self) -> bool:
        return any(self.counts().values())


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating-point" if dtype.is_floating_point else "integer"


def _value_problem(value: Any, shape: tuple[int, ...], dtype: torch.dtype) -> str | None:
    """Why ``value`` cannot fill a spec tensor of ``shape`` and ``dtype`` (None: it can)."""
    if not isinstance(value, torch.Tensor):
        return f"is {_a(type(value).__name__)}, not a tensor"
    if value.layout != torch.strided or value.device.type == "meta":
        return f"is a {value.layout} tensor on {value.device.type}, not a dense one with values"
    if _kind(value.dtype) != _kind(dtype):
        return f"holds {_kind(value.dtype)} values ({value.dtype}), not {_kind(dtype)} ({dtype})"
    if tuple(value.shape) != tuple(shape):
        return f"is {_shape(value.shape)}"
    return None


def compare(expected: Expected, state: dict[Any, Any]) -> Mismatch:
    """Sort every difference; floating-point tensors of another precision are not one
    (load_state_dict casts them: the count is in ``cast``)."""
    found = Mismatch(spec_tensors=len(expected), checkpoint_tensors=len(state))
    for key, (shape, dtype) in expected.items():
        if key not in state:
            found.missing.append(key)
            continue
        value = state[key]
        if not isinstance(value, torch.Tensor):
            found.not_tensor.append((key, type(value).__name__))
        elif value.layout != torch.strided or value.device.type == "meta":
            found.kind.append((key, f"a {value.layout} tensor on {value.device.type}, not a dense one with values"))
        elif _kind(value.dtype) != _kind(dtype):
            found.kind.append((key, f"{_kind(value.dtype)} values ({value.dtype}) where the spec has "
                                    f"{_kind(dtype)} ({dtype})"))
        elif tuple(value.shape) != shape:
            found.shape.append((key, shape, tuple(value.shape)))
        elif value.dtype != dtype:
            pair = (str(value.dtype).replace("torch.", ""), str(dtype).replace("torch.", ""))
            found.cast[pair] = found.cast.get(pair, 0) + 1
    found.unexpected = [key for key in state if type(key) is not str or key not in expected]
    return found


def cast_notes(found: Mismatch) -> list[str]:
    return [f"weights: cast {count:,} {a} tensors to {b}" for (a, b), count in sorted(found.cast.items())]


# ---- 4. grouping and reporting ---------------------------------------------------------------
def spans_of(net: "Net") -> dict[str, Span]:
    """Module path -> the span of the statement that makes it (ops, then containers)."""
    spans = {path: box.span for path, box in containers(net.graph).items() if path}
    spans.update({data.module: data.span for data in op_nodes(net.graph) if data.module})
    return spans


def source_line(net: "Net", span: Span) -> str | None:
    from .torch import _source_line

    return _source_line(net, span)


def _module(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def _prefixes(keys: Iterable[str]) -> set[str]:
    """Every module path above a key (``a.b.c`` gives ``a`` and ``a.b``), and ``""``."""
    found = {""}
    for key in keys:
        found.update(_paths(key))
    return found


def _root(key: str, other: set[str]) -> str:
    """The highest module path of ``key`` that the other side lacks; ``key`` itself when the
    other side has its module (a tensor missing from a module both have)."""
    return next((path for path in _paths(key) if path not in other), key)


def _shape(shape: Iterable[int]) -> str:
    return format_shape(tuple(shape))


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _listed(items: list[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit:,} more)" if len(items) > limit else "")


@dataclass
class _Group:
    """Diagnostics ranked for display: earlier spec position first."""

    order: tuple[int, int]
    diagnostic: Diagnostic
    tensors: int


def report(net: "Net", expected: Expected, state: dict[Any, Any], found: Mismatch, where: Span,
           renamed: list[tuple[str, str]] | None = None, max_lines: int = DETAIL_LINES) -> list[Diagnostic]:
    """The grouped diagnostics of ``found``: counts first, then groups by module subtree
    and spec line while they fit in ``max_lines`` rendered lines, then what was left out.
    Empty when nothing differs."""
    if not found:
        return []
    spans = spans_of(net)
    position = {key: index for index, key in enumerate(expected)}
    if renamed is not None:
        groups = [_renamed_group(renamed, where)]
    else:
        groups = _groups(net, expected, state, found, spans, position)
    groups.sort(key=lambda group: group.order)
    shown, lines = [], 0
    for group in groups:
        size = group.diagnostic.render().count("\n") + 2  # and the blank line before it
        if shown and lines + size > max_lines:
            break
        shown.append(group.diagnostic)
        lines += size
    left = groups[len(shown):]
    if left:
        shown.append(Diagnostic(where, f"weights: {_plural(len(left), 'more group')} of differences "
                                f"({_plural(sum(g.tensors for g in left), 'tensor')}) not shown",
                                hint="`resdsl weights-diff SPEC CHECKPOINT --json` lists every key"))
    return [_summary(found, where), *shown]


def _summary(found: Mismatch, where: Span) -> Diagnostic:
    parts = [f"{len(found.missing):,} missing", f"{len(found.unexpected):,} unexpected",
             f"{len(found.shape):,} of another shape"]
    parts += [f"{len(found.kind):,} of another kind"] * bool(found.kind)
    parts += [f"{len(found.not_tensor):,} not tensors"] * bool(found.not_tensor)
    return Diagnostic(where, f"weights: the checkpoint does not match the spec: {', '.join(parts)} (the spec "
                      f"makes {found.spec_tensors:,} tensors, the checkpoint holds {found.checkpoint_tensors:,})")


def in_order(expected: Expected, state: dict[Any, Any]) -> list[tuple[str, str]] | None:
    """(checkpoint key, spec key) pairs when the checkpoint holds tensors of the spec's shapes
    and kinds in the spec's order under other names; None otherwise."""
    if len(state) != len(expected) or not expected:
        return None
    for (shape, dtype), value in zip(expected.values(), state.values()):
        if _value_problem(value, shape, dtype) is not None:
            return None
    # whole keys: a map written from these must match them (shortened only where shown)
    pairs = [(theirs if type(theirs) is str else _shown_key(theirs), ours) for theirs, ours in zip(state, expected)]
    if _swapped({a: b for a, b in pairs if a != b}):
        return None  # the spec's own names in another order: by position would load them crossed
    return pairs if any(a != b for a, b in pairs) else None


def _renamed_group(pairs: list[tuple[str, str]], where: Span) -> _Group:
    differ = [(a, b) for a, b in pairs if a != b]
    examples = "; ".join(f"'{_shown_key(a)}' is '{b}' in the spec" for a, b in differ[:2])
    prefix = common_prefix_change(pairs)
    fix = (f"a one-line --weights-map: `{prefix[0]} -> {prefix[1]}`" if prefix else
           "--weights-map FILE, written by `resdsl weights-diff SPEC CHECKPOINT --write-map FILE`")
    return _Group((-1, 0), Diagnostic(
        where, f"weights: the checkpoint's {len(pairs):,} tensors match the spec's in count, shape and order, "
        f"but {_plural(len(differ), 'name')} differ ({examples})",
        hint=f"load by position with --weights-by-order (build(weights_by_order=True)), or rename with {fix}"),
        len(differ))


def common_prefix_change(pairs: list[tuple[str, str]]) -> tuple[str, str] | None:
    """A (pattern, replacement) rule that renames every checkpoint key to its spec key by
    changing one shared leading part (``module.`` of DataParallel), or None."""
    first_a, first_b = pairs[0]
    for cut in range(len(first_a) + 1):  # the shortest differing head of the first pair
        head_a, tail = first_a[:cut], first_a[cut:]
        if not first_b.endswith(tail):
            continue
        head_b = first_b[:len(first_b) - len(tail)]
        if all(a.startswith(head_a) and b == head_b + a[len(head_a):] for a, b in pairs):
            return ("^" + re.escape(head_a), head_b.replace("\\", "\\\\"))
    return None


#: A checkpoint key longer or deeper than this is no module path: grouped with the keys
#: that are not strings, so grouping stays linear in the keys (prefixes cost depth x length).
MAX_PATH_CHARS = 1_024
MAX_PATH_PARTS = 32


def _path_like(key: Any) -> bool:
    return type(key) is str and len(key) <= MAX_PATH_CHARS and key.count(".") < MAX_PATH_PARTS


def _groups(net: "Net", expected: Expected, state: dict[Any, Any], found: Mismatch,
            spans: dict[str, Span], position: dict[str, int]) -> list[_Group]:
    theirs = [key for key in state if _path_like(key)]
    spec_paths, ckpt_paths = _prefixes(expected), _prefixes(theirs)
    missing_roots: dict[str, list[str]] = {}
    for key in found.missing:
        missing_roots.setdefault(_root(key, ckpt_paths), []).append(key)
    unexpected_roots: dict[str, list[Any]] = {}
    odd_keys = [key for key in found.unexpected if not _path_like(key)]
    for key in found.unexpected:
        if _path_like(key):
            unexpected_roots.setdefault(_root(key, spec_paths), []).append(key)
    first = _first_positions(expected)
    groups = _numbered_groups(net, missing_roots, unexpected_roots, theirs, spans, first, expected)
    groups += _subtree_groups(net, missing_roots, unexpected_roots, spans, position, first)
    groups += _shape_groups(net, found, spans, position)
    groups += _value_groups(net, found, spans, position)
    if odd_keys:
        groups.append(_Group((len(position) + 1, 0), Diagnostic(
            Span(net.filename), f"weights: {_plural(len(odd_keys), 'key')} of the checkpoint "
            f"{'is' if len(odd_keys) == 1 else 'are'} not a module path ({_listed([_shown_key(k) for k in odd_keys])})",
            hint=f"a state dict's keys are dotted module paths (strings of at most {MAX_PATH_CHARS:,} characters "
            f"and {MAX_PATH_PARTS} parts)"), len(odd_keys)))
    return groups


def _first_positions(expected: Expected) -> dict[str, int]:
    """Module path -> the position of the spec's first tensor under it."""
    first: dict[str, int] = {}
    for index, key in enumerate(expected):
        for path in _paths(key):
            first.setdefault(path, index)
    return first


def _paths(key: str) -> list[str]:
    """The module paths above ``key``, outermost first (``a.b.c``: ``a``, ``a.b``)."""
    ends = [index for index, char in enumerate(key) if char == "."]
    return [key[:end] for end in ends]


def _locate(net: "Net", path: str, spans: dict[str, Span]) -> Span:
    """The statement making ``path`` or its nearest ancestor; the network line at worst."""
    while path and path not in spans:
        path = _module(path)
    return spans.get(path) or containers(net.graph)[""].span


def _at(net: "Net", span: Span, message: str, hint: str | None = None, notes: tuple[str, ...] = ()) -> Diagnostic:
    return Diagnostic(span, message, hint=hint, source_line=source_line(net, span), notes=notes)


_NUMBER = re.compile(r"[0-9]{1,9}")


def _numbered(root: str) -> bool:
    return _NUMBER.fullmatch(root.rsplit(".", 1)[-1]) is not None


def _numbered_groups(net: "Net", missing_roots: dict[str, list[str]], unexpected_roots: dict[str, list[Any]],
                     theirs: list[str], spans: dict[str, Span], first: dict[str, int],
                     expected: Expected) -> list[_Group]:
    """A stage (or any module of numbered children) with more or fewer children in the
    checkpoint: one line, whatever the number of tensors. Takes the roots it explains
    out of ``missing_roots`` and ``unexpected_roots``."""
    lost_by_parent = _numbered_by_parent(missing_roots)
    extra_by_parent = _numbered_by_parent(unexpected_roots)
    parents = dict.fromkeys([*lost_by_parent, *extra_by_parent])
    ours_by_parent, mine_by_parent = _children(expected, parents), _children(theirs, parents)
    boxes = containers(net.graph)
    groups = []
    for parent in parents:
        ours, mine = ours_by_parent.get(parent, []), mine_by_parent.get(parent, [])
        if not ours or not mine:  # a whole side absent: a subtree group says it better
            continue
        lost, extra = lost_by_parent.get(parent, []), extra_by_parent.get(parent, [])
        lost_tensors = sum(len(missing_roots.pop(root)) for root in lost)
        extra_tensors = sum(len(unexpected_roots.pop(root)) for root in extra)
        detail = []
        if extra:
            detail.append(f"{_plural(extra_tensors, 'unexpected tensor')} under {_number_range(parent, extra)}")
        if lost:
            detail.append(f"{_plural(lost_tensors, 'missing tensor')} under {_number_range(parent, lost)}")
        box = boxes.get(parent)
        stage = box is not None and box.kind == "stage"
        what = f"stage '{parent}'" if stage else f"'{parent or net.name}'"
        message = (f"weights: {what} makes {_plural(len(ours), 'block' if stage else 'numbered child')}; the "
                   f"checkpoint has {len(mine):,} ({_number_range(parent, mine)}): {'; '.join(detail)}")
        hint = (f"is the checkpoint another depth of this network? its stage would be `x {len(mine)}`" if stage
                else "is the checkpoint from another variant of this network?")
        order = first.get(parent, 0) if parent else 0
        groups.append(_Group((order, 0), _at(net, _locate(net, parent, spans), message, hint=hint),
                             lost_tensors + extra_tensors))
    return groups


def _numbered_by_parent(roots: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for root in roots:
        if _numbered(root):
            found.setdefault(_module(root), []).append(root)
    return found


def _children(keys: Iterable[str], parents: dict[str, None]) -> dict[str, list[str]]:
    """For each of ``parents``, its numbered children that ``keys`` reach, in number order
    (``layer1``: ``layer1.0``, ``layer1.1``)."""
    found: dict[str, set[int]] = {}
    for key in keys:
        for path in _paths(key):
            parent, _, part = path.rpartition(".")
            if parent in parents and _NUMBER.fullmatch(part):
                found.setdefault(parent, set()).add(int(part))
    return {parent: [f"{parent}.{n}" if parent else str(n) for n in sorted(numbers)]
            for parent, numbers in found.items()}


def _number_range(parent: str, paths: list[str]) -> str:
    """``layer1.0-layer1.2`` for a run of numbered children, else the first few."""
    head = f"{parent}." if parent else ""
    numbers = sorted(int(path[len(head):]) for path in paths)
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{head}{numbers[0]}" + (f"-{head}{numbers[-1]}" if len(numbers) > 1 else "")
    return ", ".join(f"{head}{n}" for n in numbers[:6]) + (", ..." if len(numbers) > 6 else "")


def _subtree_groups(net: "Net", missing_roots: dict[str, list[str]], unexpected_roots: dict[str, list[Any]],
                    spans: dict[str, Span], position: dict[str, int], first: dict[str, int]) -> list[_Group]:
    """What is left: whole modules on one side only, and single tensors absent from a
    module both sides have, grouped by tensor name (20 batchnorms lacking
    ``num_batches_tracked`` are one group)."""
    groups = []
    missing_names, unexpected_names = _names_by_parent(missing_roots), _names_by_parent(unexpected_roots)
    lacking: dict[str, list[str]] = {}
    for root, keys in missing_roots.items():
        if keys == [root]:  # the checkpoint has the module, not this tensor
            lacking.setdefault(root.rsplit(".", 1)[-1], []).append(root)
            continue
        near = _near(root, unexpected_names)
        leaves = sorted({key[len(root) + 1:] for key in keys})
        message = f"weights: '{root}' ({_plural(len(keys), 'tensor')}: {_listed(leaves)}) is not in the checkpoint"
        groups.append(_Group((position[keys[0]], 1), _at(net, _locate(net, root, spans), message,
                                                           hint=_renamed_hint(near)), len(keys)))
    for leaf, keys in lacking.items():
        modules = [_module(key) or "(the network)" for key in keys]
        message = f"weights: the checkpoint lacks '{leaf}' in {_plural(len(keys), 'module')}: {_listed(modules)}"
        groups.append(_Group((position[keys[0]], 1), _at(net, _locate(net, _module(keys[0]), spans), message),
                             len(keys)))
    extra: dict[str, list[str]] = {}
    for root, keys in unexpected_roots.items():
        if keys == [root] and _module(root) in spans:  # a module both have, with one more tensor
            extra.setdefault(root.rsplit(".", 1)[-1], []).append(root)
            continue
        parent = _module(root)
        near = _near(root, missing_names)
        leaves = sorted({_shown_key(key[len(root) + 1:]) for key in keys if key != root})
        what = f"'{_shown_key(root)}'" + (f" ({_plural(len(keys), 'tensor')}: {_listed(leaves)})" if leaves else "")
        message = f"weights: the checkpoint has {what}, which no statement of the spec makes"
        groups.append(_Group((_after(parent, first, position), 2), _at(net, _locate(net, parent, spans), message,
                                                                hint=_renamed_hint(near)), len(keys)))
    for leaf, keys in extra.items():
        modules = [_module(key) for key in keys]
        message = (f"weights: the checkpoint has '{_shown_key(leaf)}' in {_plural(len(keys), 'module')} where the "
                   f"spec has none: {_listed(modules)}")
        groups.append(_Group((_after(modules[0], first, position), 2),
                             _at(net, _locate(net, modules[0], spans), message), len(keys)))
    return groups


def _after(parent: str, first: dict[str, int], position: dict[str, int]) -> int:
    """Where a checkpoint-only module under ``parent`` sorts: at the spec's first tensor
    there (the end, for the network itself)."""
    return first.get(parent, len(position)) if parent else len(position)


def _names_by_parent(roots: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for root in roots:
        found.setdefault(_module(root), []).append(root.rsplit(".", 1)[-1])
    return found


def _near(root: str, names: dict[str, list[str]]) -> str | None:
    """A close name among the other side's roots beside ``root`` (few candidates only:
    a hint for each of thousands of roots would cost thousands squared)."""
    pool = names.get(_module(root), [])
    return did_you_mean(root.rsplit(".", 1)[-1], pool) if 0 < len(pool) <= 100 else None


def _renamed_hint(near: str | None) -> str | None:
    if near and near.startswith("did you"):
        return f"a label differs from the checkpoint's module name: {near}"
    return None


def _shape_groups(net: "Net", found: Mismatch, spans: dict[str, Span], position: dict[str, int]) -> list[_Group]:
    """One group per statement: the first tensor's two shapes, and the other instances
    the same statement makes (a block's conv in every block of a stage)."""
    by_span: dict[Span, list[tuple[str, tuple[int, ...], tuple[int, ...]]]] = {}
    for item in found.shape:
        by_span.setdefault(_locate(net, _module(item[0]), spans), []).append(item)
    groups = []
    for span, items in by_span.items():
        key, ours, theirs = items[0]
        message = f"weights: {key}: {_shape(ours)} in the spec, {_shape(theirs)} in the checkpoint"
        others = [k for k, _, _ in items[1:]]
        notes = (f"this statement makes {_plural(len(others), 'more tensor')} of another shape: "
                 f"{_listed(others)}",) if others else ()
        groups.append(_Group((position[key], 0), _at(net, span, message, notes=notes,
                                                     hint="the statement's arguments differ from the "
                                                     "checkpoint's architecture"), len(items)))
    return groups


def _value_groups(net: "Net", found: Mismatch, spans: dict[str, Span], position: dict[str, int]) -> list[_Group]:
    """Values that are no tensors, or tensors of another kind: one group per kind of fault."""
    faults: dict[str, list[str]] = {}
    for key, name in found.not_tensor:
        faults.setdefault(f"is {_a(name)}, not a tensor", []).append(key)
    for key, what in found.kind:
        faults.setdefault(f"holds {what}", []).append(key)
    groups = []
    for fault, keys in faults.items():
        span = _locate(net, _module(keys[0]), spans)
        message = f"weights: '{keys[0]}' {fault}" + (f" (and {_plural(len(keys) - 1, 'more key')}: "
                                                       f"{_listed(keys[1:])})" if len(keys) > 1 else "")
        hint = ("every value of a state dict is a tensor" if "not a tensor" in fault else
                "the checkpoint was saved from a different kind of model")
        groups.append(_Group((position[keys[0]], 0), _at(net, span, message, hint=hint), len(keys)))
    return groups


# ---- the whole check, for load_weights and weights-diff -------------------------------------
@dataclass
class Matched:
    """A checkpoint matched against a spec: the (renamed) state dict, what was done, what differs."""

    state: dict[Any, Any]
    notes: list[str]
    found: Mismatch
    diagnostics: list[Diagnostic]
    renamed: list[tuple[str, str]] | None  # (checkpoint key, spec key) when only names differ

    @property
    def ok(self) -> bool:
        return not self.diagnostics

    def to_dict(self) -> dict[str, Any]:
        """Every key, for machines (``weights-diff --json``); lists in spec, then file, order."""
        found = self.found
        return {
            "match": self.ok, "notes": self.notes, "counts": found.counts(),
            "spec_tensors": found.spec_tensors, "checkpoint_tensors": found.checkpoint_tensors,
            "missing": found.missing, "unexpected": [_shown_key(key) for key in found.unexpected],
            "shape": [{"key": k, "spec": list(a), "checkpoint": list(b)} for k, a, b in found.shape],
            "kind": [{"key": k, "checkpoint": what} for k, what in found.kind],
            "not_tensor": [{"key": k, "type": name} for k, name in found.not_tensor],
            "errors": [d.to_dict() for d in self.diagnostics],
        }


def match(net: "Net", expected: Expected, checkpoint: Checkpoint, rules: list[Rule] | None = None,
          order: bool = False) -> Matched:
    """Rename (``rules``, then ``order``), compare and group: never raises for a
    difference, only for a map or by-order load that cannot be done."""
    state, notes = checkpoint.state, list(checkpoint.notes)
    if rules:
        state, more = rename(state, rules, checkpoint.where)
        notes += more
    if order:
        state, more = by_order(expected, state, net, checkpoint.where)
        notes += more
    found = compare(expected, state)
    notes += cast_notes(found)
    renamed = in_order(expected, state) if found else None
    return Matched(state, notes, found, report(net, expected, state, found, checkpoint.where, renamed), renamed)


def write_map(pairs: list[tuple[str, str]]) -> str:
    """A weights map renaming each checkpoint key of ``pairs`` to its spec key: one rule
    when one leading part changes, else one rule per module (its tensors keep their names)."""
    lines = ["# resdsl weights map: REGEX -> REPLACEMENT, first matching rule wins", ""]
    prefix = common_prefix_change(pairs)
    if prefix:
        return "\n".join(lines + [_rule_line(*prefix), ""])
    modules: dict[tuple[str, str], None] = {}
    for a, b in pairs:
        head_a, _, leaf_a = a.rpartition(".")
        head_b, _, leaf_b = b.rpartition(".")
        if a == b:
            continue
        if leaf_a == leaf_b and head_a and head_b:
            modules.setdefault((f"^{re.escape(head_a)}\\.([^.]+)$", head_b.replace("\\", "\\\\") + ".\\1"))
        else:
            modules.setdefault((f"^{re.escape(a)}$", b.replace("\\", "\\\\")))
    return "\n".join(lines + [_rule_line(p, r) for p, r in modules] + [""])


def _rule_line(pattern: str, replacement: str) -> str:
    return f"{pattern} -> {replacement}" if replacement else f"{pattern} ->"
