"""Activations: the nonlinearities a path through the network crosses."""

from __future__ import annotations

from .base import ANNOTATION, POINTWISE, ArgSpec, OneDNNPost, OpSpec, register

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

#: Built with ``inplace=True`` where their input is fresh and dead (torch supports it; EfficientNet
#: builds its SiLUs so: in place, the inference build runs silu_ at half the time of silu).
_IN_PLACE = {"relu", "relu6", "hardswish", "hardsigmoid", "silu"}


#: Keyword arguments per activation: GELU's tanh approximation (GPT-2's "gelu_new").
_KEYWORDS = {"gelu": (ArgSpec("approximate", "enum", "none", choices=("none", "tanh")),)}


#: Function and method calls that are each activation (``F.relu(x)``, ``x.sigmoid()``).
_CALLS = {
    "relu": ("torch.relu", "torch.nn.functional.relu", "Tensor.relu", "torch.relu_", "Tensor.relu_"),
    "gelu": ("torch.nn.functional.gelu",),
    "silu": ("torch.nn.functional.silu",),
    "sigmoid": ("torch.sigmoid", "torch.nn.functional.sigmoid", "Tensor.sigmoid"),
    "tanh": ("torch.tanh", "torch.nn.functional.tanh", "Tensor.tanh"),
    "relu6": ("torch.nn.functional.relu6",),
    "hardswish": ("torch.nn.functional.hardswish",),
    "hardsigmoid": ("torch.nn.functional.hardsigmoid",),
}


#: oneDNN's post-op for each activation (resdsl/backends/onednn.py fuses it into the conv before).
_ONEDNN = {
    "relu": lambda a: OneDNNPost("relu", after_binary=True),  # the one oneDNN fuses after an add
    "gelu": lambda a: OneDNNPost("gelu", algorithm=a["approximate"]),
    "silu": lambda a: OneDNNPost("swish"),
    "sigmoid": lambda a: OneDNNPost("sigmoid"),
    "tanh": lambda a: OneDNNPost("tanh"),
    "relu6": lambda a: OneDNNPost("hardtanh", (0.0, 6.0)),
    "hardswish": lambda a: OneDNNPost("hardswish"),
    "hardsigmoid": lambda a: OneDNNPost("hardsigmoid"),
}


def _from_call(keywords: tuple[ArgSpec, ...]):
    # F.gelu(x, approximate="tanh"): the keyword arguments as the op has them
    return lambda call: {k.name: call.kwargs.get(k.name, k.default) for k in keywords}


def _code(class_name: str, keywords: tuple[ArgSpec, ...]):
    # keywords at torch's defaults (ours) are left out of the call
    return lambda c: c.call(f"nn.{class_name}", **{k.name: c.kw(k.name, k.default) for k in keywords})


for _name, _class in _TORCH_CLASSES.items():
    register(OpSpec(
        name=_name,
        doc=f"The {_name} nonlinearity, element-wise.",
        category="activation",
        positional=(),
        keywords=_KEYWORDS.get(_name, ()),
        infer=lambda s, a: s,
        label=lambda a, i, o, _n=_name: _n,
        code=_code(_class, _KEYWORDS.get(_name, ())),
        receptive_field=POINTWISE,
        nonlinear=True,
        diagram=ANNOTATION,
        in_place=_name in _IN_PLACE,  # nn.ReLU(inplace=True); the others keep their input
        torch_calls=_CALLS[_name],
        from_call=_from_call(_KEYWORDS.get(_name, ())),
        onednn_post=_ONEDNN[_name],
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
    onednn_post=lambda a: OneDNNPost("leaky_relu", (float(a["slope"]),)),
))
