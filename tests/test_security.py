"""No code execution from a spec, confined imports, and output files that are never
half-written and never the spec itself (issue 7, guarantees 1, 5 and 6)."""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import os
import re
import sys
from pathlib import Path

import pytest

import resdsl
from resdsl import SpecError
from resdsl import cli
from resdsl.io import OutputError, atomic_write

PACKAGE = Path(resdsl.__file__).resolve().parent
SPECS = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"
#: Generated Python is compiled from validated identifiers and repr() of typed values
#: only here (DESIGN.md); everything else in the package must not eval or exec.
CODEGEN = {"backends/codegen/loader.py"}


def _messages(err: SpecError) -> list[str]:
    return [d.message for d in err.diagnostics]


def _load_error(text: str, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        resdsl.loads(text, **kwargs)
    return info.value


# ---- 1. nothing in the package evaluates spec text ----------------------------------
def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).as_posix() not in CODEGEN)


def test_package_sources_are_found():
    names = {p.relative_to(PACKAGE).as_posix() for p in _sources()}
    assert {"api.py", "elaborate/core.py", "expr.py", "syntax/text.py", "syntax/yaml.py"} <= names


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_eval_exec_or_unsafe_yaml_in_package(path):
    """Text grep (as the issue asks) and an AST walk, so neither comments nor
    method calls such as ``model.eval()`` confuse the check."""
    source = path.read_text(encoding="utf-8")
    assert not re.search(r"\byaml\.(load|load_all|unsafe_load|full_load|full_load_all|unsafe_load_all)\(",
                         source)
    assert not re.search(r"Loader\s*=\s*yaml\.(Loader|UnsafeLoader|FullLoader)\b", source)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("eval", "exec", "__import__"), f"{path.name}:{node.lineno}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            # from-torch imports the module a user names (docs/security.md): that one place only
            importer = path.relative_to(PACKAGE).as_posix() == "fromtorch/source.py"
            if isinstance(owner, ast.Name) and owner.id in ("pickle", "marshal") + (() if importer else ("importlib",)):
                pytest.fail(f"{path.name}:{node.lineno}: {owner.id}.{node.func.attr}")


def test_loading_the_zoo_never_calls_eval_or_exec(monkeypatch):
    """Libraries may exec their own code (networkx compiles its decorators); resdsl's
    front end never calls eval or exec itself."""
    callers: list[str] = []

    def spy(real):
        def call(*args, **kwargs):
            callers.append(sys._getframe(1).f_code.co_filename)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(builtins, "eval", spy(builtins.eval))
    monkeypatch.setattr(builtins, "exec", spy(builtins.exec))
    loaded = 0
    for path in sorted(SPECS.glob("*.res")) + sorted((SPECS / "yaml").glob("*.yaml")):
        resdsl.load(path)
        loaded += 1
    assert loaded >= 3
    assert not [c for c in callers if Path(c).resolve().is_relative_to(PACKAGE)]


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!custom 'x'",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
])
def test_yaml_tags_are_rejected_at_their_line_and_never_run(tag, tmp_path):
    marker = tmp_path / "ran"
    text = ("network: tiny\n"
            "input: 'x: [3]'\n"
            f"body:\n  - relu\n  - {tag.replace('{marker}', str(marker))}\n")
    err = _load_error(text, fmt="yaml", filename="tag.yaml")
    assert not marker.exists()
    diag = err.diagnostics[0]
    assert "tag" in diag.message and (diag.span.line, diag.span.column) == (5, 5)


def test_yaml_tag_on_a_top_level_value_is_located():
    err = _load_error("network: !!python/object:os.system tiny\ninput: 'x: [3]'\nbody: [relu]\n", fmt="yaml")
    assert err.diagnostics[0].span.line == 1 and "not allowed" in err.diagnostics[0].message


def test_yaml_aliases_are_rejected_billion_laughs_is_instant():
    laughs = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 12))
    text = ("network: tiny\ninput: 'x: [3]'\n"
            "body: &l0 [relu]\n" + laughs)
    err = _load_error(text, fmt="yaml")
    assert any("alias" in m for m in _messages(err))
    body_alias = "network: tiny\ninput: &i 'x: [3]'\nbody: [relu, *i]\n"
    err = _load_error(body_alias, fmt="yaml")
    assert any("alias" in m for m in _messages(err))
    assert (err.diagnostics[0].span.line, err.diagnostics[0].span.column) == (3, 14)


@pytest.mark.parametrize("name, fragment", [
    ("__class__", "starts with '__'"),
    ("__import__", "starts with '__'"),
    ("exec", "reserved"),
    ("eval", "shadow torch.nn.Module"),
    ("compile", "shadow torch.nn.Module"),
    ("globals", "reserved"),
    ("torch", "reserved"),
    ("class", "Python keyword"),
    ("import", "Python keyword"),
    ("lambda", "Python keyword"),
    ("forward", "shadow torch.nn.Module"),
])
@pytest.mark.parametrize("where", ["label", "block", "param", "network"])
def test_unsafe_identifiers_are_errors_everywhere(name, fragment, where):
    texts = {
        "label": f"network n:\n    input x: [3]\n    {name}: relu\n",
        "block": f"network n:\n    input x: [3]\n    block {name}:\n        relu\n    relu\n",
        "param": f"network n({name}: int = 1):\n    input x: [3]\n    relu\n",
        "network": f"network {name}:\n    input x: [3]\n    relu\n",
    }
    err = _load_error(texts[where])
    assert any(fragment in m for m in _messages(err)), _messages(err)
    assert all(d.span.located for d in err.diagnostics)


@pytest.mark.parametrize("text", [
    "network n:\n    input x: [3]\n    x;import os: relu\n",
    "network n:\n    input x: [3]\n    relu; import os\n",
    "network n:\n    input x: [3]\n    __import__('os').system('id')\n",
    "network n:\n    input x: [3]\n    linear \"2\"\n",
    "network n:\n    input x: [3]\n    relu  # ok\n    `id`\n",
    "network n:\n    input x: [3]\n    linear 2 if True else 3\n",
])
def test_injection_attempts_are_located_syntax_errors(text):
    err = _load_error(text)
    assert err.diagnostics[0].span.line >= 3


# ---- 5. imports stay inside the spec's directory tree --------------------------------
BLOCK = "block b:\n    relu\n"


def _net(imports: str) -> str:
    return f"{imports}network n:\n    input x: [3]\n    b\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_import_inside_the_tree_works(tmp_path):
    _write(tmp_path / "lib" / "blocks.res", BLOCK)
    spec = _write(tmp_path / "net.res", _net('import "lib/blocks.res"\n'))
    assert resdsl.load(spec).num_ops == 1


@pytest.mark.parametrize("target, fragment", [
    ("../outside.res", "leaves the spec's directory"),
    ("lib/../../outside.res", "leaves the spec's directory"),
    ("/etc/passwd", "leaves the spec's directory"),
])
def test_import_escapes_are_errors(tmp_path, target, fragment):
    _write(tmp_path / "outside.res", BLOCK)
    spec = _write(tmp_path / "proj" / "net.res", _net(f'import "{target}"\n'))
    with pytest.raises(SpecError) as info:
        resdsl.load(spec)
    diag = info.value.diagnostics[0]
    assert fragment in diag.message and (diag.span.line, diag.span.column) == (1, 8)


def test_import_through_a_symlink_out_of_the_tree_is_an_error(tmp_path):
    _write(tmp_path / "secret" / "blocks.res", BLOCK)
    (tmp_path / "proj").mkdir()
    os.symlink(tmp_path / "secret", tmp_path / "proj" / "lib")
    spec = _write(tmp_path / "proj" / "net.res", _net('import "lib/blocks.res"\n'))
    with pytest.raises(SpecError) as info:
        resdsl.load(spec)
    assert "outside the spec's directory" in info.value.diagnostics[0].message


def test_symlinked_file_inside_the_tree_is_allowed(tmp_path):
    _write(tmp_path / "real.res", BLOCK)
    os.symlink(tmp_path / "real.res", tmp_path / "alias.res")
    spec = _write(tmp_path / "net.res", _net('import "alias.res"\n'))
    assert resdsl.load(spec).num_ops == 1


def test_import_cycles_are_errors(tmp_path):
    _write(tmp_path / "a.res", 'import "b.res"\n' + BLOCK)
    _write(tmp_path / "b.res", 'import "a.res"\nblock c:\n    relu\n')
    spec = _write(tmp_path / "net.res", _net('import "a.res"\n'))
    with pytest.raises(SpecError) as info:
        resdsl.load(spec)
    cycle = [d for d in info.value.diagnostics if "cycle" in d.message]
    assert cycle and cycle[0].span.file.endswith("b.res") and cycle[0].span.line == 1


def test_self_import_is_a_cycle(tmp_path):
    spec = _write(tmp_path / "net.res", 'import "net.res"\n' + BLOCK + "network n:\n    input x: [3]\n    b\n")
    with pytest.raises(SpecError) as info:
        resdsl.load(spec)
    assert any("cycle" in m for m in _messages(info.value))


def test_import_of_a_fifo_is_an_error_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.res")
    spec = _write(tmp_path / "net.res", _net('import "pipe.res"\n'))
    with pytest.raises(SpecError) as info:
        resdsl.load(spec)
    assert "not a regular file" in info.value.diagnostics[0].message


def test_imports_need_a_file_on_disk():
    err = _load_error(_net('import "blocks.res"\n'))
    assert "imports need a spec file on disk" in err.diagnostics[0].message


def test_invalid_utf8_is_located_at_the_bad_byte(tmp_path):
    spec = tmp_path / "bad.res"
    spec.write_bytes(b"network n:\n    input x: [3]\n    re\xfflu\n")
    with pytest.raises(SpecError) as info:
        resdsl.load(spec)
    span = info.value.diagnostics[0].span
    assert (span.line, span.column) == (3, 7)


# ---- 6. atomic output files ------------------------------------------------------------
def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".resdsl-tmp."))


def test_atomic_write_replaces_whole_file(tmp_path):
    out = tmp_path / "model.py"
    out.write_text("old\n")
    atomic_write(out, "new\n" * 1000)
    assert out.read_text() == "new\n" * 1000
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, failing):
    out = tmp_path / "model.py"
    out.write_text("old\n")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if failing == "write":
        real_fdopen = os.fdopen

        class HalfWriter(io.BufferedWriter):
            def write(self, data):
                super().write(data[: len(data) // 2])
                boom()

        monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode, buffering=0)))
    else:
        monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OutputError, match="No space left"):  # names the path: a usage error
        atomic_write(out, "new\n" * 1000)
    assert out.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    out = tmp_path / "fresh.py"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(out, "x = 1\n")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_atomic_write_refuses_the_spec_by_any_name(tmp_path, monkeypatch):
    spec = _write(tmp_path / "net.res", "network n:\n")
    os.link(spec, tmp_path / "hard.res")
    os.symlink(spec, tmp_path / "soft.res")
    monkeypatch.chdir(tmp_path)
    for name in (spec, "net.res", "./sub/../net.res", tmp_path / "hard.res", tmp_path / "soft.res"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OutputError):
            atomic_write(name, "oops", protect=(spec,))
    assert spec.read_text() == "network n:\n"


def test_atomic_write_into_a_missing_directory_is_an_output_error(tmp_path):
    with pytest.raises(OutputError):
        atomic_write(tmp_path / "nope" / "model.py", "x")


def _output_commands() -> list[str]:
    """Subcommands of the CLI that take -o/--output."""
    parser = cli.make_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return sorted(name for name, sub in subparsers.choices.items()
                  if any("-o" in a.option_strings for a in sub._actions))


def _run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, err.getvalue()


def test_cli_has_output_commands():
    assert "render" in _output_commands()


@pytest.mark.parametrize("command", [c for c in _output_commands() if c != "from-torch"])  # reads no file
def test_cli_output_never_overwrites_the_spec(command, tmp_path):
    spec = _write(tmp_path / "net.res", "network n:\n    input x: [3, 8, 8]\n    conv 3, 4\n")
    before = spec.read_bytes()
    target = spec if command != "render" else tmp_path / "net.dot"
    if command == "render":  # render chooses the format by suffix: protect a spec named .dot
        target = _write(tmp_path / "net.dot", spec.read_text())
        spec, before = target, target.read_bytes()
    code, err = _run_cli(command, str(spec), "-o", str(target))
    assert code == 2, err
    assert spec.read_bytes() == before
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("command", _output_commands())
def test_cli_output_is_written_whole(command, tmp_path):
    spec = _write(tmp_path / "net.res", "network n:\n    input x: [3, 8, 8]\n    conv 3, 4\n")
    out = tmp_path / ("out.dot" if command == "render" else "out.py")
    source = [str(spec)] if command != "from-torch" else ["torchvision.models.resnet18", "--input", "3,32,32"]
    code, err = _run_cli(command, *source, "-o", str(out))
    assert code == 0, err
    assert out.stat().st_size > 0 and _leftovers(tmp_path) == []
