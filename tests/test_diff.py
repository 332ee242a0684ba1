"""``resdsl diff A B`` and ``resdsl.diff``: statements aligned by module path, parameters per
statement, checkpoint keys (from a meta build, checked against real builds and torchvision)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import resdsl
from resdsl.archdiff import diff_nets, state_shapes
from resdsl.cli import main

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "resdsl" / "zoo"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["diff", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def lines_of(d, kind: str) -> list[str]:
    return [c.line() for c in d.changes if c.kind == kind]


# ---- the checkpoint keys: the meta build is the real one -----------------------------------

@pytest.mark.parametrize("name", ["resnet18", "cifar_resnet20", "mobilenet_v3_small", "squeezenet1_1"])
def test_meta_keys_equal_a_real_builds_state_dict(name):
    net = resdsl.zoo.load(name)
    real = {k: tuple(v.shape) for k, v in net.build().state_dict().items()}
    shapes = state_shapes(net)
    assert list(shapes) == list(real)  # same keys, same order
    assert shapes == real


def _torchvision_meta(name: str) -> dict[str, tuple[int, ...]]:
    import torch
    import torchvision

    with torch.device("meta"):
        model = getattr(torchvision.models, name)()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---- ResNets: blocks added, widths and groups changed -------------------------------------------

def test_resnet18_vs_resnet34_adds_blocks(capsys):
    code, out, _ = run(capsys, "resnet18", "resnet34")
    assert code == 1
    assert "~ layer3: stage basic x 2 -> x 6  (resdsl/zoo/resnet18.res:20 -> resdsl/zoo/resnet34.res:18)" in out
    assert "+ layer3.2 .. layer3.5 added (4 blocks of basic)  (resdsl/zoo/resnet34.res:18)" in out
    assert "+ layer1.2 added: block basic" in out
    assert "checkpoint keys: 122 -> 218 (96 added, 0 removed, 0 reshaped)" in out
    assert "a checkpoint of A loads into B: no - 96 keys missing (layer1.2 .. layer4.2: 8 subtrees), " \
        "0 unexpected, 0 reshaped; strict=False loads the 122 common keys" in out
    assert "  total   11,689,512 -> 21,797,672  +10,108,160" in out  # torchvision's counts
    assert "layer2.0.conv1" not in out  # reading a new last block is no rewiring


def test_resnet18_vs_resnet34_keys_are_torchvisions():
    d = resdsl.diff("resnet18", "resnet34")
    a, b = _torchvision_meta("resnet18"), _torchvision_meta("resnet34")
    assert [k for k, _ in d.keys.added] == [k for k in b if k not in a]
    assert not d.keys.removed and not d.keys.reshaped
    assert d.counts["added"] == 8 and d.counts["removed"] == 0


@pytest.mark.parametrize("other, word", [("wide_resnet50_2", "width 64 -> 128"),
                                         ("resnext50_32x4d", "width 64 -> 128, groups 1 -> 32")])
def test_resnet50_vs_wider_and_grouped_reshapes_only(other, word):
    d = resdsl.diff("resnet50", other)
    a, b = _torchvision_meta("resnet50"), _torchvision_meta(other)
    assert not d.keys.added and not d.keys.removed  # the same keys ...
    assert [(k, sa, sb) for k, sa, sb in d.keys.reshaped] == \
        [(k, a[k], s) for k, s in b.items() if a[k] != s]  # ... reshaped as torchvision's are
    changed = lines_of(d, "changed")
    assert any(line.startswith(f"~ layer1.0 .. layer1.2: bottleneck {word} (3 blocks)") for line in changed)
    assert not lines_of(d, "added") and not lines_of(d, "removed")
    assert "0 keys missing, 0 unexpected, 176 reshaped" in d.verdict()
    assert d.b.num_params == sum(_numel(s) for k, s in b.items() if "running" not in k and "num_batches" not in k)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def test_groups_change_is_named_on_the_conv():
    d = resdsl.diff("resnet50", "resnext50_32x4d", keys=False)
    assert any("layer2.0.conv2 .. layer2.3.conv2: out_channels 128 -> 256, groups 1 -> 32 (4 ops)" in line
               for line in lines_of(d, "changed"))


# ---- the same architecture -----------------------------------------------------------------------

def test_a_spec_against_itself_is_the_same(capsys):
    code, out, _ = run(capsys, "resnet50", str(ZOO / "resnet50.res"))
    assert code == 0
    assert out.splitlines()[-1] == ("A and B are the same architecture: 175 ops, 320 checkpoint keys, "
                                    "25,557,032 parameters")
    d = resdsl.diff("resnet50", "resnet50")
    assert d.same and d.loads and not d.changes and d.keys.same


@pytest.mark.parametrize("twin", sorted((ZOO / "yaml").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_text_spec_and_its_yaml_twin_are_the_same(twin):
    d = resdsl.diff(str(ZOO / f"{twin.stem}.res"), str(twin), keys=twin.stem == "resnet18")
    assert d.same, d.render(full=True)


def test_a_define_that_changes_nothing_is_the_same(capsys):
    code, _, _ = run(capsys, "resnet50", "resnet50", "--define-b", "num_classes=1000")
    assert code == 0


# ---- -D changes ----------------------------------------------------------------------------------

def test_a_spec_against_itself_with_a_define(capsys):
    code, out, _ = run(capsys, "resnet50", "resnet50", "--define-b", "num_classes=10")
    assert code == 1
    assert "~ fc: out_features 1000 -> 10  (resdsl/zoo/resnet50.res:34)" in out
    assert "  fc       2,049,000 ->     20,490  -2,028,510" in out
    assert "~ fc: 2 keys reshaped, e.g. fc.weight [1000, 2048] -> [10, 2048] and 1 more" in out
    assert "0 keys missing, 0 unexpected, 2 reshaped" in out


def test_cifar_n3_against_n5(capsys):
    spec = str(ZOO / "cifar_resnet.res")
    code, out, _ = run(capsys, spec, spec, "--define-a", "n=3", "--define-b", "n=5")
    assert code == 1
    for stage, line in (("layer1", 31), ("layer2", 32), ("layer3", 33)):
        assert f"~ {stage}: stage basic x 3 -> x 5  (resdsl/zoo/cifar_resnet.res:{line})" in out
        assert f"+ {stage}.3 .. {stage}.4 added (2 blocks of basic)  (resdsl/zoo/cifar_resnet.res:{line})" in out
        assert f"+ {stage}: 24 keys in {stage}.3 .. {stage}.4: 2 subtrees" in out
    assert "  total   269,722 -> 464,154  +194,432" in out  # ResNet-20 and ResNet-32 (He et al.)
    code_json, text, _ = run(capsys, spec, spec, "--define-a", "n=3", "--define-b", "n=5", "--json")
    data = json.loads(text)
    assert code_json == 1 and data["same"] is False and data["loads"] is False
    assert len(data["keys"]["added"]) == 72 and data["counts"]["added"] == 6
    assert data["total"] == {"a": 269722, "b": 464154, "delta": 194432}


def test_the_output_is_deterministic(capsys):
    outs = [run(capsys, "cifar_resnet20", "cifar_resnet32", "-D", "num_classes=100", flag)[1]
            for flag in ("--json", "--json", "--all", "--all")]
    assert outs[0] == outs[1] and outs[2] == outs[3]


# ---- statements changed in place ------------------------------------------------------------------

SMALL = """
network small(k: int = 7):
    input x: [3, 32, 32]
    conv1: conv KxK, 16, stride=2
    relu
    residual:
        conv2: conv 3x3, 16
    extra: conv 1x1, 16
    add LABEL
    pool: adaptive_avgpool 1
    flatten
    fc: linear 10
"""


def small(k: int = 7, label: str = "conv1", extra: bool = True) -> resdsl.Net:
    text = SMALL.replace("KxK", f"{k}x{k}").replace("LABEL", label)
    if not extra:
        text = text.replace("    extra: conv 1x1, 16\n", "")
    return resdsl.loads(text)


def test_a_changed_argument_says_which():
    d = diff_nets(small(7), small(3), keys=False)
    assert lines_of(d, "changed") == ["~ conv1: kernel 7x7 -> 3x3, pad 3x3 -> 1x1  (inline.res:4)"]
    assert d.counts == {"added": 0, "removed": 0, "changed": 1, "reshaped": 0}
    assert [(r.name, r.a, r.b) for r in d.params if r.delta] == [("conv1", 2368, 448)]  # 7*7*3*16 + 16 bias, 3*3*3*16 + 16


def test_a_long_skip_to_another_tensor_is_rewiring():
    d = diff_nets(small(label="conv1"), small(label="conv2"), keys=False)
    assert lines_of(d, "changed") == ["~ add_0: inputs extra, conv1 -> extra, conv2  (inline.res:9)"]


def test_a_removed_statement_is_located_on_the_side_that_has_it():
    d = diff_nets(small(), small(extra=False))
    assert lines_of(d, "removed") == ["- extra removed: 1x1 conv, 16  (inline.res:8)"]
    assert [k for k, _ in d.keys.removed] == ["extra.weight", "extra.bias"]
    assert "2 unexpected (extra)" in d.verdict()


# ---- hostile and wrong input ----------------------------------------------------------------------

def test_unrelated_nets_give_a_bounded_screenful(capsys):
    code, out, _ = run(capsys, "mobilenet_v2", "unet")
    assert code == 1
    assert len(out.splitlines()) <= 60 and max(map(len, out.splitlines())) <= 200
    assert "more lines (--all shows them)" in out
    code, full, _ = run(capsys, "mobilenet_v2", "unet", "--all")
    assert code == 1 and len(full.splitlines()) > len(out.splitlines())
    assert "- input removed" not in full  # the one input aligns with the other, whatever its label
    assert "~ input: label x -> image" in full


def test_an_error_in_either_spec_is_located(tmp_path, capsys):
    bad = tmp_path / "bad.res"
    bad.write_text("network bad:\n    input x: [3, 32, 32]\n    conv1: conv 3x3, 16\n    concat nowhere\n")
    for argv in (("resnet18", str(bad)), (str(bad), "resnet18")):
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == ""
        assert f"{bad}:4:12: error: concat 'nowhere'" in err and "hint:" in err
    code, out, _ = run(capsys, "resnet18", str(bad), "--json")
    assert code == 1 and json.loads(out)["errors"][0]["line"] == 4


@pytest.mark.parametrize("argv", [("resnet18",), ("resnet18", "no_such_model"), ("resnet18", "resnet34", "-D", "x")])
def test_usage_errors_exit_2(argv, capsys):
    code, _, _ = run(capsys, *argv)
    assert code == 2


def test_alignment_is_linear_in_the_network():
    a = resdsl.zoo.load("cifar_resnet20", n=200)  # ResNet-1202: 4,208 ops
    b = resdsl.zoo.load("cifar_resnet20", n=199)
    start = time.process_time()
    d = diff_nets(a, b, keys=False)
    assert time.process_time() - start < 2.0
    assert d.counts == {"added": 0, "removed": 3, "changed": 3, "reshaped": 0}
    assert lines_of(d, "removed")[0] == "- layer1.199 removed: block basic  (resdsl/zoo/cifar_resnet.res:31)"


def _line_of(path: str, text: str) -> int:
    """The line of the spec that holds ``text`` (specs are reformatted: no fixed numbers)."""
    lines = (Path(resdsl.__file__).parent.parent / path).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def test_numbers_inside_names_group_too():
    d = resdsl.diff("densenet121", "densenet169", keys=False)
    line = _line_of("resdsl/zoo/densenet.res", "denseblock3: stage")
    assert ("+ features.denseblock3.denselayer25 .. features.denseblock3.denselayer32 added "
            f"(8 blocks of dense_layer)  (resdsl/zoo/densenet.res:{line})") in lines_of(d, "added")
    group = next(c for c in d.changes if c.first == "features.denseblock3.denselayer25")
    assert group.paths == tuple(f"features.denseblock3.denselayer{i}" for i in range(25, 33))


def test_a_shortcut_policy_shows_in_the_title_and_the_keys():
    option_a = resdsl.zoo.load("cifar_resnet20")
    d = diff_nets(option_a, resdsl.zoo.load("cifar_resnet20", shortcut="B"))
    assert d.b.title().endswith("shortcut B)")
    assert lines_of(d, "added") == ["+ layer2.0.downsample .. layer3.0.downsample added (2 shortcuts)  "
                                    "(resdsl/zoo/cifar_resnet.res:20)"]
    assert len(d.keys.added) == 12 and d.b.num_params - d.a.num_params == 2752  # He et al.'s option B


def test_no_keys_imports_no_torch():
    import os
    import subprocess
    import sys

    code = ("import contextlib, io, sys\nfrom resdsl.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = main(['diff', 'cifar_resnet20', 'cifar_resnet32', '--no-keys'])\n"
            "print(rc, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.stdout.split() == ["1", "False"], done.stderr


@pytest.mark.parametrize("a, b", [("mobilenet_v3_small", "mobilenet_v3_large"), ("regnet_x_400mf", "regnet_y_400mf"),
                                  ("vgg11", "vgg11_bn"), ("swin_t", "swin_v2_t")])
def test_every_op_only_one_side_has_is_reported(a, b):
    """Nothing is lost to grouping: each op of B that A lacks is an added member or inside one."""
    from resdsl.graph import op_nodes

    net_a, net_b = resdsl.zoo.load(a), resdsl.zoo.load(b)
    d = diff_nets(net_a, net_b, keys=False)
    for kind, mine, other in (("added", net_b, net_a), ("removed", net_a, net_b)):
        theirs = {n.module for n in op_nodes(other.graph)}
        members = {p for c in d.changes if c.kind == kind for p in c.paths}
        for node in op_nodes(mine.graph):
            if node.module is not None and node.module not in theirs:
                parts = node.module.split(".")
                assert any(".".join(parts[:i]) in members for i in range(1, len(parts) + 1)), node.module
    assert sum(c.count for c in d.changes) == sum(d.counts.values())
