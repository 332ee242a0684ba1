"""Regressions found by attacking issue 16's tools (from-torch, weight diagnostics, diff)."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import resdsl
from resdsl.fromtorch import from_torch

torch.set_num_threads(1)


class _InplaceTrap(nn.Module):
    """An in-place ReLU changes the caller's ``x``: the forward is conv(relu(x)) + relu(x)."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.relu(x))
        return out + x


def test_exact_only_when_outputs_agree_on_an_untouched_input() -> None:
    """The check fed the source's in-place-changed input to the spec's build and said exact."""
    model = _InplaceTrap()
    result = from_torch(model, (4, 6, 6))
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    ours = resdsl.loads(result.text).build()
    ours.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        differ = float((model(x.clone()) - ours.eval()(x.clone())).abs().max()) > 1e-3
    assert result.exact is not differ, result.verdict


def test_a_failed_strict_load_names_the_keys() -> None:
    """The verdict said only 'Error(s) in loading state_dict for Linear:'."""
    from resdsl.fromtorch.verify import verify

    text = "network n:\n    input x: [4]\n    head: linear 3\n"
    verdict = verify(text, nn.Linear(4, 3), (4,))
    assert not verdict.exact
    assert "head.weight" in verdict.problem and "Unexpected" in verdict.problem, verdict.problem


@pytest.mark.parametrize("source, call, message", [
    ("raise ValueError('at import')\n", "f", "importing attack16_user failed: ValueError: at import"),
    ("x = (\n", "f", "SyntaxError"),
    ("import attack16_no_such_dependency\n", "f", "No module named 'attack16_no_such_dependency'"),
    ("def f():\n    raise RuntimeError('boom')\n", "f", "raised RuntimeError: boom"),
    ("import torch\ndef f(width=8):\n    return torch.nn.Conv2d(3, width, 3)\n", "f -D width=-1",
     "f(width=-1) raised RuntimeError"),
])
def test_a_failing_user_module_is_their_error_not_an_internal_one(source, call, message, tmp_path, monkeypatch,
                                                                   capsys) -> None:
    """Anything but TypeError from the user's callable, and any import failure but a missing
    module, was 'internal error: this is a bug in resdsl' (exit 3)."""
    from resdsl.cli import main

    (tmp_path / "attack16_user.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "attack16_user", raising=False)
    name, *defines = call.split()
    assert main(["from-torch", f"attack16_user.{name}", *defines, "--input", "3,8,8"]) == 2
    err = capsys.readouterr().err
    assert message in err and "internal error" not in err, err


class _ModuleList(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x)) + x
        return x


@pytest.mark.parametrize("model, what", [
    (nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), "is an nn.Sequential: its weights are named "
     "by position ('0.weight')"),
    (_ModuleList(), "calls 'layers.0' (Conv2d), a module of a child"),
])
def test_names_no_label_can_have_are_a_located_error(model, what) -> None:
    """A root nn.Sequential and an nn.ModuleList iterated in forward were written with made-up
    names (conv_0.weight for 0.weight, layers.0.weight), a spec that cannot load their weights."""
    with pytest.raises(resdsl.SpecError) as caught:
        from_torch(model, (4, 6, 6))
    text = caught.value.render()
    assert what in text and "its forward is at" in text, text


_TWO = "network n:\n    input x: [4]\n    a: linear 4\n    b: linear 4\n"


def test_a_written_map_renames_keys_longer_than_shown() -> None:
    """`weights-diff --write-map` wrote rules for keys cut to 80 characters ('mmm...'),
    which matched nothing: the map it wrote renamed 0 keys."""
    from resdsl.backends import weights as W

    net = resdsl.loads(_TWO)
    model = net.build()
    long = "encoder." * 11 + "proj"  # 92 characters before '.weight'
    state = {(long + k[1:] if k.startswith("a.") else k): v for k, v in model.state_dict().items()}
    matched = W.match(net, W.expected_of(model), W.Checkpoint(state, W.Span("ck.pt")))
    assert matched.renamed is not None
    renamed, _ = W.rename(state, W.parse_map(W.write_map(matched.renamed)), W.Span("ck.pt"))
    assert list(renamed) == list(model.state_dict())


def test_by_order_refuses_the_spec_s_own_names_in_another_order(tmp_path) -> None:
    """A checkpoint holding b's tensors before a's (one shape) loaded a's weights into b
    with --weights-by-order, and weights-diff said 'matches: same names and shapes'."""
    net = resdsl.loads(_TWO)
    state = net.build().state_dict()
    path = tmp_path / "swapped.pt"
    torch.save({k: state[k] for k in ["b.weight", "b.bias", "a.weight", "a.bias"]}, path)
    with pytest.raises(resdsl.SpecError, match="names the spec's tensors in another order"):
        net.build(weights=str(path), weights_by_order=True)
    model = net.build(weights=str(path))  # by name it is right
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_by_order_still_renumbers() -> None:
    """A renumbering (conv_1 -> conv_0, conv_2 -> conv_1) is a chain, not a swap: loaded."""
    from resdsl.backends import weights as W

    net = resdsl.loads(_TWO)
    model = net.build()
    expected = W.expected_of(model)
    names = {"a": "b", "b": "c"}
    state = {names[k[0]] + k[1:]: v for k, v in model.state_dict().items()}
    loaded, notes = W.by_order(expected, state, net, W.Span("ck.pt"))
    assert list(loaded) == list(expected) and "4 renamed" in notes[0]
    many = {f"l{i}.weight": i for i in range(1, 20001)}  # a long chain is walked once, not once per key
    start = time.process_time()
    assert W._swapped({k: f"l{i - 1}.weight" for i, k in enumerate(many, 1)}) == []
    assert time.process_time() - start < 5


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))) + x


@pytest.mark.parametrize("make, said", [
    (lambda: _Net().half(), "float16 on cpu"),
    (lambda: _Net().to(torch.bfloat16), "bfloat16 on cpu"),
    (lambda: _Net().double(), "float64 on cpu"),
    (lambda: _Net().to("meta"), "on meta"),
])
def test_a_model_not_in_float32_on_the_cpu_is_told_so(make, said) -> None:
    """It was 'the module does not run on an input of shape [1, 4, 6, 6]: ... Input type
    (float) and bias type (c10::Half) should be the same', hint: give the input shape."""
    with pytest.raises(resdsl.SpecError) as caught:
        from_torch(make(), (4, 6, 6))
    text = caught.value.render()
    assert said in text and "model.float().cpu()" in text and "input of shape" not in text, text


def test_a_model_in_train_mode_comes_back_unchanged() -> None:
    model = _Net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert from_torch(model, (4, 6, 6)).exact
    assert all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("shape, said", [((4, 4096, 4096), "its input alone is 256.0 MiB"),
                                         ((4, 256, 256), "its activations pass 2.0 MiB")])
def test_an_input_too_large_for_memory_is_refused_before_it_is_used(shape, said, monkeypatch) -> None:
    """`--input 3,65536,65536` (48 GiB) went straight to torch.randn; and tracing keeps every
    module's input, so a large input kept all the activations at once, unbounded."""
    import sys

    convert = sys.modules["resdsl.fromtorch.convert"]  # the package's `convert` is the function
    monkeypatch.setattr(convert, "available_memory", lambda: 8 << 20)  # 8 MiB: 1 MiB kept at most
    with pytest.raises(resdsl.SpecError) as caught:
        from_torch(_Net(), shape)
    assert said in caught.value.render() and "of memory available" in caught.value.render()


def test_a_map_file_with_a_byte_order_mark_renames(tmp_path) -> None:
    """A map saved with a UTF-8 BOM (Windows editors) made the BOM part of its first
    pattern ('\\ufeff^module\\.'), which matched nothing: 'renamed 0 of 4 keys'."""
    from resdsl.backends import weights as W

    path = tmp_path / "dp.map"
    path.write_bytes("^module\\. ->\r\n".encode("utf-8-sig"))
    renamed, notes = W.rename({"module.a.weight": torch.zeros(1)}, W.read_map(path), W.Span("ck.pt"))
    assert list(renamed) == ["a.weight"], notes


@pytest.mark.parametrize("name", ["foo bar", "if", "9lives", "r\u00e9sum\u00e9", "x:\n    input y: [1]\n#"])
def test_a_network_name_that_cannot_be_written_is_refused_first(name, capsys) -> None:
    """--name went into `network NAME:` as given: after the whole trace a spec that does
    not parse (or, with a newline, spec text of the user's making) was written."""
    from resdsl.cli import main

    assert main(["from-torch", "torchvision.models.resnet18", "--input", "3,32,32", "--name", name]) == 2
    captured = capsys.readouterr()
    assert "must be an ASCII identifier" in captured.err and "network" not in captured.out


def test_no_map_or_by_order_is_offered_for_crossed_names() -> None:
    """b's tensors first, then a's with one renamed: the report offered --weights-by-order
    and --write-map wrote `^b\\. -> a.`, `^a\\. -> b.`, loading both crossed."""
    from resdsl.backends import weights as W

    net = resdsl.loads(_TWO)
    model = net.build()
    state = model.state_dict()
    crossed = {"b.weight": state["b.weight"], "b.bias": state["b.bias"], "a.weight": state["a.weight"],
               "a.offset": state["a.bias"]}
    matched = W.match(net, W.expected_of(model), W.Checkpoint(crossed, W.Span("ck.pt")))
    assert matched.renamed is None
    text = resdsl.SpecError(matched.diagnostics).render()
    assert "by-order" not in text and "'offset'" in text, text
