"""``samat.names``: the one house style of "did you mean" suggestions."""

from __future__ import annotations

from samat import did_you_mean, unknown_name_message
from samat.names import unknown_key_message


def test_did_you_mean_names_up_to_three_close_choices() -> None:
    assert did_you_mean("pgdd", ["fgsm", "pgd"]) == " Did you mean: pgd?"
    closest_first = ["pgdxxx3", "pgdx1", "pgd2", "pgdxx2"]
    assert did_you_mean("pgd", closest_first) == " Did you mean: pgd2, pgdx1, pgdxx2?"
    assert did_you_mean("zzz", ["pgd", "fgsm"]) == ""
    assert did_you_mean("x", []) == ""


def test_did_you_mean_cutoff_is_half() -> None:
    assert did_you_mean("abcd", ["abxy"]) == " Did you mean: abxy?"  # ratio 0.5
    assert did_you_mean("abcdef", ["abxyzw"]) == ""  # ratio 1/3


def test_did_you_mean_takes_any_name_and_iterable() -> None:
    assert did_you_mean(12, iter(["12a", "b"])) == " Did you mean: 12a?"


def test_unknown_name_message() -> None:
    assert unknown_name_message("attack", "pgdd", ["fgsm", "pgd"]) == (
        "Unknown attack 'pgdd'. Did you mean: pgd? Available: fgsm, pgd")
    assert unknown_name_message("task", "zzz", ["cifar10"]) == (
        "Unknown task 'zzz'. Available: cifar10")
    assert unknown_name_message("task", None, []) == (
        "Unknown task 'None'. Available: (none registered)")


def test_unknown_key_message() -> None:
    assert unknown_key_message("train", "epoch", ["epochs", "lr"]) == (
        "Unknown key 'train.epoch'. Did you mean: epochs? Valid keys here: epochs, lr")
    assert unknown_key_message("", "seeds", ["seed", "name"]) == (
        "Unknown key 'seeds'. Did you mean: seed? Valid keys here: seed, name")
    assert unknown_key_message("attack", "nam", ["eps"], also=("name",)) == (
        "Unknown key 'attack.nam'. Valid keys here: name, eps")
