"""The one place that runs generated text: :func:`load_source` (the only ``exec`` in resdsl).

The text comes from :func:`resdsl.backends.codegen.generate` only, never from a
spec: only identifiers that passed the front end's checks and ``repr()`` of exact
int/float/bool/str/tuple values reach it (see :mod:`.text`).
"""

from __future__ import annotations

import linecache
import re
import sys
import types
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Generated source and the names to use it by.

    >>> import resdsl
    >>> from resdsl.backends.codegen import generate
    >>> src = generate(resdsl.loads("network n:\\n    input x: [4]\\n    fc: linear 2\\n"))
    >>> src.class_name, src.filename.startswith("<resdsl:n:")
    ('N', True)
    """

    text: str
    class_name: str
    filename: str

    def module_class(self) -> type:
        """The network class, compiled from :attr:`text` (cached per text)."""
        return getattr(load_source(self), self.class_name)


def load_source(source: Source) -> types.ModuleType:
    """Compile and run generated ``source`` as a module.

    It is registered with :mod:`linecache` (tracebacks, ``inspect.getsource``,
    TorchScript) and in :data:`sys.modules` (pickling classes within this process).
    """
    # a dotted name of identifiers: TorchScript refuses to load a traced class named otherwise
    module_name = "resdsl.generated." + re.sub(r"\W", "_", source.filename.strip("<>"), flags=re.ASCII)
    lines = source.text.splitlines(keepends=True)
    linecache.cache[source.filename] = (len(source.text), None, lines, source.filename)
    cached = sys.modules.get(module_name)
    if cached is not None and getattr(cached, "__resdsl_source__", None) == source.text:
        return cached
    module = types.ModuleType(module_name, "resdsl generated model")
    module.__file__ = source.filename
    module.__resdsl_source__ = source.text
    code = compile(source.text, source.filename, "exec")
    sys.modules[module_name] = module
    exec(code, module.__dict__)  # noqa: S102 - generated code only, see the module docstring
    return module
