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

import os
import re
import stat
from pathlib import Path
from typing import Any, Mapping

import networkx as nx

from . import ir, std
from .elaborate import Limits, elaborate
from .errors import ErrorList, Span, SpecError, did_you_mean
from .graph import containers, gc_paused, num_params, op_node, op_nodes, top_level_groups
from .passes import PIPELINE
from .shapes import format_shape
from .syntax.text import parse_text
from .syntax.yaml import parse_yaml

_YAML_SNIFF = re.compile(r"^(network|input|body|blocks|defaults|imports)\s*:", re.M)
MAX_IMPORT_DEPTH = 16
#: Import statements followed per compile, over the spec and every file it imports.
MAX_IMPORTS = 1_000
#: Symbolic links followed, and path components walked, while resolving one import.
MAX_SYMLINKS = 40
MAX_PATH_PARTS = 256
#: The spec and every file it imports hold at most this many times Limits.max_file_bytes.
SOURCE_BYTES_FACTOR = 2


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
        self._source: Any = None  # generated PyTorch source, made on first use (a Net never changes)

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input's shape without the batch dimension."""
        return op_node(self.graph, self.graph.graph["input"]).shape

    @property
    def input_dtype(self) -> str:
        """The input's element type: ``float``, or ``int`` for token ids (``input ids: [seq], int``)."""
        return self.ir.input.dtype

    @property
    def id_bound(self) -> int | None:
        """For token ids: the ids every reader accepts are below this (the least vocabulary)."""
        from .ops import REGISTRY

        readers = [op_node(self.graph, n) for n in self.graph.successors(self.graph.graph["input"])]
        found = [REGISTRY[r.op].id_bound(r.args) for r in readers if REGISTRY[r.op].id_bound is not None]
        return min(found) if found else None

    def sample_input(self, batch: int = 1, *, seed: int | None = 0, zeros: bool = False,
                     device: Any = None) -> Any:
        """An input batch (imports torch): standard normal floats, or for token ids uniform ids
        below :attr:`id_bound` (int64); ``zeros`` for zeros of the input's type."""
        import torch

        shape = (batch, *self.input_shape)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        if self.input_dtype == "int":
            x = torch.zeros(shape, dtype=torch.long) if zeros else \
                torch.randint(0, self.id_bound or 1, shape, generator=generator)
        else:
            x = torch.zeros(shape) if zeros else torch.randn(shape, generator=generator)
        return x if device is None else x.to(device)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The output's shape without the batch dimension."""
        return op_node(self.graph, self.graph.graph["output"]).shape

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

        return sum(1 for data in op_nodes(self.graph) if REGISTRY[data.op].weighted)

    def summary_rows(self) -> list[tuple[str, str, str, int]]:
        """(name, kind, output shape, parameters) per top-level statement."""
        rows = []
        boxes = containers(self.graph)
        for name, nodes in top_level_groups(self.graph):
            last = op_node(self.graph, nodes[-1])
            box = boxes.get(name)
            if box is not None and box.kind == "stage":
                kind = f"{box.block} x {len(box.children)}"
            elif box is not None and box.kind == "block":
                kind = box.block or "block"
            elif box is not None:
                kind = box.kind
            else:
                kind = last.op
            params = sum(op_node(self.graph, n).params for n in nodes)
            shape = op_node(self.graph, box.output).shape if box is not None else last.shape
            rows.append((name, kind, format_shape(shape), params))
        return rows

    def source(self, *, inference: bool = False) -> Any:
        """The generated standalone PyTorch source (a
        :class:`resdsl.backends.codegen.Source`), made once: ``build()`` runs it and
        ``resdsl compile -o`` writes it. ``inference=True``: the inference build's."""
        if inference:
            if getattr(self, "_inference_source", None) is None:
                from .backends.codegen import generate

                self._inference_source = generate(self, inference=True)
            return self._inference_source
        if self._source is None:
            from .backends.codegen import generate

            self._source = generate(self)
        return self._source

    def inference_plan(self) -> Any:
        """What the inference build changes (a :class:`resdsl.backends.inference.InferencePlan`:
        the rewritten graph, the folds, the modules left out), made once; no torch."""
        if getattr(self, "_inference_plan", None) is None:
            from .backends.inference import inference_plan

            self._inference_plan = inference_plan(self.graph)
        return self._inference_plan

    def build(self, *, zero_init_residual: bool = False, weights: str | os.PathLike | dict | None = None,
              device: Any = None, dtype: Any = None, weights_map: Any = None,
              weights_by_order: bool = False, inference: bool = False, runtime: str = "auto") -> Any:
        r"""Build the PyTorch module (``torch.nn.Module``) for this network.

        ``zero_init_residual`` zeroes the last batchnorm weight of every residual
        body, so every unit starts as the identity. ``device="meta"`` builds without
        allocating weights.

        ``weights`` (a file saved by ``torch.save``, or a state dict) loads strictly; a
        dict wrapping the state dict (``{"state_dict": ...}``, ``{"model": ...}``) is
        unwrapped. A mismatch is one SpecError, grouped by module and spec line.
        ``weights_map`` renames the checkpoint's keys first: a map file of
        ``REGEX -> REPLACEMENT`` lines, or a dict of them in order (the first matching
        rule wins). ``weights_by_order=True`` takes the tensors by position when every
        shape matches in order. What was done is logged to ``logging.getLogger("resdsl.weights")``.

        ``inference=True`` builds the eval-only inference build (docs/codegen.md):
        ``weights`` is then an ordinary training checkpoint, folded as it loads, and the
        parameters are frozen. On a CPU, ``runtime="auto"`` then runs its convolutions as
        oneDNN primitives with packed weights, their activations and residual adds fused
        in (docs/codegen.md, "The CPU runtime"); ``runtime="portable"`` runs the generated
        code's modules as written (what ``resdsl compile --inference -o`` writes).

        >>> import resdsl, torch
        >>> net = resdsl.loads("network n:\n    input x: [4]\n    fc: linear 2\n")
        >>> saved = {"module.fc.weight": torch.ones(2, 4), "module.fc.bias": torch.zeros(2)}
        >>> model = net.build(weights=saved, weights_map={r"^module\.": ""})
        >>> model.fc.weight.sum().item()
        8.0
        """
        from .backends.torch import build_module

        return build_module(self, zero_init_residual=zero_init_residual, weights=weights,
                            device=device, dtype=dtype, weights_map=weights_map,
                            weights_by_order=weights_by_order, inference=inference,
                            runtime=runtime)

    def fold(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """The inference build's state dict from a training build's: checked strictly
        against the training build's keys and shapes (a mismatch names its spec line),
        then every folded norm merged into its layer (docs/codegen.md, "key mapping").

        >>> import resdsl
        >>> net = resdsl.loads("network n:\\n    input x: [4]\\n    fc: linear 3, bias=false\\n    bn: batchnorm\\n")
        >>> list(net.fold(net.build().state_dict()))
        ['fc.weight', 'fc.bias']
        """
        from .backends.fold import fold_state_dict, training_state

        return fold_state_dict(self.inference_plan(), training_state(self, dict(state_dict)))

    def to_dot(self, *, level: str = "block", layout: str = "auto", shapes: bool = True,
               expand: bool = False, style: str = "default") -> str:
        """The architecture diagram as DOT text (deterministic; see :mod:`resdsl.render`);
        ``style="paper"``: He et al.'s or Ronneberger et al.'s figure."""
        from .render import to_dot

        return to_dot(self.graph, level=level, layout=layout, shapes=shapes, expand=expand, style=style)

    def render(self, path: str | os.PathLike, *, level: str = "block", layout: str = "auto",
               shapes: bool = True, expand: bool = False, dpi: int | None = None,
               style: str = "default") -> Any:
        """Draw the network into ``path`` (``.svg``, ``.png``, ``.pdf``, ``.dot`` or ``.html``).

        Returns a :class:`resdsl.render.RenderResult`; with no Graphviz installed it
        writes the ``.dot`` instead and its ``note`` says how to install one. ``dpi``
        sets a PNG's resolution; Graphviz's warnings (a PNG scaled down) are warned.
        ``style="paper"`` draws the paper figure (docs/render.md); ``.html`` is the
        interactive page.
        """
        import warnings

        from .render import render

        result = render(self.graph, path, level=level, layout=layout, shapes=shapes,
                        expand=expand, protect=(self.filename, *self.inputs), dpi=dpi, style=style)
        for text in (*result.warnings, *([result.note] if result.note else [])):
            warnings.warn(text, stacklevel=2)
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


#: Flags for opening a spec or an import: a FIFO must not block the open (it is then
#: refused by fstat), and a terminal must not become the controlling one.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) | \
    getattr(os, "O_NOCTTY", 0)


def _read(path: Path, limits: Limits, errors: ErrorList, span: Span | None = None) -> str | None:
    """The text of the spec at ``path``: opened once, then checked and read through that descriptor."""
    where = span or Span(str(path), 0, 0, 0, 0)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        errors.add(where, f"cannot read '{path}': {_reason(exc)}", hint="check the path")
        return None
    try:
        return _read_descriptor(fd, str(path), limits, errors, where)
    finally:
        os.close(fd)


def _reason(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _read_descriptor(fd: int, name: str, limits: Limits, errors: ErrorList, where: Span) -> str | None:
    """Read an opened spec file: the descriptor, not a name that could be swapped, is
    checked (a FIFO or device would block or never end), and the read is bounded."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            errors.add(where, f"'{name}' is not a regular file", hint="a spec is a text file")
            return None
        chunks, left = [], limits.max_file_bytes + 1  # bounded even if the file grows
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        errors.add(where, f"cannot read '{name}': {_reason(exc)}", hint="check the path")
        return None
    if len(data) > limits.max_file_bytes:
        errors.add(where, f"spec file '{name}' is over the limit of {limits.max_file_bytes:,} bytes",
                   hint="specs are small text files")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        errors.add(Span(name, line, column, line, column + 1),
                   f"'{name}' is not UTF-8 text ({exc.reason} at byte {exc.start})",
                   hint="save the spec as UTF-8")
    return None


def _collect_blocks(spec: ir.SpecFile, filename: str, limits: Limits, errors: ErrorList,
                    root_dir: Path | None) -> tuple[dict[str, ir.Block], list[str]]:
    """The file's own blocks plus those of every file it imports (confined to root_dir,
    or the standard library), and the names of the imported files."""
    blocks: dict[str, ir.Block] = {}
    if spec.imports:
        with _Imports(root_dir, filename, limits, errors) as imports:
            imports.follow(spec, filename, (), blocks)
        return blocks, imports.files
    for block in spec.blocks:
        _add_block(blocks, block, errors)
    return blocks, []


def _add_block(blocks: dict[str, ir.Block], block: ir.Block, errors: ErrorList) -> None:
    if block.name in blocks and blocks[block.name] is not block:
        if not errors.full:
            first = blocks[block.name].span
            errors.add(block.span, f"block '{block.name}' is defined twice (first at {first.where()})",
                       hint="rename one of them")
        return
    blocks[block.name] = block


class _Outside(Exception):
    """The import path leaves the spec's directory tree."""


class _LinkLoop(Exception):
    """Too many symbolic links (a loop) or too many path components; the message says which."""


FileKey = tuple[int, int]  # (st_dev, st_ino): one file, whatever name reached it


#: An import path starting so names a standard-library module, never a file of the user's.
STD_PREFIX = "std/"


def _names_std(path: str) -> bool:
    return path == STD_PREFIX[:-1] or path.startswith(STD_PREFIX)


class _Imports:
    """Follows a spec's imports for one compile.

    Each file is loaded once (keyed by device and inode), so a diamond, or a file
    imported 8,000 times, costs one parse; cycles are still reported as cycles.
    Import statements, link expansions and bytes read are all bounded. Paths are
    opened component by component, relative to the descriptor of the directory
    above and never following a link, and links are followed by hand within the
    tree; so a link swapped in while an import is checked cannot lead outside: the
    file that is read is the file that was checked.

    ``import "std/NAME"`` reads the package file ``resdsl/std/NAME.res`` instead
    (from any spec, and from a string: ``root_dir`` None), under the same bounds:
    NAME is a plain name, opened in the package folder without following a link.
    A std module may import other std modules only.
    """

    def __init__(self, root_dir: Path | None, filename: str, limits: Limits, errors: ErrorList):
        self.root_dir = root_dir
        self.root_fd: int | None = None
        self.std_fd: int | None = None
        self.limits = limits
        self.errors = errors
        self.seen: set[FileKey] = set()  # every file reached so far: loaded once
        self.chain: list[tuple[FileKey | None, str]] = []  # files being followed, for cycles
        self.files: list[str] = []  # the imported files read, in order
        self.statements = 0
        self.bytes = len(errors.sources.get(filename, "").encode("utf-8", "surrogatepass"))
        self.top: FileKey | None = None
        if root_dir is not None:  # a string's "file name" is no file: a file of that name is not it
            try:
                info = os.stat(filename)
                self.top = (info.st_dev, info.st_ino)
            except (OSError, ValueError):
                pass

    def __enter__(self) -> "_Imports":
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in (self.root_fd, self.std_fd):
            if fd is not None:
                os.close(fd)
        self.root_fd = self.std_fd = None

    def follow(self, spec: ir.SpecFile, name: str, folder: tuple[str, ...] | None,
               blocks: dict[str, ir.Block], key: FileKey | None = None) -> None:
        """Add the blocks of ``spec``'s imports (depth first), then its own blocks.
        ``folder`` is the file's folder under the root, None for a std module."""
        key = key if key is not None else self.top
        if key is not None:
            self.seen.add(key)
        self.chain.append((key, name))
        try:
            for imp in spec.imports:
                if self.statements >= MAX_IMPORTS:
                    self.errors.add(imp.span, f"more than {MAX_IMPORTS:,} import statements in the spec "
                                    "and the files it imports", hint="import each file once; its blocks "
                                    "are then in scope everywhere")
                    break
                self.statements += 1
                self._import(imp, name, folder, blocks)
        finally:
            self.chain.pop()
        for block in spec.blocks:
            _add_block(blocks, block, self.errors)

    def _import(self, imp: ir.Import, importer: str, folder: tuple[str, ...] | None,
                blocks: dict[str, ir.Block]) -> None:
        errors = self.errors
        inner: tuple[str, ...] | None = None  # the imported file's folder (None: a std module)
        if _names_std(imp.path):
            opened = self._open_std(imp)
            if opened is None:
                return
            fd, name = opened
        else:
            parts = self._relative(imp, folder)
            if parts is None or folder is None:
                return
            name = str(Path(importer).parent / imp.path)
            fd = self._open(imp, folder + parts, name)
            if fd is None:
                return
            inner = folder + parts[:-1]
        try:
            info = os.fstat(fd)
            key = (info.st_dev, info.st_ino)
            if any(key == active for active, _ in self.chain):
                names = [Path(n).name for _, n in self.chain] + [Path(name).name]
                errors.add(imp.span, f"import cycle: {' -> '.join(names)}", hint="remove one of the imports")
                return
            if key in self.seen:  # already loaded: its blocks are in scope
                return
            self.seen.add(key)
            if len(self.chain) >= MAX_IMPORT_DEPTH:
                errors.add(imp.span, f"imports nest more than {MAX_IMPORT_DEPTH} deep",
                           hint="flatten the imports")
                return
            text = _read_descriptor(fd, name, self.limits, errors, imp.span)
        finally:
            os.close(fd)
        if text is None:
            return
        self.files.append(name)
        self.bytes += len(text.encode("utf-8"))
        total = SOURCE_BYTES_FACTOR * self.limits.max_file_bytes
        if self.bytes > total:
            errors.add(imp.span, f"the spec and its imports hold more than {total:,} bytes",
                       hint="specs are small text files; import only what the network uses")
            return
        spec = parse_yaml(text, name, errors) if _detect_format(text, name, None) == "yaml" else \
            parse_text(text, name, errors)
        if spec is None:
            return
        if spec.networks:
            errors.add(imp.span, f"imported file \"{imp.path}\" defines a network; imports share blocks only",
                       hint="move the blocks into a file of their own")
        self.follow(spec, name, inner, blocks, key)

    def _relative(self, imp: ir.Import, folder: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """The components of a relative import, or None (and a located error)."""
        if folder is None:
            self.errors.add(imp.span, f"import \"{imp.path}\": a standard-library module imports only "
                            "other standard-library modules", hint="write import \"std/NAME\"")
            return None
        if self.root_dir is None:
            self.errors.add(imp.span, "imports need a spec file on disk",
                            hint="use resdsl.load(path); from a string, only \"std/NAME\" imports work")
            return None
        parts = self._parts(imp)
        if parts is not None and parts[0] == STD_PREFIX[:-1]:
            self.errors.add(imp.span, f"import \"{imp.path}\": the folder name 'std' is reserved for the "
                            "standard library", hint="import \"std/NAME\" for the standard library; "
                            "rename a folder of your own")
            return None
        return parts

    def _open_std(self, imp: ir.Import) -> tuple[int, str] | None:
        """A descriptor and the file name of the std module the import names, or None (and an error)."""
        module = imp.path[len(STD_PREFIX):]
        module = module[:-len(".res")] if module.endswith(".res") else module
        if not std.NAME.fullmatch(module):
            self.errors.add(imp.span, f"import \"{imp.path}\" does not name a standard-library module",
                            hint=f"a std module is a plain name of lowercase letters, digits and _ "
                            f"({_std_listing()})")
            return None
        folder = std.directory()
        if folder is None:
            self.errors.add(imp.span, "the standard library is not on disk (resdsl imported from a zip?)",
                            hint="install resdsl with pip")
            return None
        name = str(folder / f"{module}.res")
        try:
            if self.std_fd is None:
                self.std_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
            return os.open(f"{module}.res", _OPEN_FLAGS | getattr(os, "O_NOFOLLOW", 0), dir_fd=self.std_fd), name
        except FileNotFoundError:
            close = did_you_mean(module, std.modules())
            listing = _std_listing()
            self.errors.add(imp.span, f"no standard-library module '{module}'",
                            hint=f"{close} ({listing})" if close and close.startswith("did you") else listing)
        except OSError as exc:
            linked = self.std_fd is not None and _link_target(f"{module}.res", self.std_fd) is not None
            self.errors.add(imp.span, f"import \"{imp.path}\": " + (
                "the module is a symbolic link; the standard library follows none" if linked
                else f"cannot read '{name}': {_reason(exc)}"), hint="reinstall resdsl")
        return None

    def _parts(self, imp: ir.Import) -> tuple[str, ...] | None:
        """The import's path as components, or None (and an error) if it is not a plain relative path."""
        if "\0" in imp.path:
            self.errors.add(imp.span, "the import path contains a NUL character",
                            hint="imports name a file by its relative path")
            return None
        parts = tuple(p for p in imp.path.split("/") if p not in ("", "."))
        if os.path.isabs(imp.path) or ".." in parts:
            self.errors.add(imp.span, f"import \"{imp.path}\" leaves the spec's directory",
                            hint="imports are relative paths inside the spec's directory, without '..'")
            return None
        if not parts:
            self.errors.add(imp.span, f"import \"{imp.path}\" names no file",
                            hint="imports name a .res or .yaml file")
            return None
        return parts

    def _open(self, imp: ir.Import, parts: tuple[str, ...], name: str) -> int | None:
        """A descriptor of the file at ``parts`` under the root, or None (and a located error)."""
        try:
            if self.root_fd is None:
                self.root_fd = os.open(self.root_dir, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
            return self._open_beneath(list(parts))
        except _Outside:
            self.errors.add(imp.span, f"import \"{imp.path}\" resolves outside the spec's directory "
                            "(symbolic link?)", hint="keep imported files inside the spec's directory tree")
        except _LinkLoop as exc:
            self.errors.add(imp.span, f"import \"{imp.path}\" {exc}", hint="point the link at the file itself")
        except (OSError, ValueError) as exc:  # ValueError: a path the OS cannot encode
            self.errors.add(imp.span, f"cannot read '{name}': {_reason(exc)}", hint="check the path")
        return None

    def _open_beneath(self, todo: list[str]) -> int:
        """Open root/todo without leaving root: each component relative to its
        directory's descriptor with O_NOFOLLOW; a link is read and its target walked
        in turn ('..' may climb back to the root, an absolute target must lie under it)."""
        nofollow = getattr(os, "O_NOFOLLOW", 0)
        todo.reverse()  # components still to walk, the next one last
        stack: list[int] = []  # descriptors of the directories below the root
        links = walked = 0
        try:
            while todo:
                part = todo.pop()
                walked += 1
                if walked > MAX_PATH_PARTS:
                    raise _LinkLoop(f"goes through more than {MAX_PATH_PARTS} path components")
                if part in ("", "."):
                    continue
                if part == "..":
                    if not stack:
                        raise _Outside()
                    os.close(stack.pop())
                    continue
                here = stack[-1] if stack else self.root_fd
                flags = _OPEN_FLAGS | nofollow | (0 if not todo else os.O_DIRECTORY)
                try:
                    fd = os.open(part, flags, dir_fd=here)
                except OSError:
                    target = _link_target(part, here)
                    if target is None:
                        raise
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise _LinkLoop(f"goes through more than {MAX_SYMLINKS} symbolic links "
                                        "(a loop of links?)") from None
                    if os.path.isabs(target):
                        todo.extend(reversed(self._under_root(target)))
                        while stack:
                            os.close(stack.pop())
                    else:
                        todo.extend(reversed(target.split("/")))
                    continue
                if not todo:
                    return fd
                stack.append(fd)
            raise IsADirectoryError(21, "not a file")  # the path ended in '..' or '.'
        finally:
            for fd in stack:
                os.close(fd)

    def _under_root(self, target: str) -> list[str]:
        """An absolute link target as components under the root; _Outside if it is not under it.

        Checked lexically and then walked from the root like any path, so the links
        it holds are followed one at a time within MAX_SYMLINKS. (realpath would follow
        a whole chain of links itself: recursively, without bound, and outside our walk.)"""
        lexical = Path(os.path.normpath(target))
        if not lexical.is_relative_to(self.root_dir):
            raise _Outside()
        return list(lexical.relative_to(self.root_dir).parts)


def _std_listing() -> str:
    names = std.modules()
    return "std modules: " + ", ".join(names) if names else "the standard library is empty"


def _link_target(name: str, dir_fd: int) -> str | None:
    """The target of the link ``name`` in ``dir_fd``, or None if it is not a link (any more)."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except (OSError, ValueError):
        return None


@gc_paused()
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
    blocks, imported = _collect_blocks(spec, filename, limits, errors, root_dir)
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
    # Every file it was read from: the spec (a string is none) and its imports, std modules too.
    files = ([filename] if root_dir is not None else []) + imported
    inputs = tuple(str(Path(name).resolve()) for name in files)
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

    >>> net = load("resdsl/zoo/resnet50.res", num_classes=10)  # doctest: +SKIP
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
    build_keys = ("zero_init_residual", "weights", "device", "dtype", "weights_map", "weights_by_order",
                  "inference")
    build_args = {k: kwargs.pop(k) for k in build_keys if k in kwargs}
    return load(path, **kwargs).build(**build_args)


__all__ = ["Net", "SpecError", "load", "loads", "compile", "Limits"]
