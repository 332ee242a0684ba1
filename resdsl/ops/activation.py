"""Activations: the nonlinearities a path through the network crosses."""

from __future__ import annotations

from .base import ANNOTATION, POINTWISE, ArgSpec, OpSpec, register

_TORCH_CLASSES = {
    "relu": "ReLU",
    "gelu": "GELU",
    "silu": "SiLU",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    # v2: MobileNet's. torchvision builds relu6 and hardswish with inplace=True; the
    # generated code decides in place per use (below), which leaves the state unchanged.
    "relu6": "ReLU6",
    "hardswish": "Hardswish",
    "hardsigmoid": "Hardsigmoid",
}

#: Built with ``inplace=True`` where their input is fresh and dead (torch supports it).
_IN_PLACE = {"relu", "relu6", "hardswish", "hardsigmoid"}


def _code(class_name: str):
    return lambda c: c.call(f"nn.{class_name}")


for _name, _class in _TORCH_CLASSES.items():
    register(OpSpec(
        name=_name,
        doc=f"The {_name} nonlinearity, element-wise.",
        category="activation",
        positional=(),
        keywords=(),
        infer=lambda s, a: s,
        label=lambda a, i, o, _n=_name: _n,
        code=_code(_class),
        receptive_field=POINTWISE,
        nonlinear=True,
        diagram=ANNOTATION,
        in_place=_name in _IN_PLACE,  # nn.ReLU(inplace=True); the others keep their input
    ))


register(OpSpec(
    name="leaky_relu",
    doc="Leaky relu with the given negative slope.",
    category="activation",
    positional=(ArgSpec("slope", "float", 0.01),),
    keywords=(),
    infer=lambda s, a: s,
    label=lambda a, i, o: f"leaky relu {a['slope']:g}",
    code=lambda c: c.call("nn.LeakyReLU", c.arg("slope")),
    receptive_field=POINTWISE,
    nonlinear=True,
    diagram=ANNOTATION,
))
