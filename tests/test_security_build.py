"""Issue 12, section 3: build and compile keep the limits, never re-read files, refuse
what cannot fit in memory, check --weights before torch reads them, and write only
plain values into generated code."""

from __future__ import annotations

import enum
import io
import os
import signal
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import resdsl  # noqa: E402
from resdsl import Limits  # noqa: E402
from resdsl.backends import torch as backend  # noqa: E402
from resdsl.backends.codegen import frozen_params as _frozen_params, generate  # noqa: E402
from resdsl.backends.codegen.params import Flow  # noqa: E402
from resdsl.backends.codegen.text import lit as _lit  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.elaborate import Elaborator  # noqa: E402
from resdsl.graph import op_node  # noqa: E402

SPECS = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"
TINY = "network tiny(classes: int = 3):\n    input x: [8]\n    fc1: linear 16\n    relu\n    head: linear classes\n"


@contextmanager
def counted_nodes(monkeypatch):
    """Count every op any elaboration makes while the block runs."""
    counter = {"nodes": 0}
    original = Elaborator.add_node

    def add_node(self, *args, **kwargs):
        counter["nodes"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Elaborator, "add_node", add_node)
    yield counter
    monkeypatch.setattr(Elaborator, "add_node", original)


@contextmanager
def no_file_reads(monkeypatch):
    """Fail on any spec read (code generation must work from the checked net)."""
    import resdsl.api

    def refuse(*_args, **_kwargs):
        raise AssertionError("code generation read a spec file")

    monkeypatch.setattr(resdsl.api, "_read", refuse)
    monkeypatch.setattr(resdsl.api, "load", refuse)
    yield


@contextmanager
def deadline(seconds: int):
    """A hang (a FIFO opened for reading) fails the test instead of blocking the suite."""
    def expire(*_):
        raise TimeoutError("blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---- 1. code generation works from the checked net, under its limits --------------------
RUNAWAY = ("network g(n: int = 1):\n    input x: [4]\n    stage b x 1 + (n - 1) * 99999\n"
           "    block b:\n        relu\n")


def test_codegen_keeps_the_callers_limits(monkeypatch):
    """Regression: a spec of 3 ops under max_nodes=100 grew to 100,000 units in generate().
    Code generation now elaborates nothing at all."""
    net = resdsl.loads(RUNAWAY, limits=Limits(max_nodes=100))
    with counted_nodes(monkeypatch) as count, no_file_reads(monkeypatch):
        text = generate(net).text
    assert count["nodes"] == 0
    assert "if n != 1:" in text  # n sets a stage count: frozen, and guarded


def test_codegen_never_reads_the_spec_again(tmp_path, monkeypatch):
    path = tmp_path / "g.res"
    path.write_text(TINY)
    net = resdsl.load(path)
    path.write_text(RUNAWAY)  # the file changed since: the net is what was checked
    with no_file_reads(monkeypatch):
        text = generate(net).text
    assert text == generate(resdsl.loads(TINY, filename=str(path))).text


def test_loads_builds_without_any_file(tmp_path, monkeypatch):
    """Regression: loads(text).build() loaded an unrelated inline.res from the working directory."""
    (tmp_path / "inline.res").write_text("network g(classes: int = 2):\n    input x: [4]\n"
                                         "    stage b x classes * 50000\n    block b:\n        relu\n")
    monkeypatch.chdir(tmp_path)
    net = resdsl.loads(TINY)
    with counted_nodes(monkeypatch) as count, no_file_reads(monkeypatch):
        model = net.build()
    assert model.head.out_features == 3
    assert count["nodes"] == 0  # no second elaboration
    # Better than before (every parameter of a loads() net was frozen): classes is live.
    assert generate(net).module_class()(classes=5).head.out_features == 5


def test_many_parameters_cost_no_elaboration(monkeypatch):
    """Regression: 200 parameters cost 200 reloads of the file (4 s), then a re-elaboration
    budget that froze the parameters left when it ran out. Now every one is decided from
    the graph, so all 200 (each written as itself) are live."""
    params = ", ".join(f"p{i}: int = {i + 1}" for i in range(200))
    body = "\n".join(f"    l{i}: linear p{i}" for i in range(200))
    net = resdsl.loads(f"network g({params}):\n    input x: [4]\n{body}\n")
    with counted_nodes(monkeypatch) as count:
        frozen = _frozen_params(net)
    assert count["nodes"] == 0
    assert frozen == {}


@pytest.mark.parametrize(("spec", "frozen"), [
    ("cifar_resnet.res", {"n"}), ("preact_resnet.res", {"n"}), ("residual_mlp.res", {"depth"}),
    ("unet.res", set()), ("resnet50.res", set()), ("yaml/preact_resnet.yaml", {"n"}),
])
def test_zoo_parameters_are_frozen_only_where_the_code_cannot_follow(spec, frozen):
    assert set(_frozen_params(resdsl.load(SPECS / spec))) == frozen


def test_flow_follows_block_arguments_and_shadowing():
    text = ("network g(n: int = 2, k: int = 3, w: int = 4):\n    input x: [4]\n"
            "    block inner(count: int):\n        stage leaf x count\n"
            "    block leaf:\n        relu\n"
            "    block shadow(n: int):\n        stage leaf x n\n"
            "    inner(k)\n    shadow(2)\n    linear n\n    linear w\n")
    net = resdsl.loads(text)
    assert Flow(net.ir, net.blocks).names() == {"k"}  # through inner's count; shadow's n is its own
    assert set(_frozen_params(net)) == {"k"}
    model = generate(net).module_class()(n=6, w=7)
    assert model(torch.zeros(2, 4)).shape == (2, 7)


def test_unused_parameters_need_no_check(monkeypatch):
    net = resdsl.loads("network g(a: int = 1, b: float = 0.5, c: bool = true):\n    input x: [4]\n    relu\n")
    with counted_nodes(monkeypatch) as count:
        assert _frozen_params(net) == {}
    assert count["nodes"] == 0


# ---- 4. values: plain types only ---------------------------------------------------------------
class Evil(int):
    def __repr__(self) -> str:
        return "__import__('os').system('echo PWNED')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __index__(self) -> int:
        return 99


class Color(enum.IntEnum):
    RED = 5


class EvilFloat(float):
    def __repr__(self) -> str:
        return "exit()"


class EvilStr(str):
    def strip(self, *_args):  # noqa: D102
        return "exit()"

    def __str__(self) -> str:
        return "exit()"


@pytest.mark.parametrize("value", [Evil(5), Color.RED, EvilStr("5")], ids=["int-repr", "IntEnum", "str"])
def test_subclassed_values_reach_the_code_as_plain_ints(value):
    net = resdsl.loads(TINY, classes=value)
    assert type(net.params["classes"]) is int and net.params["classes"] == 5
    text = generate(net).text
    assert "PWNED" not in text and "exit()" not in text and "Color" not in text
    assert "classes: int = 5" in text
    assert net.build().head.out_features == 5


def test_float_subclass_becomes_a_plain_float():
    net = resdsl.loads("network g(s: float = 1.0):\n    input x: [4]\n    residual scale=s:\n        linear 4\n",
                       s=EvilFloat(0.5))
    assert type(net.params["s"]) is float
    assert "exit()" not in generate(net).text


def test_foreign_objects_are_located_errors_without_their_str():
    class Loud:
        def __str__(self) -> str:
            raise RuntimeError("ran")

    with pytest.raises(resdsl.SpecError) as info:
        resdsl.loads(TINY, classes=Loud())
    assert "not a valid int" in info.value.first.message and info.value.first.span.line == 1


def test_the_literal_writer_takes_exact_types_only():
    assert _lit(5) == "5" and _lit((3, 3)) == "3" and _lit(True) == "True"
    for bad in (Evil(3), Color.RED, EvilFloat(1.5), (Evil(1), 2), float("inf")):
        with pytest.raises(TypeError):
            _lit(bad)


# ---- 2. memory -----------------------------------------------------------------------------------
WIDE = "network wide:\n    input x: [1024]\n    fc: linear 1024\n    relu\n"


@pytest.fixture
def small_machine(monkeypatch):
    """A machine with 2 MiB to spare (the check reads /proc/meminfo; this pins it)."""
    monkeypatch.setattr(backend, "available_memory", lambda device=None: 2 << 20)


def test_available_memory_is_known_on_linux():
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("not Linux")
    assert backend.available_memory() > 0


def test_build_refuses_weights_that_cannot_fit(small_machine):
    net = resdsl.loads(WIDE)  # 1,049,600 parameters: 4 MiB of float32
    with pytest.raises(resdsl.SpecError) as info:
        net.build()
    first = info.value.first
    assert first.span.line == 3 and "more than the 2.0 MiB available" in first.message
    assert net.build(device="meta").fc.weight.is_meta  # allocates nothing: not checked


def test_compile_too_big_for_one_sample_is_a_spec_error(tmp_path, small_machine, capsys):
    spec = tmp_path / "huge.res"
    spec.write_text("network huge:\n    input x: [1, 1024, 1024]\n    relu\n")  # 4 MiB per sample
    assert main(["compile", str(spec)]) == 1
    assert "huge.res:2:" in capsys.readouterr().err


def test_compile_batch_too_big_is_a_usage_error(tmp_path, small_machine, capsys):
    spec = tmp_path / "small.res"
    spec.write_text("network small:\n    input x: [64]\n    fc: linear 64\n")
    assert main(["compile", str(spec), "--batch", "1000000000"]) == 2
    assert "--batch 1,000,000,000" in capsys.readouterr().err
    assert main(["compile", str(spec), "--batch", "4"]) == 0


def test_probes_check_memory_before_building(tmp_path, small_machine, capsys):
    spec = tmp_path / "small.res"
    spec.write_text("network small:\n    input x: [64]\n    residual:\n        fc: linear 64\n")
    assert main(["analyze", str(spec), "--init", "--batch", "100000"]) == 2
    assert main(["analyze", str(spec), "--gradients", "--batch", "100000"]) == 2
    assert main(["analyze", str(spec), "--init", "--batch", "4"]) == 0


def test_activation_bound_counts_an_ops_input_and_output():
    net = resdsl.loads("network g:\n    input x: [8]\n    linear 1000\n    relu\n    linear 2\n")
    elements, node = backend.activation_elements(net)
    assert elements == 1008 and op_node(net.graph, node).op == "linear"
    assert backend.activation_elements(net, training=True)[0] == 8 + 1000 + 1000 + 2


# ---- 3. --weights ------------------------------------------------------------------------------------
SMALL = "network small:\n    input x: [4]\n    fc: linear 2\n"


@pytest.fixture
def small_spec(tmp_path) -> Path:
    path = tmp_path / "small.res"
    path.write_text(SMALL)
    return path


def _weights_error(spec: Path, weights: Path) -> resdsl.SpecError:
    with deadline(20), pytest.raises(resdsl.SpecError) as info:
        resdsl.load(spec).build(weights=weights)
    return info.value


def test_a_fifo_as_weights_is_refused_not_waited_on(small_spec, tmp_path):
    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    err = _weights_error(small_spec, fifo)
    assert "not a regular file" in err.first.message and err.first.span.file == str(fifo)
    with deadline(20):
        assert main(["compile", str(small_spec), "--weights", str(fifo)]) == 1


def test_a_directory_as_weights_is_refused(small_spec, tmp_path):
    assert "not a regular file" in _weights_error(small_spec, tmp_path).first.message


def _rezip(state: dict, path: Path, compress: int) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info), compress_type=compress)


def test_torch_writes_every_entry_stored(tmp_path):
    """The check below rests on this: a torch.save zip has no compressed entry."""
    path = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(100), "b": torch.ones(3, dtype=torch.int64)}, path)
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


def test_a_deflated_checkpoint_is_refused_before_it_inflates(small_spec, tmp_path):
    """Regression: a 1.9 MB deflated checkpoint inflated to 2.4 GB."""
    bomb = tmp_path / "bomb.pt"
    _rezip({"fc.weight": torch.zeros(1 << 22), "fc.bias": torch.zeros(2)}, bomb, zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 100_000  # 16 MiB of zeros
    err = _weights_error(small_spec, bomb)
    assert "is compressed" in err.first.message
    stored = tmp_path / "stored.pt"  # the same entries stored load (the rezip itself is sound)
    _rezip({"fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2)}, stored, zipfile.ZIP_STORED)
    resdsl.load(small_spec).build(weights=stored)


def test_a_checkpoint_far_bigger_than_the_spec_is_refused(small_spec, tmp_path):
    big = tmp_path / "big.pt"
    torch.save({"fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2), "junk": torch.zeros(1 << 19)}, big)
    assert "more than the" in _weights_error(small_spec, big).first.message


def test_a_legacy_checkpoint_still_loads(small_spec, tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"fc.weight": torch.ones(2, 4), "fc.bias": torch.zeros(2)}, legacy,
               _use_new_zipfile_serialization=False)
    model = resdsl.load(small_spec).build(weights=legacy)
    assert torch.equal(model.fc.weight, torch.ones(2, 4))


@pytest.mark.parametrize("value", [3, "x", {"nested": torch.zeros(2)}, [1.0, 2.0]],
                         ids=["int", "str", "dict", "list"])
def test_a_non_tensor_value_is_located_and_names_its_key(small_spec, tmp_path, value, capsys):
    path = tmp_path / "w.pt"
    torch.save({"fc.weight": value, "fc.bias": torch.zeros(2)}, path)
    err = _weights_error(small_spec, path)
    fault = err.diagnostics[1]  # after the counts
    assert "'fc.weight'" in fault.message and "not a tensor" in fault.message
    assert fault.span.line == 3  # the statement that makes fc
    assert main(["compile", str(small_spec), "--weights", str(path)]) == 1


def test_integer_tensors_for_float_parameters_are_refused(small_spec, tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.zeros(2, 4, dtype=torch.int64), "fc.bias": torch.zeros(2)}, path)
    message = _weights_error(small_spec, path).diagnostics[1].message
    assert "'fc.weight' holds integer values (torch.int64)" in message


def test_weights_diagnostics_never_read_an_unrelated_file(tmp_path, monkeypatch):
    """A loads() net's spans name inline.res: a file of that name is not its source."""
    (tmp_path / "inline.res").write_text("secret line 1\nsecret line 2\nsecret line 3\n")
    monkeypatch.chdir(tmp_path)
    net = resdsl.loads(SMALL)
    with pytest.raises(resdsl.SpecError) as info:
        net.build(weights={"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(2)})
    assert "secret" not in info.value.render()


def test_a_checkpoint_bigger_than_the_free_memory_is_refused(small_spec, tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    torch.save({"fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2)}, path)
    model = resdsl.load(small_spec).build()
    monkeypatch.setattr(backend, "available_memory", lambda device=None: 64)
    with pytest.raises(resdsl.SpecError) as info:
        backend.load_weights(model, resdsl.load(small_spec), path)
    assert "of memory available" in info.value.first.message


def test_a_parameter_named_like_a_generated_class_does_not_shadow_it():
    """Regression (issue 12, section 5): parameter ``Unit`` beside block ``unit`` made the
    generated ``__init__`` call the int (exit 3)."""
    net = resdsl.loads("network g(Unit: int = 4):\n    input x: [4]\n    block unit(w: int):\n"
                       "        linear w\n    unit(Unit)\n")
    text = generate(net).text
    assert "class Unit_(nn.Module):" in text
    assert net.build()(torch.zeros(1, 4)).shape == (1, 4)


def test_a_parameter_the_code_spells_by_coincidence_is_still_checked():
    """The spec never names ``width``, but the projection's width equals it, so the code is
    written in terms of it (Ctx.match): it must not be taken for an unused parameter."""
    net = resdsl.loads("network g(width: int = 3):\n    input x: [3, 5, 7]\n    residual shortcut=C:\n"
                       "        layernorm\n")
    assert "width" in generate(net).text.split("super().__init__()")[1]
    assert set(_frozen_params(net)) == {"width"}
    with pytest.raises(ValueError, match="regenerate it"):
        generate(net).module_class()(width=5)
