"""Generated source: standalone, readable, deterministic, and the program net.build() runs."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

import resdsl
from resdsl.backends.codegen import generate
from resdsl.backends.torch import observed_shapes
from resdsl.cli import main
from resdsl.graph import op_node

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "resdsl" / "zoo"


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _classes(text: str) -> list[str]:
    return [node.name for node in ast.parse(text).body if isinstance(node, ast.ClassDef)]


@pytest.fixture(scope="module")
def resnet50_source(resnet50_net):
    return generate(resnet50_net)


def test_written_file_equals_built_module(tmp_path, resnet50_net, resnet50_model):
    out = tmp_path / "model.py"
    assert main(["compile", str(SPECS / "resnet50.res"), "-o", str(out)]) == 0
    module = _import(out)
    model = module.Resnet50().eval()
    model.load_state_dict(resnet50_model.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), resnet50_model(x))
    assert out.read_text() == generate(resnet50_net).text


def test_imports_only_torch_and_one_class_per_block(resnet50_source):
    tree = ast.parse(resnet50_source.text)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported == {"torch", "__future__"}
    assert _classes(resnet50_source.text) == ["Bottleneck", "Resnet50"]
    assert resnet50_source.class_name == "Resnet50"


def test_forward_is_straight_line_and_every_statement_names_its_spec_line(resnet50_source):
    tree = ast.parse(resnet50_source.text)
    lines = resnet50_source.text.splitlines()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        forward = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "forward")
        assert not any(isinstance(n, (ast.For, ast.While, ast.Subscript, ast.Dict)) for n in ast.walk(forward))
        for stmt in forward.body:
            if isinstance(stmt, ast.Assign) or isinstance(stmt, ast.AugAssign):
                assert lines[stmt.end_lineno - 1].endswith(tuple(f"# resnet50.res:{i}" for i in range(1, 40)))


def test_output_is_byte_identical_across_processes():
    code = "import resdsl; from resdsl.backends.codegen import generate; " \
           "print(generate(resdsl.load('resdsl/zoo/unet.res')).text, end='')"
    texts = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(texts) == 1


def test_network_parameters_are_keyword_arguments(tmp_path):
    out = tmp_path / "r50.py"
    assert main(["compile", str(SPECS / "resnet50.res"), "-o", str(out), "--json"]) == 0
    module = _import(out)
    ten = module.Resnet50(num_classes=10)
    reference = resdsl.load(SPECS / "resnet50.res", num_classes=10).build()
    assert {k: v.shape for k, v in ten.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


def test_unet_parameters_stay_live():
    net = resdsl.load(SPECS / "unet.res", pad=1, size=64)
    module_class = generate(net).module_class()
    model = module_class(in_channels=3, classes=5).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5, 64, 64)


def test_parameters_the_code_cannot_express_are_guarded():
    net = resdsl.loads("network g(n: int = 2):\n    input x: [4]\n    stage b(4) x n\n"
                       "    block b(w: int):\n        residual:\n            linear w\n")
    network_class = generate(net).module_class()
    assert len(network_class().stage_0) == 2
    with pytest.raises(ValueError, match="regenerate it with resdsl compile -D n=VALUE"):
        network_class(n=3)


def test_tracebacks_show_the_generated_line(resnet50_model):
    with pytest.raises(RuntimeError) as info:
        resnet50_model(torch.zeros(1, 5, 32, 32))
    text = "".join(traceback.format_exception(info.value))
    assert "x = self.conv1(x)  # resnet50.res:24" in text


def test_spec_names_never_shadow_what_the_code_uses():
    net = resdsl.loads("network n(F: int = 4, max: int = 3):\n    input x: [3, 8, 8]\n"
                       "    F: conv 3x3, F\n    residual:\n        out: conv 3x3, F\n"
                       "    identity: conv 1x1, max\n    concat F\n")
    text = generate(net).text
    assert "F_: int = 4" in text and "max_: int = 3" in text
    model = net.build().eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 7, 8, 8)


def test_odd_file_names_do_not_reach_the_code():
    net = resdsl.loads("network q:\n    input x: [4]\n    linear 2\n", filename="a\nimport os #.res")
    text = generate(net).text
    assert "import os" not in text and "# spec:3" in text


VARIED = {
    "option_a": "network a:\n    defaults conv(bias=false)\n    input x: [3, 16, 16]\n"
                "    block basic(out: int, stride: int = 1):\n        residual shortcut=A:\n"
                "            conv1: conv 3x3, out, stride=stride\n            bn1: batchnorm\n"
                "            relu\n        relu\n    conv1: conv 3x3, 8\n    layer1: stage basic(8) x 2\n"
                "    layer2: stage basic(16) x 2, stride=2\n    adaptive_avgpool 1\n    flatten\n    fc: linear 3\n",
    "labelled_and_explicit": "network b(w: int = 4, p: float = 0.2):\n    input x: [3, 8, 8]\n"
                             "    block outer(c: int, stride: int = 1):\n"
                             "        res1: residual drop_path=p, scale=0.5:\n"
                             "            conv 3x3, c, stride=stride\n            batchnorm\n"
                             "        shortcut:\n            avgpool 1x1, stride=stride\n            conv 1x1, c\n"
                             "        from res1\n        add res1\n        mul res1\n"
                             "    s: stage outer(w) x 2, stride=2\n    upsample 2, mode=linear\n    layernorm\n",
}


@pytest.mark.parametrize("name", sorted(VARIED))
def test_varied_specs_build_train_and_observe_their_shapes(name):
    net = resdsl.loads(VARIED[name])
    model = net.build()
    x = torch.randn(2, *net.input_shape)
    model(x).sum().backward()  # in-place relu and += must leave autograd intact
    model.eval()
    with torch.no_grad():
        seen = observed_shapes(model, net, x)
    assert seen and {n: op_node(net.graph, n).shape for n in seen} == seen
    assert sum(p.numel() for p in model.parameters()) == net.num_params


def test_gradients_match_torchvision():
    torchvision = pytest.importorskip("torchvision")
    ours = resdsl.load(SPECS / "resnet18.res").build()
    theirs = torchvision.models.resnet18()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 32, 32)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name


def test_compile_output_errors_are_usage_errors(tmp_path, capsys):
    assert main(["compile", str(SPECS / "unet.res"), "-o", str(SPECS / "unet.res")]) == 2
    assert main(["compile", str(SPECS / "unet.res"), "-o", str(tmp_path / "missing" / "m.py")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.res")))
def test_generated_code_is_black_clean(spec):
    black = pytest.importorskip("black")
    text = generate(resdsl.load(SPECS / spec)).text
    assert black.format_str(text, mode=black.Mode(line_length=88)) == text


# ---- regressions found by the fuzzer (tests/fuzz.py) -------------------------------------
def _builds_with_inferred_shapes(text: str) -> None:
    from resdsl.backends.torch import observed_shapes

    net = resdsl.loads(text, "regression.res")
    model = net.build().eval()
    with torch.no_grad():
        seen = observed_shapes(model, net, torch.randn(2, *net.input_shape))
    assert len(seen) == net.graph.number_of_nodes() - 1  # every op but the input
    assert all(op_node(net.graph, n).shape == shape for n, shape in seen.items())


def test_projection_stride_is_not_spelled_by_a_parameter_that_only_happens_to_match():
    # In the first stage out == stride == 1, so "stride=out" fitted that instance only.
    _builds_with_inferred_shapes(
        "network g:\n    input x: [4, 6, 9]\n"
        "    block basic(out: int, stride: int = 1):\n        residual:\n"
        "            conv 3, out, stride=stride\n            batchnorm\n"
        "    stage basic(1) x 2\n    avgpool 2x2\n    conv 3, 5\n    stage basic(3) x 3, stride=2\n")


def test_flat_projection_width_follows_each_instance():
    _builds_with_inferred_shapes(
        "block dense(out: int):\n    residual:\n        linear out\n"
        "network g:\n    input x: [2]\n    stage dense(5) x 1\n    stage dense(2) x 3\n")


def test_skipless_residual_around_a_projecting_block():
    # A shortcut=none unit's "merge" is its body's output: here another unit's real merge.
    _builds_with_inferred_shapes(
        "network g:\n    input x: [2, 9, 2]\n    block dense(out: int):\n        residual:\n"
        "            linear out\n    t3: residual shortcut=none:\n        dense(1)\n"
        "    stage dense(1) x 2\n")


def test_a_new_op_needs_only_its_catalogue_entry():
    """One op, one place: a new entry is parsed, checked, generated and built, with no
    other change (the grammar has no op keywords; codegen and the builder read ``code``)."""
    from resdsl.ops import ANNOTATION, POINTWISE, REGISTRY, OpSpec, user_ops
    from resdsl.ops.base import register

    # Every op a spec names is a module (``code``) or written inline without one (``inline_code``).
    assert user_ops() and all((op.code is None) != (op.inline_code is None) for op in user_ops().values())
    register(OpSpec(name="softsign", doc="x / (1 + |x|)", category="activation", positional=(),
                    keywords=(), infer=lambda s, a: s, code=lambda c: c.call("nn.Softsign"),
                    label=lambda a, i, o: "softsign", receptive_field=POINTWISE, nonlinear=True,
                    diagram=ANNOTATION))
    try:
        net = resdsl.loads("network n:\n    input x: [3, 4, 4]\n    conv 1x1, 2\n    act: softsign\n")
        assert "self.act = nn.Softsign()" in generate(net).text
        model = net.build().eval()
        x = torch.randn(2, 3, 4, 4)
        with torch.no_grad():
            assert torch.equal(model(x), torch.nn.functional.softsign(model.conv_0(x)))
    finally:
        del REGISTRY["softsign"]


def test_comments_of_an_imported_block_cite_the_block_file():
    """resdsl/zoo/resnet18.res imports its blocks from the standard library: their lines
    live in resdsl/std/resnet.res."""
    text = generate(resdsl.load(Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "resnet18.res")).text
    block = text[text.index("class Basic"):text.index("class Resnet18")]
    network = text[text.index("class Resnet18"):]
    assert '"""Block ``basic`` (resnet.res:' in block
    assert "# resnet18.res:" not in block and "# resnet.res:" in block
    assert "# resnet18.res:" in network


# ---- issue 13: back ends depend on the graph, the IR and the catalogue only ------------------
PACKAGE = Path(resdsl.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(parts[:len(parts) - node.level]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("folder", ["backends", "render"])
def test_back_ends_never_import_the_api(folder):
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        assert not {m for m in _imports(path) if m == "resdsl.api" or m.startswith("resdsl.api.")}, path


def test_the_catalogue_imports_no_back_end():
    for path in sorted((PACKAGE / "ops").rglob("*.py")):
        assert not {m for m in _imports(path) if m.startswith("resdsl.backends")}, path


def test_no_back_end_names_an_op():
    """What a back end needs of an op is a catalogue field (merge_code, in_place,
    fresh_output, width_args, code), never a test of the op's name."""
    from resdsl.ops import REGISTRY

    # "identity" is also a shortcut kind and a variable name, "input" a graph attribute.
    ops = set(REGISTRY) - {"identity", "input"}
    for path in sorted((PACKAGE / "backends").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                 and id(n) not in docstrings and n.value in ops}
        assert not named, f"{path.name} names ops {sorted(named)}"


def test_the_net_owns_its_source_and_the_back_end_only_reads_it():
    from resdsl.backends.torch import source_of

    net = resdsl.loads("network n:\n    input x: [4]\n    fc: linear 2\n")
    first = net.source()
    assert source_of(net) is first and net.source() is first
    net.build()
    assert net.source() is first


def test_an_in_place_op_is_data_on_its_entry(monkeypatch):
    """relu runs in place because its entry says so: without the flag, nn.ReLU()."""
    from resdsl.ops import REGISTRY

    text = "network n:\n    input x: [3, 8, 8]\n    conv 3, 4\n    relu\n"
    assert "nn.ReLU(inplace=True)" in generate(resdsl.loads(text)).text
    monkeypatch.setitem(REGISTRY, "relu", dataclasses.replace(REGISTRY["relu"], in_place=False))
    text_without = generate(resdsl.loads(text)).text
    assert "nn.ReLU()" in text_without and "inplace" not in text_without
