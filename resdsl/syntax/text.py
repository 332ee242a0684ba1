"""The text form: ``.res`` source -> Lark tree -> IR, with located syntax errors."""

from __future__ import annotations

from typing import Any, Iterable

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedInput,
    VisitError,
)

from .. import ir
from ..errors import ErrorList, Span
from ..vocab import BODY_WORDS, FUNCTIONS, INPUT_DTYPES, PARAM_TYPES, REF_KINDS, identifier_problem
from .diagnostics import Locate, syntax_diagnostic
from .grammar import IndentationProblem, get_parser

#: Longer integer literals are errors before conversion (2**31 has 10 digits).
MAX_INT_DIGITS = 20
#: Deepest syntax tree the (recursive) transformer is given; far beyond real specs,
#: far below Python's recursion limit.
MAX_SYNTAX_DEPTH = 200
#: Distinct YAML statement strings whose syntax trees are kept (bounds the cache's memory).
MAX_CACHED_TREES = 1024



def file_locator(filename: str) -> Locate:
    def locate(line: int, column: int, end_line: int, end_column: int) -> Span:
        return Span(filename, line, column, end_line, end_column)

    return locate


def check_identifier(name: str, span: Span, errors: ErrorList, what: str, attribute: bool = True) -> None:
    """Names become Python attributes in generated code: keep them safe and unambiguous
    (``attribute=False``: a name that never becomes an attribute, a ``let``)."""
    problem = identifier_problem(name, what, attribute)
    if problem is not None:
        errors.add(span, problem[0], hint=problem[1])


class _CappedErrors:
    """The transformer's view of an ErrorList: once the cap is reached, ``add`` builds
    nothing (a diagnostic copies its source line; thousands of dropped ones cost seconds)."""

    __slots__ = ("errors",)

    def __init__(self, errors: ErrorList):
        self.errors = errors

    def add(self, span: Span, message: str, hint: str | None = None, notes: Iterable[str] = ()) -> None:
        if not self.errors.full:
            self.errors.add(span, message, hint, notes)

    @property
    def full(self) -> bool:
        return self.errors.full

    def __bool__(self) -> bool:
        return bool(self.errors)


class _Head:
    """A statement head before we know whether it opens a body."""

    __slots__ = ("kind", "name", "args", "count", "options", "span", "name_span")

    def __init__(self, kind, name, args, span, name_span, count=None, options=()):
        self.kind = kind  # "op" | "call" | "stage"
        self.name = name
        self.args = args
        self.count = count
        self.options = options
        self.span = span
        self.name_span = name_span


class _Shortcut:
    __slots__ = ("body", "span")

    def __init__(self, body, span):
        self.body = body
        self.span = span


class _Branch:
    """``if``/``elif``/``else`` part before ``body`` joins it to the ``if`` it continues."""

    __slots__ = ("kind", "cond", "body", "span")

    def __init__(self, kind, cond, body, span):
        self.kind = kind  # "if" | "elif" | "else"
        self.cond = cond
        self.body = body
        self.span = span


class _Compound:
    """``head:`` + body before it is known to be a residual or a shortcut."""

    __slots__ = ("label", "head", "body", "span")

    def __init__(self, label, head, body, span):
        self.label = label
        self.head = head
        self.body = body
        self.span = span


_BINOPS = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%"}


@v_args(meta=True)
class ToIR(Transformer):
    """Lark tree -> IR. Problems are recorded in ``errors`` and transformation continues."""

    def __init__(self, locate: Locate, errors: ErrorList):
        super().__init__()
        self.locate = locate
        self.errors = _CappedErrors(errors)
        # lark's v_args wrapper builds a new bound wrapper (functools.update_wrapper) on
        # every attribute lookup, i.e. once per tree node; bind each rule method once.
        for name in _RULE_METHODS:
            self.__dict__[name] = getattr(self, name)

    # -- positions -----------------------------------------------------------
    def span(self, meta: Any) -> Span:
        if getattr(meta, "empty", True) and not isinstance(meta, Token):
            return Span()
        return self.locate(meta.line, meta.column, meta.end_line, meta.end_column)

    def tok_span(self, tok: Token, length: int | None = None) -> Span:
        if length is None:
            return self.locate(tok.line, tok.column, tok.end_line, tok.end_column)
        return self.locate(tok.line, tok.column, tok.line, tok.column + length)

    def label_of(self, tok: Token | None) -> tuple[str | None, Span]:
        if tok is None:
            return None, Span()
        name = tok.value.rstrip(": \t")
        span = self.tok_span(tok, len(name))
        check_identifier(name, span, self.errors, "label")
        if name == "input":
            self.errors.add(
                span,
                "'input' names the input tensor and cannot label a statement",
                hint="choose another label",
            )
        return name, span

    # -- files and definitions -------------------------------------------------
    def start(self, meta, items):
        imports = tuple(i for i in items if isinstance(i, ir.Import))
        blocks = tuple(i for i in items if isinstance(i, ir.Block))
        networks = tuple(i for i in items if isinstance(i, ir.Network))
        return ir.SpecFile(imports=imports, blocks=blocks, networks=networks)

    def import_stmt(self, meta, children):
        (tok,) = children
        return ir.Import(path=tok.value[1:-1], span=self.tok_span(tok))

    def yaml_import(self, meta, children):
        return self.import_stmt(meta, children)

    def signature(self, meta, children):
        tok = children[0]
        params = children[1] if len(children) > 1 and children[1] is not None else ()
        span = self.tok_span(tok)
        check_identifier(tok.value, span, self.errors, "name")
        seen: dict[str, ir.Param] = {}
        for param in params:
            if param.name in seen:
                self.errors.add(
                    param.span,
                    f"parameter '{param.name}' is declared twice",
                    hint="remove or rename one of them",
                )
            seen[param.name] = param
        required_after_default = False
        for param in params:
            if param.default is not None:
                required_after_default = True
            elif required_after_default:
                self.errors.add(
                    param.span,
                    f"parameter '{param.name}' has no default but follows one that has",
                    hint="put parameters without defaults first",
                )
                break
        return tok.value, tuple(params), span

    def yaml_signature(self, meta, children):
        return children[0]

    def params(self, meta, children):
        return tuple(children)

    def param(self, meta, children):
        name_tok, type_tok, default = children
        span = self.tok_span(name_tok)
        check_identifier(name_tok.value, span, self.errors, "parameter")
        type_name = type_tok.value
        if type_name not in PARAM_TYPES:
            self.errors.add(
                self.tok_span(type_tok),
                f"unknown parameter type '{type_name}'",
                hint=f"a parameter's type is {', '.join(PARAM_TYPES)}",
            )
            type_name = "int"
        return ir.Param(name=name_tok.value, type=type_name, default=default, span=span)

    def choice_param(self, meta, children):
        """``arch: str(large, small) = large``: a str parameter that takes one of these words."""
        name_tok, type_tok, *words, default = children  # an absent default is None
        param = self.param(meta, [name_tok, type_tok, default])
        if param.type != "str":
            self.errors.add(self.tok_span(type_tok), f"only a str parameter lists its words, not {param.type}",
                            hint="write e.g. 'arch: str(large, small) = large'")
        return param.model_copy(update={"choices": tuple(w.value for w in words)})

    def network(self, meta, children):
        name, params, name_span = children[0]
        inputs = [c for c in children[1:] if isinstance(c, ir.Input)]
        blocks = tuple(c for c in children[1:] if isinstance(c, ir.Block))
        body = self.body([c for c in children[1:] if not isinstance(c, (ir.Input, ir.Block))])
        if not inputs:
            self.errors.add(
                name_span,
                f"network '{name}' has no input declaration",
                hint="add a line such as 'input x: [3, 224, 224]' to the network",
            )
            inputs = [ir.Input(name="input", shape=(), span=name_span)]
        for extra in inputs[1:]:
            self.errors.add(
                extra.span,
                "a network has exactly one input",
                hint="use a single 'input NAME: [...]' line",
            )
        if not body:
            self.errors.add(name_span, f"network '{name}' has no statements",
                            hint="add at least one statement after the input")
        return ir.Network(
            name=name, params=params, input=inputs[0], blocks=blocks, body=body,
            span=name_span,
        )

    def block_def(self, meta, children):
        name, params, name_span = children[0]
        return ir.Block(name=name, params=params, body=self.body(children[1:]), span=name_span)

    def input_decl(self, meta, children):
        name_tok, shape, dtype_tok = children
        check_identifier(name_tok.value, self.tok_span(name_tok), self.errors, "input name")
        dtype = "float" if dtype_tok is None else dtype_tok.value
        if dtype not in INPUT_DTYPES:
            self.errors.add(self.tok_span(dtype_tok), f"the input's element type must be "
                            f"{' or '.join(INPUT_DTYPES)}, not '{dtype}'",
                            hint="write 'int' for token ids (read by 'embedding'); float is the default")
            dtype = "float"
        return ir.Input(name=name_tok.value, shape=shape, dtype=dtype, span=self.span(meta))

    def yaml_input(self, meta, children):
        return self.input_decl(meta, children)

    def shape(self, meta, children):
        return tuple(c for c in children if c is not None)

    # -- statements ------------------------------------------------------------
    def body(self, items: Iterable[Any]) -> tuple[ir.Stmt, ...]:
        """Attach each ``shortcut:`` to the ``residual`` right before it, and each
        ``elif``/``else`` to the ``if`` right before it."""
        out: list[Any] = []
        open_if = False  # the last item is an If that may still take elif/else
        for item in items:
            if isinstance(item, _Branch):
                if item.kind == "if":
                    out.append(ir.If(cond=item.cond, body=item.body, span=item.span))
                    open_if = True
                    continue
                if not open_if:
                    self.errors.add(item.span, f"'{item.kind}' must come right after an 'if' or 'elif' body",
                                    hint="put it directly below the body of its 'if'")
                    continue
                out[-1] = _attach(out[-1], item)
                open_if = item.kind == "elif"
                continue
            open_if = False
            if isinstance(item, _Shortcut):
                previous = out[-1] if out else None
                if isinstance(previous, ir.Residual) and previous.shortcut is None:
                    out[-1] = previous.model_copy(
                        update={"shortcut": item.body, "shortcut_span": item.span}
                    )
                else:
                    self.errors.add(
                        item.span,
                        "'shortcut:' must come right after a residual body",
                        hint="put the shortcut block directly below its 'residual:' block",
                    )
            elif item is not None:
                out.append(item)
        return tuple(out)

    def simple(self, meta, children):
        if len(children) == 1:  # defaults, let
            return children[0]
        label_tok, head = children
        return self.statement(label_tok, head, body=None)

    def yaml_simple(self, meta, children):
        return children[0]

    def compound(self, meta, children):
        label_tok, head, *stmts = children
        return self.statement(label_tok, head, body=self.body(stmts))

    def yaml_head(self, meta, children):
        label_tok, head = children
        return _Compound(label_tok, head, (), head.span)

    # -- v2: let, if / elif / else -------------------------------------------------
    def let_stmt(self, meta, children):
        tok, value = children
        span = self.tok_span(tok)
        check_identifier(tok.value, span, self.errors, "name", attribute=False)
        return ir.Let(name=tok.value, value=value, span=self.span(meta), name_span=span)

    def if_part(self, meta, children):
        cond, *stmts = children
        return _Branch("if", cond, self.body(stmts), self.span(meta))

    def elif_part(self, meta, children):
        cond, *stmts = children
        return _Branch("elif", cond, self.body(stmts), self.span(meta))

    def else_part(self, meta, children):
        return _Branch("else", None, self.body(children), self.span(meta))

    def repeat_part(self, meta, children):
        count, *stmts = children
        return ir.Repeat(count=count, body=self.body(stmts), span=self.span(meta))

    def yaml_repeat(self, meta, children):
        return _Compound(None, _Head("repeat", "repeat", (children[0],), self.span(meta), self.span(meta)), (),
                         self.span(meta))

    def yaml_if(self, meta, children):
        return _Compound(None, _Head("if", "if", (children[0],), self.span(meta), self.span(meta)), (),
                         self.span(meta))

    def yaml_elif(self, meta, children):
        return _Compound(None, _Head("elif", "elif", (children[0],), self.span(meta), self.span(meta)), (),
                         self.span(meta))

    def yaml_else(self, meta, children):
        return _Compound(None, _Head("else", "else", (), self.span(meta), self.span(meta)), (),
                         self.span(meta))

    def statement(self, label_tok, head: _Head, body):
        if head.kind in ("if", "elif", "else"):  # YAML: '- if COND:' mapping to its body
            return _Branch(head.kind, head.args[0] if head.args else None, body or (), head.span)
        if head.kind == "repeat":  # YAML: '- repeat N:'
            return ir.Repeat(count=head.args[0], body=body or (), span=head.span)
        label, label_span = self.label_of(label_tok)
        span = head.span
        if label is not None and head.span.located:  # the statement reads from its label on
            span = Span(span.file, label_span.line, label_span.column, span.end_line, span.end_column)
        if body is None:
            if head.kind == "op" and head.name in BODY_WORDS:
                self.errors.add(
                    head.name_span,
                    f"'{head.name}' needs an indented body",
                    hint=f"end the line with ':' and indent the statements of the {head.name} path below it",
                )
                return None
            if head.kind == "stage":
                return ir.Stage(
                    label=label, block=head.name, args=head.args, count=head.count,
                    options=head.options, span=span, name_span=head.name_span,
                )
            if head.kind == "op" and head.name in REF_KINDS:
                return self.ref(label, head)
            return ir.Apply(
                label=label, name=head.name, args=head.args, span=span,
                name_span=head.name_span,
            )
        if head.kind == "op" and head.name == "residual":
            return ir.Residual(label=label, options=head.args, body=body, span=span)
        if head.kind == "op" and head.name == "sequential":
            if head.args:
                self.errors.add(head.span, "'sequential:' takes no arguments",
                                hint="write its statements in its indented body")
            return ir.Sequential(label=label, body=body, span=span)
        if head.kind == "op" and head.name == "shortcut":
            if label is not None:
                self.errors.add(label_span, "a shortcut path takes no label",
                                hint="remove the label; the shortcut is named 'downsample'")
            if head.args:
                self.errors.add(head.span, "'shortcut:' takes no arguments",
                                hint="write the shortcut's ops in its indented body")
            return _Shortcut(body, span)
        self.errors.add(
            head.name_span,
            f"'{head.name}' cannot open an indented body",
            hint="only 'residual:', 'shortcut:', 'sequential:' and 'if'/'elif'/'else' take an indented body here "
            "(blocks are defined with 'block NAME(...):')",
        )
        return None

    def ref(self, label, head: _Head) -> ir.Ref | None:
        positional = [a for a in head.args if a.name is None]
        options = tuple(a for a in head.args if a.name is not None)
        if len(positional) != 1 or not isinstance(positional[0].value, ir.NameRef):
            where = positional[1].span if len(positional) > 1 else head.span
            self.errors.add(
                where,
                f"'{head.name}' takes exactly one label",
                hint=f"write '{head.name} LABEL', naming an earlier labelled statement",
            )
            return None
        target = positional[0].value
        return ir.Ref(
            label=label, kind=head.name, target=target.name, options=options,
            span=head.span, target_span=target.span,
        )

    def defaults(self, meta, children):
        tok, args = children
        return ir.Defaults(op=tok.value, args=args or (), span=self.span(meta),
                           name_span=self.tok_span(tok))

    def yaml_defaults(self, meta, children):
        return self.defaults(meta, children)

    def op_head(self, meta, children):
        tok, args = children
        return _Head("op", tok.value, args or (), self.span(meta), self.tok_span(tok))

    def call_head(self, meta, children):
        tok, args = children
        return _Head("call", tok.value, args or (), self.span(meta), self.tok_span(tok))

    def stage_head(self, meta, children):
        tok = children[0]
        if tok.type == "CALL_NAME":
            args, count, options = children[1] or (), children[2], children[3:]
        else:
            args, count, options = (), children[1], children[2:]
        # A positional option reaches here as a bare expression (``?arg`` inlines it), not an Arg.
        keywords = tuple(o for o in options if isinstance(o, ir.Arg) and o.name is not None)
        for option in options:
            if not (isinstance(option, ir.Arg) and option.name is not None):
                self.errors.add(option.span, "a stage takes only keyword options after 'x N'",
                                hint="write e.g. ', stride=2'")
        return _Head(
            "stage", tok.value, args, self.span(meta), self.tok_span(tok),
            count=count, options=keywords,
        )

    def arglist(self, meta, children):
        args = tuple(c if isinstance(c, ir.Arg) else ir.Arg(value=c, span=c.span) for c in children)
        seen_keyword = False
        names: set[str] = set()
        for arg in args:
            if arg.name is None and seen_keyword:
                self.errors.add(arg.span, "positional argument after a keyword argument",
                                hint="put positional arguments first")
            if arg.name is not None:
                seen_keyword = True
                if arg.name in names:
                    self.errors.add(arg.span, f"argument '{arg.name}' is given twice",
                                    hint="remove one of them")
                names.add(arg.name)
        return args

    def kwarg(self, meta, children):
        tok, value = children
        return ir.Arg(name=tok.value, value=value, span=self.span(meta))

    # -- expressions -------------------------------------------------------------
    def integer(self, digits: str, tok: Token) -> int:
        """``int(digits)``, refusing literals so long that converting them is itself costly."""
        if len(digits) > MAX_INT_DIGITS:
            self.errors.add(self.tok_span(tok),
                            f"integer literal of {len(digits):,} digits is out of range (limit is +-2**31)",
                            hint="use smaller numbers")
            return 0  # placeholder: the error stops compilation before elaboration
        return int(digits)

    def int_lit(self, meta, children):
        return ir.IntLit(value=self.integer(children[0], children[0]), span=self.tok_span(children[0]))

    def float_lit(self, meta, children):
        return ir.FloatLit(value=float(children[0]), span=self.tok_span(children[0]))

    def kernel_lit(self, meta, children):
        dims = tuple(self.integer(d, children[0]) for d in children[0].split("x"))
        return ir.KernelLit(dims=dims, span=self.tok_span(children[0]))

    def true_lit(self, meta, children):
        return ir.BoolLit(value=True, span=self.span(meta))

    def false_lit(self, meta, children):
        return ir.BoolLit(value=False, span=self.span(meta))

    def tuple_lit(self, meta, children):
        return ir.TupleExpr(items=tuple(children), span=self.span(meta))

    def str_lit(self, meta, children):
        return ir.StrLit(value=children[0].value[1:-1], span=self.tok_span(children[0]))

    def name_ref(self, meta, children):
        return ir.NameRef(name=children[0].value, span=self.tok_span(children[0]))

    def func_call(self, meta, children):
        tok, *args = children
        if tok.value not in FUNCTIONS:
            self.errors.add(
                self.tok_span(tok),
                f"unknown function '{tok.value}' in an expression",
                hint=f"expressions may call {', '.join(FUNCTIONS)}",
            )
        return ir.FuncCall(func=tok.value, args=tuple(args), span=self.span(meta))

    def neg(self, meta, children):
        return ir.Neg(operand=children[0], span=self.span(meta))

    def compare(self, meta, children):
        left, op, right = children
        return ir.Compare(op=op.value, left=left, right=right, span=self.span(meta))

    def and_op(self, meta, children):
        return ir.BoolOp(op="and", left=children[0], right=children[1], span=self.span(meta))

    def or_op(self, meta, children):
        return ir.BoolOp(op="or", left=children[0], right=children[1], span=self.span(meta))

    def not_op(self, meta, children):
        return ir.Not(operand=children[0], span=self.span(meta))

    def if_expr(self, meta, children):
        then, cond, orelse = children
        return ir.IfExpr(cond=cond, then=then, orelse=orelse, span=self.span(meta))

    def _binop(self, op_name):
        def build(meta, children):
            left, right = children
            return ir.BinOp(op=_BINOPS[op_name], left=left, right=right, span=self.span(meta))

        return build

    def __default__(self, data, children, meta):
        if data in _BINOPS:
            return self._binop(data)(meta, children)
        if data == "unary" or data == "atom":  # "+x" and "(x)" pass through
            return children[0]
        return super().__default__(data, children, meta)


def _attach(stmt: ir.If, branch: _Branch) -> ir.If:
    """Join an ``elif``/``else`` to the innermost open ``if`` of an elif chain."""
    if stmt.orelse:
        (inner,) = stmt.orelse
        return stmt.model_copy(update={"orelse": (_attach(inner, branch),)})
    if branch.kind == "elif":
        nested = ir.If(cond=branch.cond, body=branch.body, span=branch.span)
        return stmt.model_copy(update={"orelse": (nested,)})
    return stmt.model_copy(update={"orelse": branch.body})


_RULE_METHODS = tuple(
    name for name, value in vars(ToIR).items()
    if not name.startswith("_") and hasattr(value, "visit_wrapper")
)



def _too_deep(tree: Tree, limit: int) -> Tree | None:
    """The first subtree ``limit`` levels down, found without recursion (the transformer
    recurses, so depth is bounded before it runs)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth >= limit:
            return node
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
    return None


def _first_position(tree: Tree) -> tuple[int, int]:
    """Line and column of the first token under ``tree`` (1, 1 if it has none)."""
    meta = tree.meta
    if not getattr(meta, "empty", True):
        return meta.line, meta.column
    for token in tree.scan_values(lambda v: isinstance(v, Token)):
        if token.line is not None:
            return token.line, token.column
    return 1, 1


def parse_fragment(
    text: str, start: str, locate: Locate, errors: ErrorList, source: str | None = None,
    converter: ToIR | None = None, trees: dict[tuple[str, str], Tree] | None = None,
) -> Any:
    """Parse ``text`` with one start rule and transform it to IR, recording errors.

    The YAML reader parses thousands of statement strings: it passes one ``converter``
    (building a ToIR costs more than parsing ``relu``) and a ``trees`` cache, so each
    distinct string is parsed once (trees are position-relative; ``locate`` maps them).
    """
    tree = trees.get((start, text)) if trees is not None else None
    if tree is None:
        try:
            tree = get_parser().parse(text, start=start)
        except (UnexpectedInput, IndentationProblem) as exc:
            if not errors.full:
                syntax_diagnostic(exc, source if source is not None else text, locate, errors)
            return None
        deep = _too_deep(tree, MAX_SYNTAX_DEPTH)
        if deep is not None:
            line, column = _first_position(deep)
            errors.add(locate(line, column, line, column + 1),
                       f"nested more than {MAX_SYNTAX_DEPTH} levels deep (parentheses, operators or indented bodies)",
                       hint="split the expression or flatten the structure; blocks help")
            return None
        if trees is not None and len(trees) < MAX_CACHED_TREES:
            trees[(start, text)] = tree
    if converter is None:
        converter = ToIR(locate, errors)
    else:
        converter.locate = locate
    try:
        return converter.transform(tree)
    except VisitError as exc:  # a bug in a transformer method; never a user's fault
        raise exc.orig_exc from None


def parse_text(text: str, filename: str = "<spec>", errors: ErrorList | None = None) -> ir.SpecFile:
    """Parse a whole ``.res`` file into IR.

    >>> spec = parse_text("network tiny:\\n    input x: [4]\\n    fc: linear 2\\n")
    >>> spec.networks[0].body[0].name
    'linear'
    """
    own_errors = errors is None
    errors = errors if errors is not None else ErrorList()
    errors.sources[filename] = text
    source = text if text.endswith("\n") else text + "\n"
    spec = parse_fragment(source, "start", file_locator(filename), errors, source=text)
    if own_errors:
        errors.raise_if_any()
    if spec is None:
        errors.raise_if_any()
    return spec
