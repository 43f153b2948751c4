"""Classifiers of timm and torchvision by name — ``task.model: timm:NAME`` or
``torchvision:NAME`` — for evaluating (or training) the libraries' architectures, with their
pretrained weights (``task.pretrained: true``, read from the libraries' own caches) or freshly
initialised. Pretrained weights bring their own input normalisation; nothing is downloaded
where there is no network: the error says what to fetch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch import nn

from samat import SamatError, did_you_mean

PREFIXES = ("timm:", "torchvision:")


def is_library_model(name: str) -> bool:
    """Whether ``name`` names a timm or torchvision model (``timm:resnet18``)."""
    return name.startswith(PREFIXES)


def check_library_model(name: str, options: dict) -> None:
    """Raise ValueError for an unknown model of the library, or options it does not take."""
    library, _, model = name.partition(":")
    if options:
        raise ValueError(f"'{next(iter(options))}' is not an option of model '{name}' (a "
                         f"{library} model takes its own defaults; none of width, depth, dropout)")
    known = _models(library)
    if model not in known:
        hint = did_you_mean(model, known)
        lister = "timm.list_models()" if library == "timm" else "torchvision.models.list_models()"
        raise ValueError(f"unknown {library} model '{model}'.{hint} (list them with {lister})")


def _models(library: str) -> list[str]:
    if library == "timm":
        import timm

        return list(timm.list_models())
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def build_library_model(name: str, num_classes: int, in_channels: int, pretrained: bool
                        ) -> tuple[nn.Module, Sequence[float] | None, Sequence[float] | None]:
    """The model, and the mean and std its pretrained weights expect (None without them)."""
    library, _, model = name.partition(":")
    if library == "timm":
        return _timm(model, num_classes, in_channels, pretrained)
    return _torchvision(model, num_classes, in_channels, pretrained)


def _timm(model: str, num_classes: int, in_channels: int, pretrained: bool
          ) -> tuple[nn.Module, Sequence[float] | None, Sequence[float] | None]:
    import timm

    how = (f"python -c \"import timm; timm.create_model('{model}', pretrained=True)\" on a "
           "machine with internet, then copy ~/.cache/huggingface (or set HF_HOME)")
    if pretrained:
        _check_hub_reachable(model, f"timm:{model}", how)
    try:
        net = timm.create_model(model, pretrained=pretrained, num_classes=num_classes,
                                in_chans=in_channels)
    except Exception as exc:  # noqa: BLE001 — offline hub errors come in many kinds
        if not pretrained:
            raise
        raise SamatError(_fetch_hint(f"timm:{model}", exc, how)) from None
    if not pretrained:
        return net, None, None
    cfg = net.pretrained_cfg
    return net, tuple(cfg["mean"]), tuple(cfg["std"])


def _torchvision(model: str, num_classes: int, in_channels: int, pretrained: bool
                 ) -> tuple[nn.Module, Sequence[float] | None, Sequence[float] | None]:
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(model, num_classes=num_classes), None, None
    weights = torchvision.models.get_model_weights(model).DEFAULT
    classes = len(weights.meta["categories"])
    if classes != num_classes or in_channels != 3:
        raise SamatError(f"task.pretrained: torchvision:{model}'s weights classify {classes} "
                         f"classes of RGB images, the dataset has {num_classes} classes and "
                         f"{in_channels} channel(s); use timm:{model} (it replaces the head) or "
                         "task.pretrained=false")
    try:
        net = torchvision.models.get_model(model, weights=weights)
    except Exception as exc:  # noqa: BLE001 — URLError, OSError, ...
        raise SamatError(_fetch_hint(f"torchvision:{model}", exc, (
            f"python -c \"import torchvision; torchvision.models.get_model('{model}', "
            "weights='DEFAULT')\" on a machine with internet, then copy ~/.cache/torch/hub "
            "(or set TORCH_HOME)"))) from None
    transform = weights.transforms()
    return net, tuple(transform.mean), tuple(transform.std)


HUB_FILES = ("model.safetensors", "pytorch_model.bin")
"""The weight files timm reads from a Hugging Face repository."""
PROBE_TIMEOUT_S = 5.0
"""How long the hub may take to answer before the weights count as unreachable."""


def _check_hub_reachable(model: str, name: str, how: str) -> None:
    """Fail in seconds, with one line, where the hub client would retry for most of a minute:
    timm's weights for ``model`` live on the Hugging Face hub, are not in its local cache, and
    the hub is off (``HF_HUB_OFFLINE``) or does not answer."""
    from urllib.error import HTTPError, URLError
    from urllib.request import Request, urlopen

    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo or any(isinstance(try_to_load_from_cache(repo, f), str) for f in HUB_FILES):
        return
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in (
            "1", "true", "yes", "on"):
        raise SamatError(_fetch_hint(name, RuntimeError("HF_HUB_OFFLINE is set"), how))
    try:
        urlopen(Request(f"{constants.ENDPOINT}/{repo}/resolve/main/{HUB_FILES[0]}",
                        method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
    except HTTPError:
        return  # the hub answers; timm's own download reports what it says
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SamatError(_fetch_hint(name, RuntimeError(
            f"{constants.ENDPOINT} is unreachable ({reason})"), how)) from None


def _fetch_hint(name: str, exc: BaseException, how: str) -> str:
    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return (f"task.pretrained: the pretrained weights of {name} are not in the local cache and "
            f"cannot be fetched here ({why}); fetch them with {how}, or set "
            "task.pretrained=false")
