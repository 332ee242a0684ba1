"""The public API: load a spec into a checked graph, then build, render or analyse it.

>>> import resdsl
>>> net = resdsl.loads('''
... network mlp(width: int = 32):
...     input x: [16]
...     fc1: linear width
...     residual:
...         fc2: linear width
...         relu
...     head: linear 4
... ''')
>>> net.output_shape, net.num_params
((4,), 1732)
"""

from __future__ import annotations

import gc
import os
import re
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

import networkx as nx

from . import ir
from .elaborate import Limits, elaborate
from .errors import ErrorList, Span, SpecError, did_you_mean
from .graph import containers, format_shape, num_params, top_level_groups
from .passes import PIPELINE
from .syntax.text import parse_text
from .syntax.yaml import parse_yaml

_YAML_SNIFF = re.compile(r"^(network|input|body|blocks|defaults)\s*:", re.M)
MAX_IMPORT_DEPTH = 16


class Net:
    """A checked network: its IR, its graph with shapes, and ways to use it.

    Made by :func:`load` or :func:`loads`; building a torch module is
    :meth:`build`. Everything here except :meth:`build` works without torch.
    """

    def __init__(self, network: ir.Network, graph: nx.DiGraph, filename: str,
                 params: Mapping[str, Any], plain: bool, shortcut: str | None = None,
                 blocks: Mapping[str, ir.Block] | None = None, limits: Limits | None = None,
                 inputs: tuple[str, ...] = ()):
        self.ir = network
        self.graph = graph
        self.filename = filename
        self.params = dict(params)
        self.plain = plain
        self.shortcut = "none" if plain else shortcut
        # Every block definition in scope (file, imports, network): code generation maps
        # statements back to them.
        self.blocks = dict(blocks or {})
        # The limits it was checked under: later stages (code generation, build) keep them.
        self.limits = limits or Limits()
        # Every file it was read from (the spec, then each import), resolved: outputs never replace them.
        self.inputs = tuple(inputs)
        self._source = None  # generated PyTorch source, made on first build (a Net never changes)

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input's shape without the batch dimension."""
        return self.graph.nodes[self.graph.graph["input"]]["shape"]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The output's shape without the batch dimension."""
        return self.graph.nodes[self.graph.graph["output"]]["shape"]

    @property
    def num_params(self) -> int:
        """Trainable parameters, counted from the graph (equal to torch's count)."""
        return num_params(self.graph)

    @property
    def num_ops(self) -> int:
        return self.graph.number_of_nodes() - 1

    @property
    def num_weight_layers(self) -> int:
        """Convolutions, transposed convolutions and linear layers, shortcuts included."""
        from .ops import REGISTRY

        return sum(1 for _, op in self.graph.nodes(data="op") if REGISTRY[op].weighted)

    def summary_rows(self) -> list[tuple[str, str, str, int]]:
        """(name, kind, output shape, parameters) per top-level statement."""
        rows = []
        boxes = containers(self.graph)
        for name, nodes in top_level_groups(self.graph):
            last = self.graph.nodes[nodes[-1]]
            box = boxes.get(name)
            if box is not None and box.kind == "stage":
                kind = f"{box.block} x {len(box.children)}"
            elif box is not None and box.kind == "block":
                kind = box.block or "block"
            elif box is not None:
                kind = box.kind
            else:
                kind = last["op"]
            params = sum(self.graph.nodes[n]["params"] for n in nodes)
            shape = self.graph.nodes[box.output]["shape"] if box is not None else last["shape"]
            rows.append((name, kind, format_shape(shape), params))
        return rows

    def build(self, *, zero_init_residual: bool = False, weights: str | os.PathLike | None = None,
              device: Any = None, dtype: Any = None) -> Any:
        """Build the PyTorch module (``torch.nn.Module``) for this network.

        ``zero_init_residual`` zeroes the last batchnorm weight of every residual
        body, so every unit starts as the identity. ``weights`` loads a state dict
        strictly. ``device="meta"`` builds without allocating weights.
        """
        from .backends.torch import build_module

        return build_module(self, zero_init_residual=zero_init_residual, weights=weights,
                            device=device, dtype=dtype)

    def to_dot(self, *, level: str = "block", layout: str = "auto", shapes: bool = True,
               expand: bool = False) -> str:
        """The architecture diagram as DOT text (deterministic; see :mod:`resdsl.render`)."""
        from .render import to_dot

        return to_dot(self.graph, level=level, layout=layout, shapes=shapes, expand=expand)

    def render(self, path: str | os.PathLike, *, level: str = "block", layout: str = "auto",
               shapes: bool = True, expand: bool = False) -> Any:
        """Draw the network into ``path`` (``.svg``, ``.png``, ``.pdf`` or ``.dot``).

        Returns a :class:`resdsl.render.RenderResult`; with no Graphviz installed it
        writes the ``.dot`` instead and its ``note`` says how to install one.
        """
        from .render import render

        result = render(self.graph, path, level=level, layout=layout, shapes=shapes,
                        expand=expand, protect=(self.filename, *self.inputs))
        if result.note:
            import warnings

            warnings.warn(result.note, stacklevel=2)
        return result

    def _repr_svg_(self) -> str | None:
        """Jupyter shows a loaded net as its block-level diagram (``None`` without Graphviz)."""
        from .render import svg

        return svg(self.graph, level="block")

    def __repr__(self) -> str:
        return (f"<resdsl.Net {self.name}: {format_shape(self.input_shape)} -> "
                f"{format_shape(self.output_shape)}, {self.num_params:,} parameters>")


def _detect_format(text: str, filename: str, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("res", "yaml"):
            raise ValueError(f"fmt must be 'res' or 'yaml', not {fmt!r}")
        return fmt
    if filename.endswith((".yaml", ".yml")):
        return "yaml"
    if filename.endswith(".res"):
        return "res"
    return "yaml" if _YAML_SNIFF.search(text) else "res"


def _read(path: Path, limits: Limits, errors: ErrorList, span: Span | None = None) -> str | None:
    where = span or Span(str(path), 0, 0, 0, 0)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
            errors.add(where, f"'{path}' is not a regular file", hint="a spec is a text file")
            return None
        with path.open("rb") as stream:
            data = stream.read(limits.max_file_bytes + 1)  # bounded even if the file grows
        if len(data) > limits.max_file_bytes:
            errors.add(where, f"spec file '{path}' is over the limit of {limits.max_file_bytes:,} bytes",
                       hint="specs are small text files")
            return None
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        errors.add(Span(str(path), line, column, line, column + 1),
                   f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})",
                   hint="save the spec as UTF-8")
    except OSError as exc:
        errors.add(where, f"cannot read '{path}': {exc.strerror or exc}",
                   hint="check the path")
    return None


def _collect_blocks(spec: ir.SpecFile, filename: str, limits: Limits, errors: ErrorList,
                    root_dir: Path | None, chain: tuple[Path, ...] = ()) -> dict[str, ir.Block]:
    """The file's own blocks plus those of the files it imports (confined to root_dir)."""
    blocks: dict[str, ir.Block] = {}
    for imp in spec.imports:
        imported = _import(imp, filename, limits, errors, root_dir, chain)
        for name, block in imported.items():
            _add_block(blocks, block, errors)
    for block in spec.blocks:
        _add_block(blocks, block, errors)
    return blocks


def _add_block(blocks: dict[str, ir.Block], block: ir.Block, errors: ErrorList) -> None:
    if block.name in blocks and blocks[block.name] is not block:
        first = blocks[block.name].span
        errors.add(block.span, f"block '{block.name}' is defined twice (first at {first.where()})",
                   hint="rename one of them")
        return
    blocks[block.name] = block


def _import(imp: ir.Import, filename: str, limits: Limits, errors: ErrorList,
            root_dir: Path | None, chain: tuple[Path, ...]) -> dict[str, ir.Block]:
    if root_dir is None:
        errors.add(imp.span, "imports need a spec file on disk", hint="use resdsl.load(path)")
        return {}
    if os.path.isabs(imp.path) or ".." in Path(imp.path).parts:
        errors.add(imp.span, f"import \"{imp.path}\" leaves the spec's directory",
                   hint="imports are relative paths inside the spec's directory, without '..'")
        return {}
    target = (Path(filename).parent / imp.path)
    resolved = target.resolve()
    if not resolved.is_relative_to(root_dir):
        errors.add(imp.span, f"import \"{imp.path}\" resolves outside the spec's directory (symbolic link?)",
                   hint="keep imported files inside the spec's directory tree")
        return {}
    if resolved in chain:
        errors.add(imp.span, f"import cycle: {' -> '.join(p.name for p in chain + (resolved,))}",
                   hint="remove one of the imports")
        return {}
    if len(chain) >= MAX_IMPORT_DEPTH:
        errors.add(imp.span, f"imports nest more than {MAX_IMPORT_DEPTH} deep", hint="flatten the imports")
        return {}
    text = _read(target, limits, errors, imp.span)
    if text is None:
        return {}
    name = str(target)
    spec = parse_yaml(text, name, errors) if _detect_format(text, name, None) == "yaml" else \
        parse_text(text, name, errors)
    if spec is None:
        return {}
    if spec.networks:
        errors.add(imp.span, f"imported file \"{imp.path}\" defines a network; imports share blocks only",
                   hint="move the blocks into a file of their own")
    return _collect_blocks(spec, name, limits, errors, root_dir, chain + (resolved,))


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while a spec is compiled.

    Elaboration allocates many small objects that all stay alive; each automatic
    collection rescans the whole growing heap, which made loading superlinear in
    depth (cifar_resnet n=2000: 1.05 s with it, 0.66 s without). Nothing here
    makes cyclic garbage worth collecting early; the collector resumes afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_gc_paused()
def _compile(text: str, filename: str, fmt: str | None, network: str | None, plain: bool,
             params: Mapping[str, Any], limits: Limits, root_dir: Path | None,
             shortcut: str | None = None) -> Net:
    errors = ErrorList()
    errors.sources[filename] = text
    if len(text.encode("utf-8", "surrogatepass")) > limits.max_file_bytes:
        errors.add(Span(filename, 0, 0, 0, 0), f"the spec is over the limit of {limits.max_file_bytes:,} bytes",
                   hint="specs are small text files")
        errors.raise_if_any()
    kind = _detect_format(text, filename, fmt)
    spec = parse_yaml(text, filename, errors) if kind == "yaml" else parse_text(text, filename, errors)
    if spec is None or errors:
        errors.raise_if_any()
    chain = (Path(filename).resolve(),) if root_dir is not None else ()
    blocks = _collect_blocks(spec, filename, limits, errors, root_dir, chain)
    chosen = _choose_network(spec, filename, network, errors)
    if chosen is None:
        errors.raise_if_any()
    for block in chosen.blocks:
        _add_block(blocks, block, errors)
    graph = elaborate(chosen, blocks, errors, params, plain=plain, limits=limits, shortcut=shortcut)
    if not errors:
        for check in PIPELINE:
            check(graph, errors)
    errors.raise_if_any()
    inputs = tuple(str(Path(name).resolve()) for name in errors.sources) if root_dir is not None else ()
    return Net(chosen, graph, filename, graph.graph["params"], plain, shortcut, blocks, limits, inputs)


def _choose_network(spec: ir.SpecFile, filename: str, network: str | None,
                    errors: ErrorList) -> ir.Network | None:
    names = [n.name for n in spec.networks]
    if network is not None:
        for candidate in spec.networks:
            if candidate.name == network:
                return candidate
        errors.add(Span(filename, 1, 1, 1, 2), f"no network named '{network}' in this file",
                   hint=did_you_mean(network, names) or ("networks here: " + ", ".join(names) if names else None))
        return None
    if len(spec.networks) == 1:
        return spec.networks[0]
    if not spec.networks:
        errors.add(Span(filename, 1, 1, 1, 2), "this file defines no network",
                   hint="add 'network NAME(...):' with an input and statements")
        return None
    second = spec.networks[1]
    errors.add(second.span, f"this file defines {len(names)} networks ({', '.join(names)}); choose one",
               hint="pass network=NAME (CLI: --network NAME)")
    return None


def load(path: str | os.PathLike, *, network: str | None = None, plain: bool = False,
         shortcut: str | None = None, limits: Limits | None = None, **params: Any) -> Net:
    """Parse, elaborate and check the spec at ``path``; never imports torch.

    Keyword arguments override network parameters (strings are parsed as the
    parameter's declared type, as ``-D name=value`` does). ``plain=True`` gives
    the plain twin (no skips); ``shortcut="B"`` forces one shortcut policy on
    every residual without an explicit ``shortcut:`` path.

    >>> net = load("specs/resnet50.res", num_classes=10)  # doctest: +SKIP
    >>> net.output_shape  # doctest: +SKIP
    (10,)
    """
    limits = limits or Limits()
    path = Path(path)
    errors = ErrorList()
    text = _read(path, limits, errors)
    errors.raise_if_any()
    return _compile(text, str(path), None, network, plain, params, limits, path.resolve().parent,
                    shortcut)


def loads(text: str, filename: str = "inline.res", *, fmt: str | None = None,
          network: str | None = None, plain: bool = False, shortcut: str | None = None,
          limits: Limits | None = None, **params: Any) -> Net:
    """Like :func:`load`, from a string. YAML is detected, or forced with ``fmt="yaml"``."""
    return _compile(text, filename, fmt, network, plain, params, limits or Limits(), None, shortcut)


def compile(path: str | os.PathLike, **kwargs: Any) -> Any:  # noqa: A001 - the product's verb
    """Load a spec and build its torch module in one call: ``load(path, **params).build()``."""
    build_keys = ("zero_init_residual", "weights", "device", "dtype")
    build_args = {k: kwargs.pop(k) for k in build_keys if k in kwargs}
    return load(path, **kwargs).build(**build_args)


__all__ = ["Net", "SpecError", "load", "loads", "compile", "Limits"]
