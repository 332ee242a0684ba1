"""The analytic parts of `resdsl analyze`, checked exactly: paths against brute-force
enumeration, cost against torch, identity at initialisation numerically."""

from __future__ import annotations

import json
from collections import Counter
from math import comb, prod
from pathlib import Path

import networkx as nx
import pytest

import resdsl
from tests.random_dags import random_dag_cases
from resdsl.cli import main
from resdsl.analysis.paths import path_polynomial
from resdsl.analysis.report import analyze, node_macs, path_stats, receptive_fields
from resdsl.graph import op_edge, op_node, op_nodes
from resdsl.ops import REGISTRY

SPECS = Path(__file__).resolve().parents[1] / "resdsl" / "zoo"
CIFAR = SPECS / "cifar_resnet.res"
PREACT = SPECS / "preact_resnet.res"
UNET = SPECS / "unet.res"

SMALL_SPECS = {
    "mlp": """
network mlp:
    input x: [8]
    fc1: linear 8
    residual:
        fc2: linear 8
        relu
    residual:
        fc3: linear 8
        relu
        fc4: linear 8
    head: linear 2
""",
    # `add a` with `a` current feeds both ports of one node: two paths, not one.
    "double_port": """
network double_port:
    input x: [4]
    a: linear 4
    add a
    residual:
        linear 4
        relu
    mul a
    concat x
    linear 3
""",
    "projection": """
network projection:
    defaults conv(bias=false)
    input x: [3, 8, 8]
    conv 3x3, 4
    residual:
        conv 3x3, 8, stride=2
        batchnorm
        relu
    residual shortcut=A:
        conv 3x3, 16, stride=2
        batchnorm
    relu
    adaptive_avgpool 1
    flatten
    linear 2
""",
    "tiny_unet": """
network tiny_unet:
    input x: [1, 16, 16]
    e1: conv 3x3, 4
    relu
    maxpool 2x2
    e2: conv 3x3, 8
    relu
    upconv 2x2, 4
    concat e1
    conv 3x3, 4
    relu
    add e1
    conv 1x1, 2
""",
}


def brute_force(graph: nx.DiGraph, source: int, target: int) -> tuple[Counter, Counter]:
    """Enumerate every path; weight by the product of port counts along it."""
    lengths, nonlinear = Counter(), Counter()
    for path in nx.all_simple_paths(graph, source, target) if source != target else [[source]]:
        times = prod(len(op_edge(graph, u, v).ports) for u, v in zip(path, path[1:]))
        ops = [REGISTRY[op_node(graph, n).op] for n in path[1:]]
        lengths[sum(op.weighted for op in ops)] += times
        nonlinear[sum(op.nonlinear for op in ops)] += times
    return lengths, nonlinear


@pytest.mark.parametrize("name", sorted(SMALL_SPECS))
def test_paths_equal_brute_force_on_small_specs(name):
    graph = resdsl.loads(SMALL_SPECS[name]).graph
    lengths, nonlinear = brute_force(graph, graph.graph["input"], graph.graph["output"])
    stats = path_stats(graph)
    assert stats.lengths == dict(lengths)
    assert stats.nonlinear == dict(nonlinear)
    assert stats.count == sum(lengths.values()) == sum(nonlinear.values())


@pytest.mark.parametrize("spec, params", [(CIFAR, {"n": 2}), (PREACT, {"n": 2}), (UNET, {})])
def test_paths_equal_brute_force_on_zoo_specs(spec, params):
    graph = resdsl.load(spec, **params).graph
    lengths, nonlinear = brute_force(graph, graph.graph["input"], graph.graph["output"])
    stats = path_stats(graph)
    assert (stats.lengths, stats.nonlinear) == (dict(lengths), dict(nonlinear))


def test_double_port_counts_with_multiplicity():
    graph = resdsl.loads(SMALL_SPECS["double_port"]).graph
    plain_paths = sum(1 for _ in nx.all_simple_paths(graph, graph.graph["input"], graph.graph["output"]))
    assert path_stats(graph).count > plain_paths


def test_polynomial_on_random_dags():
    """Random DAGs with random ports and costs, between random endpoints."""
    for graph, costs, source, target, expected in random_dag_cases(seed=7):
        assert path_polynomial(graph, costs.__getitem__, source, target) == dict(expected)


@pytest.mark.parametrize("n", [1, 2, 9])
def test_resnet_lengths_are_binomial(n):
    """3n units of two convs: lengths 2 + 2k with C(3n, k) paths (Veit et al. 2016)."""
    stats = path_stats(resdsl.load(CIFAR, n=n).graph)
    units = 3 * n
    assert stats.lengths == {2 + 2 * k: comb(units, k) for k in range(units + 1)}
    assert stats.count == 2 ** units
    assert stats.effective_depth == 2 + units  # half of the 2 * units body convs, plus stem and fc


def test_resnet_1202_has_2_to_the_600_paths():
    stats = path_stats(resdsl.load(CIFAR, n=200).graph)
    assert stats.count == 2 ** 600
    assert stats.effective_depth == 602
    assert (stats.min_length, stats.max_length) == (2, 1202)
    assert stats.lengths[602] == comb(600, 300)


def test_plain_twin_has_exactly_one_path():
    stats = path_stats(resdsl.load(CIFAR, n=9, plain=True).graph)
    assert stats.lengths == {56: 1}
    assert stats.nonlinear == {55: 1}


def test_post_activation_resnet_crosses_a_relu_per_block():
    report = analyze(resdsl.load(CIFAR, n=9))
    assert len(report.blocks) == 27
    assert all(b.min_nonlinear == 1 for b in report.blocks)
    assert report.paths.min_nonlinear == 1 + 27  # the stem's relu, then one per block
    assert report.trunk.min_nonlinear == 27


def test_preact_resnet_has_a_nonlinearity_free_trunk_path():
    report = analyze(resdsl.load(PREACT, n=3))
    assert report.trunk.min_nonlinear == 0
    assert len(report.blocks) == 9
    assert all(b.min_nonlinear == 0 for b in report.blocks)
    assert report.paths.min_nonlinear == 1  # only the final bn + relu before the head


def test_unet_top_path():
    stats = path_stats(resdsl.load(UNET).graph)
    assert stats.count == 5  # one per resolution: four long skips and the bottom
    assert stats.min_nonlinear == 4  # enc1's two relus, then dec1's two
    assert stats.max_nonlinear == 18  # nine double convs
    assert stats.lengths == {5: 1, 10: 1, 15: 1, 20: 1, 23: 1}


# ---- cost against torch -----------------------------------------------------------------
def hook_macs(model, x) -> int:
    """Conv/linear MACs counted from the tensors a forward pass actually sees."""
    import torch
    from torch import nn

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        batch = output.shape[0]
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            total += inputs[0].numel() // batch * module.weight[0].numel()
        elif isinstance(module, nn.modules.conv._ConvNd):
            total += output.numel() // batch * module.weight[0].numel()
        elif isinstance(module, nn.Linear):
            total += output.numel() // batch * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return total


COST_SPECS = [
    (CIFAR, {"n": 2}),
    (PREACT, {"n": 2}),
    (UNET, {"pad": 1, "size": 32}),
    (SPECS / "resnext50_32x4d.res", {}),
]


@pytest.mark.parametrize("spec, params", COST_SPECS, ids=lambda v: getattr(v, "stem", None))
def test_weight_macs_and_params_match_torch(spec, params):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = resdsl.load(spec, **params)
    model = net.build().eval()
    graph = net.graph
    ours = sum(node_macs(graph, n) for n in graph if REGISTRY[op_node(graph, n).op].weighted)
    x = torch.zeros(2, *net.input_shape)
    assert ours == hook_macs(model, x)  # per sample
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert 2 * ours * 2 == counter.get_total_flops()  # batch 2, FLOPs = 2 x MACs
    report = analyze(net)
    assert report.params == sum(p.numel() for p in model.parameters()) == net.num_params
    assert report.macs == sum(node_macs(graph, n) for n in graph)


def test_stage_rows_add_up():
    net = resdsl.load(CIFAR, n=3)
    report = analyze(net)
    assert [s.name for s in report.stages] == [row[0] for row in net.summary_rows()]
    assert [s.params for s in report.stages] == [row[3] for row in net.summary_rows()]
    assert report.activations == sum(prod(op_node(net.graph, n).shape) for n in net.graph if n)
    assert report.peak_activations <= report.activations


def test_receptive_field_matches_gradient_support():
    """Set every weight to 1 and see which input pixels reach the centre output."""
    import torch

    net = resdsl.loads("""
network rf:
    defaults conv(bias=false)
    input x: [1, 96, 96]
    conv 3x3, 2, stride=2
    avgpool 2x2
    conv 3x3, 2, dilation=2
    conv 5x5, 2, stride=2
    upconv 2x2, 2, bias=false
    conv 3x3, 2
""")
    model = net.build().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    x = torch.zeros(1, *net.input_shape, requires_grad=True)
    out = model(x)
    h, w = out.shape[-2:]
    for i, j in [(h // 2, w // 2), (h // 2 + 1, w // 2 + 1)]:
        x.grad = None
        model(x)[0, 0, i, j].backward()
        rows = x.grad[0, 0].abs().sum(1).nonzero()
        cols = x.grad[0, 0].abs().sum(0).nonzero()
        extent = (int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1)
        assert extent == receptive_fields(net.graph)[net.graph.graph["output"]]


def test_resnet50_receptive_field():
    """The known theoretical value for ResNet-50's last feature map: 427 pixels."""
    report = analyze(resdsl.load(SPECS / "resnet50.res"))
    assert report.receptive_field == (427, 427)
    assert report.stages[-1].receptive_field is None  # after global pooling: global


# ---- identity at initialisation ---------------------------------------------------------
def test_zero_init_residual_makes_every_unit_the_identity():
    from resdsl.analysis.probes import init_ratios

    net = resdsl.load(CIFAR, n=2, size=16)
    zeroed = init_ratios(net, zero_init_residual=True)
    default = init_ratios(net, zero_init_residual=False)
    assert len(zeroed) == len(default) == 6
    assert all(r.ratio < 1e-7 for r in zeroed)
    assert all(r.ratio > 0.1 for r in default)


def test_zero_init_stage_is_the_identity():
    """A whole stage of post-activation blocks maps a non-negative x to itself."""
    import torch

    net = resdsl.load(CIFAR, n=3, size=16)
    torch.manual_seed(0)
    model = net.build(zero_init_residual=True).train()
    x = torch.relu(torch.randn(4, 16, 16, 16))
    with torch.no_grad():
        assert torch.allclose(model.layer1(x), x, atol=1e-6)
        assert not torch.allclose(net.build().train().layer1(x), x, atol=1e-2)


def test_dropping_units_of_a_zero_init_network_changes_nothing():
    import torch
    from resdsl.analysis.probes import dropped
    from resdsl.graph import residual_units

    net = resdsl.load(CIFAR, n=2, size=16)
    x = torch.randn(4, *net.input_shape)
    for zero in (True, False):
        torch.manual_seed(0)
        model = net.build(zero_init_residual=zero).eval()
        with torch.no_grad():
            full = model(x)
            with dropped(model, net.graph, residual_units(net.graph)):
                short = model(x)
        assert torch.allclose(full, short, atol=1e-6) == zero


def test_plain_downsampling_block_cannot_be_dropped():
    from resdsl.analysis.probes import dropped
    from resdsl.graph import residual_units

    net = resdsl.load(CIFAR, n=1, size=8, plain=True)
    model = net.build()
    with pytest.raises(ValueError, match="changes the shape"):
        with dropped(model, net.graph, residual_units(net.graph)[1:2]):
            pass


# ---- the command ------------------------------------------------------------------------
@pytest.mark.parametrize("extra, paths", [([], 2 ** 27), (["--plain"], 1)])
def test_cli_analyze_json(capsys, extra, paths):
    assert main(["analyze", str(CIFAR), "-D", "n=9", "--json", *extra]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["paths"] == paths
    assert isinstance(result["paths"], int)
    assert result["params"] == 853_018
    assert result["flops"] == 2 * result["macs"]
    assert result["path_stats"]["max_length"] == 56


def test_cli_analyze_text(capsys):
    assert main(["analyze", str(PREACT), "-D", "n=2"]) == 0
    out = capsys.readouterr().out
    assert "a path with no nonlinearity exists" in out
    assert "effective depth" in out


def test_analysis_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, resdsl; from resdsl.analysis import analyze; "
            f"analyze(resdsl.load({str(CIFAR)!r}, n=3)); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_one_rule_for_where_a_tensor_can_be_seen():
    """Forward-hook observation has one home (backends.torch.observe): the probes use it,
    observed_shapes is it, and every op but the inline-only zero-pad shortcuts is seen
    with the shape the front end inferred."""
    import torch

    from resdsl.analysis import probes
    from resdsl.backends import torch as backend

    assert probes.observe is backend.observe
    for net in (resdsl.load(CIFAR, n=1, size=8), resdsl.load(UNET, size=188)):
        graph, model = net.graph, net.build().eval()
        nodes = [d.id for d in op_nodes(graph) if d.module is not None]
        with torch.no_grad():
            shapes = backend.observed_shapes(model, net, torch.zeros(1, *net.input_shape))
        assert shapes and set(nodes) - set(shapes) == {n for n in nodes if op_node(graph, n).op == "zero_pad"}
        assert all(op_node(graph, n).shape == shape for n, shape in shapes.items())
