"""RegNet (every regnet_x_* / regnet_y_*) and ConvNeXt (tiny/small/base/large): one
spec per family reproduces torchvision 0.29 exactly.

The default suite checks regnet_y_400mf, regnet_x_400mf and convnext_tiny fully
(tests/parity.py: key order and shapes, counts, strict load of randomised weights,
eval outputs, inferred shapes, train-mode outputs under one seed); every other variant
is checked for keys, shapes and counts on the meta device, and fully when slow tests
run. RegNet's per-variant values are proved equal to torchvision's own
``BlockParams.from_init_params``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from torchvision.models import convnext as tv_convnext  # noqa: E402
from torchvision.models import regnet as tv_regnet  # noqa: E402

import resdsl  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.graph import op_node, residual_units  # noqa: E402
from tests.parity import check_keys, check_parity, randomize, sample  # noqa: E402

ZOO = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"
REGNET, CONVNEXT = ZOO / "regnet.res", ZOO / "convnext.res"
REGNETS = [e.name for e in resdsl.zoo.ENTRIES if e.spec == "resdsl/zoo/regnet.res"]
CONVNEXTS = [e.name for e in resdsl.zoo.ENTRIES if e.spec == "resdsl/zoo/convnext.res"]
ALL = [*REGNETS, *CONVNEXTS]
DEFAULT = {"regnet_y_400mf", "regnet_x_400mf", "convnext_tiny"}
# A full check of this one allocates several GB: keys, shapes and counts only (meta device).
GIANTS = {"regnet_y_128gf"}



def _block_params(name: str) -> tv_regnet.BlockParams:
    """What torchvision's constructor computes, without building the model: its
    ``_regnet`` is swapped for one that returns the block parameters."""
    mp = pytest.MonkeyPatch()
    mp.setattr(tv_regnet, "_regnet", lambda params, weights, progress, **kwargs: params)
    try:
        return getattr(tv_regnet, name)()
    finally:
        mp.undo()


def _torchvision(name: str, device: str = "cpu") -> torch.nn.Module:
    """torchvision's model on ``device`` (RegNet's widths are computed on the CPU: its
    constructor fails under ``torch.device("meta")``)."""
    if name.startswith("regnet"):
        params = _block_params(name)
        with torch.device(device):
            return tv_regnet._regnet(params, None, True)
    with torch.device(device):
        return getattr(tv_convnext, name)()


def _reference(name: str, device: str = "cpu") -> torch.nn.Module:
    """torchvision's model, with its own module names (RegNet's block1-0 included)."""
    return _torchvision(name, device)


def _params(name: str, **extra) -> dict:
    return {**resdsl.zoo.entry(name).params, **extra}


def _spec(name: str) -> Path:
    return REGNET if name.startswith("regnet") else CONVNEXT


def _defines(params: dict) -> list[str]:
    return [a for k, v in params.items() for a in ("-D", f"{k}={v}")]


def _marks(name: str) -> list:
    marks = [pytest.mark.slow] if name not in DEFAULT else []
    return marks


# ---- the registry values are torchvision's --------------------------------------------------

def test_every_torchvision_constructor_is_listed():
    listed = {n for n in dir(torchvision.models) if n.startswith(("regnet_", "convnext_"))
              and callable(getattr(torchvision.models, n))}
    assert listed == set(ALL)


@pytest.mark.parametrize("name", REGNETS)
def test_regnet_values_are_block_params(name):
    """Depths, widths, bottleneck ratio and SE ratio as torchvision computes them; the
    spec's per-stage group width min(group_width, width * bottleneck) is torchvision's
    adjusted one (regnet_x_8gf's first stage: 80, not 120)."""
    bp, p = _block_params(name), resdsl.zoo.load(name).params
    assert [p[f"depth{k}"] for k in range(1, 5)] == bp.depths
    assert [p[f"width{k}"] for k in range(1, 5)] == bp.widths
    assert [min(p["group_width"], int(round(w * p["bottleneck"]))) for w in bp.widths] == bp.group_widths
    assert bp.bottleneck_multipliers == [p["bottleneck"]] * 4 and bp.strides == [2] * 4
    assert p["se_ratio"] == (bp.se_ratio or 0.0)


# ---- every variant: keys, shapes, counts (meta device) --------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_keys_shapes_and_counts(name):
    net = resdsl.zoo.load(name)
    reference = _reference(name, "meta")
    check_keys(net.build(device="meta"), reference)
    assert net.num_params == sum(p.numel() for p in reference.parameters())
    assert net.output_shape == (1000,)


def test_regnet_loads_torchvision_state_dict_strictly(tmp_path):
    reference = _torchvision("regnet_x_400mf")
    path = tmp_path / "regnet_x_400mf.pt"
    torch.save(reference.state_dict(), path)
    assert main(["compile", str(REGNET), *_defines(_params("regnet_x_400mf", size=64)),
                 "--weights", str(path)]) == 0


# ---- full parity: default variants, and every other one when slow tests run -----------------

@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in ALL if n not in GIANTS])
def test_parity(name):
    """Outputs equal torchvision's after randomising every weight and statistic; train
    mode too (ConvNeXt: stochastic depth drops the same samples under one seed)."""
    net = resdsl.zoo.load(name, size=224 if name in DEFAULT else 64)
    check_parity(net, _reference(name), train=True)


def test_convnext_stochastic_depth_rates():
    """Each residual's drop rate is torchvision's, bit for bit: 0.1 * k / 17 for the
    k-th of convnext_tiny's 18 blocks (the k-th of the spec's residual merges)."""
    net = resdsl.zoo.load("convnext_tiny")
    rates = [m.p for m in _reference("convnext_tiny", "meta").modules()
             if isinstance(m, torchvision.ops.StochasticDepth)]
    ours = [op_node(net.graph, u.merge).args["drop_path"] for u in residual_units(net.graph)]
    assert len(rates) == 18 and rates[0] == 0.0 and rates[-1] == 0.1
    assert ours == rates


# ---- twins, tools, generated code, weights ---------------------------------------------------

@pytest.mark.parametrize("name", ["regnet_x_400mf", "convnext_tiny"])
def test_plain_twin(name):
    """--plain drops every skip: RegNet loses its projections' parameters, ConvNeXt
    (identity skips only) keeps its count; both still build and run."""
    net, plain = resdsl.zoo.load(name, size=64), resdsl.zoo.load(name, size=64, plain=True)
    projections = sum(v.numel() for k, v in _reference(name, "meta").named_parameters() if ".proj." in k)
    assert plain.num_params == net.num_params - projections
    assert (projections > 0) == name.startswith("regnet")
    assert not [u for u in residual_units(plain.graph) if u.shortcut != "none"]
    model = plain.build().eval()
    with torch.no_grad():
        assert model(sample(plain)).shape == (2, 1000)


@pytest.mark.parametrize("spec", [REGNET, CONVNEXT])
def test_render_and_analyze(spec, tmp_path, capsys):
    assert main(["render", str(spec), "-o", str(tmp_path / "net.dot")]) == 0
    assert (tmp_path / "net.dot").read_text().startswith("digraph")
    assert main(["analyze", str(spec), "--json"]) == 0
    assert capsys.readouterr().out.strip()


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["regnet_y_400mf", "convnext_tiny"])
def test_generated_file_reproduces_torchvision(name, tmp_path):
    """`resdsl compile -o` writes a standalone .py whose module (its defaults are
    these variants), given torchvision's randomised weights, computes torchvision's
    outputs."""
    net = resdsl.zoo.load(name, size=64)
    out = tmp_path / "model.py"
    assert main(["compile", str(_spec(name)), *_defines(_params(name, size=64)), "-o", str(out)]) == 0
    model = getattr(_import(out), net.source().class_name)().eval()
    reference = _reference(name).eval()
    randomize(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = sample(net)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


def test_weights_load_a_torchvision_state_dict_strictly(tmp_path, capsys):
    """convnext_tiny: torchvision's own state dict, by `--weights` and build(weights=)."""
    reference = _torchvision("convnext_tiny").eval()
    randomize(reference)
    path = tmp_path / "convnext_tiny.pt"
    torch.save(reference.state_dict(), path)
    assert main(["compile", "convnext_tiny", "-D", "size=64", "--weights", str(path)]) == 0
    assert "shapes match" in capsys.readouterr().out
    net = resdsl.zoo.load("convnext_tiny", size=64)
    model = net.build(weights=path).eval()
    x = sample(net)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)
