"""The zoo as data: every reference model the zoo reproduces, one entry per variant.

An entry names a spec (its path relative to the repository, which is also its path
inside the installed package's folder), the ``-D`` overrides that select the
variant, and what it reproduces. ``reference`` is either

- the dotted constructor the spec reproduces exactly (state-dict keys, shapes,
  outputs), importable as written: ``torchvision.models.resnet18``; or
- for a network no library constructs, a citation: ``"AUTHOR et al. YEAR, MODEL
  (SETTING)"``, the paper's first author and year, the model as the paper names
  it, and the dataset or input it is defined for: ``"He et al. 2015, ResNet-20
  (CIFAR-10)"``. The spec then matches the paper's figures (parameter counts,
  shapes), as docs/zoo.md tabulates.

:attr:`ZooEntry.constructor` tells them apart. Families add their variants by
appending entries to :data:`ENTRIES` (one per line or per small group); the
order here is the order of ``resdsl zoo`` and ``resdsl zoo --json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

ParamValue = int | float | bool | str

#: A dotted constructor: a module path and a name, no spaces (``torchvision.models.video.r3d_18``).
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class ZooEntry:
    """One variant of the zoo: ``resdsl.load(spec, **params)`` reproduces ``reference``."""

    name: str
    spec: str  # relative to the repository: "resdsl/zoo/resnet18.res"
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    reference: str = ""

    def __post_init__(self) -> None:  # a frozen entry's params cannot be changed either
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @property
    def constructor(self) -> str | None:
        """The dotted constructor of the reference, or None when it is a citation."""
        return self.reference if _DOTTED.fullmatch(self.reference) else None

    def defines(self) -> str:
        """The params as command-line overrides: ``-D n=3 -D size=32`` (empty when none)."""
        return " ".join(f"-D {k}={_spelled(v)}" for k, v in self.params.items())

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "spec": self.spec, "params": dict(self.params), "reference": self.reference}


def _spelled(value: ParamValue) -> str:
    """A value as ``-D`` spells it (booleans are ``true``/``false``)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _tv(name: str, spec: str | None = None, **params: ParamValue) -> ZooEntry:
    """A torchvision classifier: ``torchvision.models.NAME`` from ``resdsl/zoo/SPEC.res``."""
    return ZooEntry(name, f"resdsl/zoo/{spec or name}.res", params, f"torchvision.models.{name}")


CIFAR = "resdsl/zoo/cifar_resnet.res"
PREACT = "resdsl/zoo/preact_resnet.res"

ENTRIES: tuple[ZooEntry, ...] = (
    # torchvision's ResNets (He et al. 2015; ResNet v1.5), wide ResNet and ResNeXt
    _tv("resnet18"),
    _tv("resnet34"),
    _tv("resnet50"),
    _tv("resnet101"),
    _tv("resnet152"),
    _tv("wide_resnet50_2"),
    _tv("resnext50_32x4d"),
    # He et al. 2015, section 4.2: CIFAR-10 ResNets of depth 6n+2, option A shortcuts
    ZooEntry("cifar_resnet20", CIFAR, {"n": 3}, "He et al. 2015, ResNet-20 (CIFAR-10)"),
    ZooEntry("cifar_resnet32", CIFAR, {"n": 5}, "He et al. 2015, ResNet-32 (CIFAR-10)"),
    ZooEntry("cifar_resnet44", CIFAR, {"n": 7}, "He et al. 2015, ResNet-44 (CIFAR-10)"),
    ZooEntry("cifar_resnet56", CIFAR, {"n": 9}, "He et al. 2015, ResNet-56 (CIFAR-10)"),
    ZooEntry("cifar_resnet110", CIFAR, {"n": 18}, "He et al. 2015, ResNet-110 (CIFAR-10)"),
    ZooEntry("cifar_resnet1202", CIFAR, {"n": 200}, "He et al. 2015, ResNet-1202 (CIFAR-10)"),
    # He et al. 2016: pre-activation bottleneck ResNets of depth 9n+2
    ZooEntry("preact_resnet164", PREACT, {"n": 18}, "He et al. 2016, pre-activation ResNet-164 (CIFAR-10)"),
    ZooEntry("preact_resnet1001", PREACT, {"n": 111}, "He et al. 2016, pre-activation ResNet-1001 (CIFAR-10)"),
    # Ronneberger et al. 2015: the original (valid convolutions) and the padded same-size variant
    ZooEntry("unet", "resdsl/zoo/unet.res", {}, "Ronneberger et al. 2015, U-Net (572x572 -> 388x388)"),
    ZooEntry("unet_same", "resdsl/zoo/unet.res", {"pad": 1, "size": 512},
             "Ronneberger et al. 2015, U-Net with padded convolutions (512x512 -> 512x512)"),
    # the pre-LN Transformer's feed-forward sublayer as a whole network
    ZooEntry("residual_mlp", "resdsl/zoo/residual_mlp.res", {},
             "Xiong et al. 2020, pre-LN feed-forward residual units as an MLP (784 -> 10)"),
    # Simonyan & Zisserman 2015: VGG, plain and with batchnorm (n1..n5: convolutions per stage)
    _tv("vgg11", "vgg", n1=1, n2=1, n3=2, n4=2, n5=2, bn=False),
    _tv("vgg13", "vgg", n1=2, n2=2, n3=2, n4=2, n5=2, bn=False),
    _tv("vgg16", "vgg", n1=2, n2=2, n3=3, n4=3, n5=3, bn=False),
    _tv("vgg19", "vgg", n1=2, n2=2, n3=4, n4=4, n5=4, bn=False),
    _tv("vgg11_bn", "vgg", n1=1, n2=1, n3=2, n4=2, n5=2, bn=True),
    _tv("vgg13_bn", "vgg", n1=2, n2=2, n3=2, n4=2, n5=2, bn=True),
    _tv("vgg16_bn", "vgg", n1=2, n2=2, n3=3, n4=3, n5=3, bn=True),
    _tv("vgg19_bn", "vgg", n1=2, n2=2, n3=4, n4=4, n5=4, bn=True),
    # Iandola et al. 2016: SqueezeNet 1.0 and 1.1, at 224 and at 227 (ceil_mode pooling)
    _tv("squeezenet1_0", "squeezenet", version=1.0),
    _tv("squeezenet1_1", "squeezenet", version=1.1),
    ZooEntry("squeezenet1_0_227", "resdsl/zoo/squeezenet.res", {"version": 1.0, "size": 227},
             "torchvision.models.squeezenet1_0"),
    ZooEntry("squeezenet1_1_227", "resdsl/zoo/squeezenet.res", {"version": 1.1, "size": 227},
             "torchvision.models.squeezenet1_1"),
    # Huang et al. 2017: DenseNet-BC (growth rate, layers per dense block, stem width)
    _tv("densenet121", "densenet", growth=32, b1=6, b2=12, b3=24, b4=16, init=64),
    _tv("densenet161", "densenet", growth=48, b1=6, b2=12, b3=36, b4=24, init=96),
    _tv("densenet169", "densenet", growth=32, b1=6, b2=12, b3=32, b4=32, init=64),
    _tv("densenet201", "densenet", growth=32, b1=6, b2=12, b3=48, b4=32, init=64),
    # Ma et al. 2018: ShuffleNet V2 (output channels of stage2..stage4 and conv5)
    _tv("shufflenet_v2_x0_5", "shufflenet_v2", c2=48, c3=96, c4=192, c5=1024),
    _tv("shufflenet_v2_x1_0", "shufflenet_v2", c2=116, c3=232, c4=464, c5=1024),
    _tv("shufflenet_v2_x1_5", "shufflenet_v2", c2=176, c3=352, c4=704, c5=1024),
    _tv("shufflenet_v2_x2_0", "shufflenet_v2", c2=244, c3=488, c4=976, c5=2048),
)
