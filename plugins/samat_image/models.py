"""Image classifiers by name, each wrapped with its dataset's normalisation.

Builders take ``num_classes``, ``in_channels``, ``img_size`` plus their own keyword options
(``width``, ``depth``, ``dropout`` where they make sense); ``build_model`` checks the options
against the builder so a wrong one is a one-line error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from samat import check_int, unknown_name_message
from samat_image.library_models import (
    build_library_model,
    check_library_model,
    is_library_model,
)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; inputs stay in [0, 1] outside the model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Normalized(nn.Module):
    """``backbone(normalize(x))``."""

    def __init__(self, normalize: Normalize, backbone: nn.Module) -> None:
        super().__init__()
        self.normalize, self.backbone = normalize, backbone

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(self.normalize(x))


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016), as in the robustness literature's PRN-18."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(in_planes, planes, 1, stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """CIFAR PreActResNet-18 (3x3 stem, stages of 2 blocks at widths w, 2w, 4w, 8w)."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        layers, planes = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            out = width * 2**i
            layers += [PreActBlock(planes, out, stride), PreActBlock(out, out, 1)]
            planes = out
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class WideBlock(nn.Module):
    """WRN basic block: BN-ReLU-conv, BN-ReLU-(dropout)-conv, 1x1 shortcut when shapes change."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = (nn.Conv2d(in_planes, planes, 1, stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(out)))))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-depth-width (Zagoruyko & Komodakis 2016): 3 stages of (depth-4)/6 blocks."""

    def __init__(self, num_classes: int, in_channels: int = 3, depth: int = 28, width: int = 10,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 >= 10, got {depth}")
        n = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False)
        blocks, planes = [], channels[0]
        for out, stride in zip(channels[1:], (1, 2, 2), strict=True):
            for j in range(n):
                blocks.append(WideBlock(planes, out, stride if j == 0 else 1, dropout))
                planes = out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU-pool stages (w, 2w channels) and a linear head: CPU-scale."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()

        def stage(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                    nn.MaxPool2d(2)]

        self.features = nn.Sequential(*stage(in_channels, width), *stage(width, 2 * width))
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def preactresnet18(num_classes: int, in_channels: int, img_size: int,
                   width: int = 64) -> nn.Module:
    """PreActResNet-18; ``width``: channels of the first stage (64 in the paper)."""
    return PreActResNet18(num_classes, in_channels, check_int("width", width))


def wrn(num_classes: int, in_channels: int, img_size: int, depth: int = 28, width: int = 10,
        dropout: float = 0.0) -> nn.Module:
    """WideResNet-``depth``-``width`` (28-10 in the paper), optional dropout in each block."""
    depth, width = check_int("depth", depth), check_int("width", width)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return WideResNet(num_classes, in_channels, depth, width, dropout)


def deit_tiny(num_classes: int, in_channels: int, img_size: int, width: int = 192,
              depth: int = 12, dropout: float = 0.0) -> nn.Module:
    """timm's DeiT-tiny (3 heads) for small images: patch 2, trained from scratch (no weights
    are fetched). ``width``: embedding dimension (a multiple of 3), ``depth``: blocks."""
    import timm

    width, depth = check_int("width", width), check_int("depth", depth)
    if width % 3:
        raise ValueError(f"DeiT-tiny has 3 heads, width must be a multiple of 3, "
                         f"got {width}")
    if img_size % 2:
        raise ValueError(f"DeiT with patch 2 needs an even image size, got {img_size}")
    return timm.create_model(
        "deit_tiny_patch16_224", pretrained=False, img_size=img_size, patch_size=2,
        in_chans=in_channels, num_classes=num_classes, embed_dim=width, depth=depth,
        drop_rate=dropout)


def small_cnn(num_classes: int, in_channels: int, img_size: int, width: int = 32) -> nn.Module:
    """A 2-stage CNN with ``width`` then ``2*width`` channels, for digits and quick tests."""
    return SmallCNN(num_classes, in_channels, check_int("width", width))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "preactresnet18": preactresnet18,
    "wrn": wrn,
    "deit_tiny": deit_tiny,
    "small_cnn": small_cnn,
}
BUILDER_ARGS = ("num_classes", "in_channels", "img_size")


def model_options(name: str) -> list[str]:
    """Keyword options of model ``name`` besides the data-given ones."""
    parameters = inspect.signature(MODELS[name]).parameters
    return [p for p in parameters if p not in BUILDER_ARGS]


def architecture_label(name: str, options: dict[str, Any]) -> str:
    """Model ``name`` with ``options`` (defaults filled in) as an exact architecture name:
    ``PreActResNet-18 (width 16)``, ``WideResNet-28-10``, ``DeiT-tiny (patch 2, width 192,
    depth 12)``, ``SmallCNN (width 32)``; a non-zero dropout is appended."""
    parameters = inspect.signature(MODELS[name]).parameters
    o = {key: p.default for key, p in parameters.items() if key not in BUILDER_ARGS}
    o.update(options)
    labels = {
        "preactresnet18": f"PreActResNet-18 (width {o.get('width')})",
        "wrn": f"WideResNet-{o.get('depth')}-{o.get('width')}",
        "deit_tiny": f"DeiT-tiny (patch 2, width {o.get('width')}, depth {o.get('depth')})",
        "small_cnn": f"SmallCNN (width {o.get('width')})",
    }
    dropout = o.get("dropout") or 0
    return labels[name] + (f", dropout {dropout:g}" if dropout else "")


def check_model(name: str, options: dict[str, Any]) -> None:
    """Raise ValueError for an unknown model name or an option the model does not take."""
    if is_library_model(name):
        check_library_model(name, options)
        return
    if name not in MODELS:
        raise ValueError(unknown_name_message("model", name, sorted(MODELS)))
    allowed = model_options(name)
    for key in options:
        if key not in allowed:
            raise ValueError(f"'{key}' is not an option of model '{name}' (options: "
                             f"{', '.join(allowed) or 'none'})")


def build_model(name: str, num_classes: int, in_channels: int, img_size: int,
                mean: Sequence[float], std: Sequence[float], pretrained: bool = False,
                **options: Any) -> Normalized:
    """Model ``name`` with ``Normalize(mean, std)`` prepended — for a timm or torchvision model
    with ``pretrained`` weights, the normalisation those weights expect."""
    check_model(name, options)
    if is_library_model(name):
        backbone, own_mean, own_std = build_library_model(name, num_classes, in_channels,
                                                          pretrained)
        if own_mean is not None:
            mean, std = own_mean, own_std
    else:
        if pretrained:
            raise ValueError(f"pretrained: model '{name}' has no pretrained weights in samat "
                             "(timm:NAME and torchvision:NAME models do)")
        backbone = MODELS[name](num_classes, in_channels, img_size, **options)
    return Normalized(Normalize(mean, std), backbone)


def exported_model(model: str, num_classes: int, in_channels: int, img_size: int,
                   mean: Sequence[float], std: Sequence[float], **options: Any) -> Normalized:
    """The model an exported ``model.json`` describes (no data needed): :func:`build_model`
    with the architecture's ``model`` name."""
    return build_model(model, num_classes, in_channels, img_size, mean, std, **options)
