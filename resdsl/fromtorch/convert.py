"""The pipeline of from-torch: record, describe, group, form stages, order, write."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import Diagnostic, SpecError, Span
from .blocks import Block, Grouper, stages
from .describe import Describer
from .emit import write_spec
from ..ops import REGISTRY
from .stmts import CallStmt, DefaultsStmt, OpStmt, OrderStmt, ResidualStmt, SeqStmt, StageStmt, Stmt, walk
from .structure import unsupported_error
from .trace import TooLarge, record_inputs
from ..backends.torch import available_memory
from ..backends.weights import format_bytes as _bytes


def convert(module: nn.Module, input_shape: tuple[int, ...], *, name: str, source: str = "") -> str:
    """The spec text for ``module`` (no verification: see verify.py)."""
    if not isinstance(module, nn.Module):
        raise SpecError([Diagnostic(Span("<from-torch>"), f"expected a torch.nn.Module, got {type(module).__name__}",
                                    hint="pass the model object, e.g. torchvision.models.resnet18()")])
    odd = next((t for t in (*module.parameters(), *module.buffers())
                if t.device.type != "cpu" or (t.is_floating_point() and t.dtype != torch.float32)), None)
    if odd is not None:  # the trace and the check run a float32 batch on the CPU
        kind = str(odd.dtype).removeprefix("torch.")
        raise SpecError([Diagnostic(Span("<from-torch>"), f"the model's weights are {kind} on {odd.device}; "
                                    "from-torch traces and checks it in float32 on the CPU",
                                    hint="pass model.float().cpu() (built with real values, not on the meta device); "
                                    "the spec's build loads a float16 or bfloat16 checkpoint, cast")])
    positional = [n for n, child in module.named_children() if n.isdigit() and any(True for _ in child.state_dict())]
    if isinstance(module, nn.Sequential) and positional:  # a network's statements are named by label
        raise unsupported_error("", module, f"is an nn.Sequential: its weights are named by position "
                                f"('{next(iter(module.state_dict()))}'), which no statement of a network can be named",
                                "from-torch a module that holds it as a child (self.features = the "
                                "Sequential): its keys gain that prefix, and a spec names them")
    was_training = module.training
    module.eval()  # batchnorm must not update its statistics while we look
    try:
        room = available_memory()
        budget = None if room is None else room // 8  # the kept activations, with room for the rest
        size = 4 * math.prod(input_shape)
        if budget is not None and size > budget:
            raise _too_large(input_shape, f"its input alone is {_bytes(size)}", room)
        example = torch.randn((1, *input_shape), generator=torch.Generator().manual_seed(0))
        try:
            inputs = record_inputs(module, example, budget)
        except TooLarge as big:
            raise _too_large(input_shape, f"its activations pass {_bytes(big.args[0])}", room) from None
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else ""
            raise SpecError([Diagnostic(Span("<from-torch>"), f"the module does not run on an input of shape "
                                        f"{[1, *input_shape]}: {type(exc).__name__}: {reason}",
                                        hint="give the per-sample input shape it takes (--input C,H,W)")]) from None
        describer = Describer(inputs.inputs, inputs.calls)
        root = describer.describe("", module)
        describer.unreached(module)
        blocks = Grouper(describer.instances, root).run()
    finally:
        module.train(was_training)
    by_name = {b.name: b for b in blocks}
    for block in blocks:
        block.body = stages(block.body, by_name, block.subst)
        _order(block.body, block.instances[0].module)
    body = stages(root.body, by_name, {})
    _order(body, module)
    used = _used_blocks(body, by_name)
    prelude = _network_defaults([body] + [b.body for b in blocks if b.name in used], blocks)
    header = [f"{name}: written by `resdsl from-torch`" + (f" from {source}" if source else "") + ".",
              "Module names are the source's: its state dict loads strictly into this spec."]
    for where in describer.hooked:
        header.append(f"Written from the calls one input made (torch.fx could not trace it): {where}.")
    return write_spec(name, input_shape, [b for b in blocks if b.name in used], body, header, prelude)


def _too_large(input_shape: tuple[int, ...], what: str, room: int) -> SpecError:
    return SpecError([Diagnostic(Span("<from-torch>"), f"the model at an input of {list(input_shape)}: {what}, "
                                 f"too much of the {_bytes(room)} of memory available (tracing keeps every "
                                 "module's input)", hint="give a smaller per-sample input shape that the model takes "
                                 "(--input C,H,W)")])


def _network_defaults(bodies: list[list[Stmt]], blocks: list[Block]) -> list[Stmt]:
    """``defaults conv(bias=false)`` when most uses of an op set a flag one way: said once."""
    subst = {key for block in blocks for key in block.subst}
    uses: dict[str, list[OpStmt]] = {}
    for body in bodies:
        for stmt in walk(body):
            if isinstance(stmt, OpStmt):
                uses.setdefault(stmt.op, []).append(stmt)
    prelude: list[Stmt] = []
    for op_name, stmts in sorted(uses.items()):
        op = REGISTRY[op_name]
        chosen = {}
        for spec in op.keywords:
            if spec.kind != "bool" or callable(spec.default):
                continue
            literal = [s for s in stmts if spec.name in s.args and (id(s.args), spec.name) not in subst]
            flipped = [s for s in literal if s.args[spec.name] != spec.default]
            if len(literal) == len([s for s in stmts if spec.name in s.args]) and len(flipped) * 2 > len(literal) >= 3:
                chosen[spec.name] = not spec.default
                for s in literal:  # now the flipped value goes without saying, the default does not
                    if s.args[spec.name] == spec.default:
                        s.omit.discard(spec.name)
                    else:
                        s.omit.add(spec.name)
        if chosen:
            prelude.append(DefaultsStmt(op_name, chosen))
    return prelude


def _used_blocks(body: list[Stmt], blocks: dict[str, Block]) -> set[str]:
    used: set[str] = set()
    todo = [body]
    while todo:
        for stmt in walk(todo.pop()):
            name = stmt.block if isinstance(stmt, (CallStmt, StageStmt)) else None
            if name and name not in used:
                used.add(name)
                todo.append(blocks[name].body)
    return used


def _registered(stmts: list[Stmt]) -> list[str]:
    """The submodule names a body registers, in the order resdsl registers them (a residual's
    projection, where it has one, after its body unless ``shortcut_first``)."""
    names: list[str] = []
    for stmt in stmts:
        if isinstance(stmt, ResidualStmt):
            proj = [stmt.options.get("proj", "downsample")]
            first = stmt.options.get("shortcut_first") is True
            names += (proj if first else []) + _registered(stmt.body) + ([] if first else proj)
        elif isinstance(stmt, (OpStmt, CallStmt, SeqStmt, StageStmt)) and stmt.label:
            names.append(stmt.label)
    return names


def _order(body: list[Stmt], module: nn.Module) -> None:
    """``order ...`` when the source registers its stateful children otherwise than they run."""
    if isinstance(module, nn.Sequential):
        return
    stateful = [n for n, child in module.named_children() if any(True for _ in child.state_dict())]
    for stmt in body:  # RegNet registers its projection before the body: shortcut_first=true
        if isinstance(stmt, ResidualStmt):
            proj = stmt.options.get("proj", "downsample")
            inner = [n for n in _registered(stmt.body) if n in stateful]
            if proj in stateful and inner and stateful.index(proj) < stateful.index(inner[0]):
                stmt.options["shortcut_first"] = True
    ours = [n for n in _registered(body) if n in stateful]
    if ours != [n for n in stateful if n in ours]:
        body.insert(0, OrderStmt([n for n in stateful if n in ours]))
