"""The inference build's weights: a training build's state dict, folded.

:func:`fold_state_dict` applies an :class:`~resdsl.backends.inference.InferencePlan`'s
folds to a training-build state dict. The key mapping is the identity on every key
that stays: module paths do not change in the inference build (``nn.Sequential``
positions keep their numbers). For each fold of norm ``N`` into layer ``L``:

- ``L.weight`` is scaled per output channel (norm after ``L``) or per input channel
  (norm before ``L``, a 1x1 or unpadded conv, a linear);
- ``L.bias`` is set (added right after ``L.weight`` when ``L`` had none);
- ``N.weight``, ``N.bias``, ``N.running_mean``, ``N.running_var`` and
  ``N.num_batches_tracked`` go away.

With ``scale = N.weight / sqrt(N.running_var + eps)`` and
``shift = N.bias - N.running_mean * scale``: after ``L``, ``W' = W * scale`` (on dim
0) and ``b' = b * scale + shift``; before ``L``, ``W' = W * scale`` (on dim 1, per
group) and ``b' = b + sum(W * shift)`` over each output's inputs. Arithmetic is in
float64, the results in the weight's dtype. :func:`build_inference` builds the
module (see ``Net.build(inference=True)``).
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from ..errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .inference import Fold, InferencePlan

_log = logging.getLogger("resdsl.weights")


def fold_state_dict(plan: "InferencePlan", state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inference build's state dict from a training build's (which is not changed)."""
    current = dict(state)
    new_bias: set[str] = set()
    for fold in plan.folds:
        weight, bias = _folded(fold, current)
        current[f"{fold.layer}.weight"] = weight
        if f"{fold.layer}.bias" not in current:
            new_bias.add(fold.layer)
        current[f"{fold.layer}.bias"] = bias
        for key in [k for k in current if k.startswith(fold.norm + ".")]:
            del current[key]
    ordered: dict[str, torch.Tensor] = {}
    for key in state:  # the training order, a new bias right after its weight
        if key in current:
            ordered[key] = current[key]
            layer = key[: -len(".weight")] if key.endswith(".weight") else None
            if layer in new_bias:
                ordered[f"{layer}.bias"] = current[f"{layer}.bias"]
    return ordered


def _folded(fold: "Fold", state: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    weight = state[f"{fold.layer}.weight"]
    dtype, w = weight.dtype, weight.detach().to(torch.float64)
    n = {name: state[f"{fold.norm}.{name}"].detach().to(torch.float64)
         for name in ("weight", "bias", "running_mean", "running_var")}
    scale = n["weight"] / torch.sqrt(n["running_var"] + fold.eps)
    shift = n["bias"] - n["running_mean"] * scale
    old = state.get(f"{fold.layer}.bias")
    b = old.detach().to(torch.float64) if old is not None else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    rest = (1,) * (w.dim() - 2)
    if not fold.before:
        w = w * scale.reshape(-1, 1, *rest)
        b = b * scale + shift
    else:  # input channel j of output o's group g is g * per + j
        outs, per = w.shape[0], w.shape[1]
        expand = outs // fold.groups
        s = scale.reshape(fold.groups, per).repeat_interleave(expand, 0).reshape(outs, per, *rest)
        t = shift.reshape(fold.groups, per).repeat_interleave(expand, 0).reshape(outs, per, *rest)
        b = b + (w * t).flatten(1).sum(1)
        w = w * s
    return w.to(dtype).contiguous(), b.to(dtype)


def training_state(net: Any, weights: str | os.PathLike | dict | None,
                   zero_init_residual: bool = False, weights_map: Any = None,
                   weights_by_order: bool = False) -> dict[str, torch.Tensor]:
    """A training build's state dict: ``weights`` loaded by ``load_weights`` (strictly, into
    the training build's keys, every mismatch named with its spec line), or a fresh
    training build's."""
    from .torch import build_module, load_weights

    if weights is None:
        if weights_map is not None or weights_by_order:
            raise TypeError("weights_map and weights_by_order go with weights=")
        return build_module(net, zero_init_residual=zero_init_residual).state_dict()
    with torch.device("meta"):  # no initialisation: a strict load fills every tensor
        model = net.source().module_class()()
    model.to_empty(device="cpu")
    for note in load_weights(model, net, weights, weights_map=weights_map, by_order=weights_by_order):
        _log.info("%s", note)
    return model.state_dict()


# normal tensors even when built in inference mode: an inference tensor has no version counter,
# so the CPU runtime could not tell a changed weight (load_state_dict) and would pack every call
@torch.inference_mode(False)
def build_inference(net: Any, *, zero_init_residual: bool = False,
                    weights: str | os.PathLike | dict | None = None, device: Any = None,
                    dtype: Any = None, weights_map: Any = None, weights_by_order: bool = False,
                    runtime: str = "auto") -> nn.Module:
    """The inference build of ``net`` with folded weights (``weights``: a training build's
    checkpoint; without one, a fresh training build's initial weights, folded), its
    parameters frozen (eval only). ``runtime="auto"`` then runs its convolutions as fused
    oneDNN primitives where it is on a CPU that has them (resdsl/backends/onednn.py);
    ``"portable"`` keeps the generated code's modules as they are."""
    from .torch import check_memory

    if runtime not in RUNTIMES:  # before any work
        raise UsageError(f"runtime={runtime!r}: expected one of {', '.join(map(repr, RUNTIMES))}")
    check_memory(net, 0, dtype=dtype, device=device)
    network_class = net.source(inference=True).module_class()
    with torch.device(device) if device is not None else nullcontext():
        model = network_class()
    if torch.device(device if device is not None else "cpu").type != "meta":
        state = training_state(net, weights, zero_init_residual, weights_map, weights_by_order)
        model.load_state_dict(fold_state_dict(net.inference_plan(), state), strict=True)
    if dtype is not None:
        model.to(dtype=dtype)
    model.eval().requires_grad_(False)
    if runtime == "auto" and _on_cpu(model):
        from .onednn import accelerate

        model.resdsl_runtime = accelerate(model, net.inference_plan().graph)
    return model


#: ``build(inference=True, runtime=...)``: "auto" fuses for oneDNN on the CPU, "portable" does not.
RUNTIMES = ("auto", "portable")


def _on_cpu(model: nn.Module) -> bool:
    return all(p.device.type == "cpu" for p in model.parameters())
