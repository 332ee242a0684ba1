"""Safe output files: written atomically, never over the spec they came from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(Exception):
    """The output path cannot be written (the CLI reports it as a usage error)."""


def atomic_write(path: str | os.PathLike, data: str | bytes, *, protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Write ``data`` to ``path`` via a temporary file and a rename.

    A reader never sees a half-written file, and an interrupted write leaves the
    old file (or none) in place. Paths in ``protect`` (the input spec) are never
    overwritten.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "model.py"
    >>> atomic_write(out, "x = 1\\n").read_text()
    'x = 1\\n'
    """
    target = Path(path)
    for protected in protect:
        try:
            # samefile also catches another name for the spec (a hard link).
            if target.resolve() == Path(protected).resolve() or (
                    target.exists() and os.path.samefile(target, protected)):
                raise OutputError(f"refusing to overwrite the input spec '{protected}'")
        except OSError:
            continue
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"cannot write '{target}': directory '{directory}' does not exist")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp makes the file private (0600); give it the mode open() would (0666 minus umask).
        os.fchmod(handle, 0o666 & ~_current_umask())
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return target


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
