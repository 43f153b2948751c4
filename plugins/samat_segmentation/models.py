"""DeepLabv3 (segmentation-models-pytorch) with ImageNet normalisation inside the model."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from samat import MissingDataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; buffers, so they follow the model's device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class NormalizedSegmenter(nn.Sequential):
    """``Normalize`` then the segmentation network: takes images in ``[0, 1]``, returns
    ``(N, num_classes, H, W)`` logits; attacks act on the ``[0, 1]`` input."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__(Normalize(IMAGENET_MEAN, IMAGENET_STD), network)


class SingleValueSafeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that uses its running statistics when a training batch has one value per
    channel (ASPP's image-pooling branch with a batch of one image, e.g. the last batch of an
    epoch), where batch statistics are undefined and ``nn.BatchNorm2d`` raises."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(x)


def _safe_pooling_batchnorm(network: nn.Module) -> None:
    """Swap the BatchNorm of smp's ASPP pooling branch for :class:`SingleValueSafeBatchNorm2d`
    (same parameters and buffers, same state-dict keys)."""
    from segmentation_models_pytorch.decoders.deeplabv3.decoder import ASPPPooling

    for module in network.modules():
        if isinstance(module, ASPPPooling):
            for index, child in enumerate(module):
                if type(child) is nn.BatchNorm2d:
                    safe = SingleValueSafeBatchNorm2d(child.num_features, child.eps,
                                                      child.momentum)
                    safe.load_state_dict(child.state_dict())
                    module[index] = safe


WEIGHT_FILES = ("config.json", "model.safetensors")
"""What smp fetches from the hub for an encoder's named weights."""
PROBE_TIMEOUT_S = 5.0


def _weights_help(encoder: str, weights: str, why: str = "not downloadable (offline?)") -> str:
    from huggingface_hub import constants

    hub = _hub_settings(encoder, weights)
    fetch = ("Run once with internet access" if hub is None else
             f"Fetch them where there is internet (`huggingface-cli download {hub[0]} "
             f"{' '.join(WEIGHT_FILES)} --revision {hub[1]}`, i.e. "
             f"{_hub_url(hub, WEIGHT_FILES[1])})")
    return (
        f"task.encoder_weights: cannot load '{weights}' weights for encoder '{encoder}': not in "
        f"the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}. {fetch} and copy that "
        f"cache to this path (or point HF_HOME/HF_HUB_CACHE at one), pass a local encoder state "
        f"dict with task.encoder_weights=/path/to/encoder.safetensors, or set "
        f"task.encoder_weights=null for random initialisation"
    )


def _hub_settings(encoder: str, weights: str) -> tuple[str, str] | None:
    """``(repo_id, revision)`` of smp's named weights on the hub; None for other encoders
    (timm's ``tu-``) or unknown names (smp's own error says which exist)."""
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders.get(encoder, {}).get("pretrained_settings", {}).get(weights)
    return None if settings is None else (settings["repo_id"], settings["revision"])


def _hub_url(hub: tuple[str, str], filename: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(hub[0], filename, revision=hub[1])


def check_weights_reachable(encoder: str, weights: str) -> None:
    """Fail in seconds, with one line, where smp would retry the hub for half a minute: the
    named weights are neither in the local cache nor reachable (offline, or
    ``HF_HUB_OFFLINE=1``)."""
    from urllib.error import HTTPError, URLError
    from urllib.request import Request, urlopen

    from huggingface_hub import constants, try_to_load_from_cache

    hub = _hub_settings(encoder, weights)
    if hub is None or all(isinstance(try_to_load_from_cache(hub[0], f, revision=hub[1]), str)
                          for f in WEIGHT_FILES):
        return
    if constants.HF_HUB_OFFLINE:
        raise MissingDataError(_weights_help(encoder, weights, "HF_HUB_OFFLINE is set"))
    try:
        urlopen(Request(_hub_url(hub, WEIGHT_FILES[0]), method="HEAD"),
                timeout=PROBE_TIMEOUT_S).close()
    except HTTPError:
        return  # the hub answers; smp's own download reports what it says
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MissingDataError(_weights_help(
            encoder, weights, f"{constants.ENDPOINT} is unreachable ({reason})")) from None


def build_deeplabv3(encoder: str, encoder_weights: str | None, num_classes: int,
                    encoder_depth: int = 5, output_stride: int = 8) -> nn.Module:
    """DeepLabv3 with ``encoder`` (any smp encoder name); ``encoder_weights`` is ``None``, a
    weight name smp knows (``imagenet``; fetched from or found in the Hugging Face cache), or
    the path of a local encoder state dict (``.safetensors``, ``.pt``, ``.pth``)."""
    import segmentation_models_pytorch as smp
    from huggingface_hub.errors import LocalEntryNotFoundError

    local = encoder_weights is not None and (
        os.sep in encoder_weights or Path(encoder_weights).suffix in (".safetensors", ".pt", ".pth")
    )
    if encoder_weights is not None and not local:
        check_weights_reachable(encoder, encoder_weights)
    try:
        network = smp.DeepLabV3(
            encoder_name=encoder, encoder_weights=None if local else encoder_weights,
            encoder_depth=encoder_depth, encoder_output_stride=output_stride, classes=num_classes,
        )
    except LocalEntryNotFoundError:  # what hf_hub_download raises offline without a cache
        raise MissingDataError(_weights_help(encoder, str(encoder_weights))) from None
    except KeyError as exc:  # smp: unknown encoder name or weight name
        raise ValueError(f"encoder/encoder_weights: {exc.args[0]}") from None
    if local:
        network.encoder.load_state_dict(_read_state_dict(Path(encoder_weights)))
    _safe_pooling_batchnorm(network)
    return NormalizedSegmenter(network)


def exported_model(encoder: str, num_classes: int, encoder_depth: int = 5,
                   output_stride: int = 8) -> nn.Module:
    """The DeepLabv3 an exported ``model.json`` describes, randomly initialised (no weights
    fetched): the exported weights are loaded into it."""
    return build_deeplabv3(encoder, None, num_classes, encoder_depth, output_stride)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise MissingDataError(f"task.encoder_weights: file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)
