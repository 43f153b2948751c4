"""What the built-in loggers share: the missing-library message, the flattened config and the
hooks that hand every scalar event to one method."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from typing import Any

from samat import EpochEnded, EvalResult, SamatError, StepLogged, hookimpl

log = logging.getLogger("samat")


def require(module: str, package: str, extra: str = "tracking") -> None:
    """Raise a one-line :class:`SamatError` naming the pip command if ``module`` is missing."""
    if importlib.util.find_spec(module) is None:
        raise SamatError(f"{package} is not installed; pip install 'samat[{extra}]' (or pip "
                         f"install {package})")


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"batch_size": 8}}`` -> ``{"train.batch_size": 8}``; lists and None as text,
    so that every value is a bool, number or string (what hparams and params take)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = "null" if value is None else str(value)
    return out


class ScalarLogger:
    """A logger whose step, epoch and evaluation events all go to :meth:`log_scalars`."""

    def log_scalars(self, event: StepLogged | EpochEnded | EvalResult) -> None:
        raise NotImplementedError

    @hookimpl
    def samat_on_step_logged(self, event: StepLogged) -> None:
        self.log_scalars(event)

    @hookimpl
    def samat_on_epoch_ended(self, event: EpochEnded) -> None:
        self.log_scalars(event)

    @hookimpl
    def samat_on_eval_result(self, event: EvalResult) -> None:
        self.log_scalars(event)
