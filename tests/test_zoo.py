"""The spec zoo reproduces its references exactly (figures from REFERENCE.md).

Every zoo case is checked, built, run at its input size, and its inferred
shapes compared with the shapes torch observes; the torchvision ResNets are
compared with torchvision itself (state-dict keys and shapes, strict load,
eval-mode outputs). Each case is built once: the ``case``/``net``/``model``
fixtures are module-scoped and parametrized, so pytest runs all the tests of
one case together and frees its model before building the next. The deepest
and largest cases are marked slow (``-m "not slow"`` skips them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

import resdsl
from resdsl.api import _collect_blocks, _detect_format
from resdsl.cli import main
from resdsl.elaborate import Limits
from resdsl.errors import ErrorList
from resdsl.graph import containers, op_edges, op_node, op_nodes, residual_units
from resdsl.syntax.text import parse_text
from resdsl.syntax.yaml import parse_yaml

SPECS = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"

# ---- reference figures (REFERENCE.md) ---------------------------------------------------

TORCHVISION = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240,
    "resnext50_32x4d": 25_028_904,
}
CIFAR = {3: 269_722, 5: 464_154, 7: 658_586, 9: 853_018, 18: 1_727_962, 200: 19_421_274}
CIFAR_OPTION_B_EXTRA = 2_752
PREACT = {18: 1_703_258, 111: 10_327_706}
UNET = 31_030_658


def residual_mlp_params(in_features: int = 784, width: int = 256, expansion: int = 4,
                        depth: int = 8, num_classes: int = 10) -> int:
    """The residual MLP's count from its architecture, independently of resdsl."""
    hidden = expansion * width
    unit = 2 * width + (width * hidden + hidden) + (hidden * width + width)
    return (in_features * width + width) + depth * unit + 2 * width + (width * num_classes + num_classes)


# ---- the zoo ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One zoo spec at one setting: what to load, what it must count, how to run it."""

    spec: str
    params: dict[str, Any] = field(default_factory=dict)
    expected: int = 0
    torchvision: str | None = None
    slow: bool = False
    batch: int = 2

    @property
    def id(self) -> str:
        return "-".join([self.spec] + [f"{k}{v}" for k, v in self.params.items()])

    @property
    def path(self) -> Path:
        return SPECS / f"{self.spec}.res"

    def defines(self) -> list[str]:
        return [arg for k, v in self.params.items() for arg in ("-D", f"{k}={v}")]


SLOW_TORCHVISION = {"resnet101", "resnet152", "wide_resnet50_2"}
ZOO = [
    *(Case(name, expected=count, torchvision=name, slow=name in SLOW_TORCHVISION, batch=1)
      for name, count in TORCHVISION.items()),
    # n = 5, 7, 9 differ from these only in depth; their counts are checked without a build below.
    *(Case("cifar_resnet", {"n": n}, CIFAR[n]) for n in (3, 18)),
    # ResNet-1202 at 8x8: global pooling makes the network size-agnostic; the count is unchanged.
    Case("cifar_resnet", {"n": 200, "size": 8}, CIFAR[200], slow=True, batch=1),
    Case("preact_resnet", {"n": 18}, PREACT[18]),
    Case("preact_resnet", {"n": 111, "size": 8}, PREACT[111], slow=True, batch=1),
    Case("unet", {}, UNET, slow=True, batch=1),
    Case("unet", {"size": 188}, UNET, batch=1),  # the smallest valid size: 188 -> 4
    Case("unet", {"pad": 1, "size": 64}, UNET),
    Case("residual_mlp", {}, residual_mlp_params()),
]


def _param(case: Case):
    return pytest.param(case, id=case.id, marks=[pytest.mark.slow] if case.slow else [])


@pytest.fixture(scope="module", params=[_param(c) for c in ZOO])
def case(request) -> Case:
    return request.param


@pytest.fixture(scope="module")
def net(case: Case) -> resdsl.Net:
    return resdsl.load(case.path, **case.params)


@pytest.fixture(scope="module")
def model(net: resdsl.Net):
    return net.build().eval()


def _sample(net: resdsl.Net, batch: int):
    import torch

    return torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(0))


# ---- every case ---------------------------------------------------------------------------------

def test_check_cli(case: Case, capsys):
    assert main(["check", str(case.path), *case.defines()]) == 0
    assert f"{case.expected:,} parameters" in capsys.readouterr().out


def test_param_count_matches_reference(net: resdsl.Net, case: Case):
    assert net.num_params == case.expected


def test_header_comment_states_the_count(case: Case):
    """Each spec says what it is and its parameter count in its header comment."""
    header = []
    for line in case.path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 3
    text = " ".join(header)
    assert f"{case.expected:,}" in text


def test_build_counts_and_forward_shapes(net: resdsl.Net, model, case: Case):
    import torch

    from resdsl.backends.torch import observed_shapes

    assert sum(p.numel() for p in model.parameters()) == case.expected
    with torch.no_grad():
        observed = observed_shapes(model, net, _sample(net, case.batch))
    module_nodes = {d.id for d in op_nodes(net.graph) if d.module is not None}
    submodules = dict(model.named_modules())
    # Every op that is a submodule ran; inline merges are observed where the backend can see them.
    assert {n for n in module_nodes if op_node(net.graph, n).module in submodules} <= set(observed)
    assert set(observed) <= module_nodes
    inferred = {n: op_node(net.graph, n).shape for n in observed}
    assert observed == inferred
    assert observed[net.graph.graph["output"]] == net.output_shape


def test_plain_twin(net: resdsl.Net, case: Case):
    """--plain: every residual loses its skip; the bodies keep every parameter."""
    plain = resdsl.load(case.path, plain=True, **case.params)
    kinds = {e.kind for _, _, e in op_edges(plain.graph)}
    assert not any(kind.startswith("skip") for kind in kinds)
    units = residual_units(plain.graph)
    assert len(units) == len(residual_units(net.graph))
    assert units or case.spec == "unet"  # U-Net's skips are long concats, not residual units
    assert all(unit.shortcut == "none" for unit in units)
    shortcut_params = sum(d.params for d in op_nodes(net.graph) if d.shortcut)
    assert plain.num_params == net.num_params - shortcut_params
    assert plain.output_shape == net.output_shape
    body_modules = {d.module for d in op_nodes(net.graph)
                    if d.module and not d.shortcut and d.op != "residual_add"}
    assert {d.module for d in op_nodes(plain.graph) if d.module} == body_modules


def test_plain_check_cli(case: Case, capsys):
    assert main(["check", str(case.path), "--plain", *case.defines()]) == 0
    assert "ok" in capsys.readouterr().out


# ---- torchvision parity -------------------------------------------------------------------------

TV_CASES = [_param(c) for c in ZOO if c.torchvision]


def _torchvision(name: str, device: str | None = None):
    import torch
    import torchvision

    with torch.device(device) if device else torch.device("cpu"):
        return getattr(torchvision.models, name)(weights=None)


def _randomize_norms(module, seed: int = 0) -> None:
    """Give every batchnorm non-trivial statistics and affine weights, so that a
    wrongly wired norm shows in the outputs (default ones are 1/0 everywhere)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                c = norm.num_features
                norm.running_mean.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
                norm.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                norm.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                norm.bias.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_state_dict_keys_and_shapes_equal_torchvision(name: str):
    """On the meta device: no memory, no init, so this runs for all seven quickly."""
    ours = resdsl.load(SPECS / f"{name}.res").build(device="meta").state_dict()
    theirs = _torchvision(name, "meta").state_dict()
    assert list(ours) == list(theirs)  # same keys, same order
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


@pytest.mark.parametrize("case", TV_CASES, indirect=True)
def test_torchvision_parity(case: Case, net: resdsl.Net, model):
    """strict=True load of a torchvision state dict; eval outputs within 1e-5 (float32)."""
    import torch

    reference = _torchvision(case.torchvision).eval()
    _randomize_norms(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = _sample(net, case.batch)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert expected.abs().max() > 1e-2  # the comparison is not between zeros


# ---- CIFAR ResNets (He et al. 2015, section 4.2) ---------------------------------------------

CIFAR_SPEC = SPECS / "cifar_resnet.res"


@pytest.mark.parametrize("n", list(CIFAR))
def test_cifar_resnet_counts_depths_and_option_b(n: int):
    net = resdsl.load(CIFAR_SPEC, n=n)
    assert net.num_params == CIFAR[n]
    assert net.num_weight_layers == 6 * n + 2  # ResNet-20 ... ResNet-1202
    kinds = [u.shortcut for u in residual_units(net.graph)]
    assert kinds.count("zero-pad") == 2 and kinds.count("identity") == 3 * n - 2
    assert resdsl.load(CIFAR_SPEC, n=n, shortcut="B").num_params == CIFAR[n] + CIFAR_OPTION_B_EXTRA
    assert resdsl.load(CIFAR_SPEC, n=n, plain=True).num_params == CIFAR[n]


def test_cifar_option_b_cli(capsys):
    assert main(["check", str(CIFAR_SPEC), "--shortcut", "B"]) == 0
    assert f"{CIFAR[3] + CIFAR_OPTION_B_EXTRA:,} parameters" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["cifar_resnet.res", "--plain"],
    ["cifar_resnet.res", "--shortcut=B"],
    ["preact_resnet.res", "-D", "n=2", "--plain"],  # explicit shortcut paths go too
    ["residual_mlp.res", "--plain"],
])
def test_compile_variants_cli(args: list[str], capsys):
    assert main(["compile", str(SPECS / args[0]), *args[1:]]) == 0
    assert "shapes match" in capsys.readouterr().out


def test_cifar_option_a_zero_pads():
    """Option A at a stage start: strided subsampling, the new channels exactly zero.

    With the body's last batchnorm zeroed the unit computes relu(shortcut(x)), so
    the built block shows its shortcut."""
    import torch

    net = resdsl.load(CIFAR_SPEC, n=3)
    pads = [d for d in op_nodes(net.graph) if d.op == "zero_pad"]
    assert [(d.in_shapes[0], d.shape) for d in pads] == [((16, 32, 32), (32, 16, 16)),
                                                              ((32, 16, 16), (64, 8, 8))]
    unit = net.build(zero_init_residual=True).eval().get_submodule("layer2.0")
    x = torch.randn(2, 16, 32, 32)
    with torch.no_grad():
        y = unit(x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, :16], torch.relu(x[:, :, ::2, ::2])) and not y[:, 16:].any()


# ---- pre-activation ResNets (He et al. 2016) ----------------------------------------------------

PREACT_SPEC = SPECS / "preact_resnet.res"


def _chain(graph: nx.DiGraph, start: int, stop: int, port: int) -> list[str]:
    """Ops from ``start`` back to ``stop``, taking input ``port`` at residual merges."""
    ops = []
    node = start
    while node != stop:
        data = op_node(graph, node)
        ops.append(data.op)
        inputs = data.inputs
        node = inputs[port] if data.op == "residual_add" else inputs[0]
    return ops[::-1]


@pytest.mark.parametrize("n", list(PREACT))
def test_preact_counts_and_depth(n: int):
    net = resdsl.load(PREACT_SPEC, n=n)
    assert net.num_params == PREACT[n]
    projections = [u for u in residual_units(net.graph) if u.shortcut == "explicit"]
    assert len(projections) == 3
    assert net.num_weight_layers - len(projections) == 9 * n + 2  # ResNet-164, ResNet-1001


def test_preact_body_order_and_clean_identity_path():
    net = resdsl.load(PREACT_SPEC, n=18)
    graph = net.graph
    units = residual_units(graph)
    assert len(units) == 3 * 18
    for unit in units:
        assert _chain(graph, unit.body_output, unit.input, 0) == ["batchnorm", "relu", "conv"] * 3
    # From the head back to the stem along the shortcuts: merges and projections only.
    final_bn = next(d.id for d in op_nodes(graph) if d.module == "bn")
    stem = next(d.id for d in op_nodes(graph) if d.module == "conv1")
    path = _chain(graph, op_node(graph, final_bn).inputs[0], stem, 1)
    assert set(path) == {"residual_add", "conv"} and path.count("conv") == 3
    assert path.count("residual_add") == len(units)
    # No unit's output passes a nonlinearity before the next unit's merge.
    merges = {u.merge for u in units}
    for merge in merges:
        for succ in graph.successors(merge):
            assert op_node(graph, succ).op in ("batchnorm", "residual_add", "conv")


def test_preact_projection_is_a_bare_conv():
    net = resdsl.load(PREACT_SPEC, n=18)
    shortcut_ops = [(d.module, d.op, d.args["bias"]) for d in op_nodes(net.graph)
                    if d.shortcut]
    assert shortcut_ops == [(f"layer{i}.first.downsample.0", "conv", False) for i in (1, 2, 3)]


# ---- U-Net (Ronneberger et al. 2015) ---------------------------------------------------------

UNET_SPEC = SPECS / "unet.res"


def test_unet_original_shapes_and_crops():
    net = resdsl.load(UNET_SPEC)
    assert (net.input_shape, net.output_shape, net.num_params) == ((1, 572, 572), (2, 388, 388), UNET)
    crops = {}
    for data in op_nodes(net.graph):
        if data.op == "concat":
            skip = data.in_shapes[1]
            crops[skip[0]] = (skip[1], data.in_shapes[0][1])
    assert crops == {64: (568, 392), 128: (280, 200), 256: (136, 104), 512: (64, 56)}


@pytest.mark.parametrize("params, shape", [({"pad": 1, "size": 512}, (2, 512, 512)),
                                           ({"pad": 1}, (2, 560, 560))])
def test_unet_same_size(params: dict, shape: tuple):
    net = resdsl.load(UNET_SPEC, **params)
    assert net.output_shape == shape and net.num_params == UNET


# ---- residual MLP -----------------------------------------------------------------------------

def test_residual_mlp_is_flat_and_convolution_free():
    net = resdsl.load(SPECS / "residual_mlp.res", depth=3, width=64)
    assert len(net.input_shape) == 1
    assert {d.op for d in op_nodes(net.graph)} >= {"linear", "residual_add"}
    assert not {"conv", "upconv"} & {d.op for d in op_nodes(net.graph)}
    assert [u.shortcut for u in residual_units(net.graph)] == ["identity"] * 3
    assert net.num_params == residual_mlp_params(width=64, depth=3)


# ---- YAML == text ------------------------------------------------------------------------------

def _resolved_ir(path: Path):
    """A file's network IR without its blocks, and the blocks it instantiates, wherever
    they are defined (the text form imports the torchvision blocks, YAML inlines them)."""
    text = path.read_text()
    errors = ErrorList()
    parse = parse_yaml if _detect_format(text, str(path), None) == "yaml" else parse_text
    spec = parse(text, str(path), errors)
    blocks, _ = _collect_blocks(spec, str(path), Limits(), errors, path.resolve().parent)
    errors.raise_if_any()
    (network,) = spec.networks
    blocks.update({b.name: b for b in network.blocks})
    used = {box.block for box in containers(resdsl.load(path).graph).values() if box.block}
    return network.model_copy(update={"blocks": ()}), {name: blocks[name] for name in sorted(used)}


def _graph_signature(net: resdsl.Net) -> list[tuple]:
    return [(d.op, repr(d.args), d.shape, d.module, d.params)
            for d in op_nodes(net.graph)]


YAML_TWINS = {"resnet18": {}, "cifar_resnet": {"n": 5}, "unet": {"pad": 1},
              "preact_resnet": {"n": 3}, "residual_mlp": {"depth": 2}}


STD = SPECS.parent / "std"


@pytest.mark.parametrize("name", list(YAML_TWINS))
def test_yaml_equals_text(name: str):
    """Equal network IR, equal IR of the blocks both define, equal graphs. resnet18.yaml is
    LANGUAGE.md's verbatim and defines 2-D blocks, which the text form takes from std/resnet,
    rank-generic (integer kernels): for those blocks the graphs are the proof."""
    text_path, yaml_path = SPECS / f"{name}.res", SPECS / "yaml" / f"{name}.yaml"
    (yaml_ir, yaml_blocks), (text_ir, text_blocks) = _resolved_ir(yaml_path), _resolved_ir(text_path)
    from_std = {n for n, b in text_blocks.items() if Path(b.span.file).parent.samefile(STD)}
    assert yaml_ir == text_ir and from_std <= set(yaml_blocks)
    assert {n: b for n, b in yaml_blocks.items() if n not in from_std} == \
        {n: b for n, b in text_blocks.items() if n not in from_std}
    params = YAML_TWINS[name]
    text_net, yaml_net = resdsl.load(text_path, **params), resdsl.load(yaml_path, **params)
    assert _graph_signature(yaml_net) == _graph_signature(text_net)


def test_yaml_ir_equality_is_not_vacuous():
    """A one-statement difference between the forms is seen."""
    net_ir, blocks = _resolved_ir(SPECS / "yaml" / "cifar_resnet.yaml")
    other_ir, other_blocks = _resolved_ir(SPECS / "cifar_resnet.res")
    assert (net_ir, blocks) == (other_ir, other_blocks)
    changed = other_ir.model_copy(update={"body": other_ir.body[:-1]})
    assert changed != net_ir


# ---- shared blocks ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in TORCHVISION if n != "resnet50"])
def test_torchvision_specs_share_their_blocks(name: str):
    """The torchvision specs import their blocks from the standard library instead of copying them."""
    text = (SPECS / f"{name}.res").read_text()
    assert 'import "std/resnet"' in text
    assert "\nblock " not in text and "    block " not in text


LANGUAGE_MD = SPECS.parents[1] / "tests" / "language" / "LANGUAGE.md"  # vendored language v1


@pytest.mark.parametrize("name", ["resnet50", "unet"])
def test_language_examples_kept_verbatim(name: str):
    """resdsl/zoo/resnet50.res and resdsl/zoo/unet.res are LANGUAGE.md's examples; only their
    header comments may add to them."""
    def statements(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).strip()

    examples = [statements(block) for block in LANGUAGE_MD.read_text().split("```")[1::2]]
    assert statements((SPECS / f"{name}.res").read_text()) in examples
