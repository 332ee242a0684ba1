"""Pretrained weights: a torchvision state dict saved to a file loads strictly
(``build(weights=...)``, ``resdsl compile --weights``); a mismatch is a spec error
grouping the missing, unexpected and ill-shaped keys by module and spec line
(tests/test_weights_report.py has the grouping itself).
No downloads: the "pretrained" weights are a randomly initialised torchvision model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import resdsl  # noqa: E402
from resdsl.cli import main  # noqa: E402

SPECS = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"
RESNET18, RESNET34 = SPECS / "resnet18.res", SPECS / "resnet34.res"


def _line_of(path: Path, statement: str) -> int:
    """The 1-based line of the first line of ``path`` holding ``statement``."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip() == statement)


@pytest.fixture(scope="module")
def reference():
    """torchvision's resnet18 with non-trivial batchnorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        for norm in model.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.running_mean.uniform_(-0.1, 0.1)
                norm.running_var.uniform_(0.5, 1.5)
                norm.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def weights_file(reference, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def resnet34_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet34.pt"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    return path


def _messages(err: resdsl.SpecError) -> list[str]:
    return [d.message for d in err.diagnostics]


def test_build_with_weights_reproduces_torchvision(reference, weights_file):
    model = resdsl.load(RESNET18).build(weights=weights_file).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_weights_wrapped_in_a_checkpoint_dict(reference, tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": reference.state_dict(), "epoch": 90}, path)
    model = resdsl.load(RESNET18).build(weights=path)
    assert torch.equal(model.fc.weight, reference.fc.weight)


def test_cli_compile_with_weights(weights_file, capsys):
    assert main(["compile", str(RESNET18), "--weights", str(weights_file)]) == 0
    assert "shapes match" in capsys.readouterr().out


def test_missing_keys_are_grouped_by_stage_at_its_statement(weights_file):
    """resnet18's weights in resnet34: the extra blocks' keys are missing, one line a stage."""
    net = resdsl.load(RESNET34)
    with pytest.raises(resdsl.SpecError) as info:
        net.build(weights=weights_file)
    ours = resdsl.load(RESNET34).build(device="meta").state_dict()
    missing = set(ours) - set(torch.load(weights_file, weights_only=True))
    assert "layer1.2.conv1.weight" in missing
    diags = info.value.diagnostics
    assert diags[0].message.startswith(f"weights: the checkpoint does not match the spec: {len(missing)} missing, "
                                       "0 unexpected, 0 of another shape")
    layer3 = diags[3]
    assert layer3.message == ("weights: stage 'layer3' makes 6 blocks; the checkpoint has 2 (layer3.0-layer3.1): "
                              f"{sum(k.startswith('layer3.') for k in missing)} missing tensors under "
                              "layer3.2-layer3.5")
    assert Path(layer3.span.file).resolve() == RESNET34.resolve()
    assert layer3.span.line == _line_of(RESNET34, "layer3: stage basic(256) x 6, stride=2")
    assert "layer3: stage basic(256) x 6" in layer3.source_line
    assert len(diags) == 5 and f"resnet34.res:{layer3.span.line}:" in info.value.render()


def test_every_key_is_listed_for_machines(resnet34_weights, capsys):
    """The grouped report shows stages; `weights-diff --json` still lists every key."""
    theirs = torch.load(resnet34_weights, weights_only=True)
    ours = resdsl.load(RESNET18).build(device="meta").state_dict()
    assert main(["weights-diff", str(RESNET18), str(resnet34_weights), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["unexpected"] == [k for k in theirs if k not in ours] and result["missing"] == []


def test_ill_shaped_keys_name_the_statement(weights_file):
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.load(RESNET18, num_classes=10).build(weights=weights_file)
    shape = info.value.diagnostics[1]
    assert shape.message == "weights: fc.weight: [10, 512] in the spec, [1000, 512] in the checkpoint"
    assert shape.notes == ("this statement makes 1 more tensor of another shape: fc.bias",)
    assert len(info.value.diagnostics) == 2
    assert Path(shape.span.file).resolve() == RESNET18.resolve()
    assert shape.span.line == _line_of(RESNET18, "fc: linear num_classes")


def test_cli_weights_mismatch_is_a_spec_error(weights_file, capsys):
    assert main(["compile", str(RESNET18), "-D", "num_classes=10", "--weights", str(weights_file)]) == 1
    err = capsys.readouterr().err
    assert "fc.weight: [10, 512] in the spec, [1000, 512] in the checkpoint" in err
    assert f"resnet18.res:{_line_of(RESNET18, 'fc: linear num_classes')}:" in err
    assert "fc: linear num_classes" in err


@pytest.mark.parametrize("content", [b"not a checkpoint", b"", "tensor"])
def test_unreadable_weights_file_is_a_spec_error(tmp_path, content):
    bad = tmp_path / "bad.pt"
    if content == "tensor":
        torch.save(torch.zeros(3), bad)  # a valid file, but not a state dict
    else:
        bad.write_bytes(content)
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.load(SPECS / "cifar_resnet.res").build(weights=bad)
    message = info.value.first.message
    assert message.startswith("cannot load weights") and "\n" not in message
    assert info.value.first.span.file == str(bad)
