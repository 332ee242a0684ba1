"""Pretrained weights: a torchvision state dict saved to a file loads strictly
(``build(weights=...)``, ``resdsl compile --weights``); a mismatch is a spec error
naming every missing, unexpected or ill-shaped key and the spec line that made it.
No downloads: the "pretrained" weights are a randomly initialised torchvision model's.
"""

from __future__ import annotations

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


def test_missing_keys_name_each_key_and_its_statement(weights_file):
    """resnet18's weights in resnet34: the extra blocks' keys are missing, each located."""
    net = resdsl.load(RESNET34)
    with pytest.raises(resdsl.SpecError) as info:
        net.build(weights=weights_file)
    ours = set(resdsl.load(RESNET34).build(device="meta").state_dict())
    missing = ours - set(torch.load(weights_file, weights_only=True))
    assert "layer1.2.conv1.weight" in missing
    assert sorted(_messages(info.value)) == sorted(f"weights: missing key '{k}'" for k in missing)
    blocks = SPECS.parent / "std" / "resnet.res"
    by_key = {d.message.split("'")[1]: d for d in info.value.diagnostics}
    conv1 = by_key["layer1.2.conv1.weight"]
    assert Path(conv1.span.file).resolve() == blocks.resolve()
    assert conv1.span.line == _line_of(blocks, "conv1: conv 3, out, stride=stride, bias=false")
    assert "conv1: conv 3, out, stride=stride, bias=false" in conv1.source_line
    bn2 = by_key["layer3.5.bn2.running_var"]
    assert bn2.span.line == _line_of(blocks, "bn2: batchnorm")
    rendered = info.value.render()
    assert f"resnet.res:{conv1.span.line}:" in rendered and f"{len(missing)} errors" in rendered


def test_unexpected_keys_are_named(resnet34_weights):
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.load(RESNET18).build(weights=resnet34_weights)
    theirs = set(torch.load(resnet34_weights, weights_only=True))
    ours = set(resdsl.load(RESNET18).build(device="meta").state_dict())
    assert sorted(_messages(info.value)) == sorted(
        f"weights: unexpected key '{k}' (no statement of the spec makes it)" for k in theirs - ours)


def test_ill_shaped_keys_name_the_statement(weights_file):
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.load(RESNET18, num_classes=10).build(weights=weights_file)
    assert _messages(info.value) == [
        "weights: 'fc.weight' has shape [1000, 512] in the checkpoint but [10, 512] in the spec",
        "weights: 'fc.bias' has shape [1000] in the checkpoint but [10] in the spec",
    ]
    span = info.value.first.span
    assert Path(span.file).resolve() == RESNET18.resolve()
    assert span.line == _line_of(RESNET18, "fc: linear num_classes")


def test_cli_weights_mismatch_is_a_spec_error(weights_file, capsys):
    assert main(["compile", str(RESNET18), "-D", "num_classes=10", "--weights", str(weights_file)]) == 1
    err = capsys.readouterr().err
    assert "'fc.weight' has shape [1000, 512]" in err
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
