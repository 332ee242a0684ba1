"""Graph -> standalone, readable PyTorch source (and the one place that runs it).

:func:`generate` turns a checked network (:class:`~resdsl.api.Net`, or anything
with its fields: :class:`~.generator.CompiledSpec`) into one Python file that
imports only torch: one ``nn.Module`` class per block definition, a network class
whose ``__init__`` takes the spec's parameters, and straight-line ``forward``
methods (fx-style: temporaries are released when dead, every line says which spec
line it comes from). :func:`load_source` compiles that text and registers it with
:mod:`linecache`, so tracebacks and ``inspect.getsource`` show the generated
lines. ``Net.build()`` runs exactly this code. It reads the graph and the IR only:
no file, no second elaboration. The output is a pure function of the graph, so it
is byte-identical across runs. See docs/codegen.md.

The modules, one concept each:

- :mod:`.text`: names, literals, the spec's expressions as Python, layout;
- :mod:`.forms`, :mod:`.params`: which parameters the code follows (live) or bakes in (frozen);
- :mod:`.plan`, :mod:`.generator`: which containers become classes, rendered per instance;
- :mod:`.context`: what an instance's code may name, the catalogue's ``code`` interface;
- :mod:`.constructors`: ``__init__``; :mod:`.forward`: ``forward``;
- :mod:`.assemble`: the file's text; :mod:`.loader`: running it.

>>> import resdsl
>>> net = resdsl.loads('''
... network tiny(classes: int = 3):
...     input x: [8]
...     fc1: linear 16
...     relu
...     head: linear classes
... ''')
>>> source = generate(net)
>>> "class Tiny(nn.Module):" in source.text and "def __init__(self, classes: int = 3)" in source.text
True
>>> model = source.module_class()()
>>> model.head
Linear(in_features=16, out_features=3, bias=True)
"""

from __future__ import annotations

import hashlib
from typing import Any

from .generator import CompiledSpec, Generator
from .loader import Source, load_source
from .text import lit, pyname


def generate(net: CompiledSpec, *, inference: bool = False) -> Source:
    """Standalone PyTorch source for ``net``: deterministic, imports only torch.

    ``inference=True`` writes the inference build: the eval-mode rewrite of
    :func:`resdsl.backends.inference.inference_plan` (norms folded into weight layers,
    dropout and drop-path gone, channels-last memory format for conv nets), an
    eval-only module whose weights come from ``Net.fold`` (docs/codegen.md).
    """
    plan = None
    if inference:
        from ..inference import inference_plan

        plan = inference_plan(net.graph)
    gen = Generator(net, plan)
    text = gen.run()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    name = pyname(net.name) if net.name.isidentifier() else "net"
    return Source(text, gen.class_of[""].name, f"<resdsl:{name}{'-inference' if inference else ''}:{digest}>")


def frozen_params(net: CompiledSpec) -> dict[str, Any]:
    """Network parameters the generated code does not follow (see :mod:`.params`)."""
    gen = Generator(net)
    gen.run()
    return gen.frozen


__all__ = ["CompiledSpec", "Generator", "Source", "frozen_params", "generate", "lit", "load_source"]
