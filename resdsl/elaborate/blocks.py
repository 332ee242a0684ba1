"""Block calls and stages: binding arguments, instances, stage size checks."""

from __future__ import annotations

import re
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .. import ir
from ..errors import Problem, Span, did_you_mean
from ..expr import Value, describe, evaluate, type_name
from ..graph import Container
from ..vocab import identifier_problem
from .scope import Scope, Tensor, _CallNote
from .sequential import is_sequential_block
from .values import _block_usage, _convert, _type_text


class BlocksMixin:
    """Block calls and stages: binding arguments, instances, stage size checks."""

    # ---- blocks and stages ------------------------------------------------------------
    def bind_block(self, block: ir.Block, args: Iterable[ir.Arg], env: Mapping[str, Value],
                   span: Span, extra: Mapping[str, Value] | None = None, shape_of=None) -> dict[str, Value]:
        positional, keywords, spans = self.eval_args(args, env, shape_of)
        keywords = {**keywords, **(extra or {})}
        params = block.params
        if len(positional) > len(params):
            raise Problem(spans.get(f"#{len(params)}", span),
                          f"block '{block.name}' takes {len(params)} argument{'s' * (len(params) != 1)}, "
                          f"got {len(positional)}", hint=_block_usage(block))
        bound: dict[str, Value] = {}
        for param, value in zip(params, positional):
            bound[param.name] = value
        names = {p.name: p for p in params}
        for key, value in keywords.items():
            if key not in names:
                raise Problem(spans.get(key, span), f"block '{block.name}' has no parameter '{key}'",
                              hint=did_you_mean(key, names) or _block_usage(block))
            if key in bound:
                raise Problem(spans.get(key, span), f"'{key}' is given twice",
                              hint=_block_usage(block))
            bound[key] = value
        result: dict[str, Value] = {}
        # A view, not a copy: copying every network parameter per instance cost O(params).
        inner_env = ChainMap(result, self.graph.graph["params"])
        for index, param in enumerate(params):
            where = spans.get(param.name) or spans.get(f"#{index}") or span
            if param.name in bound:
                value = bound[param.name]
            elif param.default is not None:
                value = evaluate(param.default, inner_env)
            else:
                raise Problem(span, f"block '{block.name}' needs a value for '{param.name}'",
                              hint=_block_usage(block))
            converted = _convert(value, param.type, param.choices)
            if converted is None:
                raise Problem(where, f"'{param.name}' of block '{block.name}' must be {_type_text(param)}, "
                              f"not {describe(value)} ({type_name(value)})", hint=_block_usage(block))
            result[param.name] = converted
        return result

    def apply_block(self, name: str, args, label: str | None, stmt, scope: Scope, x: Tensor,
                    defaults: dict, instance_name: str | None = None, extra=None) -> Tensor:
        block = self.blocks[name]
        if name in scope.block_stack:
            raise Problem(stmt.span, f"block '{name}' uses itself (recursion is not allowed)",
                          hint="a block may use other blocks, but not itself, directly or indirectly")
        if scope.depth >= self.limits.max_depth:
            raise Problem(stmt.span, f"blocks are nested more than {self.limits.max_depth} deep",
                          hint="flatten the block structure")
        self.count(self.cost(block), stmt.span, scope)  # binding evaluates the defaults
        bound = self.bind_block(block, args, scope.env, stmt.span, extra, scope.shape_of)
        local = instance_name if instance_name is not None else self.module_name(scope, label, name, stmt.span)
        path = scope.module_path(local)
        inner = Scope(
            path=path, container=path, env=ChainMap(bound, self.graph.graph["params"]),
            labels={"input": x}, reserved=self.declared_labels(block.body),
            depth=scope.depth + 1,
            notes=(_CallNote(path, name, bound, stmt.span),) + scope.notes,
            block_stack=scope.block_stack + (name,),
        )
        container = Container(path, "block", stmt.span, input=x.node, block=name, args=bound,
                              stmt=stmt)
        self.open_container(scope, container, inner)
        body = block.body
        if is_sequential_block(block):  # the instance is the sequential: names 0, 1, 2 in it
            for item in body[0].body:
                self.check_chain_item(item)
            inner.sequential, body = True, body[0].body
        out = self.body(body, inner, x, defaults)
        self.check_order(inner)
        container.output = out.node
        if label is not None:
            self.set_label(scope, label, out, stmt.span)
        return out

    def open_container(self, parent: Scope, container: Container, inner: Scope | None = None) -> None:
        """Register a container: each instance is one step of work, even with no op inside."""
        self.count(1, container.span, inner or parent)
        self.graph.graph["containers"][container.path] = container
        self.graph.graph["containers"][parent.container].children.append(container.path)

    def stage(self, stmt: ir.Stage, scope: Scope, x: Tensor, defaults: dict) -> Tensor:
        if stmt.block not in self.blocks:
            raise Problem(stmt.name_span, f"unknown block '{stmt.block}' in stage",
                          hint=did_you_mean(stmt.block, self.blocks) or "define it with 'block NAME(...):'")
        block = self.blocks[stmt.block]
        count = evaluate(stmt.count, scope.env, scope.shape_of)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise Problem(stmt.count.span, f"a stage repeats its block a positive number of times, "
                          f"not {describe(count)}", hint="write e.g. 'x 3'")
        if count > self.limits.max_repeat:
            raise Problem(stmt.count.span, f"a stage of {count:,} blocks is over the limit of "
                          f"{self.limits.max_repeat:,}", hint="use fewer blocks")
        options = self.stage_options(stmt, block, scope)
        if options.inline:
            return self.stage_instances(stmt, block, count, options, scope, scope, x, defaults)
        name = self.module_name(scope, stmt.label, "stage", stmt.span)
        path = scope.module_path(name)
        container = Container(path, "stage", stmt.span, input=x.node, block=block.name, stmt=stmt)
        self.open_container(scope, container)
        # The arguments are written in the enclosing scope: they see its labels.
        stage_scope = Scope(path=path, container=path, env=scope.env, labels=scope.labels, reserved=set(),
                            depth=scope.depth, notes=scope.notes, block_stack=scope.block_stack)
        current = self.stage_instances(stmt, block, count, options, scope, stage_scope, x, defaults)
        container.output = current.node
        self.set_label(scope, stmt.label, current, stmt.span)
        return current

    def stage_instances(self, stmt: ir.Stage, block: ir.Block, count: int, options: "_StageOptions",
                        scope: Scope, parent: Scope, x: Tensor, defaults: dict) -> Tensor:
        """The ``count`` instances, in ``parent`` (the stage's own scope, or the enclosing
        one for ``inline=true``); each sees its index under the ``index=`` name."""
        current = x
        env = parent.env
        for index in range(count):
            before, work_before, failures = self.nodes, self.work, self.failures
            instance = None if options.inline else (
                f"{options.prefix}{options.start + index}" if options.prefix else str(options.start + index))
            problem = identifier_problem(instance, "instance name") if options.prefix else None
            if problem is not None:  # prefix=bfloat, start=16 names torch.nn.Module.bfloat16
                raise Problem(options.prefix_span, problem[0], hint="choose another prefix= or start=")
            if options.index is not None:
                parent.env = ChainMap({options.index: index}, env)
            try:
                current = self.apply_block(
                    block.name, stmt.args, None, stmt, parent, current, defaults,
                    instance_name=instance, extra=options.first if index == 0 else None,
                )
            finally:
                parent.env = env
            if self.failures != failures:
                # The other instances would meet the same problems: stop this stage here.
                current = Tensor(current.node, None, stmt.span)
                break
            if index == 0:
                self.check_stage_size(stmt, count, self.nodes - before, self.work - work_before)
        if options.inline:
            self.set_label(scope, stmt.label, current, stmt.span)
        return current

    def stage_options(self, stmt: ir.Stage, block: ir.Block, scope: Scope) -> "_StageOptions":
        options = _StageOptions()
        for option in stmt.options:
            if option.name == "index":  # the name is bound, not evaluated
                if not isinstance(option.value, ir.NameRef):
                    raise Problem(option.span, "index= takes a name for the instance index",
                                  hint="write e.g. ', index=i' and use i in the block's arguments")
                options.index = option.value.name
                continue
            value = evaluate(option.value, scope.env, scope.shape_of)
            if option.name == "stride":
                if "stride" not in {p.name for p in block.params}:
                    raise Problem(option.span, f"stage stride=...: block '{block.name}' has no 'stride' parameter",
                                  hint="add 'stride: int = 1' to the block's parameters and use it")
                options.first["stride"] = value
            elif option.name == "prefix":
                if not isinstance(value, str) or not _MODULE_NAME.fullmatch(value):
                    raise Problem(option.span, f"prefix= takes a name (letters, digits, _ and -), not "
                                  f"{describe(value)}",
                                  hint='write e.g. ", prefix=denselayer" or ", prefix=\"block1-\""')
                if value.startswith("__") or not value[0].isalpha():
                    raise Problem(option.span, f"prefix '{value}' must start with a letter",
                                  hint="instance names become module names")
                options.prefix, options.prefix_span = value, option.span
            elif option.name == "start":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise Problem(option.span, f"start= takes a non-negative integer, not {describe(value)}",
                                  hint="write e.g. ', start=1' to number the instances from 1")
                options.start = value
            elif option.name == "inline":
                if not isinstance(value, bool):
                    raise Problem(option.span, f"inline= takes true or false, not {describe(value)}",
                                  hint="write ', inline=true'")
                options.inline = value
            else:
                raise Problem(option.span, f"a stage has no option '{option.name}'",
                              hint="stage options: stride=S, index=NAME, prefix=NAME, start=K, inline=true; "
                                   "pass other values as block arguments: stage NAME(ARGS) x N")
        if options.inline and (options.prefix or options.start):
            raise Problem(stmt.span, "an inline stage has no names of its own: prefix= and start= do not apply",
                          hint="drop inline=true to name the instances, or drop prefix=/start=")
        return options

    def check_stage_size(self, stmt: ir.Stage, count: int, nodes: int, work: int) -> None:
        """One instance tells the size of the rest: refuse a runaway stage at its own line.

        Work is counted too (an instance takes at least one step), so a stage of blocks
        that make no op cannot multiply unseen.
        """
        total = self.nodes + (count - 1) * nodes
        if total > self.limits.max_nodes:
            raise Problem(stmt.span, f"this stage would make {total:,} ops in all, over "
                          f"the limit of {self.limits.max_nodes:,}",
                          hint="use fewer blocks, or raise the limit (Limits.max_nodes)")
        total = self.work + (count - 1) * max(work, 1)
        if total > self.limits.max_work:
            raise Problem(stmt.span, f"this stage would take {total:,} elaboration steps in all, over "
                          f"the limit of {self.limits.max_work:,}",
                          hint="use fewer blocks, or raise the limit (Limits.max_work)")


#: A stage's instance-name prefix: a module name, not necessarily a Python identifier
#: (torchvision's RegNet names its blocks ``block1-0``).
_MODULE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


@dataclass
class _StageOptions:
    first: dict = field(default_factory=dict)  # arguments of instance 0 only (stride=)
    index: str | None = None  # the name bound to the instance index
    prefix: str = ""
    prefix_span: Span | None = None
    start: int = 0
    inline: bool = False
