"""Activations: the nonlinearities a path through the network crosses."""

from __future__ import annotations

from .base import ArgSpec, OpSpec, Shape, register

_TORCH_CLASSES = {
    "relu": "ReLU",
    "gelu": "GELU",
    "silu": "SiLU",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
}


def _builder(class_name: str):
    def build(in_shape: Shape, args: dict):
        from torch import nn

        return getattr(nn, class_name)()

    return build


for _name, _class in _TORCH_CLASSES.items():
    register(OpSpec(
        name=_name,
        doc=f"The {_name} nonlinearity, element-wise.",
        category="activation",
        positional=(),
        keywords=(),
        infer=lambda s, a: s,
        label=lambda a, i, o, _n=_name: _n,
        build=_builder(_class),
    ))


def _build_leaky_relu(in_shape: Shape, args: dict):
    from torch import nn

    return nn.LeakyReLU(args["slope"])


register(OpSpec(
    name="leaky_relu",
    doc="Leaky relu with the given negative slope.",
    category="activation",
    positional=(ArgSpec("slope", "float", 0.01),),
    keywords=(),
    infer=lambda s, a: s,
    label=lambda a, i, o: f"leaky relu {a['slope']:g}",
    build=_build_leaky_relu,
))
