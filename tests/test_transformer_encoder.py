"""Language v2, transformers: the tokens, select and attention ops, and the pre-/post-LN
Transformer encoder spec against torch.nn.TransformerEncoder (issue 15)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import resdsl
from resdsl.analysis import analyze
from resdsl.backends.codegen import generate, load_source
from resdsl.graph import op_node, op_nodes
from tests.parity import check_parity, randomize, sample

SPEC = Path(__file__).resolve().parents[1] / "resdsl" / "zoo" / "transformer_encoder.res"
SMALL = dict(d_model=16, nhead=4, dim_feedforward=32, num_layers=2, seq=5)


def _net(text: str, **params) -> resdsl.Net:
    return resdsl.loads(text, **params)


def _error(text: str) -> resdsl.SpecError:
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.loads(text)
    return info.value


def _node(net: resdsl.Net, op: str):
    return next(d for d in op_nodes(net.graph) if d.op == op)


# ---- tokens and select ---------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 4, 5), (6, 7), (2, 3, 4, 5)])
def test_tokens_is_flatten_transpose(shape):
    text = f"network n:\n    input x: {list(shape)}\n    tokens\n"
    net = _net(text)
    x = torch.randn(2, *shape)
    expected = x.flatten(2).transpose(1, 2)
    assert net.output_shape == tuple(expected.shape[1:])
    assert torch.equal(net.build()(x), expected)


def test_tokens_of_a_flat_input_is_located():
    err = _error("network n:\n    input x: [8]\n    tokens\n")
    diag = err.diagnostics[0]
    assert diag.span.line == 3 and "flat" in diag.message and "tokens" in diag.message


def test_select_is_a_token():
    net = _net("network n:\n    input x: [5, 8]\n    select 3\n")
    x = torch.randn(2, 5, 8)
    assert net.output_shape == (8,)
    assert torch.equal(net.build()(x), x[:, 3])
    last = resdsl.loads("network n:\n    input x: [5, 8]\n    select -1\n")
    assert torch.equal(last.build()(x), x[:, -1])  # GPT's next-token logits read the last token


@pytest.mark.parametrize("text, column, words", [
    ("network n:\n    input x: [5, 8]\n    select 5\n", 12, "must be in -5..4"),
    ("network n:\n    input x: [5, 8]\n    select -6\n", 12, "must be in -5..4"),
    ("network n:\n    input x: [5, 8, 2]\n    select 0\n", 5, "token sequence [N, D]"),
])
def test_select_errors_are_located(text, column, words):
    diag = _error(text).diagnostics[0]
    assert (diag.span.line, diag.span.column) == (3, column) and words in diag.message


# ---- attention ------------------------------------------------------------------------
def _attention_net(n=5, d=12, heads=3, extra=""):
    return _net(f"network n:\n    input x: [{n}, {d}]\n    attn: attention {heads}{extra}\n")


class _Attention(nn.Module):
    """The reference: nn.MultiheadAttention as a self-attention layer named ``attn``."""

    def __init__(self, bias: bool, causal: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(12, 3, dropout=0.1, bias=bias, batch_first=True)
        self.mask = nn.Transformer.generate_square_subsequent_mask(5) if causal else None

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False, attn_mask=self.mask)[0]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_attention_equals_multihead_attention(causal, bias):
    net = _attention_net(extra=f", dropout=0.1, causal={str(causal).lower()}, bias={str(bias).lower()}")
    model = check_parity(net, _Attention(bias, causal), train=True)
    assert net.num_params == 4 * 12 * 12 + (4 * 12 if bias else 0)
    if causal:  # token 0 sees token 0 only: changing the others leaves it
        x = sample(net)
        y = x.clone()
        y[:, 1:] += 1.0
        model.eval()
        with torch.no_grad():
            assert torch.allclose(model(x)[:, 0], model(y)[:, 0], atol=1e-6)
            assert not torch.allclose(model(x)[:, -1], model(y)[:, -1])


def test_heads_must_divide_the_width_at_heads():
    diag = _error("network n:\n    input x: [5, 12]\n    attention 5\n").diagnostics[0]
    assert (diag.span.line, diag.span.column) == (3, 15)
    assert "5 heads do not divide the width 12" in diag.message and diag.hint


@pytest.mark.parametrize("shape", ["[12]", "[3, 4, 4]"])
def test_attention_needs_tokens(shape):
    diag = _error(f"network n:\n    input x: {shape}\n    attention 2\n").diagnostics[0]
    assert diag.span.line == 3 and "token sequence [N, D]" in diag.message


def test_attention_cannot_stand_in_a_sequential():
    diag = _error("network n:\n    input x: [5, 8]\n    s: sequential:\n        attention 2\n").diagnostics[0]
    assert diag.span.line == 4 and "sequential" in diag.message


@pytest.mark.parametrize("n, d, heads", [(9, 16, 4), (5, 12, 3), (1, 8, 1)])
def test_attention_macs_equal_flop_counter(n, d, heads):
    """Projections and both attention matmuls, as torch.utils.flop_counter counts them
    (its CPU flash kernel has no formula, so the math kernel runs: QK^T and AV as bmm)."""
    net = _attention_net(n, d, heads)
    module = nn.MultiheadAttention(d, heads, batch_first=True)
    x = torch.randn(1, n, d)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(x, x, x, need_weights=False)
    report = analyze(net)
    assert report.macs == counter.get_total_flops() // 2 == 4 * n * d * d + 2 * n * n * d


def test_attention_receptive_field_is_global_and_tokens_follow_positions():
    net = _net("network n:\n    input x: [3, 8, 8]\n    conv 4, 8, stride=4, pad=0\n    tokens\n"
               "    ln: layernorm over=last\n    fc: linear 8\n    attention 2\n")
    from resdsl.analysis.report import receptive_fields
    fields = receptive_fields(net.graph)
    assert fields[op_node(net.graph, _node(net, "linear").id).id] == (4, 4)  # per token: its patch
    assert fields[net.graph.graph["output"]] is None


def test_generated_source_is_standalone(tmp_path):
    net = _attention_net(extra=", causal=true")
    source = generate(net)
    assert "self.attn(x, x, x, need_weights=False, attn_mask=_causal_mask(x))[" in source.text
    assert "import resdsl" not in source.text and "def _causal_mask" in source.text
    path = tmp_path / "attn.py"
    path.write_text(source.text)
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    model = namespace[source.class_name]().eval()
    built = net.build().eval()
    built.load_state_dict(model.state_dict())
    x = sample(net)
    with torch.no_grad():
        assert torch.equal(model(x), built(x))


# ---- the encoder ---------------------------------------------------------------------
def _reference(norm_first: bool, num_layers: int = 2, activation: str = "relu", d_model: int = 16,
               nhead: int = 4, dim_feedforward: int = 32, dropout: float = 0.1, eps: float = 1e-5):
    layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, eps,
                                       batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_is_torchs(norm_first, activation):
    net = resdsl.load(SPEC, **SMALL, norm_first=norm_first, activation=activation, layer_norm_eps=1e-6)
    reference = _reference(norm_first, activation=activation, eps=1e-6)
    # Same keys and shapes; resdsl registers a layer's modules in the order they run
    # (norm1, self_attn, ... for pre-LN), torch in its __init__'s order.
    model = check_parity(net, reference, train=True)
    assert sorted(model.state_dict()) == sorted(reference.state_dict())
    assert [k for k in model.state_dict() if k.startswith("layers.0.self_attn")] == [
        "layers.0.self_attn.in_proj_weight", "layers.0.self_attn.in_proj_bias",
        "layers.0.self_attn.out_proj.weight", "layers.0.self_attn.out_proj.bias"]


@pytest.mark.parametrize("name", ["transformer_encoder_pre_ln", "transformer_encoder_post_ln"])
def test_registry_entries_count_torchs_defaults(name):
    from resdsl.zoo import ENTRIES
    entry = next(e for e in ENTRIES if e.name == name)
    net = resdsl.load(entry.spec, **entry.params)
    with torch.device("meta"):
        reference = _reference(entry.params["norm_first"], num_layers=6, d_model=512, nhead=8,
                               dim_feedforward=2048)
    assert net.num_params == sum(p.numel() for p in reference.parameters()) == 18_914_304
    assert net.output_shape == (16, 512)


def test_pre_ln_paths_and_plain_twin():
    net = resdsl.load(SPEC, num_layers=12, norm_first=True)
    report = analyze(net)
    assert report.paths.count == 2 ** 24
    plain = resdsl.load(SPEC, num_layers=12, norm_first=True, plain=True)
    assert analyze(plain).paths.count == 1
    assert plain.num_params == net.num_params


def test_render_and_standalone_source_reproduce(tmp_path):
    net = resdsl.load(SPEC, **SMALL, norm_first=True)
    net.render(tmp_path / "block.dot", level="block")
    assert "layers: encoder_layer x 2" in (tmp_path / "block.dot").read_text()  # arguments all alike: not repeated
    net.render(tmp_path / "layer.dot", level="layer")
    dot = (tmp_path / "layer.dot").read_text()
    assert dot.count('label="4-head attention"') == 2 and dot.count('label="+"') == 4  # two units a layer
    source = generate(net)
    path = tmp_path / "encoder.py"
    path.write_text(source.text)
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    model = namespace[source.class_name]()
    reference = _reference(True)
    randomize(reference)
    model.load_state_dict(reference.state_dict())
    x = sample(net)
    model.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)
