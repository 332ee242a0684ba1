"""Output files: never over an input, never over something that is not a regular file,
never over a file the user did not name; bad output paths are usage errors (exit 2)
found before any work; SIGTERM and SIGKILL leave no temporary file for long; drawings
too large to lay out are refused and the layout program runs with a timeout."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import resdsl
from resdsl import cli
from resdsl.cli import main
from resdsl.io import STALE_AFTER_S, TEMP_PREFIX, OutputError, atomic_write, check_output, remove_stale_temps
from resdsl.render import graphviz as gv
from resdsl.render import DrawingTooLarge, MAX_LAYOUT_SIZE, build_view, layout_size, to_dot

ROOT = Path(__file__).resolve().parents[1]
SPEC = "network m:\n    input x: [4]\n    a: linear 4\n"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A directory with a spec that imports a block file."""
    (tmp_path / "lib.res").write_text("block blk:\n    linear 4\n")
    (tmp_path / "main.res").write_text('import "lib.res"\nnetwork m:\n    input x: [4]\n    a: blk\n')
    (tmp_path / "m.res").write_text(SPEC)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX) or p.name.endswith(".tmp"))


def _renderer(monkeypatch, renderer: gv.Renderer) -> None:
    import resdsl.render

    monkeypatch.setattr(gv, "find_renderer", lambda fmt="svg": renderer)
    monkeypatch.setattr(resdsl.render, "find_renderer", lambda fmt="svg": renderer)


def _no_renderer(monkeypatch):
    monkeypatch.setattr(gv.shutil, "which", lambda name: None)
    monkeypatch.setattr(gv, "_beside_python", lambda name: None)


# ---- inputs are never replaced -----------------------------------------------------------
@pytest.mark.parametrize("command", ["compile", "render"])
def test_an_imported_file_is_never_replaced(work, capsys, command):
    before = (work / "lib.res").read_bytes()
    os.symlink("lib.res", work / "lib.dot")  # render needs a known suffix: a link to the import
    os.link(work / "lib.res", work / "hard.py")  # another name for it
    targets = {"compile": ["lib.res", "lib.dot", "hard.py"], "render": ["lib.dot"]}[command]
    for target in targets:
        assert main([command, "main.res", "-o", target]) == 2
        assert "input of this run" in capsys.readouterr().err
    assert (work / "lib.res").read_bytes() == before and (work / "lib.dot").is_symlink()


def test_imports_are_checked_before_the_build(work, monkeypatch, capsys):
    def no_build(*args, **kwargs):
        raise AssertionError("built before the output was checked")

    monkeypatch.setattr(resdsl.Net, "build", no_build)
    assert main(["compile", "main.res", "-o", "lib.res"]) == 2


def test_api_render_protects_imports(work):
    net = resdsl.load(work / "main.res")
    os.symlink("lib.res", work / "lib.svg")
    with pytest.raises(OutputError, match="input"):
        net.render(work / "lib.svg")
    assert (work / "lib.res").read_text().startswith("block blk")


# ---- only regular files are replaced ---------------------------------------------------
@pytest.mark.parametrize("command, name", [("render", "x.dot"), ("compile", "x.py")])
def test_fifo_device_directory_and_links_to_them_are_refused(work, capsys, command, name):
    cases = {
        "fifo": lambda p: os.mkfifo(p),
        "directory": lambda p: p.mkdir(),
        "device": lambda p: os.symlink(os.devnull, p),  # a link to /dev/null: any user can make one
        "socket-dir-link": lambda p: os.symlink(work, p),
    }
    for kind, make in cases.items():
        target = work / f"{kind}-{name}"
        make(target)
        before = os.lstat(target)
        assert main([command, "m.res", "-o", target.name]) == 2, kind
        err = capsys.readouterr().err
        assert "not a regular file" in err and target.name in err
        after = os.lstat(target)
        assert (after.st_ino, stat.S_IFMT(after.st_mode)) == (before.st_ino, stat.S_IFMT(before.st_mode))
    assert _temps(work) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make (and replace) a device node")
def test_a_character_device_itself_is_never_replaced(work, capsys):
    """As root, rename() would replace a device: made here with mknod, never the real
    /dev/null (a regression must not break the machine running the tests)."""
    device = work / "null.py"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert main(["compile", "m.res", "-o", "null.py"]) == 2
    assert "character device" in capsys.readouterr().err
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_socket_is_refused(tmp_path):
    import socket

    path = tmp_path / "s.dot"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(OutputError, match="a socket"):
            atomic_write(path, "x")
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_symlink_to_a_regular_file_is_replaced_not_written_through(work):
    (work / "elsewhere.py").write_text("keep\n")
    os.symlink("elsewhere.py", work / "out.py")
    atomic_write(work / "out.py", "new\n")
    assert (work / "elsewhere.py").read_text() == "keep\n" and not (work / "out.py").is_symlink()


# ---- files the user did not name -------------------------------------------------------
def test_dot_fallback_never_overwrites(work, monkeypatch, capsys):
    _no_renderer(monkeypatch)
    (work / "notes.dot").write_text("my notes\n")
    assert main(["render", "m.res", "-o", "notes.pdf"]) == 2
    err = capsys.readouterr().err
    assert "notes.dot" in err and "not overwritten" in err and "-o notes.dot" in err
    assert (work / "notes.dot").read_text() == "my notes\n" and not (work / "notes.pdf").exists()
    # a fresh name: the fallback is written, as before
    assert main(["render", "m.res", "-o", "fresh.pdf"]) == 0
    assert (work / "fresh.dot").read_text().startswith('digraph "m"')


def test_create_only_refuses_a_dangling_link(tmp_path):
    os.symlink(tmp_path / "nowhere", tmp_path / "x.dot")
    with pytest.raises(OutputError, match="not overwritten"):
        atomic_write(tmp_path / "x.dot", "x", create_only=True)
    assert not (tmp_path / "nowhere").exists()


# ---- bad output paths are usage errors, found before any work ---------------------------
@pytest.mark.parametrize("command", ["render", "compile"])
def test_bad_output_paths_exit_2_before_loading(work, monkeypatch, capsys, command):
    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("loaded before checking -o"))
    os.symlink("loop-b.svg", work / "loop-a.svg")
    os.symlink("loop-a.svg", work / "loop-b.svg")
    (work / "dir.svg").mkdir()
    long_name = "x" * 300 + ".svg"
    cases = {"loop-a.svg": "symbolic link loop", "dir.svg": "directory", long_name: "too long",
             "missing/x.svg": "does not exist", "dir.svg/": "separator", "a\0b.svg": "usable file name"}
    for target, message in cases.items():
        assert main([command, "m.res", "-o", target]) == 2, target
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and "internal error" not in err


def test_read_only_directory_is_a_usage_error(work, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    (work / "ro").mkdir(mode=0o500)
    assert main(["render", "m.res", "-o", "ro/x.dot"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_long_target_name_gets_a_short_temporary_name(tmp_path):
    """A 250-character name is legal; '.NAME.XXXX.tmp' was not (exit 3 before)."""
    target = tmp_path / ("y" * 246 + ".dot")
    atomic_write(target, "digraph {}\n")
    assert target.read_text() == "digraph {}\n" and _temps(tmp_path) == []


def test_oserror_during_write_names_the_path(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=r"cannot write '.*x\.dot': No space left"):
        atomic_write(tmp_path / "x.dot", "x")
    assert _temps(tmp_path) == []


# ---- SIGTERM and SIGKILL ---------------------------------------------------------------
def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_sigterm_during_a_cli_write_removes_the_temporary_file(work):
    (work / "out.dot").write_text("old\n")
    result = _run_python("""
        import os, signal, sys
        from resdsl import cli
        real = os.fsync
        def fsync_then_term(fd):
            real(fd)
            os.kill(os.getpid(), signal.SIGTERM)
        os.fsync = fsync_then_term
        sys.exit(cli.main(["render", "m.res", "-o", "out.dot"]))
    """, work)
    assert result.returncode == 143, result.stderr
    assert "terminated" in result.stderr and "Traceback" not in result.stderr
    assert (work / "out.dot").read_text() == "old\n" and _temps(work) == []


def test_sigterm_during_an_api_write_removes_it_and_still_kills(tmp_path):
    result = _run_python("""
        import os, signal
        from resdsl.io import atomic_write
        real = os.fsync
        def fsync_then_term(fd):
            real(fd)
            os.kill(os.getpid(), signal.SIGTERM)
        os.fsync = fsync_then_term
        atomic_write("out.py", "x = 1\\n")
        print("not reached")
    """, tmp_path)
    assert result.returncode == -15 and "not reached" not in result.stdout
    assert _temps(tmp_path) == [] and not (tmp_path / "out.py").exists()


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = time.time() - STALE_AFTER_S - 60
    names = {
        "stale": f"{TEMP_PREFIX}{dead.pid}.abcd1234.net.svg",  # dead pid, old: litter of a SIGKILL
        "recent": f"{TEMP_PREFIX}{dead.pid}.efgh5678.net.svg",  # dead pid, just written: kept
        "live": f"{TEMP_PREFIX}{os.getpid()}.ijkl9012.net.svg",  # a live writer: never touched
        "other": ".net.svg.tmp",  # not ours
    }
    for key, name in names.items():
        (tmp_path / name).write_text("partial")
        if key != "recent":
            os.utime(tmp_path / name, (old, old))
    atomic_write(tmp_path / "net.svg", "<svg/>")
    left = {p.name for p in tmp_path.iterdir()}
    assert names["stale"] not in left
    assert {names["recent"], names["live"], names["other"], "net.svg"} <= left
    assert remove_stale_temps(tmp_path) == []


def test_sigkill_leftover_is_cleaned_by_the_next_run(work, monkeypatch):
    """A render killed with SIGKILL mid-write leaves its temp file; the next write removes it
    once it is old (its pid is dead)."""
    result = _run_python("""
        import os, signal
        from resdsl import cli
        def fsync_then_kill(fd):
            os.kill(os.getpid(), signal.SIGKILL)
        os.fsync = fsync_then_kill
        cli.main(["render", "m.res", "-o", "out.dot"])
    """, work)
    assert result.returncode == -9
    leftovers = _temps(work)
    assert len(leftovers) == 1 and leftovers[0].startswith(TEMP_PREFIX)
    old = time.time() - STALE_AFTER_S - 1
    os.utime(work / leftovers[0], (old, old))
    assert main(["render", "m.res", "-o", "again.dot"]) == 0
    assert _temps(work) == []


def test_main_restores_the_previous_sigterm_handler(work):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert main(["check", "m.res"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


# ---- drawings too large to lay out; the layout timeout ------------------------------------
STAGE = """
network r(n: int = 2000):
    input x: [8]
    block unit:
        residual:
            fc: linear 8
            relu
    layer: stage unit x n
"""


def crossing(n: int) -> str:
    """n long skips that all cross: few nodes, but rows of edges for Graphviz."""
    lines = ["network cross:", "    input x: [8]"] + [f"    a{i}: linear 8" for i in range(n)]
    for i in range(n):
        lines += [f"    add a{(i * 7919) % n}", "    relu"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("spec", [STAGE, crossing(40)], ids=["6000 ops", "crossing skips"])
def test_too_large_drawings_are_refused_without_running_graphviz(work, monkeypatch, capsys, spec):
    (work / "big.res").write_text(spec)
    monkeypatch.setattr(gv.Renderer, "render", lambda *a: pytest.fail("laid out a refused drawing"))
    _renderer(monkeypatch, gv.Renderer("dot", "dot", ("svg", "png", "pdf")))
    assert main(["render", "big.res", "--level", "layer", "-o", "big.svg"]) == 2
    err = capsys.readouterr().err
    assert "layout size" in err and "--level block" in err and ".dot" in err
    assert not (work / "big.svg").exists()
    assert main(["render", "big.res", "--level", "layer", "-o", "big.dot"]) == 0  # no layout


def test_dot_files_are_capped_before_the_view_is_built(work, monkeypatch, capsys):
    (work / "huge.res").write_text(STAGE)
    monkeypatch.setattr("resdsl.render.dot.MAX_DOT_NODES", 5000)
    monkeypatch.setattr("resdsl.render.MAX_DOT_NODES", 5000)
    assert main(["render", "huge.res", "--level", "layer", "-o", "huge.dot"]) == 2
    assert "6,001 nodes" in capsys.readouterr().err
    assert main(["render", "huge.res", "--level", "block", "-o", "huge.dot"]) == 0


@pytest.mark.parametrize("spec", sorted((ROOT / "resdsl" / "zoo").glob("*.res")), ids=lambda p: p.stem)
def test_every_zoo_spec_can_be_laid_out_at_layer_level(spec):
    view = build_view(resdsl.load(spec).graph, level="layer")
    assert layout_size(view) <= MAX_LAYOUT_SIZE


def test_layout_timeout_is_a_clean_usage_error(work, monkeypatch, capsys):
    sleeper = work / "slowdot"
    sleeper.write_text("#!/bin/sh\nsleep 30\n")
    sleeper.chmod(0o755)
    monkeypatch.setattr(gv, "TIMEOUT_S", 0.5)
    _renderer(monkeypatch, gv.Renderer("dot", str(sleeper), ("svg",)))
    assert main(["render", "m.res", "-o", "x.svg"]) == 2
    err = capsys.readouterr().err
    assert "did not finish the layout within 0.5 s" in err and not (work / "x.svg").exists()
    assert _temps(work) == []


def test_stage_labels_are_built_once_per_drawn_node(monkeypatch):
    """The stage level rebuilt a stage's label (a scan of all its blocks) once per op:
    1.4 s at 6,000 ops, 4x per doubling."""
    from resdsl.render import dot

    calls = []
    real = dot._Builder._box_text
    monkeypatch.setattr(dot._Builder, "_box_text", lambda self, run: calls.append(1) or real(self, run))
    net = resdsl.loads(STAGE)
    for level in ("stage", "block"):
        calls.clear()
        view = build_view(net.graph, level=level)
        assert len(calls) <= len(view.nodes)


def test_long_skips_are_checked_in_linear_time():
    """is_u_shaped scanned every long skip's span: 3,000 crossing skips took seconds."""
    from resdsl.render.dot import is_u_shaped

    graph = resdsl.loads(crossing(3000), limits=resdsl.Limits(max_file_bytes=131_072)).graph
    start = time.process_time()
    assert not is_u_shaped(graph)
    assert time.process_time() - start < 2.0


def test_too_large_is_an_exception_for_the_api():
    net = resdsl.loads(crossing(40))
    with pytest.raises(DrawingTooLarge, match="--level block"):
        to_dot(net.graph, level="layer", max_layout=MAX_LAYOUT_SIZE)
    assert check_output  # the CLI's pre-check is part of the public io API
