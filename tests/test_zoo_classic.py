"""The classic families reproduce torchvision 0.29 exactly: VGG, SqueezeNet, DenseNet,
ShuffleNet V2 (issue 14, item 3), each one spec whose parameters select the variant.

Every variant is checked on the meta device (no memory, no init): state-dict keys in
order with their shapes, parameter counts, and the spec's inferred shapes against the
shapes torch observes. One variant per family goes through the whole of
``tests/parity.py`` (strict load of randomised weights, eval outputs within 1e-5,
train-mode outputs under one seed, so dropout sits in the same places):

- vgg11_bn at 32x32: VGG's 7x7 adaptive pool makes it size-agnostic (the count does not
  change), and 32x32 keeps the default suite fast; the 224 run is slow-marked;
- squeezenet1_0 at 227 and squeezenet1_1 at 224 (ceil_mode changes the sizes of 1.0 at 224
  and of 1.1 at 227: test_squeezenet_ceil_mode_changes_the_sizes; both are slow-marked
  full checks);
- densenet121 and shufflenet_v2_x0_5 at 224.

The other variants' full checks are slow-marked. Generated standalone code, ``--weights``,
``--plain``, ``check``, ``analyze`` and ``render`` run once per family.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import resdsl  # noqa: E402
import resdsl.zoo  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.zoo.registry import ZooEntry  # noqa: E402

from parity import check_keys, check_parity, check_shapes, randomize, sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ZOO, STD = ROOT / "resdsl" / "zoo", ROOT / "resdsl" / "std"


@dataclass(frozen=True)
class Variant:
    """One zoo entry (its spec and params come from the registry), the parameter count
    torchvision states for it, and the input size of its full check."""

    entry: str  # its name in resdsl/zoo/registry.py
    count: int  # torchvision's parameter count (its weights' meta "num_params")
    size: int | None = None  # input size of the full check (None: the entry's own)
    slow: bool = True  # the full check is slow-marked

    @property
    def zoo(self) -> ZooEntry:
        return resdsl.zoo.entry(self.entry)

    @property
    def spec(self) -> str:
        return Path(self.zoo.spec).stem

    @property
    def path(self) -> Path:
        return ROOT / self.zoo.spec

    @property
    def id(self) -> str:
        return self.entry if self.size is None else f"{self.entry}@{self.size}"

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.zoo.params, **({"size": self.size} if self.size else {}))

    def load(self, **extra: Any) -> resdsl.Net:
        return resdsl.load(self.path, **self.params, **extra)

    def reference(self, device: str = "cpu") -> torch.nn.Module:
        module, _, name = self.zoo.reference.rpartition(".")
        with torch.device(device):
            return getattr(importlib.import_module(module), name)(weights=None)

    def defines(self) -> list[str]:
        return [arg for k, v in self.params.items() for arg in ("-D", f"{k}={str(v).lower()}")]


VARIANTS = [
    # VGG's 7x7 adaptive pool makes it size-agnostic: the full checks run at 32x32
    *(Variant(name, count, size=32, slow=name != "vgg11_bn") for name, count in {
        "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
        "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
        "vgg19_bn": 143_678_248}.items()),
    Variant("vgg11_bn", 132_868_840),  # and once at 224
    Variant("squeezenet1_0", 1_248_424),
    Variant("squeezenet1_0_227", 1_248_424, slow=False),
    Variant("squeezenet1_1", 1_235_496, slow=False),
    Variant("squeezenet1_1_227", 1_235_496),
    Variant("densenet121", 7_978_856, slow=False),
    Variant("densenet161", 28_681_000),
    Variant("densenet169", 14_149_480),
    Variant("densenet201", 20_013_928),
    Variant("shufflenet_v2_x0_5", 1_366_792, slow=False),
    Variant("shufflenet_v2_x1_0", 2_278_604),
    Variant("shufflenet_v2_x1_5", 3_503_624),
    Variant("shufflenet_v2_x2_0", 7_393_996),
]
DEFAULT = {v.spec: v for v in VARIANTS if not v.slow and v.entry != "squeezenet1_0_227"}
FAMILIES = sorted(DEFAULT)


def _param(v: Variant, slow: bool = False):
    return pytest.param(v, id=v.id, marks=[pytest.mark.slow] if slow else [])


# ---- every variant, on the meta device --------------------------------------------------

@pytest.mark.parametrize("variant", [_param(v) for v in VARIANTS if v.size is None or v.spec != "vgg"])
def test_keys_shapes_and_counts_on_meta(variant: Variant):
    """Keys in torchvision's order with its shapes, its parameter count, and the spec's
    inferred shape of every op equal to the shape torch observes (meta tensors)."""
    net = variant.load()
    reference = variant.reference("meta")
    assert net.num_params == variant.count == sum(p.numel() for p in reference.parameters())
    model = net.build(device="meta")
    check_keys(model, reference)
    check_shapes(net, model.eval(), torch.empty(1, *net.input_shape, device="meta"))
    with torch.no_grad():
        expected = reference.eval()(torch.empty(1, *net.input_shape, device="meta")).shape
    assert tuple(expected[1:]) == net.output_shape


def test_squeezenet_ceil_mode_changes_the_sizes():
    """torchvision pools with ceil_mode: at 224 the second pool of squeezenet1_0 gives 27,
    where floor rounding would give 26 (and the first 1.1 pool at 227 gives 28, not 27)."""
    def pool_sizes(version: float, size: int) -> list[int]:
        net = resdsl.load(ZOO / "squeezenet.res", version=version, size=size)
        return [d.shape[-1] for d in _ops(net, "maxpool")]

    assert pool_sizes(1.0, 224) == [54, 27, 13]
    assert pool_sizes(1.1, 227) == [56, 28, 14]


def _ops(net: resdsl.Net, op: str) -> list:
    from resdsl.graph import op_nodes

    return [d for d in op_nodes(net.graph) if d.op == op]


# ---- full parity: one variant per family by default --------------------------------------

@pytest.mark.parametrize("variant", [_param(v, v.slow) for v in VARIANTS])
def test_parity_with_torchvision(variant: Variant):
    """Strict load of randomised weights and statistics, eval outputs within 1e-5,
    inferred shapes, and train mode (dropout draws) under one seed."""
    check_parity(variant.load(), variant.reference(), train=True)


# ---- the back ends and the command line, once per family ----------------------------------

@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> Variant:
    return DEFAULT[request.param]


def test_generated_code_reproduces_the_outputs(family: Variant, tmp_path: Path):
    """`compile -o model.py`: the standalone file loads torchvision's randomised weights
    strictly and computes torchvision's outputs."""
    out = tmp_path / "model.py"
    assert main(["compile", str(family.path), *family.defines(), "-o", str(out)]) == 0
    spec = importlib.util.spec_from_file_location(f"classic_{family.spec}", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    name = next(node.name for node in ast.parse(out.read_text()).body
                if isinstance(node, ast.ClassDef) and node.name.lower() == family.spec.replace("_", ""))
    written = getattr(module, name)(**family.params).eval()  # the network's parameters stay live
    reference = family.reference().eval()
    randomize(reference)
    written.load_state_dict(reference.state_dict(), strict=True)
    x = sample(family.load())
    with torch.no_grad():
        torch.testing.assert_close(written(x), reference(x), rtol=0, atol=1e-5)


def test_weights_load_a_torchvision_state_dict(family: Variant, tmp_path: Path, capsys):
    """`compile --weights`: torchvision's own state dict loads strictly."""
    if family.spec == "vgg":
        pytest.skip("VGG's 530 MB state dict: see test_vgg_weights (slow)")
    _compile_with_weights(family, tmp_path, capsys)


@pytest.mark.slow
def test_vgg_weights(tmp_path: Path, capsys):
    _compile_with_weights(DEFAULT["vgg"], tmp_path, capsys)


def _compile_with_weights(variant: Variant, tmp_path: Path, capsys) -> None:
    path = tmp_path / f"{variant.entry}.pt"
    torch.save(variant.reference().state_dict(), path)
    assert main(["compile", str(variant.path), *variant.defines(), "--weights", str(path)]) == 0
    assert "shapes match" in capsys.readouterr().out


def test_plain_twin_is_the_network_itself(family: Variant):
    """These families have no residual units: `--plain` changes nothing."""
    from resdsl.graph import residual_units

    net, plain = family.load(), family.load(plain=True)
    assert not residual_units(net.graph)
    assert plain.num_params == net.num_params and plain.output_shape == net.output_shape
    assert [d.module for d in _ops(plain, "conv")] == [d.module for d in _ops(net, "conv")]


def test_check_analyze_and_render(family: Variant, tmp_path: Path, capsys):
    spec, defines = str(family.path), family.defines()
    assert main(["check", spec, *defines]) == 0
    assert f"{family.count:,} parameters" in capsys.readouterr().out
    assert main(["check", spec, "--plain", *defines]) == 0
    assert main(["analyze", spec, *defines]) == 0
    assert capsys.readouterr().out.strip()
    for level in ("stage", "block", "layer"):
        out = tmp_path / f"{family.spec}-{level}.dot"
        assert main(["render", spec, *defines, "--level", level, "-o", str(out)]) == 0
        assert out.read_text().startswith("digraph")


def test_header_states_every_count(family: Variant):
    header = " ".join(line for line in family.path.read_text().splitlines() if line.startswith("#"))
    assert all(f"{v.count:,}" in header for v in VARIANTS if v.spec == family.spec)
