"""The built torch module: names, numbers, shapes, and device/dtype independence."""

from __future__ import annotations

import pytest
import torch

import resdsl
from resdsl.backends.torch import observed_shapes
from resdsl.graph import op_node, residual_units

torchvision = pytest.importorskip("torchvision")


def test_resnet50_matches_torchvision(resnet50_net, resnet50_model):
    reference = torchvision.models.resnet50().eval()
    ours, theirs = resnet50_model.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in theirs)
    resnet50_model.load_state_dict(theirs, strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (resnet50_model(x) - reference(x)).abs().max().item() <= 1e-5
    assert sum(p.numel() for p in resnet50_model.parameters()) == resnet50_net.num_params == 25_557_032


def test_observed_shapes_equal_inferred_shapes(resnet50_net, resnet50_model):
    with torch.no_grad():
        seen = observed_shapes(resnet50_model, resnet50_net, torch.zeros(1, 3, 224, 224))
    graph = resnet50_net.graph
    assert len(seen) == graph.number_of_nodes() - 1
    assert all(op_node(graph, n).shape == shape for n, shape in seen.items())


def test_unet_forward(unet_net):
    model = unet_net.build().eval()
    assert sum(p.numel() for p in model.parameters()) == 31_030_658
    small = resdsl.load("resdsl/zoo/unet.res", size=188).build().eval()  # 188 -> 4 after the valid convs
    with torch.no_grad():
        assert small(torch.zeros(1, 1, 188, 188)).shape == (1, 2, 4, 4)


SMALL_SPECS = {
    "conv1d": ("[4, 33]", "    conv 5, 8, stride=2\n    residual shortcut=A:\n        conv 3, 16, stride=2\n"
               "    maxpool 2\n    flatten\n    linear 3\n"),
    "conv3d": ("[2, 6, 6, 6]", "    conv 3, 4\n    groupnorm 2\n    residual scale=0.5:\n        conv 3x3x3, 8\n"
               "        layernorm\n        gelu\n    upconv 2, 2\n    upsample 2\n"),
    "mlp": ("[20]", "    linear 32\n    residual:\n        linear 32\n        batchnorm\n        silu\n"
            "    residual:\n        linear 16\n        layernorm\n        tanh\n    dropout 0.1\n    linear 2\n"),
    "skips": ("[3, 20, 20]", "    a: conv 3x3, 8\n    b: conv 3x3, 8, pad=0\n    leaky_relu 0.2\n"
              "    concat a, crop=center\n    c: conv 1x1, 16\n    mul c\n    add c\n    sigmoid\n"
              "    avgpool 2x2\n    adaptive_avgpool 1\n    identity\n"),
}


@pytest.mark.parametrize("name", sorted(SMALL_SPECS))
def test_small_specs_shapes_and_params(name):
    shape, body = SMALL_SPECS[name]
    net = resdsl.loads(f"network {name}:\n    input x: {shape}\n{body}")
    model = net.build().eval()
    assert sum(p.numel() for p in model.parameters()) == net.num_params
    with torch.no_grad():
        seen = observed_shapes(model, net, torch.randn(2, *net.input_shape))
    assert {n: op_node(net.graph, n).shape for n in seen} == seen


def test_option_a_shortcut_subsamples_and_pads_zeros():
    net = resdsl.loads("network a:\n    input x: [2, 4, 4]\n    residual shortcut=A:\n"
                       "        c: conv 3x3, 4, stride=2, bias=false\n")
    model = net.build()
    torch.nn.init.zeros_(model.c.weight)
    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    out = model(x)
    assert torch.equal(out[:, :2], x[:, :, ::2, ::2]) and torch.equal(out[:, 2:], torch.zeros(1, 2, 2, 2))


def test_zero_init_residual_makes_every_unit_start_as_the_identity():
    net = resdsl.load("tests/language/resnet18.yaml")
    model = net.build(zero_init_residual=True).eval()
    bodies = {}  # merges are inline code (out += identity): watch each body's last norm instead
    for unit in residual_units(net.graph):
        norm = model.get_submodule(op_node(net.graph, unit.last_norm).module)
        norm.register_forward_hook(lambda mod, inputs, out, key=unit.merge: bodies.__setitem__(key, out.clone()))
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert len(bodies) == 8
    for body in bodies.values():
        assert body.abs().max() == 0  # so each unit's merge gives its shortcut unchanged
    reference = torchvision.models.resnet18(zero_init_residual=True)
    zeroed = {k for k, v in reference.state_dict().items() if k.endswith("bn2.weight") and not v.any()}
    assert zeroed == {k for k, v in model.state_dict().items() if k.endswith(".weight") and v.dim() == 1 and not v.any()}


def test_drop_path_is_random_in_training_and_off_in_eval():
    net = resdsl.loads("network d:\n    input x: [8]\n    residual drop_path=0.5:\n        linear 8\n")
    model = net.build()
    x = torch.randn(64, 8)
    torch.manual_seed(0)
    model.train()
    dropped = model(x)
    model.eval()
    kept = model(x)
    body = kept - x
    rows_dropped = (dropped - x).abs().sum(1) == 0
    assert 0 < rows_dropped.sum() < 64
    assert torch.allclose((dropped - x)[~rows_dropped], 2 * body[~rows_dropped], atol=1e-6)


def test_meta_device_builds_without_allocating(resnet50_net):
    model = resnet50_net.build(device="meta")
    params = list(model.parameters())
    assert len(params) == 161 and all(p.is_meta for p in params)
    out = model(torch.empty(2, 3, 224, 224, device="meta"))
    assert out.shape == (2, 1000) and out.is_meta


def test_channels_last_and_bfloat16_agree_with_default(resnet50_model):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = resnet50_model(x)
        channels_last = resnet50_model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        resnet50_model.to(memory_format=torch.contiguous_format)
        assert torch.allclose(expected, channels_last, atol=1e-4)
        half = resdsl.load("tests/language/resnet18.yaml").build().eval()
        reference = half(x)
        low = half.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16 and torch.allclose(low.float(), reference, atol=0.5, rtol=0.1)


def test_half_precision_module_converts_every_parameter():
    model = resdsl.load("tests/language/resnet18.yaml").build().half()
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    assert {b.dtype for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")} == {torch.float16}
