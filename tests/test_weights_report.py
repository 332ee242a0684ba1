"""Issue 16, items 3, 4 and 6: checkpoints that explain themselves.

A mismatch is one SpecError whose diagnostics are grouped by module subtree and spec
line (counts first, then about 20 lines); a checkpoint matching in count, shape and
order under other names says so once and offers --weights-by-order or a map;
--weights-map and --weights-by-order rename and say what they did; `weights-diff`
reports without a forward; hostile checkpoints get located errors, never a traceback.
No downloads: the checkpoints are randomly initialised torchvision models or built here.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import resource
import struct
import time
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import resdsl  # noqa: E402
from resdsl.backends import weights as weights_mod  # noqa: E402
from resdsl.cli import main  # noqa: E402

ZOO = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"
RESNET18 = ZOO / "resnet18.res"

SMALL = """\
block unit(c: int):
    residual:
        conv1: conv 3x3, c
        bn1: batchnorm
    relu

network small(width: int = 4, k: int = 3, n: int = 2):
    input x: [3, 8, 8]
    stem: conv k, width
    bn: batchnorm
    relu
    blocks: stage unit(width) x n
    pool: adaptive_avgpool 1
    flatten
    fc: linear 2
"""


def _line(text: str, statement: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.strip() == statement)


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "small.res"
    path.write_text(SMALL)
    return path


def _state(spec: Path, seed: int = 0, **params) -> dict:
    torch.manual_seed(seed)
    return resdsl.load(spec, **params).build().state_dict()


def _save(obj, path: Path, **kwargs) -> Path:
    torch.save(obj, path, **kwargs)
    return path


def _error(spec: Path, weights, **kwargs) -> resdsl.SpecError:
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.load(spec, **{k: v for k, v in kwargs.items() if k in ("n", "k", "width")}).build(
            weights=weights, **{k: v for k, v in kwargs.items() if k not in ("n", "k", "width")})
    return info.value


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# ---- the two scenarios of the issue --------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet34_file(tmp_path_factory) -> Path:
    return _save(torchvision.models.resnet34(weights=None).state_dict(),
                 tmp_path_factory.mktemp("w") / "resnet34.pt")


def test_resnet34_weights_into_resnet18_is_one_line_per_stage(resnet34_file, capsys):
    """Was 50+ 'unexpected key' errors without a spec line; now counts and four stage lines."""
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.load(RESNET18).build(weights=resnet34_file)
    diags = info.value.diagnostics
    theirs = torch.load(resnet34_file, weights_only=True)
    ours = resdsl.load(RESNET18).build(device="meta").state_dict()
    extra = len(set(theirs) - set(ours))
    assert diags[0].message == (f"weights: the checkpoint does not match the spec: 0 missing, {extra} unexpected, "
                                f"0 of another shape (the spec makes {len(ours)} tensors, the checkpoint holds "
                                f"{len(theirs)})")
    text = RESNET18.read_text()
    blocks = {"layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}
    assert len(diags) == 1 + len(blocks)
    for diag, (stage, count) in zip(diags[1:], blocks.items()):
        assert diag.message.startswith(f"weights: stage '{stage}' makes 2 blocks; the checkpoint has {count} "
                                       f"({stage}.0-{stage}.{count - 1}): ")
        assert Path(diag.span.file).resolve() == RESNET18.resolve()
        assert diag.span.line == _line(text, f"{stage}: stage basic({64 << (int(stage[-1]) - 1)}) x 2"
                                       + (", stride=2" if stage != "layer1" else ""))
        assert f"`x {count}`" in diag.hint
    tensors = sum(int(d.message.split(": ")[-1].split()[0]) for d in diags[1:])
    assert tensors == extra  # every unexpected tensor is in a stage's count
    code, _, err = _cli(capsys, "compile", RESNET18, "--weights", resnet34_file)
    assert code == 1 and len(err.splitlines()) <= 25 and f"resnet18.res:{_line(text, 'layer1: stage basic(64) x 2')}:5" in err


def test_renamed_keys_in_order_are_one_paragraph_and_load_by_order(spec, tmp_path, capsys):
    state = _state(spec)
    renamed = collections.OrderedDict(
        (key.replace("blocks.", "layers.").replace("stem.", "conv_in.").replace("fc.", "head."), value)
        for key, value in state.items())
    path = _save(renamed, tmp_path / "renamed.pt")
    err = _error(spec, path)
    assert len(err.diagnostics) == 2
    paragraph = err.diagnostics[1]
    differ = sum(a != b for a, b in zip(renamed, state))
    assert paragraph.message.startswith(f"weights: the checkpoint's {len(state)} tensors match the spec's in count, "
                                        f"shape and order, but {differ} names differ ('conv_in.weight' is "
                                        "'stem.weight' in the spec")
    assert "--weights-by-order" in paragraph.hint and "--write-map" in paragraph.hint
    model = resdsl.load(spec).build(weights=path, weights_by_order=True)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    code, out, _ = _cli(capsys, "compile", spec, "--weights", path, "--weights-by-order")
    assert code == 0 and f"weights by order: {len(state)} tensors matched by position, {differ} renamed, " \
        "e.g. 'conv_in.weight' -> 'stem.weight'" in out
    # weights-diff writes a map that then loads by name
    mapping = tmp_path / "small.map"
    code, out, _ = _cli(capsys, "weights-diff", spec, path, "--write-map", mapping)
    assert code == 1 and f"wrote {mapping}" in out
    code, out, _ = _cli(capsys, "weights-diff", spec, path, "--weights-map", mapping)
    assert code == 0 and f"weights map: renamed {differ} of {len(state)} keys" in out and "matches small" in out
    code, out, _ = _cli(capsys, "compile", spec, "--weights", path, "--weights-map", mapping)
    assert code == 0 and "shapes match" in out


def test_a_shared_prefix_is_offered_as_one_rule(spec, tmp_path, capsys):
    state = _state(spec)
    path = _save({"module." + key: value for key, value in state.items()}, tmp_path / "ddp.pt")
    assert "`^module\\. -> `" in _error(spec, path).diagnostics[1].hint
    mapping = tmp_path / "ddp.map"
    assert _cli(capsys, "weights-diff", spec, path, "--write-map", mapping)[0] == 1
    assert [line for line in mapping.read_text().splitlines() if line and not line.startswith("#")] == \
        ["^module\\. ->"]
    model = resdsl.load(spec).build(weights=path, weights_map=mapping)
    assert torch.equal(model.fc.weight, state["fc.weight"])


# ---- grouping --------------------------------------------------------------------------------
def test_a_shallower_checkpoint_is_one_line_per_stage(spec, tmp_path):
    path = _save(_state(spec, n=2), tmp_path / "n2.pt")
    err = _error(spec, path, n=4)
    assert [d.message for d in err.diagnostics[1:]] == [
        "weights: stage 'blocks' makes 4 blocks; the checkpoint has 2 (blocks.0-blocks.1): 14 missing tensors "
        "under blocks.2-blocks.3"]
    assert err.diagnostics[1].span.line == _line(SMALL, "blocks: stage unit(width) x n")
    assert err.diagnostics[0].message.startswith("weights: the checkpoint does not match the spec: 14 missing, "
                                                 "0 unexpected")


def test_a_shape_mismatch_names_both_shapes_at_its_statement(spec, tmp_path):
    path = _save(_state(spec, k=3), tmp_path / "k3.pt")
    err = _error(spec, path, k=7)
    shape = err.diagnostics[1]
    assert shape.message == "weights: stem.weight: [4, 3, 7, 7] in the spec, [4, 3, 3, 3] in the checkpoint"
    assert shape.span.line == _line(SMALL, "stem: conv k, width") and "stem: conv k, width" in shape.source_line
    assert "^^^" in shape.render()


def test_a_shape_mismatch_in_every_block_is_one_group(spec, tmp_path):
    """A block's conv differs in all 3 instances: one diagnostic at the block's line, not 3 x 4."""
    path = _save(_state(spec, width=4, n=3), tmp_path / "w4.pt")
    err = _error(spec, path, width=8, n=3)
    groups = {d.span.line: d for d in err.diagnostics[1:]}
    conv = groups[_line(SMALL, "conv1: conv 3x3, c")]
    assert conv.message == "weights: blocks.0.conv1.weight: [8, 8, 3, 3] in the spec, [4, 4, 3, 3] in the checkpoint"
    assert conv.notes == ("this statement makes 5 more tensors of another shape: blocks.0.conv1.bias, "
                          "blocks.1.conv1.weight, blocks.1.conv1.bias, ... (2 more)",)
    assert len(err.diagnostics) <= 7  # summary, stem, bn, conv1, bn1, fc: one per statement


def test_tensors_absent_from_every_batchnorm_are_one_group(spec, tmp_path):
    """Checkpoints from before torch 0.4.1 lack num_batches_tracked in every batchnorm."""
    state = {k: v for k, v in _state(spec).items() if not k.endswith("num_batches_tracked")}
    err = _error(spec, _save(state, tmp_path / "old.pt"))
    assert [d.message for d in err.diagnostics[1:]] == [
        "weights: the checkpoint lacks 'num_batches_tracked' in 3 modules: bn, blocks.0.bn1, blocks.1.bn1"]


def test_a_module_under_another_label_is_named_with_a_hint(spec, tmp_path):
    state = {key.replace("fc.", "fc_head."): value for key, value in _state(spec).items()}
    state["stem.extra"] = torch.zeros(1)  # and one more tensor in a module both have
    err = _error(spec, _save(state, tmp_path / "label.pt"))
    messages = [d.message for d in err.diagnostics[1:]]
    assert messages == [  # in the spec's order
        "weights: the checkpoint has 'extra' in 1 module where the spec has none: stem",
        "weights: 'fc' (2 tensors: bias, weight) is not in the checkpoint",
        "weights: the checkpoint has 'fc_head' (2 tensors: bias, weight), which no statement of the spec makes"]
    assert [d.span.line for d in err.diagnostics[1:]] == [_line(SMALL, "stem: conv k, width")] + \
        [_line(SMALL, "fc: linear 2")] + [_line(SMALL, "network small(width: int = 4, k: int = 3, n: int = 2):")]
    assert [d.hint for d in err.diagnostics[2:]] == [None, None]


def test_the_detail_stays_within_a_screen(spec, tmp_path):
    """200 unrelated modules: counts, about 20 lines of detail, then how many were left out."""
    state = dict(_state(spec))
    state.update({f"junk{i}.weight": torch.zeros(1) for i in range(200)})
    err = _error(spec, _save(state, tmp_path / "junk.pt"))
    rendered = err.render().splitlines()
    assert len(rendered) <= 28  # counts, ~20 lines of groups and blanks, what was left out
    last = err.diagnostics[-1]
    shown = len(err.diagnostics) - 2
    assert last.message == f"weights: {200 - shown} more groups of differences ({200 - shown} tensors) not shown"
    assert "--json" in last.hint


def test_grouping_stays_linear_in_the_keys(spec):
    """60,000 checkpoint-only keys under 3,000 numbered parents and 1,000 names: grouping,
    hints and ordering are indexed, never a scan of every key for every group."""
    one = torch.zeros(1)
    state = dict(_state(spec))
    state.update({f"extra{i}.{j}.w": one for i in range(3000) for j in range(10)})
    state.update({f"blocks.{i}.conv{j}.w": one for i in range(1000) for j in range(30)})
    start = time.process_time()
    err = _error(spec, state)
    assert time.process_time() - start < 20
    assert "stage 'blocks' makes 2 blocks; the checkpoint has 1,000 (blocks.0-blocks.999)" in err.render()
    assert len(err.render().splitlines()) <= 28


def test_the_report_is_deterministic(spec, tmp_path, capsys):
    path = _save(_state(spec, width=4, n=3), tmp_path / "w.pt")
    outputs = {_cli(capsys, "weights-diff", spec, path, "-D", "width=8", "-D", "n=2")[1] for _ in range(2)}
    assert len(outputs) == 1


# ---- weights-diff ----------------------------------------------------------------------------
def test_weights_diff_exit_codes_and_json(spec, tmp_path, capsys):
    state = _state(spec)
    same = _save(state, tmp_path / "same.pt")
    code, out, _ = _cli(capsys, "weights-diff", spec, same)
    assert code == 0 and out.strip() == f"{same}: matches small: {len(state)} tensors, same names and shapes"
    code, out, _ = _cli(capsys, "weights-diff", spec, same, "-D", "n=3", "--json")
    result = json.loads(out)
    assert code == 1 and result["match"] is False
    assert result["counts"] == {"missing": 7, "unexpected": 0, "shape": 0, "kind": 0, "not_tensor": 0}
    assert result["missing"] == [k.replace("blocks.0", "blocks.2") for k in state if k.startswith("blocks.0.")]
    code, out, _ = _cli(capsys, "weights-diff", spec, same, "--json")
    assert code == 0 and json.loads(out)["match"] is True


def test_weights_diff_allocates_no_model(tmp_path, capsys):
    """An 8 GiB spec is compared on the meta device: compile would need the memory, diff does not."""
    spec = tmp_path / "huge.res"
    spec.write_text("network huge:\n    input x: [32768]\n    fc: linear 65536\n")
    path = _save({"fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2)}, tmp_path / "small.pt")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, _ = _cli(capsys, "weights-diff", spec, path)
    assert code == 1 and "fc.weight: [65536, 32768] in the spec, [2, 4] in the checkpoint" in out
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # KiB: not 8 GiB


def test_weights_diff_write_map_needs_matching_order(spec, tmp_path, capsys):
    path = _save(_state(spec), tmp_path / "w.pt")
    code, _, err = _cli(capsys, "weights-diff", spec, path, "-D", "n=3", "--write-map", tmp_path / "m.map")
    assert code == 2 and "no map follows" in err and not (tmp_path / "m.map").exists()


def test_map_options_need_weights(spec, capsys):
    code, _, err = _cli(capsys, "compile", spec, "--weights-by-order")
    assert code == 2 and "go with --weights" in err


# ---- mapping ---------------------------------------------------------------------------------
def _map(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.map"
    path.write_text(text)
    return path


def test_a_map_renames_by_the_first_matching_rule(spec, tmp_path, capsys):
    state = _state(spec)
    theirs = {key.replace("blocks.", "body.").replace("stem.", "first."): value for key, value in state.items()}
    path = _save(theirs, tmp_path / "w.pt")
    mapping = _map(tmp_path, "# body blocks\n^body\\.(\\d+)\\. -> blocks.\\1.\n\n^first\\. -> stem.\n"
                   "^first\\. -> never.\n")
    code, out, _ = _cli(capsys, "compile", spec, "--weights", path, "--weights-map", mapping)
    renamed = sum(a != b for a, b in zip(theirs, state))
    assert code == 0 and out.splitlines()[0] == (f"weights map: renamed {renamed} of {len(state)} keys, e.g. "
                                                 "'first.weight' -> 'stem.weight', 'first.bias' -> 'stem.bias', "
                                                 "'body.0.conv1.weight' -> 'blocks.0.conv1.weight'")
    model = resdsl.load(spec).build(weights=path, weights_map={r"^body\.": "blocks.", "^first": "stem"})
    assert torch.equal(model.stem.weight, state["stem.weight"])


@pytest.mark.parametrize("line, message", [
    ("^a( -> b", "missing ), unterminated subpattern"),
    ("(a+)+$ -> b", "exponential time"),
    ("(ab|a)*c -> b", "exponential time"),
    ("(?<=x)a -> b", "lookarounds"),
    ("(a)\\1 -> b", "backreferences"),
    ("^a -> \\2", "invalid group reference 2"),
    ("^a b", "expected `REGEX -> REPLACEMENT`"),
    ("x" * 201 + " -> b", "at most 200 characters"),
])
def test_a_bad_rule_is_located_in_the_map(spec, tmp_path, line, message, capsys):
    path = _save(_state(spec), tmp_path / "w.pt")
    mapping = _map(tmp_path, "# rules\n^ok -> fine\n" + line + "\n")
    err = _error(spec, path, weights_map=mapping)
    assert err.first.span.file == str(mapping) and err.first.span.line == 3 and message in err.first.message
    assert "^" in err.render().splitlines()[2]  # the caret line under the rule
    assert _cli(capsys, "compile", spec, "--weights", path, "--weights-map", mapping)[0] == 1


def test_regex_work_is_bounded_before_matching(spec, tmp_path):
    """Polynomial patterns are costed as (len(key) + 1) ** degree per key and rule: a map
    whose bound passes MAX_MATCH_WORK is refused before any key is matched; one under it
    (100 keys of 255 characters against `.*.*x`) finishes in a fraction of a second."""
    keys = {f"{i:03d}" + "a" * 252: torch.zeros(1) for i in range(100)}
    path = _save(keys, tmp_path / "long.pt")
    worst = _map(tmp_path, ".*.*.*.*x -> y\n")
    err = _error(spec, path, weights_map=worst)
    assert "regex steps, more than the 1e+10 allowed" in err.first.message
    start = time.process_time()
    _error(spec, path, weights_map=_map(tmp_path, ".*.*x -> y\n"))  # accepted, then a mismatch
    assert time.process_time() - start < 10


def test_a_map_making_two_keys_one_is_refused(spec, tmp_path):
    err = _error(spec, _save(_state(spec), tmp_path / "w.pt"), weights_map={r"\.(weight|bias)$": ".w"})
    assert "'stem.weight' and 'stem.bias' both become 'stem.w'" in err.first.message


def test_a_map_file_is_bounded_and_regular(spec, tmp_path):
    path = _save(_state(spec), tmp_path / "w.pt")
    big = _map(tmp_path, "# pad\n" * 20_000)
    assert "more than 65,536 bytes" in _error(spec, path, weights_map=big).first.message
    fifo = tmp_path / "map.fifo"
    os.mkfifo(fifo)
    assert "not a regular file (a FIFO)" in _error(spec, path, weights_map=fifo).first.message


def test_by_order_reports_the_first_divergence(spec, tmp_path, capsys):
    state = list(_state(spec).items())
    state[2], state[3] = state[3], state[2]  # bn.weight and bn.bias have one shape: fine; swap unequal ones
    state[0], state[7] = state[7], state[0]  # stem.weight [4, 3, 3, 3] and blocks.0.conv1.weight [4, 4, 3, 3]
    err = _error(spec, _save(dict(state), tmp_path / "w.pt"), weights_by_order=True)
    assert err.first.message == ("weights by order: tensor 1 differs: the spec's 'stem.weight' is [4, 3, 3, 3]; "
                                 "the checkpoint's 'blocks.0.conv1.weight' is [4, 4, 3, 3]")
    assert err.first.span.line == _line(SMALL, "stem: conv k, width")
    short = _save(dict(_state(spec)[k] for k in []) or dict(list(_state(spec).items())[:5]), tmp_path / "s.pt")
    err = _error(spec, short, weights_by_order=True)
    assert err.first.message.startswith("weights by order: the spec makes 23 tensors, the checkpoint holds 5")


# ---- hostile checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict"])
def test_common_wrappers_are_unwrapped_and_said(spec, tmp_path, wrapper, capsys):
    state = _state(spec)
    path = _save({wrapper: state, "epoch": 90, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pt")
    model = resdsl.load(spec).build(weights=path)
    assert torch.equal(model.fc.weight, state["fc.weight"])
    code, out, _ = _cli(capsys, "compile", spec, "--weights", path)
    assert code == 0 and f"the checkpoint is a dict; its state dict is entry '{wrapper}' (also there: epoch, " \
        "optimizer)" in out


def test_a_dict_of_no_tensors_names_its_keys(spec, tmp_path):
    err = _error(spec, _save({"epoch": 3, "config": {"lr": 0.1}}, tmp_path / "w.pt"))
    assert err.first.message == "cannot load weights: the file holds a dict of no tensors (keys: config, epoch)"
    assert "state_dict, model_state_dict, model" in err.first.hint


def test_non_tensor_values_are_grouped_by_fault(spec, tmp_path):
    state = dict(_state(spec))
    state.update({"stem.weight": 3, "stem.bias": "x", "fc.weight": {"nested": torch.zeros(2)}, "fc.bias": [1.0]})
    err = _error(spec, _save(state, tmp_path / "w.pt"))
    messages = [d.message for d in err.diagnostics[1:]]
    assert messages == ["weights: 'stem.weight' is an int, not a tensor", "weights: 'stem.bias' is a str, not a tensor",
                        "weights: 'fc.weight' is a dict, not a tensor", "weights: 'fc.bias' is a list, not a tensor"]
    assert err.diagnostics[1].span.line == _line(SMALL, "stem: conv k, width")
    assert err.diagnostics[0].message.endswith("0 of another shape, 4 not tensors (the spec makes 23 tensors, the "
                                               "checkpoint holds 23)")


def test_keys_that_are_not_strings_are_one_group(spec, tmp_path):
    state = dict(_state(spec))
    state[0] = torch.zeros(1)
    state[(1, 2)] = torch.zeros(1)
    state["a." * 40 + "w"] = torch.zeros(1)  # deeper than any module path
    err = _error(spec, _save(state, tmp_path / "w.pt"))
    assert err.diagnostics[-1].message == ("weights: 3 keys of the checkpoint are not a module path (0, (1, 2), "
                                           f"{'a.' * 38}a...)")


def test_integer_tensors_for_float_parameters_say_what_is_expected(spec, tmp_path):
    state = dict(_state(spec))
    state["fc.weight"] = state["fc.weight"].to(torch.int64)
    err = _error(spec, _save(state, tmp_path / "w.pt"))
    assert err.diagnostics[1].message == ("weights: 'fc.weight' holds integer values (torch.int64) where the spec "
                                          "has floating-point (torch.float32)")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_float_precisions_are_cast_and_said(spec, tmp_path, dtype, capsys):
    state = _state(spec)
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    path = _save(cast, tmp_path / "w.pt")
    model = resdsl.load(spec).build(weights=path)
    assert model.fc.weight.dtype == torch.float32
    assert torch.equal(model.fc.weight, cast["fc.weight"].to(torch.float32))
    code, out, _ = _cli(capsys, "compile", spec, "--weights", path)
    floats = sum(v.is_floating_point() for v in state.values())
    assert code == 0 and f"weights: cast {floats} {str(dtype)[6:]} tensors to float32" in out


class _Storage:
    """Stands for a storage in a crafted pickle (its persistent id is written by hand)."""


class _Tensor:
    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def __reduce__(self):
        stride = tuple(int(torch.tensor(self.shape[i + 1:], dtype=torch.int64).prod()) for i in range(len(self.shape)))
        return torch._utils._rebuild_tensor_v2, (_Storage(), 0, self.shape, stride, False, collections.OrderedDict())


def _crafted_pickle(numel: int, shape: tuple[int, ...], legacy: bool) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", torch.FloatStorage, "0", "cpu", numel) + ((None,) if legacy else ())
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"fc.weight": _Tensor(shape), "fc.bias": _Tensor((2,))})
    return buffer.getvalue()


def _crafted(path: Path, numel: int, shape: tuple[int, ...], legacy: bool) -> Path:
    """A checkpoint of 8 real floats whose pickle declares ``numel`` and ``shape``."""
    if legacy:
        from torch import serialization

        with open(path, "wb") as out:
            for value in (serialization.MAGIC_NUMBER, serialization.PROTOCOL_VERSION,
                          {"protocol_version": 1001, "little_endian": True,
                           "type_sizes": {"short": 2, "int": 4, "long": 4}}):
                pickle.dump(value, out, protocol=2)
            out.write(_crafted_pickle(numel, shape, True))
            pickle.dump(["0"], out, protocol=2)
            out.write(struct.pack("<q", 8) + bytes(32))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", _crafted_pickle(numel, shape, False))
            archive.writestr("archive/byteorder", "little")
            archive.writestr("archive/data/0", bytes(32))
            archive.writestr("archive/version", "3\n")
    return path


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.res"
    path.write_text("network tiny:\n    input x: [4]\n    fc: linear 2\n")
    return path


def test_the_crafted_files_load_when_honest(tiny, tmp_path):
    """The crafting below is sound: with true sizes both formats load."""
    for legacy in (False, True):
        model = resdsl.load(tiny).build(weights=_crafted(tmp_path / f"ok{legacy}.pt", 8, (2, 4), legacy))
        assert model.fc.weight.shape == (2, 4)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("numel, shape", [(1 << 40, (2, 4)), (8, (1 << 20, 1 << 20))], ids=["storage", "shape"])
def test_enormous_declared_sizes_fail_fast_without_allocating(tiny, tmp_path, monkeypatch, legacy, numel, shape):
    """A 1 KB file declaring 4 TiB: refused before anything of that size exists. For the
    legacy format resdsl's own pass refuses it before torch.load runs at all (torch would
    allocate the declared storage first); the zip format is refused by torch's record check."""
    path = _crafted(tmp_path / "huge.pt", numel, shape, legacy)
    assert path.stat().st_size < 2048
    if legacy:
        monkeypatch.setattr(weights_mod.torch, "load", lambda *a, **k: pytest.fail("torch.load reached"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    err = _error(tiny, path)
    assert time.process_time() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 256 * 1024  # KiB
    assert err.first.message.startswith("cannot load weights: the file is corrupt: ")
    assert err.first.span.file == str(path) and "\n" not in err.first.message


def test_truncated_and_corrupt_zips_are_refused(tiny, tmp_path, capsys):
    whole = _save({"fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2)}, tmp_path / "w.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole[:len(whole) // 2])
    assert "the zip is truncated or corrupt" in _error(tiny, cut).first.message
    assert _cli(capsys, "compile", tiny, "--weights", cut)[0] == 1
    garbled = tmp_path / "garbled.pt"  # a valid zip whose pickle is not one
    with zipfile.ZipFile(garbled, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02garbage")
        archive.writestr("archive/version", "3\n")
    message = _error(tiny, garbled).first.message
    assert message.startswith("cannot load weights: ") and "\n" not in message


def test_links_fifos_and_directories_as_the_checkpoint(tiny, tmp_path, capsys):
    real = _save({"fc.weight": torch.ones(2, 4), "fc.bias": torch.zeros(2)}, tmp_path / "real.pt")
    link = tmp_path / "latest.pt"
    link.symlink_to(real)  # a link to a checkpoint is followed (latest.pt -> epoch_90.pt)
    assert torch.equal(resdsl.load(tiny).build(weights=link).fc.weight, torch.ones(2, 4))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    to_fifo = tmp_path / "to_fifo.pt"
    to_fifo.symlink_to(fifo)
    assert _error(tiny, to_fifo).first.message == "cannot load weights: not a regular file (a FIFO)"
    dangling = tmp_path / "dangling.pt"
    dangling.symlink_to(tmp_path / "gone.pt")
    assert _error(tiny, dangling).first.message == "cannot load weights: No such file or directory"
    loop = tmp_path / "loop.pt"
    loop.symlink_to(loop)
    assert _error(tiny, loop).first.message == "cannot load weights: Too many levels of symbolic links"
    assert _error(tiny, tmp_path).first.message == "cannot load weights: not a regular file (a directory)"
    for path in (to_fifo, dangling, loop, tmp_path):
        assert _cli(capsys, "weights-diff", tiny, path)[0] == 1


def test_the_documented_map_parses_and_renames(spec):
    """docs/from-torch.md's example map: every rule is accepted and does what the text says."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "from-torch.md").read_text()
    block = text.split("one rule a line:\n\n```\n", 1)[1].split("```", 1)[0]
    rules = weights_mod.parse_map(block, "from-torch.md")
    keys = {"module.fc.weight": 0, "backbone.stage2.0.conv.weight": 1, "norm.gamma": 2}
    renamed, notes = weights_mod.rename(keys, rules, resdsl.Span("w.pt"))
    assert list(renamed) == ["fc.weight", "layer2.0.conv.weight", "norm.weight"]
    assert notes[0].startswith("weights map: renamed 3 of 3 keys")
