"""from-torch: torchvision models written as specs, checked by the round trip (issue 16 items 1-2).

The oracle: the written spec builds a module whose state-dict keys equal the source's
(in order, with shapes), which loads the source's randomised weights strictly, and whose
eval outputs equal the source's within 1e-5. One variant per family runs by default;
the rest of the table (docs/from-torch.md) is slow-marked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import resdsl
from resdsl import ir
from resdsl.fromtorch import from_torch
from resdsl.fromtorch.recipes import recognise_module
from resdsl.syntax.text import parse_text
from tests.parity import check_keys, randomize

torch.set_num_threads(2)


def round_trip(model: nn.Module, shape: tuple[int, ...]) -> str:
    """The spec for ``model``, checked here independently of from-torch's own check."""
    randomize(model, seed=3)  # norm statistics too: a miswired norm shows
    result = from_torch(model, shape)
    assert result.exact, result.verdict
    net = resdsl.loads(result.text)
    ours = net.build()
    check_keys(ours, model)
    ours.load_state_dict(model.state_dict(), strict=True)
    ours.eval(), model.eval()
    x = torch.randn((2, *shape), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected, got = model(x.clone()), ours(x.clone())  # a forward may change its input
    assert float((expected - got).abs().max()) <= 1e-5 * float(expected.abs().max())
    assert net.num_params == sum(p.numel() for p in model.parameters())
    return result.text


def statements(text: str) -> int:
    """Statements of a spec (its network's and its blocks'), nested bodies included."""
    def count(body: tuple) -> int:
        return sum(1 + sum(count(inner) for inner in ir.bodies(stmt)) for stmt in body)

    spec = parse_text(text)
    return sum(count(n.body) + 1 for n in spec.networks) + sum(count(b.body) for b in spec.blocks) + sum(
        count(b.body) for n in spec.networks for b in n.blocks)


# ---- one variant per family: the default suite -----------------------------------------
FAMILIES = {
    "resnet18": (lambda: torchvision.models.resnet18(), (3, 32, 32)),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(), (3, 32, 32)),
    "shufflenet_v2_x0_5": (lambda: torchvision.models.shufflenet_v2_x0_5(), (3, 32, 32)),
    "squeezenet1_1": (lambda: torchvision.models.squeezenet1_1(), (3, 64, 64)),
    "r3d_18": (lambda: torchvision.models.video.r3d_18(), (3, 2, 16, 16)),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_round_trip_one_per_family(name):
    make, shape = FAMILIES[name]
    round_trip(make(), shape)


def test_resnet50_is_as_short_as_the_hand_written_spec():
    text = round_trip(torchvision.models.resnet50(), (3, 32, 32))
    ours = statements(text)
    hand = statements((resdsl.zoo.path("resnet50")).read_text())
    assert ours <= hand, (ours, hand)
    # readable: one block with parameters, stages by count, the stride on the stage
    assert "layer3: stage bottleneck x 6, stride=2" in text
    assert text.count("block ") == 1
    assert "block bottleneck(out: int = 256, stride: int = 1):" in text
    assert "conv3: conv 1, 4 * out" in text  # a multiple of another parameter, not a third one
    assert "defaults conv(bias=false)" in text


def test_regnet_projection_first_and_stage_names():
    text = round_trip(torchvision.models.regnet_y_400mf(), (3, 32, 32))
    assert "residual proj=proj, shortcut_first=true:" in text
    assert 'block2: stage res_bottleneck_block(104) x 3, prefix="block2-", stride=2' in text
    assert "se: squeeze_excitation(channels(input) // 4)" in text


@pytest.mark.slow
def test_mobilenet_v2_identity_shortcut_and_sequential_blocks():
    text = round_trip(torchvision.models.mobilenet_v2(), (3, 32, 32))
    assert "residual:" in text and "shortcut:" not in text


@pytest.mark.slow
def test_densenet_layers_concatenate_their_input_in_a_stage():
    text = round_trip(torchvision.models.densenet169(), (3, 32, 32))
    assert "denseblock4: stage dense_layer x 32, prefix=denselayer, start=1" in text
    assert "        from input\n        concat conv2\n" in text
    zoo = resdsl.zoo.path("densenet169")
    # one more than the zoo's: torchvision's _Transition is an nn.Sequential, so its block
    # says `sequential:` where std/densenet.res writes a plain block
    assert statements(text) <= statements(zoo.read_text()) + statements(
        (zoo.parent.parent / "std" / "densenet.res").read_text()) + 1


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(torch.relu(self.conv(x)))  # one conv, its weights used twice


def test_a_module_with_weights_called_twice_is_a_located_error():
    with pytest.raises(resdsl.SpecError) as info:
        from_torch(_Shared(), (3, 8, 8))
    assert "calls its child 'conv' twice" in info.value.render()


# ---- recognition --------------------------------------------------------------------------
@pytest.mark.parametrize("module, shape, op, args", [
    (nn.Conv2d(3, 8, 3, stride=2, bias=False), (3, 16, 16), "conv", {"out_channels": 8, "stride": 2, "bias": False}),
    (nn.Conv2d(8, 8, 3, padding="same", groups=8), (8, 5, 5), "conv", {"pad": "same", "groups": 8}),
    (nn.MaxPool2d(3, 2, ceil_mode=True), (8, 15, 15), "maxpool", {"kernel": 3, "stride": 2, "ceil": True}),
    (nn.LayerNorm(8), (4, 4, 8), "layernorm", {"over": "last"}),
    (nn.GELU(approximate="tanh"), (8,), "gelu", {"approximate": "tanh"}),
    (nn.BatchNorm2d(8, eps=1e-3, momentum=0.01), (8, 4, 4), "batchnorm", {"eps": 1e-3, "momentum": 0.01}),
    (torchvision.ops.misc.Permute([0, 2, 3, 1]), (8, 4, 5), "permute", {"dims": (1, 2, 0)}),
    (torchvision.models.convnext.LayerNorm2d(8, eps=1e-6), (8, 4, 4), "layernorm", {"over": "channels"}),
])
def test_modules_are_recognised_through_the_catalogue(module, shape, op, args):
    match = recognise_module(module, shape)
    assert match is not None and match.op.name == op
    for key, value in args.items():
        assert match.args[key] == value


@pytest.mark.parametrize("module, shape", [
    (nn.Flatten(2), (8, 4, 4)),  # flattens from dim 2: not the catalogue's flatten
    (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), (8, 4, 4)),  # ours is align_corners=False
    (nn.BatchNorm2d(8, affine=False), (8, 4, 4)),  # no weight: another module
    (nn.MaxPool2d(3, dilation=2), (8, 16, 16)),  # a dilation the catalogue does not have
])
def test_modules_the_catalogue_does_not_have_are_not_guessed(module, shape):
    assert recognise_module(module, shape) is None


class _Gate(nn.Module):
    """A long skip and a gate: labels, from and add/mul L, without a residual form."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.gate = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        s = self.stem(x)
        y = torch.relu(self.body(s))
        return y * torch.sigmoid(self.gate(s)) + s


def test_long_skips_become_labels():
    text = round_trip(_Gate(), (3, 8, 8))
    assert "from stem" in text and ("add stem" in text or "residual" in text)


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.b = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        if x.sum() > -1e9:  # control flow on a tensor's value: fx cannot trace it
            return self.a(x) + self.b(x)  # and the children do not run as a chain
        return x


class _Branchy(nn.Module):
    """A forward that branches on a shape: fx cannot trace it, its children run as a chain."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()

    def forward(self, x):
        if x.shape[-1] > 4:
            x = self.bn(self.conv(x))
        return self.act(x)  # hooks see modules, not functions: the chain is of children


class _WithBranchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _Branchy()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.stem(x), 1), 1))


def test_what_fx_cannot_trace_is_written_from_the_calls_hooks_saw():
    text = round_trip(_WithBranchy(), (3, 8, 8))
    assert "torch.fx could not trace it): stem" in text  # the header says so
    assert "stem: branchy" in text and "conv: conv 3, 8" in text


class _Unknown(nn.Module):
    def forward(self, x):
        return torch.fft.fft2(x).real


@pytest.mark.parametrize("model, words", [
    (_DataDependent(), ["module '(root)'", "cannot be traced by torch.fx", "do not run as a chain"]),
    (_Unknown(), ["fft2", "no op of the catalogue"]),
    (torchvision.models.googlenet(aux_logits=True, init_weights=False), ["aux1", "never uses"]),
])
def test_what_the_language_cannot_express_is_a_located_error(model, words):
    with pytest.raises(resdsl.SpecError) as info:
        from_torch(model, (3, 64, 64))
    text = info.value.render()
    assert all(word in text for word in words), text
    assert "test_from_torch.py" in text or "googlenet.py" in text or "conv.py" in text  # where forward is
    assert "Traceback" not in text


# ---- the command ----------------------------------------------------------------------------
def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resdsl", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_the_command_writes_a_spec_that_checks(tmp_path):
    out = tmp_path / "r18.res"
    done = _cli("from-torch", "torchvision.models.resnet18", "-D", "num_classes=10", "--input", "3,32,32",
                "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "strict load" in done.stderr
    assert "fc: linear 10" in out.read_text()
    assert _cli("check", str(out)).returncode == 0
    assert resdsl.format(out.read_text()) == out.read_text()  # already in the canonical layout


@pytest.mark.parametrize("args, message", [
    (["torchvision.models.no_such_model"], "no attribute"),
    (["os.system('true')"], "expected a dotted name"),
    (["torchvision.models.resnet18", "-D", "nope=1"], "unexpected keyword"),
    (["math.pi"], "not callable"),
    (["torchvision.models.resnet18", "--input", "3,x"], "positive sizes"),
])
def test_the_command_refuses_bad_requests_plainly(args, message, capsys):
    from resdsl.cli import main

    assert main(["from-torch", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_command_reports_an_inexpressible_module_located(capsys):
    from resdsl.cli import main

    assert main(["from-torch", "torchvision.models.googlenet", "--input", "3,64,64"]) == 1
    err = "".join(capsys.readouterr())
    assert "aux1" in err and "googlenet.py" in err and "Traceback" not in err


# ---- one more variant per family (slow), then every model of the table (opt-in giants) ----
SLOW = {
    "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(), (3, 64, 64)),
    "convnext_tiny": (lambda: torchvision.models.convnext_tiny(), (3, 64, 64)),
    "vgg11_bn": (lambda: torchvision.models.vgg11_bn(), (3, 64, 64)),
    "mnasnet0_5": (lambda: torchvision.models.mnasnet0_5(), (3, 64, 64)),
    "resnext50_32x4d": (lambda: torchvision.models.resnext50_32x4d(), (3, 64, 64)),
    "r2plus1d_18": (lambda: torchvision.models.video.r2plus1d_18(), (3, 4, 32, 32)),
    "googlenet": (lambda: torchvision.models.googlenet(aux_logits=False, init_weights=False), (3, 96, 96)),
    "densenet121": (lambda: torchvision.models.densenet121(), (3, 32, 32)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_round_trip_more_families(name):
    make, shape = SLOW[name]
    round_trip(make(), shape)


# ---- every model of the table ----------------------------------------------------------
_TABLE_FILE = Path(__file__).resolve().parents[1] / "docs" / "from-torch.json"
TABLE = json.loads(_TABLE_FILE.read_text()) if _TABLE_FILE.exists() else []


@pytest.mark.giant
@pytest.mark.parametrize("row", TABLE, ids=[r["model"] for r in TABLE])
def test_round_trip_every_model_of_the_table(row):
    from resdsl.fromtorch.table import make

    model, shape = make(row["model"])
    if row["exact"]:
        round_trip(model, shape)
    else:
        with pytest.raises(resdsl.SpecError):
            from_torch(model, shape)


class _Pools(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.conv(x), 3, stride=2, padding=1)
        return nn.functional.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


def test_functional_pools_are_the_catalogue_s_pools():
    text = round_trip(_Pools(), (3, 16, 16))
    assert "maxpool 3, stride=2, pad=1" in text and "avgpool 3, stride=1, pad=1" in text
    with pytest.raises(resdsl.SpecError, match="avg_pool2d"):  # count_include_pad=False: not ours
        from_torch(nn.AvgPool2d(2, padding=1, count_include_pad=False), (3, 8, 8))
