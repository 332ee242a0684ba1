"""The mobile families reproduce torchvision 0.29 exactly (issue 14, item 3).

MobileNetV2, MobileNetV3 (small, large), MnasNet (0.5, 0.75, 1.0, 1.3), EfficientNet B0-B7
and EfficientNetV2 S/M/L: one spec per family (resdsl/zoo/*.res, sharing resdsl/std/mobile.res),
its parameters selecting the variant. For one variant per family the default suite runs the
whole check of tests/parity.py (keys in order and shapes, counts, strict load of randomised
weights, eval outputs within 1e-5, inferred shapes, train-mode outputs under one seed: dropout
and stochastic depth in the same places with the same rates), the plain twin against
torchvision with its skips switched off, the generated standalone source, ``--weights``,
``render`` and ``analyze``. Every other variant is checked for keys, shapes and counts on the
meta device; its full check is slow-marked.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import resdsl
from resdsl.cli import main
from resdsl.zoo.registry import ENTRIES
from tests.parity import check_keys, check_on_meta, check_parity

ZOO = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"
STD = ZOO.parent / "std"

#: torchvision constructor -> (spec, parameters), from the zoo registry.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    e.name: (Path(e.spec).stem, dict(e.params)) for e in ENTRIES
    if Path(e.spec).stem in ("mobilenet_v2", "mobilenet_v3", "mnasnet", "efficientnet", "efficientnet_v2")
}
#: torchvision's parameter counts (its weights' metadata), independent of both builders.
COUNTS = {
    "mobilenet_v2": 3_504_872, "mobilenet_v3_large": 5_483_032, "mobilenet_v3_small": 2_542_856,
    "mnasnet0_5": 2_218_512, "mnasnet0_75": 3_170_208, "mnasnet1_0": 4_383_312, "mnasnet1_3": 6_282_256,
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232, "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960, "efficientnet_v2_s": 21_458_488,
    "efficientnet_v2_m": 54_139_356, "efficientnet_v2_l": 118_515_272,
}
#: One variant per family: checked whole in the default suite.
DEFAULT = ("mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5", "efficientnet_b0", "efficientnet_v2_s")
#: The full checks run the EfficientNets at a smaller input (the modules take any size):
#: the weights and the graph are the same, the forward passes a fraction of the time.
CHECK_SIZE = 128


def _param(name: str, slow: bool):
    return pytest.param(name, id=name, marks=[pytest.mark.slow] if slow else [])


def _torchvision(name: str, device: str = "cpu") -> torch.nn.Module:
    import torchvision

    with torch.device(device):
        return getattr(torchvision.models, name)(weights=None)


def _load(name: str, full: bool = False, **kwargs: Any) -> resdsl.Net:
    spec, params = VARIANTS[name]
    if full and "size" in params:
        params = {**params, "size": CHECK_SIZE}
    return resdsl.load(ZOO / f"{spec}.res", **params, **kwargs)


def _defines(params: dict[str, Any]) -> list[str]:
    """Parameters as -D overrides (booleans spelled true/false)."""
    spelled = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    return [arg for k, v in spelled.items() for arg in ("-D", f"{k}={v}")]


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- every variant: keys, shapes, counts ---------------------------------------------------------

def test_the_registry_lists_every_variant():
    assert list(VARIANTS) == list(COUNTS)
    assert all(e.constructor == f"torchvision.models.{e.name}" for e in ENTRIES if e.name in VARIANTS)


@pytest.mark.parametrize("name", list(VARIANTS))  # each under 1.5 s
def test_keys_shapes_and_counts_on_meta(name: str):
    net = _load(name)
    size = VARIANTS[name][1].get("size", 224)
    assert net.num_params == COUNTS[name]
    assert (net.input_shape, net.output_shape) == ((3, size, size), (1000,))
    ours, theirs = net.build(device="meta"), _torchvision(name, "meta")
    check_keys(ours, theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == COUNTS[name]


#: Settings beyond the registry's: the parameters mean what torchvision's keyword arguments mean.
SETTINGS = [
    ("mobilenet_v2", {"width_mult": 0.5}, {"width": 0.5}),
    ("mobilenet_v2", {"width_mult": 1.4}, {"width": 1.4}),
    ("mobilenet_v3_large", {"width_mult": 0.75}, {"width": 0.75}),
    ("mobilenet_v3_large", {"reduced_tail": True}, {"reduced_tail": True}),
    ("mobilenet_v3_small", {"reduced_tail": True}, {"reduced_tail": True}),
    ("mnasnet0_5", {"num_classes": 10}, {"num_classes": 10}),
]


@pytest.mark.parametrize("name, theirs, ours", SETTINGS, ids=[f"{n}-{o}" for n, _, o in SETTINGS])
def test_other_settings_match_torchvision_keywords(name: str, theirs: dict, ours: dict):
    import torchvision

    net = _load(name, **ours)
    check_on_meta(net, lambda: getattr(torchvision.models, name)(weights=None, **theirs))


# ---- exact reproduction, eval and train ----------------------------------------------------------

@pytest.mark.parametrize("name", [_param(n, n not in DEFAULT) for n in VARIANTS])
def test_exact_reproduction(name: str):
    reference = _torchvision(name)
    model = check_parity(_load(name, full=True), reference, train=True)
    # The train-mode pass moved the running statistics: equal only with torchvision's momentum.
    theirs = reference.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, theirs[key], rtol=0, atol=1e-6, msg=key)


def _without_skips(model: torch.nn.Module) -> torch.nn.Module:
    """torchvision's model with every inverted residual's skip switched off."""
    for module in model.modules():
        for flag in ("use_res_connect", "apply_residual"):
            if hasattr(module, flag):
                setattr(module, flag, False)
    return model


@pytest.mark.parametrize("name", DEFAULT)
def test_plain_twin_is_torchvision_without_skips(name: str):
    net = _load(name, full=True, plain=True)
    assert net.num_params == COUNTS[name]  # no projection shortcuts to lose
    check_parity(net, _without_skips(_torchvision(name)), train=True)


# ---- the tools on every spec ---------------------------------------------------------------------

@pytest.mark.parametrize("name", DEFAULT)
def test_generated_source_reproduces_torchvision(name: str, tmp_path: Path, capsys):
    out = tmp_path / f"{name}.py"
    net = _load(name, full=True)
    assert main(["compile", str(ZOO / f"{VARIANTS[name][0]}.res"), *_defines(net.params), "-o", str(out)]) == 0
    module = _import(out)
    check_parity(net, _torchvision(name), model=getattr(module, net.source().class_name)())


@pytest.mark.parametrize("name", DEFAULT)
def test_weights_of_torchvision_load_strictly(name: str, tmp_path: Path, capsys):
    reference = _torchvision(name).eval()
    path = tmp_path / "weights.pt"
    torch.save(reference.state_dict(), path)
    spec = str(ZOO / f"{VARIANTS[name][0]}.res")
    assert main(["compile", spec, *_defines(VARIANTS[name][1]), "--weights", str(path)]) == 0
    model = _load(name).build(weights=path).eval()
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", DEFAULT)
def test_render_and_analyze(name: str, tmp_path: Path, capsys):
    spec = str(ZOO / f"{VARIANTS[name][0]}.res")
    dot = tmp_path / "net.dot"
    assert main(["render", spec, *_defines(VARIANTS[name][1]), "-o", str(dot), "--level", "layer"]) == 0
    assert "features" in dot.read_text() or "layers" in dot.read_text()
    capsys.readouterr()
    assert main(["analyze", spec, *_defines(VARIANTS[name][1]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == COUNTS[name]
    assert main(["check", spec, *_defines(VARIANTS[name][1]), "--plain"]) == 0


# ---- std/mobile.res in other ranks ----------------------------------------------------------------

def _std_mobile_count(r: int) -> int:
    """Parameters of the net below, from the blocks' definitions (independently of resdsl)."""
    stem = 8 * 16 * 3 ** r + 2 * 16
    same = 16 * 64 + 2 * 64 + 64 * 5 ** r + 2 * 64 + (64 * 4 + 4) + (4 * 64 + 64) + 64 * 16 + 2 * 16
    down = 16 * 96 + 2 * 96 + 96 * 3 ** r + 2 * 96 + (96 * 4 + 4) + (4 * 96 + 96) + 96 * 24 + 2 * 24
    return stem + same + down


@pytest.mark.parametrize("shape, out", [((8, 32), (24, 8)), ((8, 8, 8, 8), (24, 2, 2, 2))], ids=["1d", "3d"])
def test_std_mobile_blocks_are_rank_generic(shape: tuple, out: tuple):
    r = len(shape) - 1
    net = resdsl.loads(
        'import "std/mobile"\n'
        "network tiny:\n"
        f"    input x: [{', '.join(map(str, shape))}]\n"
        "    conv_norm_act(16, stride=2, act=hardswish)\n"
        "    mbconv(16, 4, 5, p=0.1)\n"
        "    mbconv(24, 6, stride=2)\n")
    assert net.output_shape == out
    assert net.num_params == _std_mobile_count(r)
    model = net.build().eval()
    kinds = {type(m).__name__ for m in model.modules()}
    assert {f"Conv{r}d", f"BatchNorm{r}d", f"AdaptiveAvgPool{r}d", "Hardswish", "SiLU"} <= kinds
    assert [u.shortcut for u in net.graph.graph["residuals"]] == ["identity", "none"]
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, *out)
