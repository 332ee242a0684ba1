"""The zoo as data (resdsl/zoo/registry.py, `resdsl zoo`, zoo names on the command line)
and the standard library (`import "std/NAME"`), issue 14 items 1 and 2."""

from __future__ import annotations

import importlib
import json
import os
import re
import textwrap
from pathlib import Path

import pytest

import resdsl
import resdsl.std
from resdsl import SpecError
from resdsl.cli import main
from resdsl.zoo import ENTRIES, UnknownModelError, ZooEntry

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "resdsl" / "zoo"
STD = REPO / "resdsl" / "std"
#: The convention of a reference that is no constructor (registry.py's docstring).
CITATION = re.compile(r"[A-Z][A-Za-z-]+( et al\.| and [A-Z][A-Za-z-]+)? (19|20)\d\d, .+ \(.+\)")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- the registry ------------------------------------------------------------------------------

def test_names_are_unique_and_usable_on_the_command_line():
    names = resdsl.zoo.names()
    assert len(names) == len(set(names)) == len(ENTRIES)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    assert names[:7] == ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                         "wide_resnet50_2", "resnext50_32x4d")


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_every_entry_loads_with_its_params(entry: ZooEntry):
    net = resdsl.zoo.load(entry.name)
    for key, value in entry.params.items():  # each override is a parameter of the spec, applied
        assert net.params[key] == value
    assert Path(entry.spec).parts[:2] == ("resdsl", "zoo") and (REPO / entry.spec).is_file()
    assert resdsl.zoo.path(entry.name).samefile(REPO / entry.spec)
    assert entry.constructor is not None or CITATION.fullmatch(entry.reference), entry.reference


def test_every_zoo_spec_is_used_by_an_entry():
    used = {e.spec for e in ENTRIES}
    files = {p.relative_to(REPO).as_posix() for p in ZOO.glob("*.res")}
    assert files and files <= used


TORCHVISION = [e for e in ENTRIES if (e.constructor or "").startswith("torchvision.")]


@pytest.mark.parametrize("entry", TORCHVISION, ids=lambda e: e.name)
def test_torchvision_references_name_a_constructor_of_the_same_size(entry: ZooEntry):
    """The dotted reference is importable and builds a model with the spec's parameter count
    (on the meta device: nothing is allocated)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    module, _, name = entry.reference.rpartition(".")
    constructor = getattr(importlib.import_module(module), name)
    with torch.device("meta"):
        model = constructor()
    assert sum(p.numel() for p in model.parameters()) == resdsl.zoo.load(entry.name).num_params


def test_the_reference_convention_tells_constructors_from_citations():
    assert resdsl.zoo.entry("resnet18").constructor == "torchvision.models.resnet18"
    cifar = resdsl.zoo.entry("cifar_resnet20")
    assert cifar.constructor is None and CITATION.fullmatch(cifar.reference)
    assert ZooEntry("x", "resdsl/zoo/x.res", {}, "torchvision.models.video.r3d_18").constructor


def test_entries_are_frozen():
    entry = resdsl.zoo.entry("unet_same")
    with pytest.raises(AttributeError):
        entry.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.params["pad"] = 0  # type: ignore[index]
    assert entry.defines() == "-D pad=1 -D size=512"


def test_load_takes_overrides_on_top_of_the_entry():
    assert resdsl.zoo.load("cifar_resnet20").num_params == 269_722
    assert resdsl.zoo.load("cifar_resnet20", n=5).num_params == 464_154  # ResNet-32
    assert resdsl.zoo.load("cifar_resnet20", shortcut="B").num_params == 269_722 + 2_752
    assert resdsl.zoo.load("unet_same", size=256).output_shape == (2, 256, 256)


def test_unknown_names_say_what_was_meant():
    with pytest.raises(UnknownModelError, match=r"no zoo model named 'resnet19': did you mean 'resnet18'\?"):
        resdsl.zoo.load("resnet19")
    with pytest.raises(LookupError, match="`resdsl zoo` lists them"):
        resdsl.zoo.entry("no_such_model_at_all")


# ---- the command line --------------------------------------------------------------------------

def test_zoo_json_schema_and_determinism(capsys):
    code, first, _ = _run(capsys, "zoo", "--json")
    assert code == 0
    _, second, _ = _run(capsys, "zoo", "--json")
    assert first == second
    listed = json.loads(first)
    assert [item["name"] for item in listed] == list(resdsl.zoo.names())
    for item, entry in zip(listed, ENTRIES):
        assert set(item) == {"name", "spec", "params", "reference"}
        assert isinstance(item["spec"], str) and isinstance(item["reference"], str)
        assert isinstance(item["params"], dict)
        assert item == entry.to_dict()
    assert listed[7] == {"name": "cifar_resnet20", "spec": "resdsl/zoo/cifar_resnet.res", "params": {"n": 3},
                         "reference": "He et al. 2015, ResNet-20 (CIFAR-10)"}


def test_zoo_table_lists_every_entry(capsys):
    code, out, _ = _run(capsys, "zoo")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "reference", "spec"]
    for entry, line in zip(ENTRIES, lines[1:]):
        assert line.startswith(entry.name + " ") and entry.reference in line
        assert line.endswith(f"{entry.spec} {entry.defines()}".strip())


def test_a_zoo_name_replaces_the_spec_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository: no file of that name
    code, out, _ = _run(capsys, "check", "cifar_resnet56", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["params"]["n"] == 9 and result["num_params"] == 853_018
    assert Path(result["file"]).samefile(ZOO / "cifar_resnet.res")
    code, out, _ = _run(capsys, "check", "cifar_resnet56", "-D", "n=3", "--json")  # the user's -D wins
    assert code == 0 and json.loads(out)["num_params"] == 269_722


def test_compile_a_zoo_name_writes_its_source(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(capsys, "compile", "cifar_resnet20", "-o", "net.py", "--json")
    assert code == 0 and json.loads(out)["shapes_match"]
    assert "resdsl from cifar_resnet.res" in (tmp_path / "net.py").read_text()


def test_an_existing_file_wins_over_a_zoo_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet18").write_text("network mine:\n    input x: [4]\n    fc: linear 2\n")
    code, out, _ = _run(capsys, "check", "resnet18", "--json")
    assert code == 0 and json.loads(out)["name"] == "mine"
    (tmp_path / "resnet34").mkdir()  # a directory of that name is there too: not a zoo name either
    code, _, err = _run(capsys, "check", "resnet34")
    assert code == 2 and "a directory" in err


def test_an_unknown_name_is_a_usage_error_with_a_suggestion(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "compile", "resnet19")
    assert code == 2
    assert "no such file, and no zoo model of that name; did you mean 'resnet18'?" in err


# ---- the standard library ----------------------------------------------------------------------

BASIC_NET = """import "std/resnet"

network tiny(rank: int = 2):
    input x: [3, 16, 16]
    conv1: conv 3, 8
    layer1: stage basic(8) x 2
    layer2: stage basic(16) x 1, stride=2
    layer3: stage bottleneck(4, 32) x 1, stride=2
"""


def test_std_import_works_from_anywhere(tmp_path):
    assert not tmp_path.resolve().is_relative_to(REPO)
    spec = tmp_path / "net.res"
    spec.write_text(BASIC_NET)
    net = resdsl.load(spec)
    assert net.output_shape == (32, 4, 4)
    assert any(Path(p).samefile(STD / "resnet.res") for p in net.inputs)
    assert resdsl.loads(BASIC_NET).num_params == net.num_params  # from a string: no file needed
    same = resdsl.loads(BASIC_NET.replace('"std/resnet"', '"std/resnet.res"'))
    assert same.num_params == net.num_params


def test_std_resnet_is_torchvisions_basic_block_in_every_rank():
    """The 2-D block is torchvision's BasicBlock key for key; 1-D and 3-D take the same spec."""
    torch = pytest.importorskip("torch")
    from torchvision.models.resnet import BasicBlock, conv1x1

    text = 'import "std/resnet"\nnetwork n:\n    input x: [8, {}]\n    b: basic(16, stride=2)\n'
    ours = resdsl.loads(text.format("10, 10")).build().b.state_dict()
    downsample = torch.nn.Sequential(conv1x1(8, 16, 2), torch.nn.BatchNorm2d(16))
    theirs = BasicBlock(8, 16, stride=2, downsample=downsample).state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in theirs.items()]
    for spatial, kernel in (("10", (3,)), ("6, 6, 6", (3, 3, 3))):
        block = resdsl.loads(text.format(spatial)).build().b.state_dict()
        assert list(block) == list(ours) and block["conv1.weight"].shape == (16, 8, *kernel)
        assert "conv1.bias" not in block


def test_std_import_in_the_yaml_form():
    text = "imports: [std/resnet]\nnetwork: n\ninput: 'x: [4, 12]'\nbody:\n  - 'layer1: stage basic(4) x 2'\n"
    assert resdsl.loads(text, fmt="yaml").num_params == resdsl.loads(
        'import "std/resnet"\nnetwork n:\n    input x: [4, 12]\n    layer1: stage basic(4) x 2\n').num_params
    err = _error(text.replace("std/resnet", "std/resnt"), fmt="yaml")
    assert (err.span.line, err.span.column) == (1, 11) and "no standard-library module 'resnt'" in err.message


def _error(text: str, *, path: Path | None = None, **kwargs) -> "resdsl.Diagnostic":
    with pytest.raises(SpecError) as info:
        if path is None:
            resdsl.loads(text, **kwargs)
        else:
            path.write_text(text)
            resdsl.load(path)
    return info.value.diagnostics[0]


def _with_import(path: str) -> str:
    return f'# a comment\nimport "{path}"\n\nnetwork n:\n    input x: [4]\n    relu\n'


def test_an_unknown_std_module_is_located_with_the_modules_listed(tmp_path):
    err = _error(_with_import("std/resnte"), path=tmp_path / "net.res")
    assert (err.span.file, err.span.line, err.span.column) == (str(tmp_path / "net.res"), 2, 8)
    assert err.message == "no standard-library module 'resnte'"
    assert err.hint == f"did you mean 'resnet'? (std modules: {', '.join(resdsl.std.modules())})"


@pytest.mark.parametrize("path", ["std/../x", "std/../../etc/passwd", "std/", "std", "std//etc/passwd",
                                  "std/Resnet", "std/a/b", "std/resnet.res.res", "std/.res", "std/résnet",
                                  "std/%2e%2e", "std/re net", "std/" + "a" * 65])
def test_hostile_std_names_are_refused(path: str, tmp_path):
    err = _error(_with_import(path), path=tmp_path / "net.res")
    assert (err.span.line, err.span.column) == (2, 8)
    assert "does not name a standard-library module" in err.message
    assert "resnet" in err.hint.partition("std modules: ")[2]  # the shipped modules are listed


def test_a_users_std_folder_neither_shadows_nor_is_reachable(tmp_path):
    """A local std/resnet.res is not what `import "std/resnet"` reads, and `./std/...` is refused."""
    (tmp_path / "std").mkdir()
    (tmp_path / "std" / "resnet.res").write_text("block basic(out: int):\n    linear out\n")
    spec = tmp_path / "net.res"
    spec.write_text('import "std/resnet"\nnetwork n:\n    input x: [4, 8, 8]\n    basic(4)\n')
    keys = list(resdsl.load(spec).build(device="meta").state_dict())
    assert any(k.endswith("conv1.weight") for k in keys) and not any("linear" in k for k in keys)
    err = _error(_with_import("./std/resnet.res"), path=tmp_path / "other.res")
    assert "the folder name 'std' is reserved" in err.message


@pytest.fixture
def fake_std(tmp_path, monkeypatch):
    """A standard library in a temporary folder (the package's own is read-only data)."""
    folder = tmp_path / "std"
    folder.mkdir()
    monkeypatch.setattr(resdsl.std, "directory", lambda: folder)
    return folder


def test_std_modules_import_std_modules_each_once(fake_std, tmp_path):
    (fake_std / "base.res").write_text("block unit(out: int):\n    linear out\n    relu\n")
    (fake_std / "left.res").write_text('import "std/base"\nblock left(out: int):\n    unit(out)\n')
    (fake_std / "right.res").write_text('import "std/base.res"\nblock right(out: int):\n    unit(out)\n')
    net = resdsl.loads('import "std/left"\nimport "std/right"\nnetwork n:\n    input x: [4]\n'
                       '    a: left(8)\n    b: right(8)\n')
    assert net.num_params == 4 * 8 + 8 + 8 * 8 + 8
    assert len(net.inputs) == 3  # base read once
    assert resdsl.std.modules() == ["base", "left", "right"]


def test_a_std_module_imports_no_user_file_and_cycles_are_reported(fake_std):
    (fake_std / "rel.res").write_text('import "blocks.res"\nblock b(out: int):\n    linear out\n')
    err = _error(_with_import("std/rel"))
    assert err.span.file.endswith("rel.res") and (err.span.line, err.span.column) == (1, 8)
    assert "imports only other standard-library modules" in err.message
    (fake_std / "a.res").write_text('import "std/b"\n')
    (fake_std / "b.res").write_text('import "std/a"\n')
    assert "import cycle: inline.res -> a.res -> b.res -> a.res" in _error(_with_import("std/a")).message


def test_std_follows_no_symbolic_link(fake_std, tmp_path):
    """Even a link to a valid blocks file, inside or outside the library, is refused."""
    good = tmp_path / "good.res"
    good.write_text("block b(out: int):\n    linear out\n")
    (fake_std / "outside.res").symlink_to(good)
    (fake_std / "real.res").write_text("block c(out: int):\n    linear out\n")
    (fake_std / "inside.res").symlink_to("real.res")
    (fake_std / "loop.res").symlink_to("loop.res")
    for name in ("outside", "inside", "loop"):
        err = _error(_with_import(f"std/{name}"))
        assert "symbolic link" in err.message, name
    assert resdsl.std.modules() == ["real"]  # links are not listed either
    (fake_std / "folder.res").mkdir()
    assert "not a regular file" in _error(_with_import("std/folder")).message


def test_relative_imports_from_a_string_still_need_a_file():
    err = _error(_with_import("blocks.res"))
    assert err.message == "imports need a spec file on disk" and 'only "std/NAME"' in err.hint


def test_std_modules_are_plain_blocks_only_files():
    """Every shipped module loads, defines blocks and no network."""
    for name in resdsl.std.modules():
        text = (STD / f"{name}.res").read_text()
        assert "\nnetwork " not in text and not text.startswith("network ")
        assert resdsl.loads(f'import "std/{name}"\nnetwork n:\n    input x: [4]\n    relu\n').num_ops == 1
    assert os.listdir(STD) and "resnet" in resdsl.std.modules()


# ---- the documentation's examples ----------------------------------------------------------------

def _fenced(path: Path, marker: str) -> str:
    blocks = [textwrap.dedent(b.split("\n", 1)[1]) for b in path.read_text().split("```")[1::2]]
    return next(b for b in blocks if marker in b)


def test_the_language_references_std_example_loads():
    net = resdsl.loads(_fenced(REPO / "docs" / "language.md", 'import "std/resnet"'))
    assert net.input_shape == (12, 1000) and net.output_shape == (5,)


def test_the_zoo_pages_python_example_runs():
    namespace: dict = {}
    exec(_fenced(REPO / "docs" / "zoo.md", "resdsl.zoo.load"), namespace)  # noqa: S102 - our own docs
    assert namespace["net"].output_shape == (2, 256, 256)
