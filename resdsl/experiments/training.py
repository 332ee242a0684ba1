"""Shared pieces of the experiments: the digits data, the networks, a training loop.

The data is scikit-learn's bundled digits (1797 8x8 grey images, no download),
split 80/20 stratified with a fixed seed; pixels scaled to zero mean, unit
variance and repeated over the input's channels. The networks are the CIFAR
ResNets of ``resdsl/zoo/cifar_resnet.res`` (6n+2 layers, option A) at ``size=8``, and
their plain twins (``plain=True``: the same layers, no skips).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Net

SPEC = Path(__file__).resolve().parents[1] / "zoo" / "cifar_resnet.res"
DATA_SEED = 0


@dataclass(frozen=True)
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits(channels: int = 3, limit: int | None = None) -> Data:
    """The digits split (train 1437, test 360); ``limit`` keeps the first samples of
    each part (smoke runs)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=DATA_SEED)
    mean, std = x_train.mean(), x_train.std()

    def prepare(x, y):
        x = torch.tensor((x - mean) / std, dtype=torch.float32).reshape(-1, 1, 8, 8)
        return x.repeat(1, channels, 1, 1)[:limit], torch.tensor(y)[:limit]

    return Data(*prepare(x_train, y_train), *prepare(x_test, y_test))


def load_net(n: int, plain: bool, spec: Path = SPEC) -> "Net":
    """The 6n+2-layer CIFAR ResNet (or its plain twin) on 8x8 inputs, 10 classes."""
    from ..api import load

    return load(spec, n=n, size=8, num_classes=10, plain=plain)


@dataclass
class Run:
    """One training run: its curve and the trained model (in eval mode)."""

    n: int
    plain: bool
    seed: int
    steps: list[int] = field(default_factory=list)
    train_error: list[float] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)
    seconds: float = 0.0
    model: torch.nn.Module | None = None
    net: "Net | None" = None

    @property
    def depth(self) -> int:
        return 6 * self.n + 2


def error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Classification error in eval mode (running batchnorm statistics)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        wrong = sum((model(xb).argmax(1) != yb).sum().item()
                    for xb, yb in zip(x.split(512), y.split(512)))
    model.train(was_training)
    return wrong / len(y)


def train(n: int, plain: bool, seed: int, data: Data, *, steps: int, batch: int = 64,
          lr: float = 0.05, eval_every: int = 25, spec: Path = SPEC) -> Run:
    """Train the 6n+2-layer CIFAR ResNet (or its plain twin) with :func:`fit`."""
    net = load_net(n, plain, spec)
    return fit(net, Run(n, plain, seed, net=net), data, steps=steps, batch=batch, lr=lr,
               eval_every=eval_every)


def fit(net: "Net", run: Run, data: Data, *, steps: int, batch: int = 64, lr: float = 0.05,
        eval_every: int = 25, init: Callable[[torch.nn.Module], None] | None = None) -> Run:
    """SGD (momentum 0.9, weight decay 1e-4, constant ``lr``) for ``steps`` minibatches.

    ``run.seed`` fixes the weights and the order of the minibatches; ``init``, if
    given, re-initialises the freshly built module (after the seed is set). The
    training and test error are measured every ``eval_every`` steps and at the end,
    into ``run``, which is returned with the trained model (in eval mode).
    """
    run.net = net
    torch.manual_seed(run.seed)
    model = net.build().train()
    if init is not None:
        init(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    order = torch.Generator().manual_seed(run.seed)
    start = time.perf_counter()
    batches = _batches(len(data.y_train), batch, order)
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            run.steps.append(step)
            run.train_error.append(error(model, data.x_train, data.y_train))
            run.test_error.append(error(model, data.x_test, data.y_test))
        if step == steps:
            break
        index = next(batches)
        loss = F.cross_entropy(model(data.x_train[index]), data.y_train[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    run.seconds = time.perf_counter() - start
    run.model = model.eval()
    return run


def _batches(size: int, batch: int, generator: torch.Generator):
    """Minibatch indices, reshuffled every epoch; the last partial batch is dropped."""
    while True:
        perm = torch.randperm(size, generator=generator)
        for start in range(0, size - batch + 1, batch):
            yield perm[start:start + batch]


def spread(values: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    """Mean, min and max over seeds, per point."""
    columns = list(zip(*values))
    return ([sum(c) / len(c) for c in columns], [min(c) for c in columns], [max(c) for c in columns])


def pyplot():
    """matplotlib's pyplot on the Agg back end (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_results(fig, result: dict, out: Path, stem: str) -> Path:
    """Write ``out/stem.png`` (the figure) and ``out/stem.json`` (the numbers behind it)."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    figure = out / f"{stem}.png"
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    pyplot().close(fig)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    return figure


def set_threads() -> None:
    """One thread: these networks are small, and on shared cores a second thread
    waiting for a busy core made a training step ten times slower (measured)."""
    torch.set_num_threads(1)
