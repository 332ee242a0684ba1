"""The module tree -> statement trees, one per module instance (before blocks are named).

Each module is traced one level deep (trace.py); its nodes become statements
(structure.py); a child that is no catalogue op is described the same way and becomes
a ``sequential:`` (an ``nn.Sequential``) or a call of a block (any other class),
which blocks.py then groups into parameterised blocks and stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .stmts import CallStmt, FromStmt, MergeStmt, OpStmt, ResidualStmt, SeqStmt, Stmt, clone
from .recipes import recognise_module
from .structure import (
    Chain, Labels, Node, Unsupported, _Builder, find_residuals, is_projection, unsupported_error,
)
from .trace import TraceFailure, trace


@dataclass
class Instance:
    """One module instance as statements (literal arguments)."""

    path: str
    module: nn.Module
    body: list[Stmt]
    in_shape: tuple[int, ...]
    sequential: bool  # an nn.Sequential (or subclass): its children are named by position
    block: str = ""  # set by blocks.py
    args: dict[str, Any] = field(default_factory=dict)
    inline: bool = False  # written where it is called (a chain of calls: a sequential or a stage)


class Describer:
    """Describes every module instance reachable from the root, bottom-up."""

    def __init__(self, inputs: dict[nn.Module, tuple], calls: dict[nn.Module, Any] | None = None):
        self.inputs = inputs
        self.calls = calls or {}
        self.hooked: list[str] = []  # modules written from the calls hooks saw (fx could not trace)
        self.instances: list[Instance] = []  # children before parents
        self.reached: set[int] = set()  # ids of the modules a statement stands for

    def unreached(self, root: nn.Module) -> None:
        """A module with weights that no forward calls (GoogLeNet's auxiliary classifiers in
        eval mode) has no statement, so its weights could not load: say so."""
        reached_below: set[int] = set()  # modules with a reached module in their subtree
        for module in root.modules():
            if any(id(m) in self.reached for m in module.modules()):
                reached_below.add(id(module))
        parents = {id(child): parent for parent in root.modules() for child in parent.children()}
        for path, module in root.named_modules():
            weights = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
            parent = parents.get(id(module))
            top = parent is None or id(parent) in reached_below  # the highest module nothing reaches
            if weights and id(module) not in reached_below and top:
                raise unsupported_error(path, module, "holds weights that the model's forward never uses",
                                        "a spec has a statement per module its forward runs; build the model "
                                        "without it (e.g. aux_logits=False), or call it in forward")

    def describe(self, path: str, module: nn.Module) -> Instance:
        if module not in self.inputs:
            raise unsupported_error(path, module, "is never called by the forward of the model",
                                    "only modules the forward runs can be written")
        args, kwargs = self.inputs[module]
        try:
            traced = trace(path, module, args, kwargs)
        except TraceFailure as failure:
            instance = self._from_hooks(path, module)
            if instance is None:
                raise unsupported_error(
                    path, module, f"cannot be traced by torch.fx ({failure.reason}), and its children do not "
                    "run as a chain", "a forward whose control flow depends on tensor values has no spec; "
                    "rewrite it without, or trace the part that has") from None
            self.hooked.append(f"{path or '(root)'} ({failure.reason})")
            self.instances.append(instance)
            return instance
        try:
            instance = self._statements(path, module, traced)
        except Unsupported as problem:
            raise unsupported_error(path, module, problem.what, problem.hint) from None
        self.instances.append(instance)
        return instance

    def _from_hooks(self, path: str, module: nn.Module) -> Instance | None:
        """The module as the chain of children its one recorded call ran, when each child
        took the previous one's output (a forward fx cannot trace, such as one that branches
        on a shape). The spec then follows the path that input took: the check says whether
        another input agrees."""
        call = self.calls.get(module)
        if call is None or not call.children or not isinstance(call.input, torch.Tensor):
            return None
        names = {id(child): name for name, child in module.named_children()}
        current, body, seen = call.input, [], set()
        for child in call.children:
            name = names.get(id(child.module))
            if name is None or name in seen or child.input is not current or not isinstance(child.output, torch.Tensor):
                return None
            seen.add(name)
            shape = tuple(current.shape[1:])
            match = recognise_module(child.module, shape)
            positional = isinstance(module, nn.Sequential) and name.isdigit()
            label = None if positional else name
            if match is not None:
                stateless = not any(True for _ in child.module.state_dict())
                body.append(OpStmt(None if stateless and not isinstance(module, nn.Sequential) else label,
                                   match.op.name, match.args, shape))
                self.reached.add(id(child.module))
            else:
                instance = self.describe(_join(path, name), child.module)
                body.append(SeqStmt(label, instance.body) if type(child.module) is nn.Sequential or instance.inline
                            else CallStmt(label, instance))
            current = child.output
        if current is not call.output:
            return None
        self.reached.add(id(module))
        return Instance(path, module, body, tuple(call.input.shape[1:]), isinstance(module, nn.Sequential))

    def _statements(self, path: str, module: nn.Module, traced) -> Instance:
        builder = _Builder(traced)
        entry, order, output = builder.build()
        self.reached.add(id(module))
        self.reached.update(id(n.child) for n in order if n.child is not None)
        # an op stands for its module's submodules too (nn.MultiheadAttention's out_proj)
        self.reached.update(id(m) for n in order if n.kind == "op" and n.child is not None
                            for m in n.child.modules())
        children: dict[int, Instance] = {}
        for node in order:
            if node.kind == "child":
                children[id(node)] = self.describe(_join(path, node.target), node.child)
        replaced: dict[int, Node] = {}
        order = find_residuals(entry, order, lambda fork, short, add: _classify(fork, short, add, children),
                               replaced)
        output = replaced.get(id(output), output)
        taken = {name for name, _ in module.named_children()}
        taken |= {name for name, _ in module.named_parameters(recurse=False)}
        chain: Chain

        def make(node: Node) -> Stmt:
            if node.kind == "child":
                child = children[id(node)]
                label = None if node.target.isdigit() and isinstance(module, nn.Sequential) else node.target
                if type(child.module) is nn.Sequential or child.inline:
                    return SeqStmt(label, child.body)
                return CallStmt(label, child)
            if node.kind == "residual":
                options, shortcut = node.stmt
                out = node.out
                if out.kind == "drop_path":  # torchvision's StochasticDepth(p, "row") ends the body
                    options = {**options, "drop_path": float(out.child.p)}
                    out = out.inputs[0]
                body_nodes = [n for n in node.body if n is not node.out or n is out]
                body = chain.write(node.inputs[0], body_nodes, out)
                return ResidualStmt(body, shortcut, options)
            if node.kind == "drop_path":
                raise Unsupported(f"'{node.target}' (stochastic depth) is not the end of a residual body",
                                  "the language has stochastic depth as `residual drop_path=p:`")
            if node.kind == "op" and node.stmt.label is not None and node.stmt.label.isdigit():
                node.stmt.label = None  # a position of a sequential
            return node.stmt

        labels = Labels(taken)
        chain = Chain(entry, labels, make)
        body = chain.write(entry, order, output)
        if not body:
            raise Unsupported("its forward returns its input unchanged", "write `identity`")
        calls = _dense_chain(body)
        if calls is not None:  # DenseNet: each layer's concat moves into the layer, a chain remains
            for call in calls:
                _concat_input(call.instance)
            return Instance(path, module, list(calls), entry.shape, True, inline=True)
        return Instance(path, module, body, entry.shape, isinstance(module, nn.Sequential))


def _dense_chain(body: list[Stmt]) -> list[CallStmt] | None:
    """``L1; from input; c1: concat L1; L2; from c1; c2: concat L2; ...``: each call of one
    block concatenated to its own input (DenseNet's dense block), or None."""
    if len(body) < 6 or len(body) % 3:
        return None
    calls, before = [], "input"
    for k in range(0, len(body), 3):
        call, back, join = body[k:k + 3]
        if not (isinstance(call, CallStmt) and call.label and isinstance(back, FromStmt) and back.ref == before
                and isinstance(join, MergeStmt) and join.op == "concat" and join.ref == call.label):
            return None
        calls.append(call)
        before = join.label or ""
    if len({type(c.instance.module) for c in calls}) != 1:
        return None
    return calls


def _concat_input(instance: Instance) -> None:
    """The instance's output, concatenated after its input (``from input``, ``concat L``)."""
    last = instance.body[-1]
    if getattr(last, "label", None) is None:
        last.label = "out" if "out" not in {getattr(s, "label", None) for s in instance.body} else "out_"
    instance.body += [FromStmt("input"), MergeStmt("concat", last.label)]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _classify(fork: Node, short: list[Node], add: Node, children: dict[int, Instance]):
    """A residual's (options, explicit shortcut) when the language writes this shortcut."""
    options: dict[str, Any] = {}
    if not short:
        return (options, None) if all(p.shape == fork.shape for p in add.inputs) else None
    if len(short) != 1 or short[0].kind != "child":
        return None
    node = short[0]
    if node.target != "downsample":
        options["proj"] = node.target
    if is_projection(node.child, fork.shape, node.shape):
        if fork.shape == node.shape:
            options.update(shortcut="C")  # a projection although the shapes match
        return options, None
    if isinstance(node.child, nn.Sequential):
        return options, clone(children[id(node)].body)
    return None
