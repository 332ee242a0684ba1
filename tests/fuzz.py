"""Fuzzing resdsl: random well-formed specs, and mutations of the zoo.

Every input must end in a :class:`resdsl.SpecError` or a checked network (never
another exception), within two seconds of CPU time; the CLI must exit 0, 1 or 2 on it. Valid
generated specs must also build, and torch's shapes must equal the inferred ones.

Run the long campaign with::

    python -m tests.fuzz --n 20000            # --seed, --cli-every, --json REPORT

``tests/test_fuzz.py`` runs a short budget of the same driver in the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence, Union

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "resdsl" / "zoo"
STD = ROOT / "resdsl" / "std"
Shape = tuple[int, ...]

# ---------------------------------------------------------------------------------
# Random well-formed specs
# ---------------------------------------------------------------------------------


@dataclass
class Compound:
    """A statement with an indented body (``residual ...:``) and an optional shortcut path."""

    head: str
    body: list["Stmt"]
    shortcut: list["Stmt"] | None = None


Stmt = Union[str, Compound]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def shortcut_fits(x: Shape, y: Shape) -> bool:
    """Whether a strided projection / zero-pad shortcut can turn ``x`` into ``y``
    (the rule resdsl applies: each spatial size shrinks by an integer stride)."""
    if len(x) != len(y):
        return False
    for size, out in zip(x[1:], y[1:]):
        stride = ceil_div(size, out)
        if out > size or ceil_div(size, stride) != out:
            return False
    return True


@dataclass
class SpecGen:
    """Draws one random valid network from ``rng``, tracking every tensor's shape.

    Covers the op catalogue with compatible arguments, nested and labelled
    residuals with every shortcut policy, explicit shortcut paths, blocks called
    directly and in stages, parameters in expressions, and long skips (add, mul,
    concat with and without crop, from). ``expected`` is the output shape.
    """

    rng: random.Random
    max_depth: int = 2
    labels_made: int = 0
    blocks: dict[str, list[str]] = field(default_factory=dict)
    width: int = 4
    top_level_blocks: bool = False

    # -- small helpers -------------------------------------------------------------
    def label(self) -> str:
        self.labels_made += 1
        return f"t{self.labels_made}"

    def channels(self) -> tuple[str, int]:
        """A channel count, sometimes written as an expression over ``width``."""
        w = self.width
        choice = self.rng.randrange(6)
        if choice == 0:
            return "width", w
        if choice == 1:
            k = self.rng.randint(1, 3)
            return f"width + {k}", w + k
        if choice == 2:
            k = self.rng.randint(1, 6)
            return f"max(width, {k})", max(w, k)
        if choice == 3:
            return "(width * 2) // 2", w
        n = self.rng.randint(1, 8)
        return str(n), n

    def kernel(self, k: int, rank: int) -> str:
        return str(k) if self.rng.random() < 0.5 else "x".join([str(k)] * rank)

    # -- ops ---------------------------------------------------------------------------
    def op(self, shape: Shape) -> tuple[str, Shape]:
        """One op statement valid on ``shape`` and the shape it gives."""
        rng, rank, c = self.rng, len(shape) - 1, shape[0]
        options: list[Callable[[], tuple[str, Shape] | None]] = [
            lambda: (rng.choice(["relu", "gelu", "silu", "sigmoid", "tanh", "identity"]), shape),
            lambda: (rng.choice(["leaky_relu", "leaky_relu 0.2", "dropout 0.1", "dropout"]), shape),
            lambda: (rng.choice(["batchnorm", "layernorm", "batchnorm eps=0.001"]), shape),
            lambda: self.linear(shape),
        ]
        if rank >= 1:
            options += [lambda: self.conv(shape), lambda: self.conv(shape), lambda: self.pool(shape),
                        lambda: self.grow(shape), lambda: self.groupnorm(shape),
                        lambda: ("adaptive_avgpool 1", (c,) + (1,) * rank)]
            if math.prod(shape) <= 512:
                options.append(lambda: ("flatten", (math.prod(shape),)))
        while True:
            made = rng.choice(options)()
            if made is not None:
                return made

    def linear(self, shape: Shape) -> tuple[str, Shape]:
        text, n = self.channels()
        bias = self.rng.choice(["", ", bias=false"])
        return f"linear {text}{bias}", (*shape[:-1], n)

    def conv(self, shape: Shape) -> tuple[str, Shape]:
        rng, rank = self.rng, len(shape) - 1
        k = rng.choice([1, 3])
        stride = rng.choice([1, 1, 2])
        text, out = self.channels()
        parts = [f"conv {self.kernel(k, rank)}", text]
        if stride > 1:
            parts.append(f"stride={stride}")
        groups = [g for g in (2, 4) if shape[0] % g == 0 and out % g == 0]
        if groups and rng.random() < 0.3:
            parts.append(f"groups={rng.choice(groups)}")
        if rng.random() < 0.3:
            parts.append("bias=false")
        sizes = tuple((s + 2 * (k // 2) - k) // stride + 1 for s in shape[1:])
        return ", ".join(parts), (out, *sizes)

    def pool(self, shape: Shape) -> tuple[str, Shape] | None:
        if min(shape[1:]) < 2:
            return None
        kind = self.rng.choice(["maxpool", "avgpool"])
        return f"{kind} {self.kernel(2, len(shape) - 1)}", (shape[0], *(s // 2 for s in shape[1:]))

    def grow(self, shape: Shape) -> tuple[str, Shape] | None:
        if max(shape[1:]) > 8:
            return None
        doubled = tuple(2 * s for s in shape[1:])
        if self.rng.random() < 0.5:
            return self.rng.choice(["upsample 2", "upsample 2, mode=nearest"]), (shape[0], *doubled)
        text, out = self.channels()
        return f"upconv {self.kernel(2, len(shape) - 1)}, {text}", (out, *doubled)

    def groupnorm(self, shape: Shape) -> tuple[str, Shape] | None:
        # A group must hold more than one value (a single value always normalizes to 0).
        spatial = math.prod(shape[1:])
        groups = [g for g in range(1, shape[0] + 1) if shape[0] % g == 0 and shape[0] // g * spatial > 1]
        if not groups:
            return None
        return f"groupnorm {self.rng.choice(groups)}", shape

    # -- statements --------------------------------------------------------------------
    def body(self, shape: Shape, depth: int, labels: list[tuple[str, Shape]],
             count: int | None = None) -> tuple[list[Stmt], Shape]:
        """A list of statements from ``shape``; ``labels`` are the visible labelled tensors."""
        stmts: list[Stmt] = []
        count = count if count is not None else self.rng.randint(1, 4)
        for _ in range(count):
            made, shape = self.statement(shape, depth, labels)
            stmts.extend(made)
        return stmts, shape

    def statement(self, shape: Shape, depth: int,
                  labels: list[tuple[str, Shape]]) -> tuple[list[Stmt], Shape]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.15 and depth < self.max_depth:
            return self.residual(shape, depth, labels)
        if roll < 0.25:
            made = self.long_skip(shape, labels)
            if made is not None:
                return made
        if roll < 0.32 and depth < self.max_depth:
            return self.fork(shape, depth, labels)
        if roll < 0.42 and depth < self.max_depth:
            return self.block_use(shape)
        text, out = self.op(shape)
        if rng.random() < 0.3:
            name = self.label()
            labels.append((name, out))
            text = f"{name}: {text}"
        return [text], out

    def residual(self, shape: Shape, depth: int,
                 labels: list[tuple[str, Shape]]) -> tuple[list[Stmt], Shape]:
        rng = self.rng
        labelled = rng.random() < 0.3
        # An unlabelled body shares the enclosing namespace; a labelled one starts afresh.
        inner = [] if labelled else list(labels)
        body, out = self.body(shape, depth + 1, inner)
        options: list[str] = []
        shortcut = None
        if out == shape:
            policy = rng.choice(["", "A", "B", "C", "identity", "none", "explicit"])
            if policy == "explicit":
                shortcut = [rng.choice(["identity", "relu", f"conv 1, {shape[0]}"])]
                if len(shape) == 1:
                    shortcut = [rng.choice(["identity", "relu", f"linear {shape[0]}"])]
                policy = ""
        elif shortcut_fits(shape, out):
            policy = rng.choice(["", "B", "C", "none"] + (["A"] if out[0] >= shape[0] else []))
        else:
            policy = "none"
        if policy:
            options.append(f"shortcut={policy}")
        if rng.random() < 0.2:
            options.append("drop_path=0.1")
        if rng.random() < 0.2:
            options.append("scale=0.5")
        head = "residual" + (" " + ", ".join(options) if options else "")
        if labelled:
            name = self.label()
            head = f"{name}: {head}"
            labels.append((name, out))
        return [Compound(head, body, shortcut)], out

    def long_skip(self, shape: Shape, labels: list[tuple[str, Shape]]) -> tuple[list[Stmt], Shape] | None:
        rng = self.rng
        candidates = []
        for name, other in labels:
            if other == shape:
                candidates.append((f"{rng.choice(['add', 'mul'])} {name}", shape))
            if len(other) == len(shape) and len(shape) > 1:
                if other[1:] == shape[1:]:
                    candidates.append((f"concat {name}", (shape[0] + other[0], *shape[1:])))
                elif all(o >= s for o, s in zip(other[1:], shape[1:])):
                    candidates.append((f"concat {name}, crop=center", (shape[0] + other[0], *shape[1:])))
        if not candidates:
            return None
        text, out = rng.choice(candidates)
        if rng.random() < 0.3:
            name = self.label()
            labels.append((name, out))
            text = f"{name}: {text}"
        return [text], out

    def fork(self, shape: Shape, depth: int,
             labels: list[tuple[str, Shape]]) -> tuple[list[Stmt], Shape]:
        """``a: identity``, branch 1, ``from a``, branch 2, then merge both branches."""
        start, end = self.label(), self.label()
        first = [f"{start}: identity", f"{end}: relu"]
        second, out = self.body(shape, depth + 1, [])
        merge = f"add {end}" if out == shape else None
        if merge is None:
            if len(out) == len(shape) and len(shape) > 1 and out[1:] == shape[1:]:
                merge, out = f"concat {end}", (out[0] + shape[0], *out[1:])
            else:
                second, out, merge = ["gelu"], shape, f"mul {end}"
        labels.extend([(start, shape), (end, shape)])
        return first + [f"from {start}"] + second + [merge], out

    def block_use(self, shape: Shape) -> tuple[list[Stmt], Shape]:
        rng = self.rng
        text, out = self.channels()
        if len(shape) == 1:
            self.define("dense", ["residual:", "    linear out", "    relu", "    linear out"],
                        "dense(out: int)")
            call = rng.choice([f"dense({text})", f"dense(out={text})"])
            if rng.random() < 0.4:
                return [f"stage {call} x {rng.randint(1, 3)}"], (out,)
            return [call], (out,)
        self.define("basic", ["residual:", "    conv 3, out, stride=stride", "    batchnorm", "    relu",
                              "    conv 3, out", "    batchnorm", "relu"],
                    "basic(out: int, stride: int = 1)")
        stride = rng.choice([1, 2])
        target = (out, *(ceil_div(s, stride) for s in shape[1:]))
        if stride > 1 and not shortcut_fits(shape, target):
            stride, target = 1, (out, *shape[1:])
        if rng.random() < 0.5:
            times = rng.randint(1, 3)
            tail = f", stride={stride}" if stride > 1 else ""
            return [f"stage basic({text}) x {times}{tail}"], target
        tail = f", stride={stride}" if stride > 1 else ""
        name = self.label()
        return [f"{name}: basic({text}{tail})"], target

    def define(self, name: str, body: list[str], signature: str) -> None:
        if name not in self.blocks:
            self.blocks[name] = [f"block {signature}:"] + [f"    {line}" for line in body]

    # -- whole specs -------------------------------------------------------------------
    def network(self) -> "Generated":
        rng = self.rng
        rank = rng.choice([0, 1, 2, 2, 3])
        top = {0: 64, 1: 16, 2: 10, 3: 5}[rank]
        shape = (rng.randint(1, 4), *(rng.randint(2, top) for _ in range(rank)))
        self.width = rng.randint(1, 6)
        self.top_level_blocks = rng.random() < 0.2
        defaults = ["defaults conv(bias=false)"] if rng.random() < 0.3 else []
        body, out = self.body(shape, 0, [], count=rng.randint(1, 7))
        return Generated(name=f"g{rng.randrange(10**6)}", width=self.width, input_shape=shape,
                         defaults=defaults, blocks=dict(self.blocks), body=body, expected=out,
                         top_level_blocks=self.top_level_blocks)


@dataclass
class Generated:
    """A generated network, printable as ``.res`` text or as YAML."""

    name: str
    width: int
    input_shape: Shape
    defaults: list[str]
    blocks: dict[str, list[str]]
    body: list[Stmt]
    expected: Shape
    top_level_blocks: bool = False

    @property
    def signature(self) -> str:
        return f"{self.name}(width: int = {self.width})"

    @property
    def input_decl(self) -> str:
        return f"x: [{', '.join(map(str, self.input_shape))}]"

    def text(self) -> str:
        lines: list[str] = []
        if self.top_level_blocks:
            for block in self.blocks.values():
                lines += block + [""]
        lines.append(f"network {self.signature}:")
        lines += [f"    {d}" for d in self.defaults]
        lines.append(f"    input {self.input_decl}")
        if not self.top_level_blocks:
            for block in self.blocks.values():
                lines += [f"    {line}" for line in block]
        lines += _text_lines(self.body, 1)
        return "\n".join(lines) + "\n"

    def yaml(self) -> str:
        doc: dict = {"network": self.signature, "input": self.input_decl}
        if self.defaults:
            doc["defaults"] = [d.split(" ", 1)[1] for d in self.defaults]
        if self.blocks:
            doc["blocks"] = {block[0][len("block "):-1]: _yaml_items(_parse_block_lines(block[1:]))
                             for block in self.blocks.values()}
        doc["body"] = _yaml_items(self.body)
        return yaml.safe_dump(doc, sort_keys=False, width=1000)


def _text_lines(stmts: Sequence[Stmt], level: int) -> list[str]:
    pad = "    " * level
    lines: list[str] = []
    for stmt in stmts:
        if isinstance(stmt, str):
            lines.append(pad + stmt)
            continue
        lines.append(f"{pad}{stmt.head}:")
        lines += _text_lines(stmt.body, level + 1)
        if stmt.shortcut is not None:
            lines.append(f"{pad}shortcut:")
            lines += _text_lines(stmt.shortcut, level + 1)
    return lines


def _parse_block_lines(lines: list[str]) -> list[Stmt]:
    """The block templates' text (4-space indented, one level of residual) as statements."""
    stmts: list[Stmt] = []
    for line in lines:
        body = line[4:]
        if body.startswith("    ") and isinstance(stmts[-1], Compound):
            stmts[-1].body.append(body.strip())
        elif body.endswith(":"):
            stmts.append(Compound(body[:-1], []))
        else:
            stmts.append(body)
    return stmts


def _yaml_items(stmts: Sequence[Stmt]) -> list:
    items: list = []
    for stmt in stmts:
        if isinstance(stmt, str):
            items.append(stmt)
            continue
        items.append({stmt.head: _yaml_items(stmt.body)})
        if stmt.shortcut is not None:
            items.append({"shortcut": _yaml_items(stmt.shortcut)})
    return items


def generate(rng: random.Random) -> Generated:
    """One random valid network."""
    return SpecGen(rng).network()


# ---------------------------------------------------------------------------------
# Mutations of the zoo
# ---------------------------------------------------------------------------------
TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:x[0-9]+)*|[ \t]+|\r?\n|.", re.S)
NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
VOCABULARY = [
    "network", "block", "input", "residual", "shortcut", "stage", "x", "from", "add", "mul",
    "concat", "defaults", "import", "conv", "upconv", "linear", "relu", "batchnorm", "maxpool",
    "flatten", "true", "false", "min", "max", "crop=center", "shortcut=A", "stride=2", ":", ",",
    "(", ")", "[", "]", "=", "//", "%", "-", "*", "#", "\\", '"', "__class__", "exec", "eval",
    "class", "import os", "x;import os", "__import__('os')", "lambda", "self", "forward",
    '"../escape.res"', '"/etc/passwd"', '"std/resnet"', '"std/../x"', "!!python/object/apply:os.system",
    "&a", "*a", "<<", "{", "}", "|", ">", "- ", "? ", "!", "%YAML 1.1", "---", "...", "'", "@",
]
HUGE = ["0", "-1", "2147483647", "2147483648", "-2147483649", "4294967296", "1000000", "99999",
        "65536", "1e308", "1e400", "1e-400", "0.0", "9" * 25, "9" * 5000, "10**12", "1x0",
        "99999x99999", "3x3x3x3x3", "2147483647x2147483647"]
OVERRIDES = ["", "abc", "true", "1.5", "nan", "inf", "-inf", "1e400", "9" * 400, "0x10", "1_000"]
UNICODE = ["é", "名", "\u00a0", "\u200b", "\ufeff", "\u2028", "\U0001f600", "\x00", "\x0b", "\x0c",
           "\r", "\t", "\x1b[31m", "\udcff", "Ω", "ｘ", "١"]


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def _pick(rng: random.Random, tokens: list[str]) -> int:
    return rng.randrange(len(tokens)) if tokens else 0


def m_delete(rng, text):
    tokens = _tokens(text)
    if tokens:
        del tokens[_pick(rng, tokens)]
    return "".join(tokens)


def m_duplicate(rng, text):
    tokens = _tokens(text)
    if tokens:
        i = _pick(rng, tokens)
        tokens.insert(i, tokens[i])
    return "".join(tokens)


def m_swap(rng, text):
    tokens = _tokens(text)
    if len(tokens) > 1:
        i, j = _pick(rng, tokens), _pick(rng, tokens)
        tokens[i], tokens[j] = tokens[j], tokens[i]
    return "".join(tokens)


def m_replace(rng, text):
    tokens = _tokens(text)
    if tokens:
        tokens[_pick(rng, tokens)] = rng.choice(VOCABULARY)
    return "".join(tokens)


def m_insert(rng, text):
    tokens = _tokens(text)
    tokens.insert(_pick(rng, tokens), rng.choice(VOCABULARY + [" ", "\n", "    "]))
    return "".join(tokens)


def m_bytes(rng, text):
    pos = rng.randrange(len(text) + 1)
    junk = "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randint(1, 8)))
    return text[:pos] + junk + text[pos:]


def m_huge(rng, text):
    spots = list(NUMBER.finditer(text))
    if not spots:
        return text + rng.choice(HUGE)
    match = rng.choice(spots)
    return text[:match.start()] + rng.choice(HUGE) + text[match.end():]


def m_unicode(rng, text):
    pos = rng.randrange(len(text) + 1)
    return text[:pos] + rng.choice(UNICODE) + text[pos:]


def m_deep_indent(rng, text):
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    lines[i] = " " * rng.choice([1, 3, 8, 200, 5000]) + lines[i]
    return "\n".join(lines)


def m_tab(rng, text):
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    lines[i] = "\t" + lines[i].lstrip(" ")
    return "\n".join(lines)


def m_deep_parens(rng, text):
    spots = list(NUMBER.finditer(text))
    depth = rng.choice([10, 150, 250, 2000])
    if not spots:
        return text + "(" * depth
    match = rng.choice(spots)
    wrapped = rng.choice(["(" * depth + match.group() + ")" * depth,
                          "-" * depth + match.group(),
                          "+".join([match.group()] * depth),
                          "min(" * depth + match.group() + ", 1)" * depth])
    return text[:match.start()] + wrapped + text[match.end():]


def m_deep_residual(rng, text):
    depth = rng.choice([5, 70, 300])
    lines = text.rstrip("\n").split("\n")
    base = len(lines[-1]) - len(lines[-1].lstrip(" "))
    nest = [" " * (base + 4 * i) + "residual:" for i in range(depth)]
    return "\n".join(lines[:-1] + nest + [" " * (base + 4 * depth) + lines[-1].strip()]) + "\n"


def m_yaml_nesting(rng, text):
    depth = rng.choice([20, 150, 3000])
    return text + "\nextra: " + "[" * depth + "]" * depth + "\n"


def m_truncate(rng, text):
    return text[:rng.randrange(len(text) + 1)]


def m_empty(rng, text):
    return rng.choice(["", "\n", "   ", "#", "\n\n\n", "network", "---", "{}", "[]", "null", "- a"])


def m_lines(rng, text):
    lines = text.split("\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    action = rng.randrange(3)
    if action == 0:
        lines.insert(j, lines[i])
    elif action == 1:
        lines[i], lines[j] = lines[j], lines[i]
    else:
        del lines[i]
    return "\n".join(lines)


def m_newlines(rng, text):
    return rng.choice([text.replace("\n", "\r\n"), text.replace("\n", "\r"), "\ufeff" + text,
                       text.replace("\n", " \\\n", 3)])


def m_repeat(rng, text):
    return text * rng.choice([2, 3, 20])


MUTATORS: list[Callable[[random.Random, str], str]] = [
    m_delete, m_delete, m_duplicate, m_swap, m_replace, m_replace, m_insert, m_bytes, m_huge,
    m_huge, m_unicode, m_deep_indent, m_tab, m_deep_parens, m_deep_residual, m_yaml_nesting,
    m_truncate, m_empty, m_lines, m_lines, m_newlines, m_repeat,
]


def mutate(rng: random.Random, text: str) -> tuple[str, list[str]]:
    """One to three random mutations; returns the text and the mutators' names."""
    names = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        mutator = rng.choice(MUTATORS)
        text = mutator(rng, text)
        names.append(mutator.__name__)
    return text, names


def zoo() -> list[tuple[str, str]]:
    """(file name, text) of every spec in resdsl/zoo/ (YAML included) and of every
    standard-library module (as std/NAME.res; the zoo imports them from the package)."""
    files = sorted(SPECS.rglob("*.res")) + sorted(SPECS.rglob("*.yaml")) + sorted(STD.glob("*.res"))
    return [(str(p.relative_to(SPECS.parent)), p.read_text(encoding="utf-8")) if p.parent == STD
            else (str(p.relative_to(SPECS)), p.read_text(encoding="utf-8")) for p in files]


# ---------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------
@dataclass
class Case:
    """One input: its text, the file name it is loaded as, and whether it must be valid."""

    text: str
    filename: str
    origin: str
    must_load: bool = False
    generated: Generated | None = None
    raw: bytes | None = None  # written as is (e.g. invalid UTF-8) instead of ``text``
    defines: tuple[tuple[str, str], ...] = ()  # -D overrides


def cases(n: int, seed: int) -> Iterator[Case]:
    """``n`` inputs: a quarter generated valid specs, the rest mutations of the zoo and of
    generated specs (text and YAML), with a few raw-byte files."""
    rng = random.Random(seed)
    corpus = zoo()
    for index in range(n):
        kind = index % 8
        if kind in (0, 4):
            gen = generate(rng)
            as_yaml = kind == 4 and not gen.top_level_blocks
            text = gen.yaml() if as_yaml else gen.text()
            yield Case(text, "gen.yaml" if as_yaml else "gen.res", "generated", True, gen)
        elif kind == 1:
            gen = generate(rng)
            as_yaml = rng.random() < 0.4
            text, names = mutate(rng, gen.yaml() if as_yaml else gen.text())
            defines = ((rng.choice(["width", "width", "widht", "x"]), rng.choice(HUGE + OVERRIDES)),) \
                if rng.random() < 0.3 else ()
            yield Case(text, "mut.yaml" if as_yaml else "mut.res", "mutated-generated:" + "+".join(names),
                       defines=defines)
        elif kind == 7 and rng.random() < 0.1:
            name, text = rng.choice(corpus)
            data = bytearray(text.encode("utf-8"))
            for _ in range(rng.randint(1, 4)):
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
            yield Case("", Path(name).name, "raw-bytes", raw=bytes(data))
        else:
            name, text = rng.choice(corpus)
            mutated, names = mutate(rng, text)
            yield Case(mutated, Path(name).name, f"mutated:{name}:" + "+".join(names))


class Hang(Exception):
    """An input ran past the watchdog."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (no-op elsewhere / on Windows)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def fire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Report:
    """What a campaign saw."""

    inputs: int = 0
    outcomes: Counter = field(default_factory=Counter)
    exceptions: Counter = field(default_factory=Counter)
    cli_exit_codes: Counter = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)  # CPU seconds per input (the bound)
    wall_times: list[float] = field(default_factory=list)  # wall seconds: information only
    cli_times: list[float] = field(default_factory=list)  # wall seconds: information only
    built: int = 0
    yaml_equal: int = 0
    unlocated: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    limit: float = 0.0  # CPU seconds allowed per input, set by the campaign

    def fail(self, case: Case, problem: str) -> None:
        self.failures.append(f"[{case.origin}] {problem}\n--- input ({case.filename}) ---\n"
                             f"{(case.text or repr(case.raw))[:2000]}")

    def summary(self) -> dict:
        times = self.times or [0.0]
        wall = self.wall_times or [0.0]
        cli = self.cli_times or [0.0]
        return {
            "inputs": self.inputs,
            "outcomes": dict(self.outcomes),
            "exceptions_other_than_SpecError": dict(self.exceptions),
            "max_cpu_seconds_per_input": round(max(times), 4),
            "mean_cpu_seconds_per_input": round(sum(times) / len(times), 5),
            "inputs_over_limit": sum(t > self.limit for t in self.times),
            "cpu_limit_seconds": self.limit,
            "max_wall_seconds_per_input": round(max(wall), 4),
            "slowest_input": self.slowest[1][:200],
            "cli_runs": len(self.cli_times),
            "cli_exit_codes": {str(k): v for k, v in sorted(self.cli_exit_codes.items())},
            "max_wall_seconds_per_cli_run": round(max(cli), 4),
            "built_and_shapes_checked": self.built,
            "yaml_ir_equal_to_text": self.yaml_equal,
            "unlocated_diagnostics": dict(self.unlocated),
            "failures": len(self.failures),
        }


def check_diagnostics(err, case: Case, report: Report) -> None:
    """Every diagnostic renders, and names a file position unless it is about the whole file."""
    err.render()
    err.to_dict()
    for diag in err.diagnostics:
        if not diag.span.located:
            report.unlocated[re.sub(r"'[^']*'", "'...'", diag.message)[:70]] += 1


def build_and_compare(net, report: Report, case: Case) -> None:
    """Build the torch module and compare every op's output shape with the inferred one."""
    import torch

    from resdsl.backends.torch import observed_shapes
    from resdsl.graph import op_node

    try:
        model = net.build().eval()
        with torch.no_grad():
            observed = observed_shapes(model, net, torch.zeros(2, *net.input_shape))
    except Exception as exc:  # noqa: BLE001 - a valid spec must build and run
        report.exceptions[f"build: {type(exc).__name__}"] += 1
        report.fail(case, f"building or running the module failed: {type(exc).__name__}: {exc}")
        return
    for node, shape in observed.items():
        inferred = op_node(net.graph, node).shape
        if inferred != shape:
            report.fail(case, f"node {op_node(net.graph, node).module}: inferred {inferred}, torch {shape}")
            return
    report.built += 1


#: Elaborated-op budget of the campaign. Legal networks cost ~30 us per op in pure
#: Python, so the default limit (1,000,000 ops) bounds one spec at ~30 s, not 1 s;
#: the fuzz measures how inputs are handled, not how big a legal network can be.
FUZZ_MAX_NODES = 20_000
#: CPU seconds allowed per input (the issue's bound). CPU time, so a loaded machine
#: does not fail the campaign; the watchdog (wall time, 10x) only catches a hang.
CPU_LIMIT_S = 2.0


def run_case(case: Case, workdir: Path, report: Report, *, build: bool, limit: float,
             limits=None) -> tuple[Path, bool]:
    """Load one input from a file in ``workdir``; record outcome and time.

    Returns the path and whether the input ran into the node budget (such inputs
    are left out of the CLI sample, which runs with the default limits)."""
    import resdsl

    path = workdir / case.filename
    path.write_bytes(case.raw if case.raw is not None else
                     case.text.encode("utf-8", "surrogateescape"))
    report.inputs += 1
    report.limit = limit
    start, wall_start = time.process_time(), time.perf_counter()
    net = None
    over_budget = False
    try:
        with watchdog(max(10.0, 10 * limit)):
            net = resdsl.load(path, limits=limits, **dict(case.defines))
        report.outcomes["ok"] += 1
    except resdsl.SpecError as err:
        report.outcomes["SpecError"] += 1
        check_diagnostics(err, case, report)
        over_budget = limits is not None and any(
            f"{limits.max_nodes:,}" in d.message and " ops" in d.message for d in err.diagnostics)
        if case.must_load:
            report.fail(case, "a generated valid spec was rejected:\n" + err.render())
    except BaseException as exc:  # noqa: BLE001 - counting them is the point
        if isinstance(exc, KeyboardInterrupt):
            raise
        report.outcomes["other exception"] += 1
        report.exceptions[type(exc).__name__] += 1
        report.fail(case, f"{type(exc).__name__}: {exc}")
    # CPU time, not wall time: the bound is on the work an input causes, and holds on
    # a loaded machine; wall time is recorded for the report only.
    elapsed = time.process_time() - start
    report.times.append(elapsed)
    report.wall_times.append(time.perf_counter() - wall_start)
    if elapsed > report.slowest[0]:
        report.slowest = (elapsed, f"{case.origin} ({elapsed:.3f} s CPU)")
    if elapsed > limit:
        report.fail(case, f"took {elapsed:.3f} s of CPU time (limit {limit} s)")
    if net is not None and case.generated is not None:
        _check_generated(net, case, report, build)
    return path, over_budget


def _check_generated(net, case: Case, report: Report, build: bool) -> None:
    import resdsl

    gen = case.generated
    if net.output_shape != gen.expected:
        report.fail(case, f"output shape {net.output_shape}, the generator expected {gen.expected}")
    if not gen.top_level_blocks and case.filename.endswith(".res"):
        twin = resdsl.loads(gen.yaml(), "twin.yaml")
        if twin.ir == net.ir:
            report.yaml_equal += 1
        else:
            report.fail(case, "the YAML twin gives different IR:\n" + gen.yaml())
    if build:
        build_and_compare(net, report, case)


def run_cli(path: Path, report: Report, case: Case, *, subprocess_run: bool, json_output: bool,
            command: str = "check") -> None:
    """Run ``resdsl check`` on the input in-process (or as a subprocess); exit code must be 0/1/2."""
    from resdsl import cli

    argv = [command, str(path)] + (["--json"] if json_output else [])
    argv += [f"-D{name}={value}" for name, value in case.defines]
    start = time.perf_counter()
    if subprocess_run:
        proc = subprocess.run([sys.executable, "-m", "resdsl", *argv], capture_output=True,
                              timeout=60, cwd=ROOT)
        code = proc.returncode
        output = proc.stderr.decode("utf-8", "replace")
    else:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
        output = err.getvalue()
        report.cli_times.append(time.perf_counter() - start)
    report.cli_exit_codes[code] += 1
    if code not in (0, 1, 2):
        report.fail(case, f"CLI {' '.join(argv)} exited {code}:\n{output[-2000:]}")
    elif case.must_load and code != 0:
        report.fail(case, f"CLI {' '.join(argv)} exited {code} on a valid spec:\n{output[-2000:]}")


def campaign(n: int, seed: int = 0, *, cli_every: int = 10, subprocess_every: int = 2000,
             build_every: int = 4, compile_every: int = 200, limit: float = CPU_LIMIT_S,
             max_nodes: int = FUZZ_MAX_NODES, progress: bool = False) -> Report:
    """Run ``n`` inputs; see :class:`Report` for what is counted."""
    import torch

    from resdsl import Limits

    torch.set_num_threads(1)
    limits = Limits(max_nodes=max_nodes)
    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="resdsl-fuzz-"))
    try:
        generated = 0
        for index, case in enumerate(cases(n, seed)):
            build = case.generated is not None and generated % build_every == 0
            generated += case.generated is not None
            path, over_budget = run_case(case, workdir, report, build=build, limit=limit, limits=limits)
            if over_budget:
                report.outcomes["over the fuzz node budget"] += 1
                continue
            if index % cli_every == 0:
                run_cli(path, report, case, subprocess_run=False, json_output=index % (2 * cli_every) == 0)
            if case.generated is not None and index % compile_every == 0:
                run_cli(path, report, case, subprocess_run=False, json_output=False, command="compile")
            if subprocess_every and index % subprocess_every == 0:
                run_cli(path, report, case, subprocess_run=True, json_output=False)
            if progress and index and index % 1000 == 0:
                print(f"  {index} inputs, {len(report.failures)} failures", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="number of inputs (default 20000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli-every", type=int, default=10, help="run the CLI on every Nth input")
    parser.add_argument("--limit", type=float, default=CPU_LIMIT_S,
                        help=f"CPU seconds allowed per input (default {CPU_LIMIT_S})")
    parser.add_argument("--max-nodes", type=int, default=FUZZ_MAX_NODES,
                        help=f"elaborated-op budget per input (default {FUZZ_MAX_NODES:,})")
    parser.add_argument("--json", metavar="REPORT", help="also write the figures to this JSON file")
    parser.add_argument("--show", type=int, default=5, help="print this many failures in full")
    args = parser.parse_args(argv)
    sys.setrecursionlimit(1000)  # the default; the fuzz must not depend on a raised one
    report = campaign(args.n, args.seed, cli_every=args.cli_every, limit=args.limit,
                      max_nodes=args.max_nodes, progress=True)
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    for failure in report.failures[:args.show]:
        print("\n" + failure)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
