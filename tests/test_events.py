"""The typed events and the tag names every logger and ``metrics.csv`` share."""

from __future__ import annotations

import dataclasses

import pytest

from samat import EpochEnded, EvalResult, StepLogged, event_scalars
from samat.events import numbers


def test_numbers_keeps_ints_and_floats_only():
    assert numbers({"a": 1, "b": 0.5, "c": True, "d": None, "e": "x", "f": {"g": 1}}) == {
        "a": 1.0, "b": 0.5}


def test_scalars_name_tags_by_event():
    assert event_scalars(StepLogged("r", 10, 1, {"loss": 0.3})) == {"train/loss": 0.3}
    assert event_scalars(EpochEnded("r", 12, 1, {"train_loss": 0.3})) == {
        "epoch/train_loss": 0.3}
    assert event_scalars(EvalResult("r", 12, 1, "pgd-linf-8/255", {"accuracy": 40.0},
                                    final=False)) == {"eval/pgd-linf-8/255/accuracy": 40.0}
    assert event_scalars(EvalResult("r", 12, 1, "natural", {"accuracy": 90.0})) == {
        "final/natural/accuracy": 90.0}


def test_events_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        StepLogged("r", 1, 1).step = 2
