"""The round trip as an oracle: build the written spec, load the source's weights, compare."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Verdict:
    """How the spec's module compares with the source module."""

    same_keys: bool  # the same state-dict keys, in the same order, with the same shapes
    loads: bool  # load_state_dict(source.state_dict(), strict=True) succeeded
    max_error: float  # the largest output difference, relative to the output's scale
    problem: str = ""  # what went wrong first, if anything

    @property
    def exact(self) -> bool:
        return self.same_keys and self.loads and self.max_error <= 1e-5

    def summary(self) -> str:
        """One line for a person: what was checked and how it came out."""
        if self.exact:
            return (f"checked: the same state-dict keys in the same order, a strict load, and outputs "
                    f"equal within {self.max_error:.1g} of their scale")
        return f"NOT exact: {self.problem}"


def verify(text: str, source: nn.Module, input_shape: tuple[int, ...], filename: str = "from-torch.res") -> Verdict:
    """Build ``text``, load ``source``'s state strictly, compare eval outputs on a random batch."""
    import resdsl

    try:
        net = resdsl.loads(text, filename)
        ours = net.build(device="meta")  # no initialisation: the source's tensors are loaded
    except resdsl.SpecError as err:
        return Verdict(False, False, float("inf"), "the written spec does not check:\n" + err.render())
    theirs = source.state_dict()
    mine = ours.state_dict()
    same = list(mine) == list(theirs) and all(tuple(mine[k].shape) == tuple(v.shape) for k, v in theirs.items())
    try:
        # strict, and assign: the build takes the source's tensors (no copy, no second init)
        ours.load_state_dict(theirs, strict=True, assign=True)
    except RuntimeError as err:  # torch's first line names only the class: the keys follow
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        return Verdict(same, False, float("inf"), " ".join(lines[:3])[:500])
    if any(t.is_meta for t in list(ours.parameters()) + list(ours.buffers())):
        ours = net.build()  # a buffer the state dict does not hold (not persistent): built for real
        ours.load_state_dict(theirs, strict=True)
    was_training = source.training
    source.eval()
    ours.eval()
    try:
        x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():  # each its own copy: a forward may change its input in place
            expected, got = source(x.clone()), ours(x.clone())
    finally:
        source.train(was_training)
    scale = float(expected.abs().max()) or 1.0
    error = float((expected - got).abs().max()) / scale
    return Verdict(same, True, error, "" if error <= 1e-5 else f"outputs differ by {error:.3g} of their scale")
