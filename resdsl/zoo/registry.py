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


def _regnet(name: str, depths: list[int], widths: list[int], *, group_width: int, se_ratio: float) -> ZooEntry:
    """A RegNet: four stage depths and widths (``-D depth1=... -D width4=...``)."""
    stages = {f"{what}{k}": v for what, values in (("depth", depths), ("width", widths))
              for k, v in enumerate(values, 1)}
    return _tv(name, "regnet", **stages, group_width=group_width, se_ratio=se_ratio)


CIFAR = "resdsl/zoo/cifar_resnet.res"
PREACT = "resdsl/zoo/preact_resnet.res"
VIDEO = "resdsl/zoo/video_resnet.res"

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
    # Radosavovic et al. 2020: RegNetY (with squeeze-excitation) and RegNetX; stage depths and
    # widths as torchvision's BlockParams.from_init_params computes them (tested)
    _regnet("regnet_y_400mf", [1, 3, 6, 6], [48, 104, 208, 440], group_width=8, se_ratio=0.25),
    _regnet("regnet_y_800mf", [1, 3, 8, 2], [64, 144, 320, 784], group_width=16, se_ratio=0.25),
    _regnet("regnet_y_1_6gf", [2, 6, 17, 2], [48, 120, 336, 888], group_width=24, se_ratio=0.25),
    _regnet("regnet_y_3_2gf", [2, 5, 13, 1], [72, 216, 576, 1512], group_width=24, se_ratio=0.25),
    _regnet("regnet_y_8gf", [2, 4, 10, 1], [224, 448, 896, 2016], group_width=56, se_ratio=0.25),
    _regnet("regnet_y_16gf", [2, 4, 11, 1], [224, 448, 1232, 3024], group_width=112, se_ratio=0.25),
    _regnet("regnet_y_32gf", [2, 5, 12, 1], [232, 696, 1392, 3712], group_width=232, se_ratio=0.25),
    _regnet("regnet_y_128gf", [2, 7, 17, 1], [528, 1056, 2904, 7392], group_width=264, se_ratio=0.25),
    _regnet("regnet_x_400mf", [1, 2, 7, 12], [32, 64, 160, 400], group_width=16, se_ratio=0.0),
    _regnet("regnet_x_800mf", [1, 3, 7, 5], [64, 128, 288, 672], group_width=16, se_ratio=0.0),
    _regnet("regnet_x_1_6gf", [2, 4, 10, 2], [72, 168, 408, 912], group_width=24, se_ratio=0.0),
    _regnet("regnet_x_3_2gf", [2, 6, 15, 2], [96, 192, 432, 1008], group_width=48, se_ratio=0.0),
    _regnet("regnet_x_8gf", [2, 5, 15, 1], [80, 240, 720, 1920], group_width=120, se_ratio=0.0),
    _regnet("regnet_x_16gf", [2, 6, 13, 1], [256, 512, 896, 2048], group_width=128, se_ratio=0.0),
    _regnet("regnet_x_32gf", [2, 7, 13, 1], [336, 672, 1344, 2520], group_width=168, se_ratio=0.0),
    # Liu et al. 2022: ConvNeXt; widths C, 2C, 4C, 8C
    _tv("convnext_tiny", "convnext", dim=96, depth3=9, stochastic_depth_prob=0.1),
    _tv("convnext_small", "convnext", dim=96, depth3=27, stochastic_depth_prob=0.4),
    _tv("convnext_base", "convnext", dim=128, depth3=27, stochastic_depth_prob=0.5),
    _tv("convnext_large", "convnext", dim=192, depth3=27, stochastic_depth_prob=0.5),
    # the mobile families (issue 14): MobileNetV2/V3, MnasNet, EfficientNet B0-B7 and V2-S/M/L
    _tv("mobilenet_v2"),
    _tv("mobilenet_v3_large", "mobilenet_v3", arch="large"),
    _tv("mobilenet_v3_small", "mobilenet_v3", arch="small"),
    _tv("mnasnet0_5", "mnasnet", alpha=0.5),
    _tv("mnasnet0_75", "mnasnet", alpha=0.75),
    _tv("mnasnet1_0", "mnasnet", alpha=1.0),
    _tv("mnasnet1_3", "mnasnet", alpha=1.3),
    # EfficientNet: width and depth multipliers, dropout and input size per variant (torchvision's)
    _tv("efficientnet_b0", "efficientnet", width=1.0, depth=1.0, dropout=0.2, size=224),
    _tv("efficientnet_b1", "efficientnet", width=1.0, depth=1.1, dropout=0.2, size=240),
    _tv("efficientnet_b2", "efficientnet", width=1.1, depth=1.2, dropout=0.3, size=288),
    _tv("efficientnet_b3", "efficientnet", width=1.2, depth=1.4, dropout=0.3, size=300),
    _tv("efficientnet_b4", "efficientnet", width=1.4, depth=1.8, dropout=0.4, size=380),
    _tv("efficientnet_b5", "efficientnet", width=1.6, depth=2.2, dropout=0.4, size=456, eps=0.001, momentum=0.01),
    _tv("efficientnet_b6", "efficientnet", width=1.8, depth=2.6, dropout=0.5, size=528, eps=0.001, momentum=0.01),
    _tv("efficientnet_b7", "efficientnet", width=2.0, depth=3.1, dropout=0.5, size=600, eps=0.001, momentum=0.01),
    # EfficientNetV2: stage widths c0..c7 and depths n1..n7 (n7 = 0: six stages), dropout, input size
    _tv("efficientnet_v2_s", "efficientnet_v2", c0=24, c1=24, c2=48, c3=64, c4=128, c5=160, c6=256, c7=0,
        n1=2, n2=4, n3=4, n4=6, n5=9, n6=15, n7=0, dropout=0.2, size=384),
    _tv("efficientnet_v2_m", "efficientnet_v2", c0=24, c1=24, c2=48, c3=80, c4=160, c5=176, c6=304, c7=512,
        n1=3, n2=5, n3=5, n4=7, n5=14, n6=18, n7=5, dropout=0.3, size=480),
    _tv("efficientnet_v2_l", "efficientnet_v2", c0=32, c1=32, c2=64, c3=96, c4=192, c5=224, c6=384, c7=640,
        n1=4, n2=7, n3=7, n4=10, n5=19, n6=25, n7=7, dropout=0.4, size=480),
    # torchvision's ResNet(Bottleneck, layers, groups, width_per_group) as one spec: the 101-layer
    # ResNeXts and Wide ResNet
    _tv("resnext101_32x8d", "resnet_bottleneck", layers3=23, groups=32, width_per_group=8),
    _tv("resnext101_64x4d", "resnet_bottleneck", layers3=23, groups=64, width_per_group=4),
    _tv("wide_resnet101_2", "resnet_bottleneck", layers3=23, width_per_group=128),
    # Tran et al. 2018: the 18-layer video ResNets (3-D, mixed, (2+1)-D convolutions), Kinetics-400
    ZooEntry("r3d_18", VIDEO, {"variant": "r3d"}, "torchvision.models.video.r3d_18"),
    ZooEntry("mc3_18", VIDEO, {"variant": "mc3"}, "torchvision.models.video.mc3_18"),
    ZooEntry("r2plus1d_18", VIDEO, {"variant": "r2plus1d"}, "torchvision.models.video.r2plus1d_18"),
    # Wang, Yan & Oates 2017: the 1-D time-series ResNet (three blocks, kernels 8/5/3)
    ZooEntry("wang_resnet", "resdsl/zoo/wang_resnet.res", {},
             "Wang et al. 2017, ResNet for time series classification (UCR, 1 channel, 128 steps)"),
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
    # Vaswani et al. 2017: the Transformer encoder as torch.nn.TransformerEncoder builds it
    # (batch_first, torch's defaults: d_model 512, 8 heads, 2,048 wide, 6 layers); a citation,
    # since the dotted torch.nn.TransformerEncoder needs arguments to be built
    ZooEntry("transformer_encoder_pre_ln", "resdsl/zoo/transformer_encoder.res", {"norm_first": True},
             "Vaswani et al. 2017, Transformer encoder, pre-LN (torch.nn.TransformerEncoder, norm_first=True)"),
    ZooEntry("transformer_encoder_post_ln", "resdsl/zoo/transformer_encoder.res", {"norm_first": False},
             "Vaswani et al. 2017, Transformer encoder, post-LN (torch.nn.TransformerEncoder, norm_first=False)"),
    # Dosovitskiy et al. 2021: the Vision Transformers (patch size, depth, heads, width, MLP width)
    # Radford et al. 2019: GPT-2 small as a decoder-only LM on token ids (reference module in
    # tests/test_zoo_gpt.py; nn.MultiheadAttention for the attention)
    ZooEntry("gpt2", "resdsl/zoo/gpt.res", {}, "Radford et al. 2019, GPT-2 small (124M, tied embeddings)"),
    _tv("vit_b_16", "vit"),
    _tv("vit_b_32", "vit", patch=32),
    _tv("vit_l_16", "vit", depth=24, heads=16, dim=1024, mlp=4096),
    _tv("vit_l_32", "vit", patch=32, depth=24, heads=16, dim=1024, mlp=4096),
    _tv("vit_h_14", "vit", patch=14, depth=32, heads=16, dim=1280, mlp=5120),
    # Liu et al. 2021: Swin Transformers (width, depths, heads, stochastic depth)
    _tv("swin_t", "swin"),
    _tv("swin_s", "swin", depth3=18, stochastic_depth_prob=0.3),
    _tv("swin_b", "swin", dim=128, depth3=18, heads1=4, heads2=8, heads3=16, heads4=32,
        stochastic_depth_prob=0.5),
    # Liu et al. 2022, Swin Transformer V2: post-norm blocks, cosine window attention with a
    # continuous position bias, 8x8 windows
    _tv("swin_v2_t", "swin", v2=True, window=8),
    _tv("swin_v2_s", "swin", v2=True, window=8, depth3=18, stochastic_depth_prob=0.3),
    _tv("swin_v2_b", "swin", v2=True, window=8, dim=128, depth3=18, heads1=4, heads2=8, heads3=16, heads4=32,
        stochastic_depth_prob=0.5),
)
