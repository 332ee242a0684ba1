"""Safe output files: the one place where resdsl decides whether and how to write.

Every file resdsl writes (``render -o``, ``compile -o``, ``Net.render``) goes
through :func:`atomic_write`, which enforces, at the start and again just
before the rename:

- the target is not an input: not the spec nor any file it imports (compared by
  resolved path and by ``(st_dev, st_ino)``, so a hard link or a symlink to an
  input is caught);
- the target, if it exists, is a regular file (or a symlink to one, which is
  replaced, not written through): never a directory, device, FIFO or socket;
- with ``create_only`` (a file the user did not name, such as the ``.dot`` written
  when no Graphviz is installed) the target must not exist at all;
- every ``OSError`` about the path (a symlink loop, a 300-character name, a
  missing or read-only directory) becomes an :class:`OutputError` naming it.

The data goes to a temporary file in the target's directory, is fsynced and then
renamed over the target, so readers never see half a file. Temporary files are
named ``.resdsl-tmp.<pid>.<random>.<name>``: an exception or SIGTERM removes ours
(SIGTERM is turned into an exception for the duration of the write when nothing
else handles it), and each write removes stale ones whose process is dead and
that are older than :data:`STALE_AFTER_S` (a SIGKILL leaves one behind).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TEMP_PREFIX = ".resdsl-tmp."
STALE_AFTER_S = 300  # a write takes seconds; a temp file this old with a dead pid is litter
_NAME_IN_TEMP = 40  # characters of the target's name kept in the temp name (NAME_MAX is 255 bytes)

Protect = tuple["str | os.PathLike[str]", ...]


class OutputError(Exception):
    """The output path cannot or must not be written (the CLI reports it as a usage error)."""


class Terminated(BaseException):
    """SIGTERM arrived during a write: raised so that the temporary file is removed."""


def check_output(path: str | os.PathLike[str], *, protect: Protect = (),
                 create_only: bool = False) -> Path:
    """Check that ``path`` may be written, before any work is done; returns it as a Path.

    Raises :class:`OutputError` when it must not be (see the module docstring).

    >>> import tempfile, pathlib
    >>> check_output(pathlib.Path(tempfile.mkdtemp()) / "net.svg").name
    'net.svg'
    """
    text = os.fspath(path)
    if not text or "\0" in text:
        raise OutputError(f"cannot write {text!r}: not a usable file name")
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise OutputError(f"cannot write '{text}': the name ends in a separator (a directory)")
    target = Path(text)
    current = _stat(target)
    if create_only and (current is not None or os.path.lexists(target)):
        raise OutputError(f"'{target}' exists and was not named as an output: not overwritten")
    if current is not None:
        if not stat.S_ISREG(current.st_mode):
            raise OutputError(f"cannot write '{target}': it is {_kind(current.st_mode)}, "
                              "not a regular file")
        _refuse_inputs(target, current, protect)
    directory = target.parent
    try:
        is_dir = directory.is_dir()
    except (OSError, ValueError) as exc:
        raise _error(target, exc) from None
    if not is_dir:
        raise OutputError(f"cannot write '{target}': directory '{directory}' does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write '{target}': directory '{directory}' is not writable")
    return target


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, protect: Protect = (),
                 create_only: bool = False) -> Path:
    """Write ``data`` to ``path`` via a temporary file and a rename.

    A reader never sees a half-written file, and an interrupted write leaves the
    old file (or none) in place. Inputs in ``protect`` (the spec and its imports)
    are never overwritten; with ``create_only`` an existing file is never touched.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "model.py"
    >>> atomic_write(out, "x = 1\\n").read_text()
    'x = 1\\n'
    """
    target = check_output(path, protect=protect, create_only=create_only)
    directory = target.parent
    remove_stale_temps(directory)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with _sigterm_raises():
        try:
            handle, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}.",
                                            suffix=f".{target.name[:_NAME_IN_TEMP]}", dir=directory)
        except OSError as exc:
            raise _error(target, exc) from None
        try:
            # mkstemp makes the file private (0600); give it the mode open() would (0666 minus umask).
            os.fchmod(handle, 0o666 & ~_current_umask())
            with os.fdopen(handle, "wb") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
            # the target may have changed while we wrote: check again, then rename
            check_output(target, protect=protect, create_only=create_only)
            _install(temp, target, create_only)
        except OSError as exc:
            _unlink(temp)
            raise _error(target, exc) from None
        except BaseException:
            _unlink(temp)
            raise
    return target


def _install(temp: str, target: Path, create_only: bool) -> None:
    if not create_only:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)  # fails if the target appeared meanwhile: never clobbers
    except FileExistsError:
        raise OutputError(f"'{target}' exists and was not named as an output: not overwritten") from None
    except OSError:  # a file system without hard links: create exclusively instead
        with open(target, "xb") as stream, open(temp, "rb") as source:
            stream.write(source.read())
    _unlink(temp)


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[str]:
    """Remove this user's temporary files in ``directory`` left by dead processes.

    Only regular files named ``.resdsl-tmp.<pid>.*``, owned by us, whose process is
    gone, and last modified over :data:`STALE_AFTER_S` ago: another live process's
    temp file is never touched. Returns the names removed.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        pid_text = entry.name[len(TEMP_PREFIX):].partition(".")[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if (stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
                    and now - info.st_mtime > STALE_AFTER_S):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but is not ours, or unknowable: keep its file
    return True


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while writing, so ``finally`` cleans up.

    Only when SIGTERM has its default action and we are on the main thread (a
    program with its own handler keeps it; the CLI installs one for the whole run).
    After cleanup the signal is delivered again with its default action, so the
    process still ends as killed by SIGTERM.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stat(target: Path) -> os.stat_result | None:
    """``os.stat`` of the target (through symlinks), None if nothing is there."""
    try:
        return os.stat(target)
    except FileNotFoundError:  # nothing, or a dangling symlink (the rename replaces the link)
        return None
    except (OSError, ValueError) as exc:
        raise _error(target, exc) from None


def _refuse_inputs(target: Path, current: os.stat_result, protect: Protect) -> None:
    resolved = _resolve(target)
    for protected in protect:
        try:
            other = os.stat(protected)
        except (OSError, ValueError):
            other = None
        same_file = other is not None and (other.st_dev, other.st_ino) == (current.st_dev, current.st_ino)
        if same_file or (resolved is not None and resolved == _resolve(Path(protected))):
            raise OutputError(f"refusing to overwrite '{target}': it is an input of this run "
                              f"('{protected}')")


def _resolve(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _error(target: Path | str, exc: BaseException) -> OutputError:
    if isinstance(exc, OSError):
        reason = {errno.ELOOP: "a symbolic link loop", errno.ENAMETOOLONG: "the name is too long"}.get(
            exc.errno or 0, exc.strerror or str(exc))
    else:
        reason = str(exc)
    return OutputError(f"cannot write '{target}': {reason}")


def _unlink(temp: str) -> None:
    try:
        os.unlink(temp)
    except OSError:
        pass


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
