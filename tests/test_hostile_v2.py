"""Hostile and confused inputs against the language-v2 constructs (issue 14's attack):
each test pins one root cause, and fails without its fix."""

from __future__ import annotations

import pytest
import torch

import resdsl
from resdsl.backends.codegen import generate


def load(body: str, shape: str = "[4, 8, 8]", blocks: str = "", head: str = "network n", **params):
    text = f"{blocks}\n{head}:\n    input x: {shape}\n" + "".join(
        f"    {line}\n" for line in body.strip("\n").splitlines())
    return resdsl.loads(text, **params)


def standalone_matches_build(net) -> None:
    """The generated file, run on its own, computes what build() computes."""
    namespace: dict = {}
    exec(compile(generate(net).text, "<generated>", "exec"), namespace)  # noqa: S102 - our own code
    cls = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, torch.nn.Module)][-1]
    built, standalone = net.build().eval(), cls().eval()
    standalone.load_state_dict(built.state_dict(), strict=True)
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        out = built(x)
        assert tuple(out.shape[1:]) == net.output_shape
        torch.testing.assert_close(standalone(x), out)


# ---- learnable tensors whose dims are all equal ---------------------------------------------

@pytest.mark.parametrize("dims, body", [
    ("4", "permute 1, 2, 0\nadd p"),            # [4]: a 1-D tensor, written as (4,)
    ("4, 1, 1", "mul p"),
    ("8, 8", "add p"),                          # (8, 8) was written 8: torch.full(8) raised TypeError
    ("1, 1, 1", "mul p"),
])
def test_a_parameter_with_equal_dims_keeps_its_shape(dims, body):
    net = load(f"p: parameter {dims}, init=0.5\nfrom input\n{body}", shape="[4, 8, 8]")
    assert dict(net.build(device="meta").named_parameters())["p"].shape == tuple(map(int, dims.split(",")))
    standalone_matches_build(net)


# ---- many lets in one body ----------------------------------------------------------------

def test_thousands_of_lets_in_one_body_elaborate_in_linear_time():
    # Each let used to wrap the scope's names in one more ChainMap: 1,000 lets made lookups
    # recurse past Python's limit, reported as "nested too deeply" at the network's name.
    import time

    lets = "\n".join(f"let a{i} = a{i - 1} + 1" if i else "let a0 = 1" for i in range(2500))
    start = time.process_time()
    net = load(f"{lets}\nconv 1, a2499 // 1000")
    assert net.output_shape == (2, 8, 8)
    assert time.process_time() - start < 2.0


# ---- names that v2 options give to modules ------------------------------------------------

@pytest.mark.parametrize("stmt, message", [
    # proj= named the shortcut submodule with any identifier: 'forward' replaced the network's
    # forward (RecursionError in every call), '__class__' made forward call the class.
    ("residual proj=forward:", "proj= 'forward' would shadow torch.nn.Module.forward"),
    ("residual proj=__class__:", "proj= '__class__' starts with '__'"),
    ("residual proj=training:", "would shadow torch.nn.Module.training"),
    ("residual proj=p:", "proj= 'forward' would shadow"),  # through a str parameter
])
def test_proj_names_are_checked_like_labels(stmt, message):
    with pytest.raises(resdsl.SpecError) as caught:
        load(f"{stmt}\n    conv 3, 8, stride=2", head="network n(p: str = forward)")
    assert message in str(caught.value)
    assert "inline.res:4:14: error" in str(caught.value)  # at the option


@pytest.mark.parametrize("where", ["", "s: sequential:\n    "])
def test_a_stage_prefix_and_start_cannot_name_a_module_attribute(where):
    # prefix=bfloat, start=16 named an instance 'bfloat16' (nn.Module.bfloat16): KeyError in build
    blocks = "block b(c: int):\n    conv 1, c\n"
    with pytest.raises(resdsl.SpecError) as caught:
        load(f"{where}stage b(4) x 2, prefix=bfloat, start=15", blocks=blocks)
    assert "instance name 'bfloat16' would shadow torch.nn.Module.bfloat16" in str(caught.value)
    assert "prefix=bfloat" in str(caught.value)  # the caret's line
    net = load(f"{where}stage b(4) x 2, prefix=bfloat, start=17", blocks=blocks)  # bfloat17: fine
    standalone_matches_build(net)


# ---- a learnable tensor has no batch dimension ------------------------------------------

@pytest.mark.parametrize("body, message", [
    # each of these built, and torch ran the ops on the parameter as one unbatched sample:
    # compile said "SHAPES DIFFER" and exited 3, build() returned a net of the wrong shape
    ("q: parameter 4, 8, 8", "the network's output is a learnable tensor"),
    ("q: parameter 4, 4\nadd q", "add reads a learnable tensor (a 'parameter', line 4)"),
    ("q: parameter 4, 8, 8\nconv 1, 4", "conv reads a learnable tensor"),
    ("q: parameter 4, 8, 8\nfrom input\nconcat q", "concat reads a learnable tensor"),
    ("q: parameter 4, 8, 8\nresidual:\n    mul input", "reads a learnable tensor"),
])
def test_a_parameter_is_read_only_by_a_broadcasting_merge_with_activations(body, message):
    with pytest.raises(resdsl.SpecError) as caught:
        load(body)
    assert message in str(caught.value)
    assert len(caught.value.diagnostics) == 1


@pytest.mark.parametrize("body", [
    "q: parameter 4, 8, 8\nmul input\nresidual:\n    conv 3, 4",   # the product is batched
    "q: parameter 2, 4, 1, 1\nmul input",                         # [2, 4, 8, 8] per sample
    "a: conv 1, 4\nq: parameter 4, 1, 1\nadd a",
])
def test_a_parameter_broadcast_with_activations_builds_as_inferred(body):
    standalone_matches_build(load(body))
