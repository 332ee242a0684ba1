"""The ``resdsl`` command: argument handling and printing only.

Exit codes: 0 ok, 1 the spec has errors, 2 usage error (bad flags, unreadable
file, an output path that must not or cannot be written, a drawing too large to
lay out), 3 internal error (a bug in resdsl; the message says how to report it);
``resdsl diff``: 0 the two specs are the same architecture, 1 they differ (or one has errors,
printed located); 143 terminated by SIGTERM (temporary files removed), 141 output pipe closed.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

from .elaborate.limits import Limits
from .errors import UsageError, did_you_mean, printable
from .graph import op_node
from .shapes import format_shape
from .vocab import SHORTCUT_POLICIES

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_BROKEN_PIPE, EXIT_TERMINATED = 141, 143  # the shell's 128 + SIGPIPE, 128 + SIGTERM


def _define(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _out(text: str, file: Any = None) -> None:
    """Print for a terminal: paths and names may come from strangers, so control
    characters (ANSI escapes, bidi overrides) are shown escaped, line by line."""
    print("\n".join(printable(line) for line in str(text).split("\n")), file=file)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value <= 10**9:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {printable(text)!r}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="a .res or .yaml spec file, or a zoo model's name (`resdsl zoo` lists "
                        "them; an existing file of that name wins)")
    parser.add_argument("-D", "--define", dest="defines", action="append", type=_define, default=[],
                        metavar="NAME=VALUE", help="override a network parameter (repeatable)")
    parser.add_argument("--network", help="which network, when the file defines several")
    parser.add_argument("--plain", action="store_true",
                        help="the plain twin: every residual becomes shortcut=none")
    parser.add_argument("--shortcut", choices=SHORTCUT_POLICIES,
                        help="force one shortcut policy on every residual (e.g. B for projections)")
    parser.add_argument("--max-nodes", type=_positive, metavar="N",
                        help=f"refuse networks of more than N ops (default {Limits().max_nodes:,})")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resdsl",
        description="Write, check, build and draw residual networks.",
    )
    parser.add_argument("--version", action="version", version=f"resdsl {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_render(sub)
    _add_diff(sub)
    _add_from_torch(sub)
    _add_editor(sub)

    zoo = sub.add_parser("zoo", help="list the zoo's reference models (a zoo name can replace a spec file)")
    zoo.add_argument("--json", action="store_true",
                     help='print a JSON list of {"name", "spec", "params", "reference"} objects')

    check = sub.add_parser("check", help="parse and check a spec (no torch): one-line summary")
    _common(check)
    check.add_argument("--json", action="store_true", help="print one JSON object")

    compile_ = sub.add_parser("compile", help="build the PyTorch module and run a zero batch through it")
    _common(compile_)
    compile_.add_argument("--zero-init-residual", action="store_true",
                          help="zero the last batchnorm of every residual body (each unit starts as the identity)")
    compile_.add_argument("--weights", metavar="FILE.pt", help="load a state dict strictly")
    _weights_options(compile_)
    compile_.add_argument("--inference", action="store_true",
                          help="the eval-only inference build: norms folded, dropout out, channels_last "
                               "(--weights: a training checkpoint, folded as it loads)")
    compile_.add_argument("--batch", type=int, default=1, help="batch size of the zero batch (default 1)")
    compile_.add_argument("--json", action="store_true", help="print one JSON object")
    compile_.add_argument("-o", "--output", metavar="FILE.py",
                          help="also write the model as one standalone PyTorch file (imports only torch)")

    weights = sub.add_parser("weights-diff", help="compare a checkpoint with the spec's keys and shapes "
                             "(no forward): exit 0 if they match, 1 if they differ")
    _common(weights)
    weights.add_argument("checkpoint", metavar="CHECKPOINT.pt", help="a file saved by torch.save")
    _weights_options(weights)
    weights.add_argument("--json", action="store_true", help="print one JSON object listing every key")
    weights.add_argument("--write-map", metavar="FILE", help="when the tensors match in count, shape and "
                         "order under other names: write a --weights-map file that renames them")

    analyze = sub.add_parser("analyze", help="cost per stage, receptive field and paths (no torch); "
                             "--init/--gradients build the module")
    _common(analyze)
    analyze.add_argument("--json", action="store_true", help="print one JSON object")
    analyze.add_argument("--init", action="store_true",
                         help="per residual unit, ||H(x) - x|| / ||x|| at init, with and without zero-init")
    analyze.add_argument("--gradients", action="store_true",
                         help="gradient norm per stage at init, residual against its plain twin")
    analyze.add_argument("--sweep", type=_define, metavar="NAME=V1,V2,...",
                         help="with --gradients: one measurement per value of a parameter (e.g. n=3,9,18)")
    analyze.add_argument("--eval-mode", action="store_true",
                         help="with --gradients: batchnorm on running statistics (the identity at init)")
    analyze.add_argument("--batch", type=int, default=8, help="random batch for --init/--gradients (default 8)")
    analyze.add_argument("--seed", type=int, default=0, help="seed of weights and batch (default 0)")
    return parser


def _weights_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights-map", metavar="FILE", help="rename the checkpoint's keys first: one "
                        "`REGEX -> REPLACEMENT` rule a line, the first matching rule wins")
    parser.add_argument("--weights-by-order", action="store_true",
                        help="take the checkpoint's tensors by position when every shape matches in order")


def _add_render(sub: Any) -> None:
    render = sub.add_parser("render", help="draw the architecture (svg, png, pdf, dot or an html page), skips typed")
    _common(render)
    render.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="FILE.svg, FILE.png, FILE.pdf, FILE.dot, or FILE.html (an interactive page)")
    render.add_argument("--level", choices=("stage", "block", "layer"), default="block",
                        help="stage boxes, block boxes (default) or every op")
    render.add_argument("--layout", choices=("column", "u", "auto"), default="auto",
                        help="a column, a U (encoder left, decoder right), or auto (default)")
    render.add_argument("--shapes", action=argparse.BooleanOptionalAction, default=True,
                        help="tensor shapes on edges (default: on)")
    render.add_argument("--expand", action="store_true",
                        help="block level: one box per block, no 'x N' runs")
    render.add_argument("--dpi", type=int, metavar="N",
                        help="PNG resolution in dots per inch (24-600; default 96)")
    render.add_argument("--style", choices=("default", "paper"), default="default",
                        help="paper: He et al. 2015 fig. 3 (a column) or Ronneberger et al. 2015 fig. 1 (a U)")


def _add_from_torch(sub: Any) -> None:
    parser = sub.add_parser("from-torch", help="write a PyTorch model as a spec (traced with torch.fx), "
                            "checked by loading its weights into the spec's build")
    parser.add_argument("callable", metavar="DOTTED.CALLABLE",
                        help="a callable that returns the nn.Module, e.g. torchvision.models.resnet50 "
                        "(imported and called: name only code you trust)")
    parser.add_argument("-D", "--define", dest="defines", action="append", type=_define, default=[],
                        metavar="KEY=VALUE", help="a keyword argument of the callable (a Python literal, "
                        "else a string), e.g. -D num_classes=10 (repeatable)")
    parser.add_argument("--input", type=_shape_arg, default=(3, 224, 224), metavar="C,H,W",
                        help="the per-sample input shape (default 3,224,224)")
    parser.add_argument("--name", help="the network's name (default: the callable's)")
    parser.add_argument("-o", "--output", metavar="FILE.res", help="write the spec there (default: print it)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the check (build the spec, load the weights strictly, compare outputs)")


def _shape_arg(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if not 1 <= len(dims) <= 4 or not all(0 < d <= 1 << 16 for d in dims):
        raise argparse.ArgumentTypeError(f"expected 1 to 4 positive sizes such as 3,224,224, got {printable(text)!r}")
    return dims


def cmd_from_torch(args: argparse.Namespace) -> int:
    if args.output:
        _check_output(args.output, ())
    from .fromtorch import from_torch
    from .fromtorch.source import make_module

    module, name = make_module(args.callable, dict(args.defines))
    result = from_torch(module, args.input, name=args.name or name, check=not args.no_check,
                        source=args.callable)
    if args.output:
        from .io import atomic_write

        atomic_write(args.output, result.text)
        _out(f"wrote {args.output}: {len(result.text.splitlines())} lines", file=sys.stderr)
    else:
        sys.stdout.write(result.text)
    if result.verdict is None:
        return EXIT_OK
    _out(result.verdict.summary(), file=sys.stderr)
    return EXIT_OK if result.exact else EXIT_SPEC


def _add_diff(sub: Any) -> None:
    diff = sub.add_parser("diff", help="the architecture difference of two specs: statements, parameters, "
                          "checkpoint keys (exit 0 same, 1 different)")
    diff.add_argument("spec_a", metavar="A", help="the spec before: a file or a zoo model's name")
    diff.add_argument("spec_b", metavar="B", help="the spec after: a file or a zoo model's name")
    diff.add_argument("-D", "--define", dest="defines", action="append", type=_define, default=[],
                      metavar="NAME=VALUE", help="override a network parameter of both (repeatable)")
    diff.add_argument("--define-a", dest="defines_a", action="append", type=_define, default=[],
                      metavar="NAME=VALUE", help="override a network parameter of A only (repeatable)")
    diff.add_argument("--define-b", dest="defines_b", action="append", type=_define, default=[],
                      metavar="NAME=VALUE", help="override a network parameter of B only (repeatable)")
    diff.add_argument("--network", help="which network, when the files define several")
    diff.add_argument("--max-nodes", type=_positive, metavar="N",
                      help=f"refuse networks of more than N ops (default {Limits().max_nodes:,})")
    diff.add_argument("--no-keys", action="store_true",
                      help="skip the checkpoint keys (no torch: statements and parameters only)")
    diff.add_argument("--all", action="store_true", help="every line, not a screenful")
    diff.add_argument("--json", action="store_true", help="print one JSON object (every change and key)")


def cmd_diff(args: argparse.Namespace) -> int:
    from .archdiff import diff_nets

    nets = []
    for spec, own in ((args.spec_a, args.defines_a), (args.spec_b, args.defines_b)):
        side = argparse.Namespace(spec=spec, defines=list(args.defines) + list(own), network=args.network,
                                  plain=False, shortcut=None, max_nodes=args.max_nodes)
        _resolve_spec(side)
        nets.append(_load(side))
    result = diff_nets(*nets, keys=not args.no_keys)
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    else:
        _out(result.render(full=args.all))
    return EXIT_OK if result.same else EXIT_SPEC
def _add_editor(sub: Any) -> None:
    fmt = sub.add_parser("fmt", help="lay out .res specs the one canonical way (comments kept)")
    fmt.add_argument("files", nargs="+", metavar="FILE", help="a .res spec; - reads standard input")
    fmt.add_argument("--check", action="store_true",
                     help="change nothing: print a diff and exit 1 when a file is not formatted")
    fmt.add_argument("-i", "--in-place", action="store_true", help="rewrite each file that changes")
    sub.add_parser("lsp", help="the language server for editors, over stdin/stdout (needs pygls)")


def cmd_fmt(args: argparse.Namespace) -> int:
    """Print the formatted text (one file), or rewrite (-i), or check; exit 1 on any
    spec error or, with --check, on any file that would change."""
    from .editor.fmt import format_text, read_spec, unified_diff
    from .errors import SpecError
    from .io import OutputError, atomic_write

    if args.check and args.in_place:
        raise UsageError("--check and -i exclude each other")
    if not (args.check or args.in_place) and len(args.files) > 1:
        raise UsageError("several files: pass -i to rewrite them or --check to check them")
    status = EXIT_OK
    for path in args.files:
        if path.endswith((".yaml", ".yml")):
            raise UsageError(f"'{printable(path)}': fmt lays out .res text; YAML has its own formatters")
        try:
            before = read_spec(path)
            after = format_text(before, "<stdin>" if path == "-" else path)
        except SpecError as err:
            print(err.render(), file=sys.stderr)
            status = EXIT_SPEC
            continue
        if args.check:
            if after != before:
                sys.stdout.write(unified_diff(before, after, path))
                status = EXIT_SPEC
        elif args.in_place and path != "-":
            if after != before:
                try:
                    atomic_write(path, after)
                except OutputError as err:
                    raise UsageError(str(err)) from None
                _out(f"formatted {path}", file=sys.stderr)
        else:
            sys.stdout.write(after)
    return status


def cmd_lsp(args: argparse.Namespace) -> int:
    try:
        from .editor.lsp import serve
    except ImportError as err:  # pygls is an optional dependency
        raise UsageError(f"the language server needs pygls ({err}): pip install 'resdsl[editor]'") from None
    serve()
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from .io import OutputError
    from .render import RenderFailed, RenderOptionError, check_dpi, plan, render

    try:  # the format and the target (or the .dot fallback) first: before any work
        check_dpi(args.dpi)
        plan(args.output, protect=(args.spec,))
    except (RenderOptionError, OutputError) as err:
        raise UsageError(str(err)) from None
    net = _load(args)
    try:
        result = render(net.graph, args.output, level=args.level, layout=args.layout,
                        shapes=args.shapes, expand=args.expand, protect=(args.spec, *net.inputs),
                        dpi=args.dpi, style=args.style)
    except (OutputError, RenderFailed, RenderOptionError) as err:  # RenderOptionError: too large
        raise UsageError(str(err)) from None
    for warning in result.warnings:
        _out(f"resdsl: warning: {warning}", file=sys.stderr)
    if result.note:
        _out(f"resdsl: {result.note}", file=sys.stderr)
    else:
        _out(f"wrote {result.path}" + (f" ({result.renderer})" if result.renderer else ""))
    return EXIT_OK


def _version() -> str:
    from . import __version__

    return __version__


def _resolve_spec(args: argparse.Namespace) -> None:
    """A spec argument that names no file but a zoo model becomes that model's spec
    file, its params coming before the user's ``-D`` (which therefore win)."""
    import os

    if os.path.lexists(args.spec):  # an existing file (or anything there) is what was meant
        return
    from . import zoo

    if args.spec not in zoo.names():
        close = did_you_mean(args.spec, zoo.names()) if len(args.spec) <= 100 else None
        hint = f"; {close}" if close and close.startswith("did you") else ""
        raise UsageError(f"cannot read '{printable(args.spec)}': no such file, and no zoo model of that "
                         f"name{hint} (`resdsl zoo` lists the models)")
    entry = zoo.entry(args.spec)
    args.spec = str(zoo.path(args.spec))
    args.defines = list(entry.params.items()) + list(args.defines)


def _load(args: argparse.Namespace):
    import os

    from .api import load

    if not os.path.isfile(args.spec):
        what = "a directory" if os.path.isdir(args.spec) else \
            "not a regular file" if os.path.lexists(args.spec) else "no such file"
        raise UsageError(f"cannot read '{printable(args.spec)}': {what}")
    return load(args.spec, network=args.network, plain=args.plain, shortcut=args.shortcut,
                limits=_limits(args), **dict(args.defines))


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(max_nodes=args.max_nodes) if args.max_nodes else Limits()


def cmd_check(args: argparse.Namespace) -> int:
    net = _load(args)
    if args.json:
        print(json.dumps(_net_json(net), sort_keys=True))
        return EXIT_OK
    _out(f"{net.name}: ok - {net.num_ops} ops ({net.num_weight_layers} weight layers), "
          f"{net.num_params:,} parameters, {format_shape(net.input_shape)} -> {format_shape(net.output_shape)}")
    return EXIT_OK


def _net_json(net: Any) -> dict[str, Any]:
    return {
        "name": net.name,
        "file": net.filename,
        "params": net.params,
        "plain": net.plain,
        "shortcut": net.shortcut,
        "input_shape": list(net.input_shape),
        "output_shape": list(net.output_shape),
        "num_params": net.num_params,
        "num_ops": net.num_ops,
        "num_weight_layers": net.num_weight_layers,
        "summary": [
            {"name": n, "kind": k, "output_shape": s, "params": p} for n, k, s, p in net.summary_rows()
        ],
    }


def cmd_compile(args: argparse.Namespace) -> int:
    if args.output:  # an unwritable -o fails before the build, not after it
        _check_output(args.output, (args.spec,))
    net = _load(args)
    if args.output:  # now the imports are known: none of them is overwritten either
        _check_output(args.output, (args.spec, *net.inputs))
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    import torch

    from .backends.torch import check_memory, observed_shapes

    check_memory(net, args.batch)  # the spec too big: exit 1; the batch too big: exit 2
    if (args.weights_map or args.weights_by_order) and not args.weights:
        raise UsageError("--weights-map and --weights-by-order go with --weights")
    if args.inference:  # load_weights's notes go to the "resdsl.weights" log
        model = net.build(zero_init_residual=args.zero_init_residual, weights=args.weights,
                          weights_map=args.weights_map, weights_by_order=args.weights_by_order,
                          inference=True, runtime="portable")  # the code -o writes, checked as such
    else:
        model = net.build(zero_init_residual=args.zero_init_residual)
    if args.weights and not args.inference:
        from .backends.torch import load_weights

        for note in load_weights(model, net, args.weights, weights_map=args.weights_map,
                                 by_order=args.weights_by_order):
            _out(note, file=sys.stderr if args.json else sys.stdout)
    model.eval()
    built = SimpleNamespace(graph=net.inference_plan().graph) if args.inference else net
    with torch.no_grad():
        observed = observed_shapes(model, built, net.sample_input(args.batch, zeros=True))
    mismatched = [n for n, shape in observed.items() if op_node(built.graph, n).shape != shape]
    torch_params = sum(p.numel() for p in model.parameters())
    if args.json:
        result = _net_json(net)
        result.update(torch_params=torch_params, shapes_match=not mismatched)
        print(json.dumps(result, sort_keys=True))
    else:
        _print_table(net, torch_params, args.batch, mismatched)
    if mismatched:  # pragma: no cover - would be a bug in a shape rule
        _out(f"resdsl: internal error: inferred and observed shapes differ at "
              f"{op_node(net.graph, mismatched[0]).module}", file=sys.stderr)
        return EXIT_INTERNAL
    if args.output:
        _write_source(net, args.output, args.spec, quiet=args.json, inference=args.inference)
    return EXIT_OK


def _check_output(output: str, protect: tuple[str, ...]) -> None:
    from .io import OutputError, check_output

    try:
        check_output(output, protect=protect)
    except OutputError as err:
        raise UsageError(str(err)) from None


def _write_source(net: Any, output: str, spec: str, quiet: bool, inference: bool = False) -> None:
    from .io import OutputError, atomic_write

    try:
        path = atomic_write(output, net.source(inference=inference).text, protect=(spec, *net.inputs))
    except OutputError as err:  # atomic_write turns every OSError about the path into one
        raise UsageError(str(err)) from None
    _out(f"wrote {path}", file=sys.stderr if quiet else sys.stdout)


def _print_table(net: Any, torch_params: int, batch: int, mismatched: list[int]) -> None:
    rows = net.summary_rows()
    name_w = max([len("name")] + [len(r[0]) for r in rows])
    kind_w = max([len("kind")] + [len(r[1]) for r in rows])
    shape_w = max([len("output")] + [len(r[2]) for r in rows])
    _out(f"{net.name} ({net.filename})")
    _out(f"  {'name':<{name_w}}  {'kind':<{kind_w}}  {'output':<{shape_w}}  {'params':>12}")
    _out(f"  {'input':<{name_w}}  {'':<{kind_w}}  {format_shape(net.input_shape):<{shape_w}}  {'':>12}")
    for name, kind, shape, params in rows:
        _out(f"  {name:<{name_w}}  {kind:<{kind_w}}  {shape:<{shape_w}}  {params:>12,}")
    _out(f"  {'total':<{name_w}}  {'':<{kind_w}}  {format_shape(net.output_shape):<{shape_w}}  {net.num_params:>12,}")
    status = "shapes match" if not mismatched else "SHAPES DIFFER"
    _out(f"forward on a zero batch of {batch}: ok, {status}; torch counts {torch_params:,} parameters")


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import analyze

    net = _load(args)
    if args.batch < 2 and (args.init or args.gradients):
        raise UsageError("--batch must be at least 2 (batchnorm needs batch statistics)")
    if (args.sweep or args.eval_mode) and not args.gradients:
        raise UsageError("--sweep and --eval-mode go with --gradients")
    report = analyze(net)
    result = report.to_dict() if args.json else None
    if not args.json:
        _out(report.render())
    if args.init or args.gradients:
        from .analysis import probes
    if args.init:
        ratios = {zero: probes.init_ratios(net, zero_init_residual=zero, batch=args.batch, seed=args.seed)
                  for zero in (False, True)}
        if args.json:
            result["init"] = [{"unit": a.unit, "shortcut": a.shortcut, "ratio": a.ratio, "ratio_zero_init": b.ratio}
                              for a, b in zip(ratios[False], ratios[True])]
        else:
            _out("\n" + probes.render_init(ratios[True], ratios[False]))
    if args.gradients:
        rows = _gradient_rows(args, probes)
        if args.json:
            result["gradients"] = [{"setting": r.setting, "plain": r.plain, "depth": r.depth,
                                    "train_mode": not args.eval_mode, "stages": dict(r.norms)} for r in rows]
        else:
            _out("\n" + probes.render_gradients(rows, train=not args.eval_mode))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return EXIT_OK


def _gradient_rows(args: argparse.Namespace, probes: Any) -> list:
    from .api import load

    name, values = (args.sweep[0], args.sweep[1].split(",")) if args.sweep else (None, [])
    defines = dict(args.defines)

    def load_twin(plain: bool, **override: str):
        return load(args.spec, network=args.network, plain=plain, shortcut=args.shortcut,
                    **{**defines, **override})

    return probes.gradient_sweep(load_twin, name, values, batch=args.batch, seed=args.seed,
                                 train=not args.eval_mode)


def cmd_weights_diff(args: argparse.Namespace) -> int:
    from .backends.torch import diff_weights
    from .backends.weights import write_map
    from .errors import SpecError

    if args.write_map:
        _check_output(args.write_map, (args.spec, args.checkpoint, *filter(None, [args.weights_map])))
    net = _load(args)
    matched = diff_weights(net, args.checkpoint, weights_map=args.weights_map, by_order=args.weights_by_order)
    if args.json:
        print(json.dumps(matched.to_dict(), sort_keys=True))
    else:
        for note in matched.notes:
            _out(note)
        if matched.ok:
            _out(f"{args.checkpoint}: matches {net.name}: {matched.found.spec_tensors:,} tensors, same names "
                 "and shapes")
        else:
            print(SpecError(matched.diagnostics).render())  # Diagnostic.render escapes what it quotes
    if args.write_map:
        if matched.renamed is None:
            raise UsageError("--write-map: the checkpoint's tensors do not match the spec's in count, shape and "
                             "order, so no map follows from their positions")
        _write_text(args.write_map, write_map(matched.renamed), (args.spec, args.checkpoint, *net.inputs),
                    quiet=args.json)
    return EXIT_OK if matched.ok else EXIT_SPEC


def _write_text(output: str, text: str, protect: tuple[str, ...], quiet: bool) -> None:
    from .io import OutputError, atomic_write

    try:
        path = atomic_write(output, text, protect=protect)
    except OutputError as err:
        raise UsageError(str(err)) from None
    _out(f"wrote {path}", file=sys.stderr if quiet else sys.stdout)


def cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import ENTRIES

    if args.json:
        print(json.dumps([e.to_dict() for e in ENTRIES], indent=2, sort_keys=True))
        return EXIT_OK
    rows = [(e.name, e.reference, " ".join(filter(None, (e.spec, e.defines())))) for e in ENTRIES]
    header = ("name", "reference", "spec")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    for name, reference, spec in [header, *rows]:
        _out(f"{name:<{widths[0]}}  {reference:<{widths[1]}}  {spec}")
    _out(f"\n{len(rows)} models: `resdsl compile NAME` builds one (-D overrides its params), "
         "`resdsl zoo --json` lists them as data")
    return EXIT_OK


COMMANDS = {"check": cmd_check, "compile": cmd_compile, "analyze": cmd_analyze, "render": cmd_render,
            "zoo": cmd_zoo, "diff": cmd_diff, "weights-diff": cmd_weights_diff, "fmt": cmd_fmt, "lsp": cmd_lsp,
            "from-torch": cmd_from_torch}


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    from .errors import SpecError
    from .io import Terminated

    try:
        with _sigterm_as_exception():
            if hasattr(args, "spec"):
                _resolve_spec(args)
            return COMMANDS[args.command](args)
    except Terminated:  # files being written were removed on the way out
        _out("resdsl: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except BrokenPipeError:  # `resdsl analyze ... | head`: not our bug
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except SpecError as err:
        if getattr(args, "json", False):
            print(json.dumps(err.to_dict(), sort_keys=True))
        print(err.render(), file=sys.stderr)  # Diagnostic.render escapes spec text itself
        return EXIT_SPEC
    except UsageError as err:
        _out(f"resdsl: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback for the user; still say it is our bug
        _out(f"resdsl: internal error: {type(exc).__name__}: {exc}\n"
              "This is a bug in resdsl, not in your spec. Please report it with the spec attached.",
              file=sys.stderr)
        return EXIT_INTERNAL


@contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """SIGTERM raises :class:`resdsl.io.Terminated` during a command, so that ``finally``
    blocks run: a temporary output file is removed, a layout subprocess is killed.
    Only on the main thread, and the previous handler comes back afterwards."""
    import signal
    import threading

    from .io import Terminated

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def run() -> None:  # pragma: no cover - console entry
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
