"""The GPT-style decoder (resdsl/zoo/gpt.res) against a reference written here, and the
language it needs: int inputs of token ids, embedding, positions, tied weights."""

from __future__ import annotations

from collections import OrderedDict
import json

import pytest
import torch
from torch import nn

import resdsl
from resdsl.analysis import analyze
from resdsl.backends.codegen import generate
from tests.parity import check_keys, check_parity, randomize, sample

SPEC = "resdsl/zoo/gpt.res"
SMALL = dict(layers=2, heads=4, dim=64, context=32, vocab=100, seq=16)
GPT2 = dict(layers=12, heads=12, dim=768, context=1024, vocab=50257)


# ---- the reference: GPT-2's layout (nanoGPT's names), attention by nn.MultiheadAttention ----
class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(dim, 4 * dim), gelu=nn.GELU(approximate="tanh"),  # GPT-2's gelu_new
            c_proj=nn.Linear(4 * dim, dim), dropout=nn.Dropout(dropout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device, dtype=x.dtype)
        x = x + self.drop(self.attn(h, h, h, attn_mask=mask, need_weights=False)[0])
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, layers: int, heads: int, dim: int, context: int, vocab: int,
                 dropout: float = 0.0, tied: bool = True):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        if tied:
            self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _small(**kw) -> GPT:
    config = {k: v for k, v in SMALL.items() if k != "seq"} | kw
    return GPT(**config)


# ---- the model ---------------------------------------------------------------------------
@pytest.mark.parametrize("tied", [True, False])
def test_small_gpt_is_the_reference(tied):
    net = resdsl.load(SPEC, **SMALL, dropout=0.1, tied=tied)
    model = check_parity(net, _small(dropout=0.1, tied=tied), train=True)
    assert (model.lm_head.weight is model.wte.weight) == tied
    assert list(model.state_dict())[:2] == ["wte.weight", "wpe.weight"]
    assert list(model.state_dict())[-1] == "lm_head.weight"  # tied or not, torch lists both


def test_full_size_keys_shapes_counts_on_meta():
    net = resdsl.load(SPEC)
    assert net.num_params == 124_439_808
    assert resdsl.load(SPEC, tied=False).num_params == 124_439_808 + 50257 * 768
    assert net.input_shape == (1024,) and net.output_shape == (1024, 50257) and net.input_dtype == "int"
    with torch.device("meta"):
        reference = GPT(**GPT2)
    model = net.build(device="meta")
    check_keys(model, reference)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters()) \
        == 124_439_808


@pytest.mark.slow
def test_full_size_gpt2_is_the_reference():
    net = resdsl.load(SPEC, seq=64)
    check_parity(net, GPT(**GPT2), batch=1)


def test_paths_through_the_stream():
    for layers in (2, 12):
        assert analyze(resdsl.load(SPEC, **(SMALL | {"layers": layers}))).paths.count == 2 ** (2 * layers)


def test_standalone_source_reproduces(tmp_path):
    net = resdsl.load(SPEC, **SMALL)
    source = generate(net)
    assert "self.lm_head.weight = self.wte.weight" in source.text and "import resdsl" not in source.text
    path = tmp_path / "gpt.py"
    path.write_text(source.text)
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    model = namespace[source.class_name]().eval()
    assert model.lm_head.weight is model.wte.weight
    reference = _small().eval()
    randomize(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = sample(net)
    assert x.dtype == torch.long and int(x.max()) < 100
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


def test_compile_gpt2_from_the_zoo(capsys, monkeypatch, tmp_path):
    from resdsl.cli import main
    from resdsl.zoo import ENTRIES

    entry = next(e for e in ENTRIES if e.name == "gpt2")
    assert entry.constructor is None and entry.params == {}
    monkeypatch.chdir(tmp_path)
    # the zoo name; a short sequence keeps the zero-batch forward quick
    assert main(["compile", "gpt2", "-D", "seq=8", "--json", "-o", "gpt2.py"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_params"] == result["torch_params"] == 124_439_808 and result["shapes_match"]
    assert "self.lm_head.weight = self.wte.weight" in (tmp_path / "gpt2.py").read_text()


# ---- the language: token ids, embedding, positions, tie ------------------------------------
def _net(body: str, head: str = "input ids: [6], int") -> resdsl.Net:
    return resdsl.loads("network n:\n    " + head + "\n" + "".join(f"    {line}\n" for line in body.split("\n")))


def _error(body: str, head: str = "input ids: [6], int") -> tuple[str, int, int]:
    with pytest.raises(resdsl.SpecError) as info:
        _net(body, head)
    d = info.value.diagnostics[0]
    return d.message, d.span.line, d.span.column


def test_embedding_and_positions_shapes_and_counts():
    net = _net("tok: embedding 10, 8\npos: positions 6, 8\nadd tok")
    assert net.output_shape == (6, 8) and net.num_params == 10 * 8 + 6 * 8
    model = net.build().eval()
    x = net.sample_input(3)
    assert x.dtype == torch.long and x.shape == (3, 6) and int(x.max()) < 10
    with torch.no_grad():
        expected = model.tok(x) + model.pos.weight[:6]
        assert torch.equal(model(x), expected)
    assert net.sample_input(2, zeros=True).dtype == torch.long


def test_float_is_the_default_and_the_input_type_is_checked():
    assert _net("relu", "input x: [4]").input_dtype == "float"
    assert _net("relu", "input x: [4], float").input_dtype == "float"
    message, line, column = _error("relu", "input x: [4], long")
    assert "element type must be float or int, not 'long'" in message and (line, column) == (2, 19)


@pytest.mark.parametrize("body, words", [
    ("relu", "relu reads token ids"),
    ("linear 4", "linear reads token ids"),
    ("tok: embedding 10, 8\nadd input", "add reads token ids"),  # [8, 8] + [8] would broadcast
    ("tok: embedding 10, 8\nmul input", "mul reads token ids"),
])
def test_only_embeddings_read_ids(body, words):
    message, _, _ = _error(body, "input ids: [8], int")
    assert words in message and "only embedding may read" in message


def test_an_embedding_reads_only_ids():
    message, line, column = _error("embedding 10, 8", "input x: [6]")
    assert "embedding reads token ids" in message and "float tensor" in message and (line, column) == (3, 5)
    message, _, _ = _error("tok: embedding 10, 8\nembedding 10, 8")
    assert "embedding reads token ids" in message


def test_positions_longer_than_its_table_is_located():
    message, line, column = _error("tok: embedding 10, 8\npositions 4, 8\nadd tok")
    assert "6 tokens is longer than the 4 positions" in message and (line, column) == (4, 15)


def test_positions_is_unbatched_and_cannot_end_or_feed_an_op():
    message, _, _ = _error("tok: embedding 10, 8\npositions 6, 8\nrelu")
    assert "no batch dimension" in message


def test_tie_errors_are_located():
    message, line, column = _error("tok: embedding 10, 8\nlinear 12, bias=false, tie=tok")
    assert "weights differ in shape: [12, 8] here, [10, 8] of 'tok'" in message and (line, column) == (4, 28)
    message, _, _ = _error("tok: embedding 10, 8\nlinear 10, tie=nothing")
    assert "no layer labelled 'nothing'" in message
    message, _, _ = _error("tok: embedding 10, 8\nr: relu\nlinear 10, tie=r")
    assert "'r' is a relu, which has no weight to share" in message
    message, _, _ = _error("tok: embedding 10, 8\nlinear 10, tie=3")
    assert "names a labelled layer" in message


def test_a_tied_linear_counts_its_bias_only_and_shares_the_tensor():
    net = _net("tok: embedding 10, 8\nhead: linear 10, tie=tok")
    assert net.num_params == 10 * 8 + 10
    model = net.build()
    assert model.head.weight is model.tok.weight
    assert list(model.state_dict()) == ["tok.weight", "head.weight", "head.bias"]
    assert sum(p.numel() for p in model.parameters()) == net.num_params
    untied = _net("tok: embedding 10, 8\nhead: linear 10, tie=none")
    assert untied.num_params == 10 * 8 + 10 * 8 + 10
