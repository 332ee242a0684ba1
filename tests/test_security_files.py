"""Issue 12, the front end's file handling: no grammar cache anyone else can plant,
imports loaded once and opened race-free, cheap diagnostics once the cap is reached,
line numbers that agree with the lexer, and diagnostics that print no control
characters."""

from __future__ import annotations

import getpass
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import resdsl
from resdsl import SpecError, api, cli, errors
from resdsl.errors import Diagnostic, ErrorList, LineIndex, Span
from resdsl.syntax import grammar

ROOT = Path(__file__).resolve().parents[1]
NET = "network n:\n    input x: [3]\n    b\n"
BLOCK = "block b:\n    relu\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _load_error(path: Path, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        resdsl.load(path, **kwargs)
    return info.value


def _messages(err: SpecError) -> list[str]:
    return [d.message for d in err.diagnostics]


# ---- 1. no grammar cache in a shared directory --------------------------------------------
def _parser_options(monkeypatch) -> tuple[str, dict]:
    """The grammar text and keyword arguments get_parser gives Lark."""
    seen: list[tuple[str, dict]] = []
    monkeypatch.setattr(grammar, "Lark", lambda text, **kwargs: seen.append((text, kwargs)))
    grammar.get_parser.__wrapped__()
    return seen[0]


def _lark_cache_paths(tmpdir: Path, monkeypatch) -> list[Path]:
    """Every file Lark's ``cache=True`` would read for resdsl's grammar, computed as
    lark/lark.py does: gettempdir()/.lark_cache[_grammar]_USER_SHA256_MAJOR_MINOR.tmp."""
    import hashlib

    import lark

    text, options = _parser_options(monkeypatch)
    unhashable = ("transformer", "postlex", "lexer_callbacks", "edit_terminals", "_plugins")
    paths = []
    for extra in ({"cache": True}, {"cache": True, "cache_grammar": True}):
        merged = {**options, **extra}
        options_str = "".join(k + str(v) for k, v in merged.items() if k not in unhashable)
        key = (text + options_str + lark.__version__ + str(sys.version_info[:2])).encode("utf-8")
        kind = "cache_grammar" if merged.get("cache_grammar") else "cache"
        for digest in (hashlib.sha256(key).hexdigest(), hashlib.md5(key).hexdigest()):  # lark >= 1.2, 1.1
            for user in sorted({getpass.getuser(), "unknown"}):
                name = f".lark_{kind}_{user}_{digest}_{sys.version_info[0]}_{sys.version_info[1]}.tmp"
                paths.append(tmpdir / name)
    return paths


class _Plant:
    """Unpickling this creates ``marker``: proof that a planted file was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _run_front_end(tmpdir: Path, spec: Path) -> None:
    """resdsl.loads and `resdsl check` in fresh interpreters with TMPDIR=tmpdir."""
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(ROOT)}
    code = "import resdsl; resdsl.loads('network n:\\n    input x: [3]\\n    relu\\n')"
    for command in ([sys.executable, "-c", code], [sys.executable, "-m", "resdsl.cli", "check", str(spec)]):
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr


def test_the_parser_is_built_without_a_disk_cache(monkeypatch):
    _, options = _parser_options(monkeypatch)
    assert not options.get("cache")


def test_a_planted_lark_cache_pickle_is_never_unpickled(tmp_path, monkeypatch):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    marker = tmp_path / "pwned"
    paths = _lark_cache_paths(tmpdir, monkeypatch)
    for path in paths:
        # The first line is what lark compares; the pickle after it runs on load either way.
        digest = path.name.split("_")[-3].encode()
        path.write_bytes(digest + b"\n" + pickle.dumps(_Plant(str(marker))))
    planted = {p: p.read_bytes() for p in paths}
    spec = _write(tmp_path / "net.res", "network n:\n    input x: [3]\n    relu\n")
    _run_front_end(tmpdir, spec)
    assert not marker.exists()
    assert {p: p.read_bytes() for p in paths} == planted
    assert sorted(tmpdir.iterdir()) == sorted(paths)  # nothing else written there either


def test_a_planted_lark_cache_symlink_is_never_followed(tmp_path, monkeypatch):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    victim = _write(tmp_path / "victim.txt", "precious\n")
    paths = _lark_cache_paths(tmpdir, monkeypatch)
    for number, path in enumerate(paths):
        # Half point at an existing file (overwrite), half at a new one (create).
        os.symlink(victim if number % 2 == 0 else tmp_path / f"created{number}", path)
    spec = _write(tmp_path / "net.res", "network n:\n    input x: [3]\n    relu\n")
    _run_front_end(tmpdir, spec)
    assert victim.read_text() == "precious\n"
    assert not list(tmp_path.glob("created*"))
    assert sorted(tmpdir.iterdir()) == sorted(paths)


# ---- 2. imports: each file once, bounded ---------------------------------------------------
@pytest.fixture
def parse_counts(monkeypatch) -> dict[str, int]:
    """How often api parsed each file (by base name)."""
    counts: dict[str, int] = {}
    real = api.parse_text

    def counting(text, name, errs):
        counts[Path(name).name] = counts.get(Path(name).name, 0) + 1
        return real(text, name, errs)

    monkeypatch.setattr(api, "parse_text", counting)
    return counts


def test_a_file_imported_many_times_is_parsed_once(tmp_path, parse_counts):
    _write(tmp_path / "b.res", BLOCK)
    spec = _write(tmp_path / "net.res", 'import "b.res"\n' * 500 + 'import "./b.res"\n' + NET)
    assert resdsl.load(spec).num_ops == 1
    assert parse_counts == {"net.res": 1, "b.res": 1}


def test_diamond_imports_share_one_definition(tmp_path, parse_counts):
    _write(tmp_path / "common.res", "block c:\n    relu\n")
    _write(tmp_path / "a.res", 'import "common.res"\nblock a:\n    c\n')
    # lib/b.res imports lib/common.res: another file defining c, a real duplicate.
    _write(tmp_path / "lib" / "b.res", 'import "common.res"\nblock bb:\n    c\n')
    _write(tmp_path / "lib" / "common.res", "block c:\n    relu\n")
    spec = _write(tmp_path / "net.res", 'import "a.res"\nimport "a.res"\n'
                  "network n:\n    input x: [3]\n    a\n")
    assert resdsl.load(spec).num_ops == 1
    assert parse_counts == {"net.res": 1, "a.res": 1, "common.res": 1}
    spec.write_text('import "a.res"\nimport "lib/b.res"\nnetwork n:\n    input x: [3]\n    a\n    bb\n')
    err = _load_error(spec)
    twice = [d for d in err.diagnostics if "defined twice" in d.message]
    assert len(twice) == 1 and twice[0].span.file.endswith(os.path.join("lib", "common.res"))


def test_a_duplicate_in_a_file_imported_twice_is_reported_once(tmp_path):
    _write(tmp_path / "b.res", BLOCK + BLOCK)
    spec = _write(tmp_path / "net.res", 'import "b.res"\nimport "b.res"\n' + NET)
    err = _load_error(spec)
    assert sum("defined twice" in m for m in _messages(err)) == 1


def test_a_cycle_reached_through_a_loaded_file_is_still_a_cycle(tmp_path):
    _write(tmp_path / "a.res", 'import "b.res"\n' + BLOCK)
    _write(tmp_path / "b.res", 'import "a.res"\nblock c:\n    relu\n')
    spec = _write(tmp_path / "net.res", 'import "a.res"\nimport "b.res"\nimport "a.res"\n' + NET)
    err = _load_error(spec)
    assert [m for m in _messages(err) if "cycle" in m] == ["import cycle: net.res -> a.res -> b.res -> a.res"]


def test_two_levels_of_fan_out_are_bounded(tmp_path, parse_counts):
    """8,000 imports of a file that imports another 8,000 times: 64 million loads before.
    (120 KB files: the file-size limit is raised so the import bound is what answers.)"""
    _write(tmp_path / "c.res", BLOCK)
    _write(tmp_path / "a.res", 'import "c.res"\n' * 8000)
    spec = _write(tmp_path / "net.res", 'import "a.res"\n' * 8000 + NET)
    start = time.process_time()
    err = _load_error(spec, limits=resdsl.Limits(max_file_bytes=131_072))
    assert time.process_time() - start < 2.0
    bound = [d for d in err.diagnostics if "import statements" in d.message]
    assert bound and f"{api.MAX_IMPORTS:,}" in bound[0].message and bound[0].span.line > 0
    assert parse_counts == {"net.res": 1, "a.res": 1, "c.res": 1}


def test_the_spec_and_its_imports_together_are_bounded(tmp_path):
    limits = resdsl.Limits(max_file_bytes=1_000)
    for name in "abc":
        _write(tmp_path / f"{name}.res", f"block {name}:\n    relu\n" + "# padding\n" * 90)
    spec = _write(tmp_path / "net.res", 'import "a.res"\nimport "b.res"\nimport "c.res"\n' + NET)
    err = _load_error(spec, limits=limits)
    over = [d for d in err.diagnostics if "imports hold more than" in d.message]
    assert over and over[0].span.line == 3  # net (0.1 KB) + a + b + c (0.9 KB each) > 2 x 1,000


# ---- 3. a full ErrorList builds nothing; source lines indexed once ---------------------
def test_a_full_error_list_looks_up_no_source_line(monkeypatch):
    errs = ErrorList(limit=3)
    errs.sources["f"] = "a\nb\nc\n"
    for n in range(3):
        errs.add(Span("f", n + 1, 1, n + 1, 2), f"problem {n}")
    assert errs.full

    def forbidden(*args):
        raise AssertionError("a diagnostic was built after the cap")

    monkeypatch.setattr(errs, "source_line", forbidden)
    monkeypatch.setattr(errors, "Diagnostic", forbidden)
    errs.add(Span("f", 1, 1, 1, 2), "one too many")
    assert len(errs.diagnostics) == 3


def test_source_lines_are_indexed_once_per_file(monkeypatch):
    built: list[str] = []

    class Counting(LineIndex):
        def __init__(self, text):
            built.append(text)
            super().__init__(text)

    monkeypatch.setattr(errors, "LineIndex", Counting)
    text = "".join(f"line {n}\n" for n in range(10_000))
    errs = ErrorList()
    errs.sources["f"] = text
    errs.sources["g"] = "x\n"
    for n in range(1, 40):
        errs.add(Span("f", n * 200, 1, n * 200, 2), f"problem {n}")
    errs.add(Span("g", 1, 1, 1, 2), "in g")
    assert len(built) == 2
    assert errs.diagnostics[0].source_line == "line 199"
    errs.sources["f"] = "new\n"  # a file's text replaced: its index follows
    errs.add(Span("f", 1, 1, 1, 2), "again")
    assert errs.diagnostics[-1].source_line == "new"


def test_a_flood_of_duplicate_blocks_is_cheap(tmp_path):
    spec = _write(tmp_path / "dups.res", BLOCK * 6000 + NET)  # 108 KB: 2.3 s of CPU before
    start = time.process_time()
    err = _load_error(spec, limits=resdsl.Limits(max_file_bytes=131_072))
    assert time.process_time() - start < 2.0
    assert len(err.diagnostics) == 50


# ---- 4. imports are opened once: a swapped link never leaks a file from outside --------
SECRET = "SECRET_TOKEN_1234"


def _race(swap_target_a: Path, swap_target_b: Path, link: Path, spec: Path, loads: int) -> list[str]:
    """Load ``spec`` ``loads`` times while a thread keeps swapping ``link`` between two targets."""
    stop = threading.Event()
    temp = link.with_name(link.name + ".new")

    def swapper():
        targets = (swap_target_a, swap_target_b)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                os.symlink(targets[n % 2], temp)
                os.replace(temp, link)
            except OSError:
                pass

    outputs: list[str] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        for _ in range(loads):
            try:
                net = resdsl.load(spec)
                outputs.append(repr(net) + repr(sorted(net.blocks)))
            except SpecError as err:
                outputs.append(str(err) + repr(err.to_dict()))
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    return outputs


def test_a_file_link_swapped_mid_check_never_leaks_the_outside_file(tmp_path):
    _write(tmp_path / "secret.res", f"{SECRET} is not a spec\n")
    proj = tmp_path / "proj"
    inside = _write(proj / "inside.res", BLOCK)
    os.symlink(inside, proj / "lib.res")
    spec = _write(proj / "net.res", 'import "lib.res"\n' + NET)
    outputs = _race(inside, tmp_path / "secret.res", proj / "lib.res", spec, 1500)
    assert not [o for o in outputs if SECRET in o]
    assert any("ok" in o or "Net" in o for o in outputs)  # the race did not simply break loading


def test_a_directory_link_swapped_mid_check_never_leaks_the_outside_file(tmp_path):
    _write(tmp_path / "outside" / "blocks.res", f"{SECRET} is not a spec\n")
    proj = tmp_path / "proj"
    _write(proj / "real" / "blocks.res", BLOCK)
    os.symlink("real", proj / "lib")
    spec = _write(proj / "net.res", 'import "lib/blocks.res"\n' + NET)
    outputs = _race(Path("real"), tmp_path / "outside", proj / "lib", spec, 1500)
    assert not [o for o in outputs if SECRET in o]


def test_links_inside_the_tree_still_work(tmp_path):
    _write(tmp_path / "real" / "blocks.res", BLOCK)
    os.symlink("real", tmp_path / "lib")  # a directory link
    os.symlink(tmp_path / "real" / "blocks.res", tmp_path / "abs.res")  # absolute, inside
    os.symlink("lib/../real/blocks.res", tmp_path / "dots.res")  # '..' inside a link target
    for name in ("lib/blocks.res", "abs.res", "dots.res"):
        spec = _write(tmp_path / "net.res", f'import "{name}"\n' + NET)
        assert resdsl.load(spec).num_ops == 1, name


def test_a_link_climbing_out_of_the_tree_is_refused(tmp_path):
    _write(tmp_path / "outside.res", BLOCK)
    os.symlink("../outside.res", _write(tmp_path / "proj" / "x", "").with_name("up.res"))
    spec = _write(tmp_path / "proj" / "net.res", 'import "up.res"\n' + NET)
    err = _load_error(spec)
    assert "outside the spec's directory" in err.diagnostics[0].message


def test_an_imported_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.res")
    spec = _write(tmp_path / "net.res", 'import "pipe.res"\n' + NET)
    assert "not a regular file" in _load_error(spec).diagnostics[0].message


# ---- 5. hostile paths are located errors; lines agree with the lexer; no control chars --
def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_an_import_path_with_a_nul_byte_is_a_located_error(tmp_path, capsys):
    spec = _write(tmp_path / "net.res", 'import "a\x00b.res"\n' + NET)
    code, out = _cli(["check", str(spec)], capsys)
    assert code == 1, out
    diag = _load_error(spec).diagnostics[0]
    assert "NUL" in diag.message and (diag.span.line, diag.span.column) == (1, 8)


@pytest.mark.parametrize("links", [{"l.res": "l.res"}, {"a.res": "b.res", "b.res": "a.res"},
                                   {"d": "d/d"}])
def test_an_import_of_a_link_loop_is_a_located_error(tmp_path, capsys, links):
    for name, target in links.items():
        os.symlink(target, tmp_path / name)
    first = next(iter(links))
    path = first if first != "d" else "d/x.res"
    spec = _write(tmp_path / "net.res", f'import "{path}"\n' + NET)
    code, out = _cli(["check", str(spec)], capsys)
    assert code == 1, out
    diag = _load_error(spec).diagnostics[0]
    assert (diag.span.line, diag.span.column) == (1, 8) and "symbolic links" in diag.message


@pytest.mark.parametrize("hops, ok", [(30, True), (1500, False)])
def test_a_long_chain_of_absolute_links_is_followed_one_hop_at_a_time(tmp_path, hops, ok):
    """Regression: an absolute link target was resolved with realpath, which followed the
    rest of a 1,500-link chain itself (RecursionError, exit 3); 999 imports of it took 10 s."""
    _write(tmp_path / "real.res", BLOCK)
    os.symlink(tmp_path / "real.res", tmp_path / f"l{hops}.res")
    for i in range(hops - 1, -1, -1):
        os.symlink(tmp_path / f"l{i + 1}.res", tmp_path / f"l{i}.res")
    spec = _write(tmp_path / "net.res", 'import "l0.res"\n' * 200 + NET)
    start = time.process_time()
    if ok:
        assert resdsl.load(spec).num_ops == 1
    else:
        diag = _load_error(spec).diagnostics[0]
        assert diag.span.line == 1 and "more than 40 symbolic links" in diag.message
    assert time.process_time() - start < 2.0


BREAKS = ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", BREAKS, ids=[f"U+{ord(c):04X}" for c in BREAKS])
def test_line_breaking_characters_in_comments_do_not_shift_the_caret(char):
    text = f"network n:\n    input x: [3]\n    relu # a{char}b\n    bogus 3\n"
    with pytest.raises(SpecError) as info:
        resdsl.loads(text)
    diag = info.value.diagnostics[0]
    assert (diag.span.line, diag.source_line) == (4, "    bogus 3")
    assert "4 |     bogus 3" in diag.render()
    # A syntax error after the comment, reported by the parser's own path.
    with pytest.raises(SpecError) as info:
        resdsl.loads(text.replace("bogus 3", "conv (3"))
    diag = info.value.diagnostics[0]
    assert diag.span.line == 4 and diag.source_line == "    conv (3"


@pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029"])
def test_yaml_line_breaks_in_comments_do_not_shift_the_caret(char):
    text = f'network: n\ninput: "x: [3]"\nbody:\n  - relu # a{char}# b\n  - bogus 3\n'
    with pytest.raises(SpecError) as info:
        resdsl.loads(text, fmt="yaml")
    diag = info.value.diagnostics[0]
    assert (diag.span.line, diag.span.column, diag.source_line) == (5, 5, "  - bogus 3")


@pytest.mark.parametrize("char", ["\f", "\v", "\x1c"])
def test_characters_yaml_forbids_are_located(char):
    text = f'network: n\ninput: "x: [3]"\nbody:\n  - relu # a{char}b\n  - relu\n'
    with pytest.raises(SpecError) as info:
        resdsl.loads(text, fmt="yaml")
    diag = info.value.diagnostics[0]
    assert (diag.span.line, diag.span.column) == (4, 13)


def test_line_index_agrees_with_the_lexer():
    text = "a\fb\nc\u2028d\r\ne"
    index = LineIndex(text)
    assert [index.line(n) for n in (1, 2, 3, 4)] == ["a\fb", "c\u2028d\r", "e", None]
    assert index.position(text.index("e")) == (3, 1) and index.position(text.index("d")) == (2, 3)


HOSTILE = ["\x1b[31m", "\x1b]0;title\x07", "\r", "\x08", "\u202e", "\u2028", "\x00", "\x7f", "\x9b"]


@pytest.mark.parametrize("chars", HOSTILE, ids=[repr(c) for c in HOSTILE])
def test_diagnostics_print_no_control_characters(tmp_path, capsys, chars):
    spec = _write(tmp_path / f"n{chars.replace(chr(0), '')}.res", f"network n:\n    input x: [3]\n    relu # {chars}\n"
                  f"    conv 3x3, 8{chars}\n")
    code, out = _cli(["check", str(spec)], capsys)
    assert code == 1 and "error" in out
    assert all(c.isprintable() or c == "\n" for c in out), repr(out)


def test_escaped_source_lines_keep_the_caret_under_the_marked_text():
    line = "    a\x1b[2Jb \u202e bogus_name rest"
    column = line.index("bogus_name") + 1
    diag = Diagnostic(Span("f", 7, column, 7, column + len("bogus_name")), "unknown 'bogus_name'",
                      source_line=line)
    shown, carets = diag.render().splitlines()[1:3]
    start = carets.index("^")
    assert shown[start:start + len("bogus_name")] == "bogus_name"
    assert carets.count("^") == len("bogus_name")
    assert "\x1b" not in shown and "\\x1b[2J" in shown and "\\u202e" in shown
    assert diag.to_dict()["source_line"] == line  # JSON keeps the raw text (json escapes it)


def test_hints_over_many_names_do_not_scan_the_pool_with_difflib(monkeypatch):
    """difflib over 6,000 similar block names cost 80 ms a hint (4 s for 50 diagnostics)."""
    import difflib

    compared: list[object] = []

    class Counting(difflib.SequenceMatcher):
        def __init__(self, *args, **kwargs):
            compared.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(difflib, "SequenceMatcher", Counting)
    names = [f"block{n}" for n in range(6000)]
    assert errors.did_you_mean("blokc17", names) == "did you mean 'block17'?"
    assert errors.did_you_mean("x" * 100_000, names) is None
    assert not compared
    assert errors.did_you_mean("blokc", ["block", "other"]) == "did you mean 'block'?"  # small pools: difflib
    assert compared
