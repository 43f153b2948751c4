"""timm/torchvision models by name: pretrained weights that are neither cached nor reachable
fail in seconds with one line, without the hub client's retries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from samat import SamatError
from samat_image.library_models import build_library_model


def test_unreachable_hub_fails_at_once_naming_what_to_fetch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # nothing cached
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(SamatError, match=r"^task.pretrained: the pretrained weights of "
                       r"timm:resnet18 are not in the local cache and cannot be fetched here "
                       r"\(http://127.0.0.1:9 is unreachable .*\); fetch them with python -c"):
        build_library_model("timm:resnet18", 10, 3, pretrained=True)
    assert time.monotonic() - start < 15  # the hub client would retry for about 45 s


def test_without_pretrained_weights_nothing_is_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    net, mean, std = build_library_model("timm:resnet18", 10, 3, pretrained=False)
    assert net.fc.out_features == 10 and mean is None and std is None
