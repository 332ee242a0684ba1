"""Exact reproduction of a reference module, checked the same way for every zoo family.

``check_parity(net, reference)`` asserts, for a loaded spec and a freshly built
reference ``nn.Module`` (torchvision's, or one written in a test):

1. state-dict keys in the same order, with the same shapes;
2. equal parameter counts (the spec's own count, the built module's, the reference's);
3. a strict ``load_state_dict`` of the reference's state after every weight and every
   norm statistic is randomised (so a miswired norm or a transposed weight shows);
4. eval outputs within ``atol`` (float32), on a random batch, and not all near zero;
5. the spec's inferred shapes equal the shapes torch observes, op by op;
6. optionally train mode: the same outputs under the same seed (dropout and stochastic
   depth draw the same random numbers in the same order as the reference).

Randomisation uses its own generator, so a check is the same on every run.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

import resdsl
from resdsl.backends.torch import observed_shapes
from resdsl.graph import op_node, op_nodes


def randomize(module: nn.Module, seed: int = 0) -> None:
    """Every floating parameter and buffer gets random values of a sane scale:
    weights ~ U(-1, 1) / sqrt(fan-in), norm scales in [0.5, 1.5], running variances in
    [0.5, 1.5], other vectors (biases, running means, layer scales) in [-0.1, 0.1]."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            shape = tuple(tensor.shape)
            noise = torch.rand(shape, generator=gen, dtype=torch.float32)
            if leaf == "running_var" or (leaf == "weight" and tensor.dim() == 1):
                value = noise + 0.5
            elif tensor.dim() >= 2 and leaf != "layer_scale":
                fan_in = max(1, tensor[0].numel())
                value = (noise * 2 - 1) / fan_in ** 0.5
            else:
                value = noise * 0.2 - 0.1
            tensor.copy_(value.to(tensor.dtype))


def sample(net: resdsl.Net, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return net.sample_input(batch, seed=seed)  # randn, or token ids for an int input


def check_keys(ours: nn.Module, reference: nn.Module) -> None:
    mine, theirs = ours.state_dict(), reference.state_dict()
    missing = [k for k in theirs if k not in mine]
    unexpected = [k for k in mine if k not in theirs]
    assert not missing and not unexpected, f"missing {missing[:10]}, unexpected {unexpected[:10]}"
    assert list(mine) == list(theirs), "same keys, other order"
    shapes = {k: (tuple(v.shape), tuple(theirs[k].shape)) for k, v in mine.items()
              if tuple(v.shape) != tuple(theirs[k].shape)}
    assert not shapes, f"shapes differ (ours, theirs): {dict(list(shapes.items())[:10])}"


def check_on_meta(net: resdsl.Net, make_reference: Callable[[], nn.Module]) -> int:
    """Keys in order, shapes and the parameter count against ``make_reference()`` built on the
    meta device (no memory, no init: cheap for every variant); returns the count."""
    with torch.device("meta"):
        reference = make_reference()
    check_keys(net.build(device="meta"), reference)
    count = sum(p.numel() for p in reference.parameters())
    assert net.num_params == count, f"spec counts {net.num_params:,}, reference {count:,}"
    return count


def check_shapes(net: resdsl.Net, model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        observed = observed_shapes(model, net, x)
    inferred = {n: op_node(net.graph, n).shape for n in observed}
    assert observed == inferred
    assert observed[net.graph.graph["output"]] == net.output_shape
    assert {d.id for d in op_nodes(net.graph) if d.module is not None} & set(observed)


def check_parity(net: resdsl.Net, reference: nn.Module, *, batch: int = 2, atol: float = 1e-5,
                 train: bool = False, forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
                 model: nn.Module | None = None) -> nn.Module:
    """Assert that ``net`` reproduces ``reference`` exactly (see the module docstring);
    returns the built module, with the reference's randomised weights loaded."""
    model = net.build() if model is None else model
    check_keys(model, reference)
    count = sum(p.numel() for p in reference.parameters())
    assert net.num_params == count, f"spec counts {net.num_params:,}, reference {count:,}"
    assert sum(p.numel() for p in model.parameters()) == count
    randomize(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    run = forward or (lambda m, x: m(x))
    x = sample(net, batch)
    model.eval(), reference.eval()
    with torch.no_grad():
        expected, got = run(reference, x), run(model, x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=atol * max(1.0, float(expected.abs().max())))
    assert expected.abs().max() > 1e-3, "the comparison is between near-zeros"
    check_shapes(net, model, x)
    if train:
        model.train(), reference.train()
        torch.manual_seed(1234)
        with torch.no_grad():
            expected = run(reference, x)
        torch.manual_seed(1234)
        with torch.no_grad():
            got = run(model, x)
        torch.testing.assert_close(got, expected, rtol=0, atol=atol * max(1.0, float(expected.abs().max())))
        model.eval(), reference.eval()
    return model
