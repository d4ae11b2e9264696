"""Model registry and the architectures of the GiMeFive work, plus our default.

Every model is an `FerNet`: `forward_features(x) -> (B, C, h, w)` and `forward_head(feats) -> logits`,
`explain_layers()` names the convolutional stages an explainer may hook (shallow -> deep), and
`gap_linear` is the single linear layer when the head is global-average-pool + one linear (CAM).
"""
from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from .labels import NUM_CLASSES

MODELS: dict[str, Callable[..., "FerNet"]] = {}
MODEL_NOTES: dict[str, str] = {}


def register_model(name: str, note: str = "") -> Callable:
    """Decorator: register a builder under `name`; a duplicate name raises."""

    def deco(fn: Callable[..., "FerNet"]) -> Callable[..., "FerNet"]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = fn
        MODEL_NOTES[name] = note
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(MODELS)


def _builder(name: str) -> Callable[..., "FerNet"]:
    """The registered builder of `name`; unknown names raise ValueError naming the choices."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    return MODELS[name]


def model_options(name: str) -> set[str]:
    """The keyword arguments the builder of `name` takes besides num_classes (e.g. {"dropout", "width"})."""
    return set(inspect.signature(_builder(name)).parameters) - {"num_classes"}


def create_model(name: str, *, num_classes: int = NUM_CLASSES, **kwargs) -> "FerNet":
    """Build a freshly initialised model; unknown names raise ValueError naming the choices."""
    model = _builder(name)(num_classes=num_classes, **kwargs)
    model.arch = name
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False  # backward hooks (Grad-CAM, guided backprop) break on in-place ReLUs
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class FerNet(nn.Module):
    """Common interface (timm-style forward_features / forward_head)."""

    arch: str = ""
    default_layer: str = ""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, K) logits
        return self.forward_head(self.forward_features(x))

    def explain_layers(self) -> "OrderedDict[str, nn.Module]":
        raise NotImplementedError

    @property
    def gap_linear(self) -> nn.Linear | None:
        """The linear layer of a GAP + one-linear head, else None (then CAM is not defined)."""
        return None

    @property
    def pooled_layer(self) -> str | None:
        """The explain layer whose output is forward_features' (what the head pools), or None where no explain layer
        is (VGG's last one is followed by a max-pool). Grad-CAM there is CAM for a GAP + linear head."""
        return list(self.explain_layers())[-1] if self.gap_linear is not None else None

    def stage_modules(self, name: str) -> list[nn.Module]:
        """The modules whose weights compute explain layer `name` (what a randomisation check resets)."""
        return [self.explain_layer(name)]

    def explain_layer(self, name: str | None = None) -> nn.Module:
        layers = self.explain_layers()
        key = name or self.default_layer
        if key not in layers:
            raise ValueError(f"unknown layer {key!r} for {self.arch}; choose from {', '.join(layers)}")
        return layers[key]


# ---------------------------------------------------------------- building blocks
class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class ConvBlock(nn.Module):
    """conv3x3-BN-ReLU, optional SE and a projected residual shortcut, then max-pool and dropout.

    `act` holds the activation map before pooling: the layer explainers hook.
    """

    def __init__(self, cin: int, cout: int, *, se: bool, residual: bool, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout) if se else nn.Identity()
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if residual else None
        )
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.bn(self.conv(x)))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.drop(self.pool(self.act(y)))


class PlainCNN(FerNet):
    """Conv blocks, global average pooling, then an MLP head of three linear layers."""

    def __init__(
        self,
        channels: tuple[int, ...],
        hidden: tuple[int, int],
        *,
        num_classes: int,
        se: bool = False,
        residual: bool = False,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        blocks, cin = [], 3
        for cout in channels:
            blocks.append(ConvBlock(cin, cout, se=se, residual=residual, dropout=dropout))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin, hidden[0]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[1], num_classes),
        )
        # block 3 of 4 (8x8 at 64 px) keeps more spatial detail than the 4x4 last block
        self.default_layer = f"block{len(channels) - 1}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(feats))

    def explain_layers(self) -> "OrderedDict[str, nn.Module]":
        return OrderedDict((f"block{i + 1}", b.act) for i, b in enumerate(self.blocks))


@register_model("baseline", "4 conv blocks 64→512 with BN, max-pool, dropout; 3 linear layers (GiMeFive report)")
def baseline(*, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> FerNet:
    return PlainCNN((64, 128, 256, 512), (1024, 512), num_classes=num_classes, dropout=dropout)


@register_model("cnn_se", "baseline + squeeze-and-excitation in every block")
def cnn_se(*, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> FerNet:
    return PlainCNN((64, 128, 256, 512), (1024, 512), num_classes=num_classes, se=True, dropout=dropout)


@register_model("cnn_se_residual", "baseline + squeeze-and-excitation + residual shortcuts")
def cnn_se_residual(*, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> FerNet:
    return PlainCNN(
        (64, 128, 256, 512), (1024, 512), num_classes=num_classes, se=True, residual=True, dropout=dropout
    )


@register_model("gimefive", "5 conv blocks 64→1024, dropout 0.2 after pooling, 3 linear layers (10.5M)")
def gimefive(*, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> FerNet:
    return PlainCNN((64, 128, 256, 512, 1024), (2048, 1024), num_classes=num_classes, dropout=dropout)


class TorchvisionNet(FerNet):
    """A torchvision classifier adapted to 64x64 faces; head = GAP + one linear (CAM works)."""

    def __init__(self, net: nn.Module, stages: list[str], default_layer: str) -> None:
        super().__init__()
        self.net = net
        self._stages = stages
        self.default_layer = default_layer

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        return n.maxpool(n.relu(n.bn1(n.conv1(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        return n.layer4(n.layer3(n.layer2(n.layer1(self.stem(x)))))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        n = self.net
        return n.fc(n.dropout(torch.flatten(n.avgpool(feats), 1)))

    def explain_layers(self) -> "OrderedDict[str, nn.Module]":
        return OrderedDict((s, getattr(self.net, s)) for s in self._stages)

    @property
    def gap_linear(self) -> nn.Linear:
        return self.net.fc


def _resnet(depth: int, num_classes: int, dropout: float) -> FerNet:
    # as in the GiMeFive paper: the stock torchvision network, from scratch, on 64 px faces
    # (layer4 is 2x2 there, so explanations default to layer3's 4x4 map). torchvision is imported here, not with
    # this module: it costs ~1.2 s, and the default model (fernet) does not need it
    from torchvision import models as tvm

    net = getattr(tvm, f"resnet{depth}")(weights=None, num_classes=num_classes)
    net.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
    return TorchvisionNet(net, ["layer1", "layer2", "layer3", "layer4"], "layer3")


@register_model("resnet18", "torchvision ResNet18 from scratch at 64 px (GiMeFive paper's baseline)")
def resnet18(*, num_classes: int = NUM_CLASSES, dropout: float = 0.0) -> FerNet:
    return _resnet(18, num_classes, dropout)


@register_model("resnet34", "torchvision ResNet34 from scratch at 64 px (GiMeFive paper's baseline)")
def resnet34(*, num_classes: int = NUM_CLASSES, dropout: float = 0.0) -> FerNet:
    return _resnet(34, num_classes, dropout)


@register_model(
    "fernet",
    "our default: ResNet18 layout (widths 32-256 here; `width` scales them), stride-2 stem without max-pool "
    "(4×4 last map), GAP + one linear head; ~2.8M parameters (the default checkpoint: width 48, 6.3M)",
)
def fernet(*, num_classes: int = NUM_CLASSES, dropout: float = 0.1, width: int = 32,
           last_stride: int = 2, drop_path: float = 0.0) -> FerNet:
    """`last_stride=1` keeps the last stage at layer3's resolution (8×8 last map at 64 px, ~1.25× the
    training cost here) instead of halving it. `drop_path` > 0 trains with stochastic depth: each
    residual branch is skipped for a random share of the batch's faces, that share growing linearly
    over the eight blocks up to `drop_path` in the last one (Huang et al. 2016); in eval mode the
    network computes exactly what a `drop_path=0` one with the same weights does."""
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, not {last_stride}")
    if not 0.0 <= drop_path < 1.0:
        raise ValueError(f"drop_path must be in [0, 1), not {drop_path}")

    block = StochasticDepthBlock if drop_path > 0 else BasicBlock
    net = ResNetBody((width, width * 2, width * 4, width * 8), (1, 2, 2, last_stride), block, num_classes, dropout)
    if drop_path > 0:
        blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
        for i, b in enumerate(blocks):
            b.drop_prob = drop_path * (i + 1) / len(blocks)
    return TorchvisionNet(net, ["layer1", "layer2", "layer3", "layer4"], "layer4")


class BasicBlock(nn.Module):
    """A ResNet basic block (He et al. 2016): two 3x3 convolutions with batch norm, and a shortcut (a strided 1x1
    convolution + batch norm where the shape changes). Its modules are named as torchvision's, so checkpoints
    trained when fernet was built from torchvision's ResNet load unchanged."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in torchvision's order, shortcut after the branch and added in place: the int8 copy's graph (its
        # observers are numbered in call order, and checkpoints store their ranges by number) stays the same
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class ResNetBody(nn.Module):
    """fernet's network: a stride-2 3x3 stem without max-pool (`maxpool` is an identity, kept for the layout), four
    stages of two blocks at `widths` and `strides`, global average pool, dropout and one linear layer, with
    torchvision ResNet's attribute names (TorchvisionNet reads them; the state-dict keys stay as they were)."""

    def __init__(self, widths: tuple[int, ...], strides: tuple[int, ...], block: type[BasicBlock], num_classes: int,
                 dropout: float, blocks: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.Identity()
        inplanes = widths[0]
        for n, (planes, stride) in enumerate(zip(widths, strides), start=1):
            shortcut = None
            if stride != 1 or inplanes != planes:
                shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(planes))
            layers = [block(inplanes, planes, stride, shortcut)] + [block(planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{n}", nn.Sequential(*layers))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()


class StochasticDepthBlock(BasicBlock):
    """A BasicBlock (same parameters, same state-dict keys) whose residual branch is
    dropped, while training, for each face with probability `drop_prob`, the kept ones scaled by
    1 / (1 - drop_prob)."""

    drop_prob: float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.training and self.drop_prob > 0:
            keep = 1.0 - self.drop_prob
            mask = torch.empty(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype).bernoulli_(keep)
            out = out * mask / keep
        return self.relu(out + identity)


def stage_stride(branch: TorchvisionNet, stage: str) -> int:
    """How much a ResNet-style stage shrinks its input (the stride of its first block)."""
    return getattr(branch.net, stage)[0].conv1.stride[0]


class Duo(FerNet):
    """Two torchvision-style networks side by side, read by one GAP + linear head.

    Each stage runs in both branches; their maps are concatenated channel-wise and pass through a tap
    (an identity module) before being split again, so every explainer hooks one map that holds both
    branches. The head sees the concatenated last map, so CAM stays exact. Built by `train/duo.py`
    from two trained checkpoints, a Duo with head [w·W_a, (1 - w)·W_b] computes exactly the weighted
    mean of the two networks' logits: an ensemble of two that is still a GAP + one-linear model.
    """

    def __init__(self, a: TorchvisionNet, b: TorchvisionNet, num_classes: int, dropout: float) -> None:
        super().__init__()
        if a._stages != b._stages:
            raise ValueError("a Duo needs two branches with the same stages")
        self._stages = list(a._stages)
        self.default_layer = a.default_layer
        channels = 0
        for branch in (a, b):  # the branches' own heads are replaced by the shared one
            channels += branch.net.fc.in_features
            branch.net.fc = nn.Identity()
            branch.net.dropout = nn.Identity()
        self.a, self.b = a, b
        # a branch with a stride-1 last stage (fernet last_stride=1) ends on a finer map: the other
        # branch's last map is nearest-upsampled to it, which leaves its average (the head's input) unchanged
        self._upsample: dict[str, tuple[int, int]] = {}
        ra = rb = 1
        for i, s in enumerate(self._stages):
            ra, rb = ra * stage_stride(a, s), rb * stage_stride(b, s)
            if ra != rb:
                if i != len(self._stages) - 1 or max(ra, rb) % min(ra, rb):
                    raise ValueError("a Duo's branches may differ in resolution only at the last stage")
                self._upsample[s] = (0 if ra > rb else 1, max(ra, rb) // min(ra, rb))
        self.taps = nn.ModuleDict((s, nn.Identity()) for s in self._stages)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        xa, xb = self.a.stem(x), self.b.stem(x)
        t = x
        for s in self._stages:
            ys = [getattr(self.a.net, s)(xa), getattr(self.b.net, s)(xb)]
            if s in self._upsample:
                coarse, factor = self._upsample[s]
                ys[coarse] = nn.functional.interpolate(ys[coarse], scale_factor=factor, mode="nearest")
            t = self.taps[s](torch.cat(ys, 1))
            xa, xb = t[:, : ys[0].shape[1]], t[:, ys[0].shape[1]:]
        return t

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(feats.mean((2, 3))))

    def explain_layers(self) -> "OrderedDict[str, nn.Module]":
        return OrderedDict((s, self.taps[s]) for s in self._stages)

    def stage_modules(self, name: str) -> list[nn.Module]:
        self.explain_layer(name)  # validates the name
        return [getattr(self.a.net, name), getattr(self.b.net, name)]

    @property
    def gap_linear(self) -> nn.Linear:
        return self.fc


@register_model(
    "fernet_duo",
    "two fernet branches (e.g. the default and a distilled student) read by one GAP + linear head: "
    "a two-model ensemble that CAM can still explain; ~5.6M parameters",
)
def fernet_duo(*, num_classes: int = NUM_CLASSES, dropout: float = 0.1, width: int = 32,
               width_b: int | None = None, last_stride: int = 2, last_stride_b: int | None = None) -> FerNet:
    """`width` / `last_stride` are the first branch's fernet options, `width_b` / `last_stride_b` the
    second's (default: the same)."""
    return Duo(fernet(num_classes=num_classes, width=width, last_stride=last_stride),
               fernet(num_classes=num_classes, width=width if width_b is None else width_b,
                      last_stride=last_stride if last_stride_b is None else last_stride_b), num_classes, dropout)


class VGG(FerNet):
    """torchvision's VGG16 with batch norm on 64-px faces (2x2 after its five pools), read by GAP + dropout +
    one linear: 14.7M parameters instead of the ~50M of a 4096-wide three-layer head, and CAM works."""

    def __init__(self, num_classes: int, dropout: float) -> None:
        super().__init__()
        from torchvision import models as tvm  # imported here: see _resnet

        net = tvm.vgg16_bn(weights=None)
        self.features = net.features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(512, num_classes)
        relus = [i for i, m in enumerate(self.features) if isinstance(m, nn.ReLU)]
        # the last ReLU of each of the 5 stages (before its max-pool)
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self._acts = [max(r for r in relus if r < p) for p in pools]
        self.default_layer = "stage4"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(feats), 1)))

    def explain_layers(self) -> "OrderedDict[str, nn.Module]":
        return OrderedDict((f"stage{i + 1}", self.features[j]) for i, j in enumerate(self._acts))

    @property
    def gap_linear(self) -> nn.Linear:
        return self.fc

    @property
    def pooled_layer(self) -> None:  # stage5 is the ReLU before the last max-pool, not the pooled map
        return None


@register_model("vgg16", "VGG16 with batch norm, GAP + one linear head (14.7M parameters)")
def vgg16(*, num_classes: int = NUM_CLASSES, dropout: float = 0.5) -> FerNet:
    return VGG(num_classes, dropout)
