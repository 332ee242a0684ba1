"""from-torch on transformers (issue 16): torchvision's ViT and Swin written as specs that
round-trip exactly, and the recognisers they need, each able to say no.

- a chain of calls as one op (``x.reshape(n, c, h * w).permute(0, 2, 1)`` is ``tokens``;
  a reshape straight to [HW, C] is not);
- a module called otherwise than ``module(x)`` (nn.MultiheadAttention as
  ``m(x, x, x, need_weights=False)[0]`` is ``attention``; cross-attention is not);
- learnable tensors with a batch dim of one (``parameter ..., batch=true``), ``x[:, 0]``
  (``select 0``), Swin's window attention (v1, v2) and patch merging.

The default suite converts vit_b_16 (224), swin_t and swin_v2_t in full (about 9 s of CPU),
and small models in eval and train mode (dropout and stochastic depth on); the other
variants are slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.swin_transformer import (
    PatchMergingV2, SwinTransformer, SwinTransformerBlockV2,
)
from torchvision.models.swin_transformer import (  # fx autowraps no name with a leading "_"
    _patch_merging_pad as patch_merging_pad,
)
from torchvision.models.vision_transformer import VisionTransformer

import resdsl
from resdsl import ir
from resdsl.fromtorch import from_torch
from resdsl.ops import REGISTRY
from resdsl.ops.base import TensorRef, TorchCall
from resdsl.syntax.text import parse_text
from tests.parity import check_parity

ZOO = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"


def statements(text: str) -> int:
    """Statements of a spec (nested bodies and blocks included; block headers not)."""
    parsed = parse_text(text, "<count>")

    def count(body: tuple) -> int:
        return sum(1 + sum(count(inner) for inner in ir.bodies(stmt)) for stmt in body)

    networks = parsed.networks
    return (sum(count(b.body) for b in parsed.blocks)
            + sum(count(n.body) + sum(count(b.body) for b in n.blocks) for n in networks))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The conversion runs thousands of small ops: on a busy 2-core machine a second torch
    thread costs several times the CPU it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def exact(result) -> None:
    verdict = result.verdict
    assert verdict.same_keys and verdict.loads, verdict.problem
    assert verdict.max_error <= 1e-5, verdict.problem
    assert result.exact


# ---- the torchvision models ---------------------------------------------------------------
@pytest.fixture(scope="module")
def vit_b_16():
    return from_torch(torchvision.models.vit_b_16(), (3, 224, 224), name="vit_b_16")


def test_vit_b_16_round_trips_exactly(vit_b_16):
    exact(vit_b_16)


def test_vit_b_16_reads_like_the_hand_written_spec(vit_b_16):
    text = vit_b_16.text
    for line in ("conv_proj: conv 16, 768, stride=16, pad=0",
                 "class_token: parameter 1, 1, 768, batch=true",
                 "pos_embedding: parameter 1, 197, 768, std=0.02, batch=true",
                 "self_attention: attention 12",
                 "layers: stage encoder_block x 12, prefix=encoder_layer_",
                 "ln: layernorm eps=1e-06, over=last",
                 "select 0"):
        assert line in text, line
    assert text.count(": tokens") == 1 and "concat" in text
    # as many statements as the hand-written spec (resdsl/zoo/vit.res: 25), give or take the
    # MLP's block header (26 written today)
    written, by_hand = statements(text), statements((ZOO / "vit.res").read_text())
    assert by_hand == 25 and written <= by_hand + 1, (written, by_hand)


@pytest.fixture(scope="module", params=["swin_t", "swin_v2_t"])
def swin(request):
    name = request.param
    return name, from_torch(getattr(torchvision.models, name)(), (3, 224, 224), name=name)


def test_swin_round_trips_exactly(swin):
    exact(swin[1])


def test_swin_is_written_in_blocks_and_stages(swin):
    name, result = swin
    text = result.text
    v2 = ", window=8, shift=shift, v2=true" if name == "swin_v2_t" else ", shift=shift"
    assert f"attn: window_attention heads{v2}" in text
    assert text.count("residual drop_path=drop_path:") == 2  # the block's two residuals
    # the third stage: stochastic depth growing with the index, the shift alternating
    assert "shift=0 if i % 2 == 0 else" in text and "x 6, index=i" in text
    # (the runs of two blocks that differ are written as two calls)
    assert text.count("stage ") == 1 and text.count("patch_merge\n") == 1
    assert "linear 4 * dim(input, -1)" in text and "reduction: linear 2 * dim(input, -1), bias=false" in text
    # no more statements than the hand-written spec of all six variants (swin.res: 45;
    # 39 written today for either)
    written, by_hand = statements(text), statements((ZOO / "swin.res").read_text())
    assert by_hand == 45 and written <= by_hand, (written, by_hand)


# the same code at other sizes (about 50 s of CPU; vit_h_14, exact too, needs 5.8 GB: left out)
SLOW = ["vit_b_32", "vit_l_16", "vit_l_32", "swin_s", "swin_b", "swin_v2_s", "swin_v2_b"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_the_other_variants_round_trip_exactly(name):
    exact(from_torch(getattr(torchvision.models, name)(), (3, 224, 224), name=name))


# ---- small models, all ops on, eval and train mode ------------------------------------------
def _small_vit() -> nn.Module:
    return VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32,
                             mlp_dim=64, dropout=0.1, attention_dropout=0.1, num_classes=10)


def _small_swin(v2: bool) -> nn.Module:
    versions = dict(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2) if v2 else {}
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2, 4, 2], num_heads=[2, 2, 4, 4],
                           window_size=[4, 4], dropout=0.1, attention_dropout=0.1,
                           stochastic_depth_prob=0.3, num_classes=10, **versions)


@pytest.mark.parametrize("make, size", [(_small_vit, 32), (lambda: _small_swin(False), 36),
                                        (lambda: _small_swin(True), 36)], ids=["vit", "swin", "swin_v2"])
def test_a_small_model_is_exact_in_eval_and_train_mode(make, size):
    """Dropout, attention dropout and stochastic depth (a block parameter per instance) draw
    as the source's do: train-mode outputs agree for one seed."""
    source = make()
    result = from_torch(source, (3, size, size))
    exact(result)
    check_parity(resdsl.loads(result.text, "<from-torch>"), source, train=True)


# ---- the recognisers, one by one --------------------------------------------------------------
class _Lambda(nn.Module):
    def __init__(self, fn, **children):
        super().__init__()
        self.fn = fn
        for name, child in children.items():
            setattr(self, name, child)

    def forward(self, x):
        return self.fn(self, x)


def _tokens_model(fn) -> nn.Module:
    """conv -> fn (tokens?) -> linear over the last dim."""
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 4, stride=4)
            self.head = nn.Linear(4, 5)

        def forward(self, x):
            return self.head(fn(self.conv(x)))
    return Model()


@pytest.mark.parametrize("fn", [
    lambda x: x.flatten(2).transpose(1, 2),
    lambda x: torch.flatten(x, 2).transpose(2, 1),
    lambda x: x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3]).permute(0, 2, 1),
    lambda x: x.view(x.shape[0], x.shape[1], -1).transpose(-1, -2),
], ids=["flatten-transpose", "torch.flatten-transpose21", "reshape-permute", "view-transpose-neg"])
def test_a_flatten_then_swap_is_tokens(fn):
    result = from_torch(_tokens_model(fn), (3, 24, 32))  # 4 channels, 6 x 8 = 48 positions
    exact(result)
    assert "tokens" in result.text and "permute" not in result.text.split("input x")[1].replace("permute: tokens", "")


def test_a_reshape_of_the_same_row_major_order_is_tokens_when_the_sizes_coincide():
    # 4 channels, 2 x 2 positions: reshape(n, h * w, c) is the same row-major split as
    # reshape(n, c, h * w), so the chain is tokens (and the round trip says so)
    result = from_torch(_tokens_model(lambda x: x.reshape(x.shape[0], 4, 4).transpose(1, 2)), (3, 8, 8))
    exact(result)
    assert "tokens" in result.text


@pytest.mark.parametrize("fn, what", [
    # [HW, C] in shape, but channels and positions mixed: no op of the catalogue
    (lambda x: x.reshape(x.shape[0], x.shape[2] * x.shape[3], x.shape[1]), "reshape"),
    (lambda x: x.reshape(x.shape[0], x.shape[2] * x.shape[3], x.shape[1]).transpose(1, 2).transpose(1, 2), "reshape"),
    # the batch dim swapped in: not a per-sample swap
    (lambda x: x.flatten(2).permute(2, 0, 1), "flatten"),
], ids=["reshape-to-HW-C", "reshape-then-two-swaps", "swap-with-batch"])
def test_a_reshape_in_another_element_order_is_not_tokens(fn, what):
    with pytest.raises(resdsl.SpecError) as caught:
        from_torch(_tokens_model(fn), (3, 8, 16))  # 4 channels, 2 x 4 = 8 positions
    message = caught.value.render()
    assert "is no op of the catalogue" in message and what in message


def test_tokens_reads_the_call_before_and_its_order():
    tokens = REGISTRY["tokens"]
    flatten = TorchCall("Tensor.flatten", (2,), {}, ((4, 2, 3),), (4, 6))
    ok = TorchCall("Tensor.flatten+Tensor.transpose", (1, 2), {}, ((4, 6),), (6, 4), before=flatten)
    assert tokens.from_call(ok) == {}
    wrong = TorchCall("Tensor.reshape", (1, 6, 4), {}, ((4, 2, 3),), (6, 4))  # [HW, C] straight away
    assert tokens.from_call(TorchCall("Tensor.reshape+Tensor.permute", (0, 2, 1), {}, ((6, 4),), (4, 6),
                                      before=wrong)) is None
    assert tokens.from_call(TorchCall("Tensor.flatten+Tensor.permute", (1, 0, 2), {}, ((4, 6),), (4, 6),
                                      before=flatten)) is None  # the batch moves
    assert tokens.from_call(TorchCall("Tensor.flatten+Tensor.transpose", (1, 2), {}, ((4, 6),), (6, 4))) is None


def test_select_is_one_token_of_a_sequence():
    select = REGISTRY["select"]
    call = TorchCall("_operator.getitem", ((slice(None), 0),), {}, ((5, 8),), (8,))
    assert select.from_call(call) == {"index": 0}
    assert select.from_call(TorchCall("_operator.getitem", ((slice(None), -1),), {}, ((5, 8),), (8,))) == {"index": -1}
    assert select.from_call(TorchCall("_operator.getitem", (0,), {}, ((5, 8),), (5, 8))) is None  # a sample
    assert select.from_call(TorchCall("_operator.getitem", ((slice(None), slice(0, 2)),), {}, ((5, 8),), (2, 8))) is None
    assert select.from_call(TorchCall("_operator.getitem", ((slice(None), 0),), {}, ((5, 8, 2),), (8, 2))) is None


class _Attend(nn.Module):
    def __init__(self, how, other: bool = True, **options):
        super().__init__()
        self.how = how
        self.attn = nn.MultiheadAttention(8, 2, **{"batch_first": True, **options})
        if other:
            self.other = nn.Linear(8, 8)

    def forward(self, x):  # x: [B, N, 8]
        return self.how(self, x)


def test_multihead_attention_called_as_self_attention_is_attention():
    result = from_torch(_Attend(lambda m, x: m.attn(x, x, x, need_weights=False)[0], other=False,
                                dropout=0.1, bias=False), (5, 8))
    exact(result)
    assert "attn: attention 2, dropout=0.1, bias=false" in result.text


@pytest.mark.parametrize("how, options", [
    (lambda m, x: m.attn(x, m.other(x), m.other(x), need_weights=False)[0], {}),  # cross-attention
    (lambda m, x: m.attn(x, x, x)[1].sum(1), {}),  # the attention weights
    (lambda m, x: m.attn(x, x, x, need_weights=False)[0], {"batch_first": False}),
    (lambda m, x: m.attn(x, x, x, need_weights=False)[0], {"kdim": 4, "vdim": 4}),
], ids=["cross", "weights", "sequence-first", "other-key-width"])
def test_other_calls_of_multihead_attention_are_not_attention(how, options):
    if "kdim" in options:  # keys and values of width 4: a projection makes them
        source = _Attend(lambda m, x: m.attn(x, x[..., :4], x[..., :4], need_weights=False)[0], **options)
    else:
        source = _Attend(how, **options)
    with pytest.raises(resdsl.SpecError) as caught:
        from_torch(source, (5, 8))
    assert "(root)" in caught.value.render()


def test_attention_reads_how_it_is_called():
    attention = REGISTRY["attention"]
    self_call = TorchCall("module", (TensorRef(1), TensorRef(2)), {"need_weights": False}, ((5, 8),) * 3, (5, 8),
                          index=0, distinct=(0, 0, 0))
    assert attention.from_module_call(self_call) == {"causal": False}
    cross = TorchCall("module", (TensorRef(1), TensorRef(2)), {}, ((5, 8),) * 3, (5, 8), index=0, distinct=(0, 1, 1))
    assert attention.from_module_call(cross) is None
    masked = TorchCall("module", (TensorRef(1), TensorRef(2)), {"attn_mask": TensorRef(3)}, ((5, 8),) * 4, (5, 8),
                       index=0, distinct=(0, 0, 0, 3))
    assert attention.from_module_call(masked) is None


class _Learned(nn.Module):
    """A class token concatenated in front, a position embedding added, a layer scale."""

    def __init__(self):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, 6))
        self.pos = nn.Parameter(torch.randn(1, 5, 6) * 0.02)
        self.scale = nn.Parameter(torch.full((5, 6), 0.5))
        self.proj = nn.Linear(6, 6)

    def forward(self, x):  # [B, 4, 6]
        x = torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos
        return self.proj(x) * self.scale


def test_learnable_tensors_with_a_batch_dim_of_one():
    result = from_torch(_Learned(), (4, 6))
    exact(result)
    text = result.text
    assert "token: parameter 1, 1, 6, batch=true" in text
    assert "pos: parameter 1, 5, 6, std=0.02, batch=true" in text
    assert "scale: parameter 5, 6, init=0.5\n" in text  # no batch dim: broadcast as it is


def test_an_expand_that_grows_a_sample_dim_is_not_the_batch():
    expand = REGISTRY["parameter"].from_call
    assert expand(TorchCall("Tensor.expand", (1, -1, -1), {}, ((1, 6),), (1, 6))) == {"batch": True}
    assert expand(TorchCall("Tensor.expand", (1, 3, -1), {}, ((1, 6),), (3, 6))) is None
    assert expand(TorchCall("Tensor.expand", (1, 1, 1, 6), {}, ((1, 6),), (1, 1, 6))) is None


def test_window_attention_and_patch_merging_of_torchvision():
    from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = ShiftedWindowAttention(8, [4, 4], [2, 2], 2, attention_dropout=0.1)
            self.b = ShiftedWindowAttentionV2(32, [3, 3], [0, 0], 4)

        def forward(self, x):  # [B, H, W, 8]
            return self.b(patch_merging_pad(self.a(x)))

    result = from_torch(Model(), (9, 7, 8))
    exact(result)
    assert "a: window_attention 2, window=4, shift=2, attention_dropout=0.1" in result.text
    assert "patch_merge\n" in result.text
    assert "b: window_attention 4, window=3, v2=true" in result.text


def test_a_window_attention_with_unequal_windows_is_not_the_op():
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = ShiftedWindowAttention(8, [4, 2], [0, 0], 2)

        def forward(self, x):
            return self.a(x)

    with pytest.raises(resdsl.SpecError):
        from_torch(Model(), (8, 8, 8))
