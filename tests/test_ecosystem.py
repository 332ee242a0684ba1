"""The built module in the PyTorch ecosystem: fx, export, compile, TorchScript, ONNX, DDP, devices.

torch.compile is slow on small CPUs: the full-size checks (resnet50, unet) are
marked slow; a small residual network keeps compile in the default run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import resdsl

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "resdsl" / "zoo"


def _unet():
    return resdsl.load(SPECS / "unet.res", pad=1, size=64).build().eval()


def _resnet18():
    return resdsl.load(SPECS / "resnet18.res").build().eval()


def _vit():
    """A small ViT of vit.res (issue 15): the same ops as ViT-B/16 at a size tests afford."""
    return resdsl.load(SPECS / "vit.res", image=32, patch=8, depth=2, heads=4, dim=64, mlp=128).build().eval()


def _gpt():
    """A small GPT of gpt.res (issue 15): integer token ids in, causal attention, tied head."""
    return resdsl.load(SPECS / "gpt.res", layers=2, heads=4, dim=64, context=32, vocab=100, seq=16).build().eval()


def _ids(*shape: int) -> torch.Tensor:
    return torch.randint(0, 100, shape, generator=torch.Generator().manual_seed(0))


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return torch.allclose(a, b, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("make, shape", [(_resnet18, (2, 3, 32, 32)), (_unet, (1, 1, 64, 64))])
def test_fx_symbolic_trace(make, shape):
    model = make()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))


@pytest.mark.parametrize("make, shape", [(_resnet18, (2, 3, 32, 32)), (_unet, (1, 1, 64, 64)),
                                         (_vit, (2, 3, 32, 32)), (_gpt, (2, 16))])
def test_torch_export(make, shape):
    model = make()
    x = _ids(*shape) if make is _gpt else torch.randn(shape)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert _close(program.module()(x), model(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("make, shape", [(_resnet18, (1, 3, 32, 32)), (_unet, (1, 1, 64, 64))])
def test_torchscript(make, shape):
    model = make()
    scripted = torch.jit.script(model)
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))


def _compiled_matches(model: torch.nn.Module, x: torch.Tensor) -> None:
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)  # fullgraph: any graph break is an error
    with torch.no_grad():
        assert _close(compiled(x), model(x), atol=1e-4)


def test_torch_compile_fullgraph_small():
    net = resdsl.loads(textwrap.dedent("""\
        network small:
            defaults conv(bias=false)
            input x: [3, 16, 16]
            block basic(out: int, stride: int = 1):
                residual:
                    conv1: conv 3x3, out, stride=stride
                    bn1: batchnorm
                    relu
                    conv2: conv 3x3, out
                    bn2: batchnorm
                relu
            conv1: conv 3x3, 8
            layer1: stage basic(8) x 2
            layer2: stage basic(16) x 1, stride=2
            skip: conv 1x1, 16
            concat skip
            adaptive_avgpool 1
            flatten
            fc: linear 4
    """))
    _compiled_matches(net.build().eval(), torch.randn(2, 3, 16, 16))


@pytest.mark.slow
def test_torch_compile_fullgraph_resnet50(resnet50_model):
    _compiled_matches(resnet50_model, torch.randn(1, 3, 64, 64))


def test_torch_compile_fullgraph_vit():
    _compiled_matches(_vit(), torch.randn(2, 3, 32, 32))


def test_torch_compile_fullgraph_gpt():
    _compiled_matches(_gpt(), _ids(2, 16))


@pytest.mark.slow
def test_torch_compile_fullgraph_unet():
    _compiled_matches(_unet(), torch.randn(1, 1, 64, 64))


@pytest.mark.parametrize("make, shape", [(_resnet18, (1, 3, 64, 64)), (_unet, (1, 1, 64, 64)),
                                         (_vit, (2, 3, 32, 32)), (_gpt, (2, 16))])
def test_onnx_export_runs_in_onnxruntime(make, shape, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = make()
    x = _ids(*shape) if make is _gpt else torch.randn(shape)
    program = torch.onnx.export(model, (x,), dynamo=True, verbose=False)
    path = tmp_path / "model.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-4, rtol=1e-4)


def test_meta_device_channels_last_and_autocast():
    net = resdsl.load(SPECS / "resnet18.res")
    model = net.build(device="meta")
    x = torch.empty(2, 3, 64, 64, device="meta")
    assert model(x).shape == (2, 1000) and model(x).is_meta
    model = model.to(memory_format=torch.channels_last)
    assert model(x.to(memory_format=torch.channels_last)).shape == (2, 1000)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # AMP: the same code path as on CUDA
        real = net.build().eval()
        with torch.no_grad():
            assert real(torch.randn(1, 3, 32, 32)).dtype == torch.bfloat16


def test_generated_code_has_no_device_specific_calls():
    from resdsl.backends.codegen import generate

    text = generate(resdsl.load(SPECS / "unet.res")).text
    for word in ("cpu", "cuda", ".numpy(", ".item(", ".tolist(", "device="):
        assert word not in text


DDP_WORKER = textwrap.dedent("""\
    import os, sys, torch, torch.distributed as dist
    import resdsl
    rank, world, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same initial weights; DDP broadcasts rank 0's anyway
    model = torch.nn.parallel.DistributedDataParallel(resdsl.load("resdsl/zoo/resnet18.res", num_classes=10).build())
    initial = torch.cat([p.detach().flatten() for p in model.module.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(100 + rank)  # each rank its own data
    for _ in range(2):
        x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    flat = torch.cat([p.detach().flatten() for p in model.module.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        assert len(gathered) == world >= 2
        assert all(torch.equal(gathered[0], g) for g in gathered[1:]), "replicas diverged"
        assert not torch.equal(flat, initial), "two steps did not train"
        print("replicas identical")
    # DDP holds the process group: release it first, or the group outlives
    # destroy_process_group and its gloo threads die with the interpreter, aborting the
    # process about one run in six ("terminate called without an active exception").
    del model, optimizer
    dist.destroy_process_group()
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_two_processes_keep_replicas_identical(tmp_path):
    script = tmp_path / "ddp_worker.py"
    script.write_text(DDP_WORKER)
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), "2", port], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    # Generous: two processes start torch and build a model on a loaded 2-core machine.
    outputs = [proc.communicate(timeout=900)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert "replicas identical" in outputs[0]
