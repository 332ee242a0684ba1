"""The inference build (``net.build(inference=True)``, ``resdsl compile --inference``).

Exactness: for every zoo model, the inference build with folded weights gives the
training build's eval output within 1e-4 of the output's scale, with every weight
and every batchnorm statistic randomised (tests/parity.py's ``randomize``). One
variant per family runs at a small input by default; every other zoo entry is
``slow`` (at a small input where its spec has a size parameter); models above
150M parameters are checked on the meta device (keys and shapes of the folded
state dict against the inference build's). Plus: what the rewrite does (folds,
dropout and drop-path gone, channels_last), the key mapping of ``Net.fold``,
strict weight loading, the CLI, and deployment (torch.export, ONNX, TorchScript).
"""

from __future__ import annotations

import pytest
import torch

import resdsl
from resdsl import zoo
from resdsl.backends.fold import fold_state_dict
from resdsl.cli import main
from resdsl.graph import op_node
from resdsl.backends.inference import inference_plan
from tests.parity import randomize

#: One variant per family, with the small-input overrides its spec allows.
FAMILIES = {
    "resnet18": {},
    "cifar_resnet20": {"size": 16},
    "preact_resnet164": {"n": 2, "size": 16},
    "unet_same": {"size": 32},
    "residual_mlp": {"depth": 2},
    "regnet_y_400mf": {"size": 32, "depth3": 1, "depth4": 1},
    "convnext_tiny": {"size": 32, "depth3": 1},
    "mobilenet_v2": {},
    "mobilenet_v3_large": {},
    "mnasnet0_5": {},
    "efficientnet_b0": {"size": 32, "depth": 0.4},
    "efficientnet_v2_s": {"size": 32, "n5": 1, "n6": 1},
    "resnext101_32x8d": {"size": 32, "layers3": 1},
    "r2plus1d_18": {"frames": 4, "size": 16},
    "wang_resnet": {},
    "vgg11_bn": {"size": 32},
    "squeezenet1_0": {"size": 64},
    "densenet121": {"size": 32, "b3": 2, "b4": 2},
    "shufflenet_v2_x0_5": {"size": 32},
    "transformer_encoder_pre_ln": {"seq": 4, "num_layers": 1},
    "gpt2": {"layers": 1, "seq": 8},
    "vit_b_16": {"image": 32, "depth": 1},
    "swin_t": {"size": 32, "depth3": 1},
}

#: Parameters that select a small input, where a spec has them (the slow run).
SMALL = {"size": 32, "image": 32, "frames": 4, "seq": 8}
GIANT = 150_000_000


def _small(name: str) -> dict:
    declared = {p.name for p in zoo.load(name).ir.params}
    return {k: v for k, v in SMALL.items() if k in declared}


#: Specs whose small input is another size (the unpadded U-Net's smallest valid input).
OTHER_SIZES = {"unet": {"size": 188}}


def _overrides(name: str) -> dict:
    return FAMILIES.get(name, OTHER_SIZES.get(name, _small(name)))


def check_exact(net: resdsl.Net, batch: int = 2, tolerance: float = 1e-4) -> float:
    """The inference build against the training build in eval mode; returns the error
    relative to the output's scale."""
    train = net.build().eval()
    randomize(train, seed=1)
    fast = net.build(inference=True, weights=train.state_dict())
    assert not fast.training
    x = net.sample_input(batch, seed=2)
    with torch.no_grad():
        want, got = train(x), fast(x)
    assert got.shape == want.shape and got.is_contiguous()
    scale = want.abs().max().item()
    assert scale > 1e-6, "an all-zero output would prove nothing"
    error = (got - want).abs().max().item() / scale
    assert error <= tolerance, f"{net.name}: relative error {error:.2e}"
    return error


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_exact_one_per_family(name):
    check_exact(zoo.load(name, **FAMILIES[name]))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in zoo.names() if n not in FAMILIES])
def test_exact_every_zoo_model(name):
    net = zoo.load(name, **_overrides(name))
    if net.num_params > GIANT:  # structure only: the folded keys and shapes are the build's
        with torch.device("meta"):
            state = net.build(device="meta").state_dict()
        folded = fold_state_dict(net.inference_plan(), state)  # Net.fold refuses meta tensors
        built = net.build(inference=True, device="meta").state_dict()
        assert list(folded) == list(built)
        assert all(folded[k].shape == built[k].shape for k in built)
        return
    check_exact(net, batch=1)


# -- what the rewrite does ------------------------------------------------------------------
REWRITE = '''\
network rewrite(p: float = 0.1):
    input x: [4, 12, 12]

    block unit(c: int):
        residual drop_path=p:
            a: conv 3x3, c, bias=false
            bn_a: batchnorm
            relu
            pre: batchnorm
            b: conv 1x1, c
        relu

    stem: sequential:
        conv 3x3, 8
        batchnorm
        relu
        dropout 0.3
        conv 1x1, 8
    edge: batchnorm
    padded: conv 3x3, 8
    body: stage unit(8) x 2
    avg: adaptive_avgpool 1
    flatten
    drop: dropout 0.5
    fc: linear 6, bias=false
    bn_fc: batchnorm
'''


@pytest.fixture(scope="module")
def rewrite_net():
    return resdsl.loads(REWRITE)


def test_the_rewrite_folds_what_is_exact_and_nothing_else(rewrite_net):
    plan = inference_plan(rewrite_net.graph)
    folds = {(f.norm, f.layer, f.before) for f in plan.folds}
    assert folds == {("stem.1", "stem.0", False), ("bn_fc", "fc", False),
                     ("body.0.bn_a", "body.0.a", False), ("body.1.bn_a", "body.1.a", False),
                     # a norm right before a 1x1 conv folds into its input channels ...
                     ("body.0.pre", "body.0.b", True), ("body.1.pre", "body.1.b", True)}
    # ... but not before a zero-padded 3x3 conv: the border would see 0, not the norm's shift
    assert not any(f.norm == "edge" for f in plan.folds)
    assert set(plan.removed) == {"stem.3", "drop"}
    ops = sorted(op_node(plan.graph, n).op for n in plan.graph)
    assert ops.count("batchnorm") == 1 and "dropout" not in ops
    assert all(op_node(plan.graph, n).args["drop_path"] == 0.0 for n in plan.graph
               if op_node(plan.graph, n).op == "residual_add")
    assert op_node(rewrite_net.graph, 1).op == "conv" and len(rewrite_net.graph) > len(plan.graph)


def test_the_inference_source_reads_like_the_training_source(rewrite_net):
    text = rewrite_net.source(inference=True).text
    assert text == resdsl.loads(REWRITE).source(inference=True).text  # deterministic
    assert "Dropout" not in text and "_drop_path" not in text and "self.training" not in text
    assert text.count("nn.BatchNorm2d") == 1  # ``edge``: before a padded conv, kept
    # positions keep their numbers: the state-dict keys are the training build's
    assert '("0", nn.Conv2d(4, 8, kernel_size=3, padding=1))' in text and '("4", nn.Conv2d(8, 8, kernel_size=1))' in text
    assert "x = x.contiguous(memory_format=torch.channels_last)" in text
    assert "self.eval()" in text and "class Unit(nn.Module):" in text
    black = pytest.importorskip("black")
    assert black.format_str(text, mode=black.Mode(line_length=88)) == text


def test_the_rewritten_spec_is_exact(rewrite_net):
    check_exact(rewrite_net, batch=3)


def test_fold_maps_keys_and_checks_them(rewrite_net):
    train = rewrite_net.build()
    randomize(train)
    state = train.state_dict()
    folded = rewrite_net.fold(state)
    assert list(folded) == list(rewrite_net.build(inference=True, device="meta").state_dict())
    kept = [k for k in state if not k.startswith(("stem.1.", "bn_fc.", "body.0.bn_a.", "body.1.bn_a.",
                                                  "body.0.pre.", "body.1.pre."))]
    assert [k for k in folded if k in state] == kept  # every other key is unchanged, in order
    assert [k for k in folded if k not in state] == ["body.0.a.bias", "body.1.a.bias", "fc.bias"]
    assert list(folded).index("fc.bias") == list(folded).index("fc.weight") + 1
    assert torch.equal(folded["edge.running_var"], state["edge.running_var"])
    del state["stem.1.running_mean"]
    with pytest.raises(resdsl.SpecError) as info:
        rewrite_net.fold(state)
    message = str(info.value)  # the training build's diagnostics: the module and its spec line
    assert ":15:9:" in message and "running_mean" in message and "stem.1" in message


def test_meta_build_and_memory_format(rewrite_net):
    model = rewrite_net.build(inference=True, device="meta")
    assert model(torch.empty(2, 4, 12, 12, device="meta")).shape == (2, 6)
    real = rewrite_net.build(inference=True)
    assert real.padded.weight.is_contiguous(memory_format=torch.channels_last)
    video = resdsl.loads("network v:\n    input x: [3, 4, 8, 8]\n    conv 3, 4\n    batchnorm\n")
    assert video.inference_plan().memory_format == "channels_last_3d"
    flat = resdsl.loads("network f:\n    input x: [8]\n    linear 4\n    batchnorm\n")
    assert flat.inference_plan().memory_format is None and len(flat.inference_plan().folds) == 1


def test_cli_writes_and_loads_the_inference_build(tmp_path, capsys):
    net = zoo.load("cifar_resnet20", size=16)
    train = net.build()
    randomize(train)
    torch.save(train.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "fast.py"
    spec = zoo.path("cifar_resnet20")
    args = ["compile", str(spec), "-D", "n=3", "-D", "size=16", "--inference",
            "--weights", str(tmp_path / "w.pt"), "-o", str(out)]
    assert main(args) == 0
    assert "shapes match" in capsys.readouterr().out
    assert out.read_text() == net.source(inference=True).text
    assert main(["compile", str(spec), "-D", "n=3", "-D", "size=16", "--inference",
                 "--weights", str(tmp_path / "missing.pt")]) == 1


# -- deployment -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet18_fast():
    net = zoo.load("resnet18", num_classes=10)
    train = net.build().eval()
    randomize(train, seed=3)
    return net.build(inference=True, weights=train.state_dict()), torch.randn(1, 3, 64, 64)


def test_torch_export(resnet18_fast):
    model, x = resnet18_fast
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5, rtol=1e-5)


def test_torch_jit_script(resnet18_fast):
    model, x = resnet18_fast
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_onnx_runs_in_onnxruntime(resnet18_fast, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model, x = resnet18_fast
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    program.save(str(tmp_path / "fast.onnx"))
    session = ort.InferenceSession(str(tmp_path / "fast.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x)
    assert (torch.from_numpy(got) - want).abs().max() <= 1e-4 * want.abs().max()
