"""Classifiers of timm and torchvision by name — ``task.model: timm:NAME`` or
``torchvision:NAME`` — for evaluating (or training) the libraries' architectures, with their
pretrained weights (``task.pretrained: true``, read from the libraries' own caches) or freshly
initialised. Pretrained weights bring their own input normalisation; nothing is downloaded
where there is no network: the error says what to fetch.
"""

from __future__ import annotations

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

    try:
        net = timm.create_model(model, pretrained=pretrained, num_classes=num_classes,
                                in_chans=in_channels)
    except Exception as exc:  # noqa: BLE001 — offline hub errors come in many kinds
        if not pretrained:
            raise
        raise SamatError(_fetch_hint(f"timm:{model}", exc, (
            f"python -c \"import timm; timm.create_model('{model}', pretrained=True)\" on a "
            "machine with internet, then copy ~/.cache/huggingface (or set HF_HOME)"))) from None
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


def _fetch_hint(name: str, exc: BaseException, how: str) -> str:
    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return (f"task.pretrained: the pretrained weights of {name} are not in the local cache and "
            f"cannot be fetched here ({why}); fetch them with {how}, or set "
            "task.pretrained=false")
