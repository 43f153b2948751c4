"""Bad input is one clear line: for every malformed recipe, override, file or path ``samat``
returns exit code 2 with exactly one ``samat: error:`` line, prints no traceback and creates,
changes or removes nothing on disk (the reliability issue's bad-input suite).

Each case runs ``samat.cli.main(argv)`` in-process in a fresh working directory whose whole tree
is snapshotted (paths, sizes, sha256 and mtimes of files; directory listings) before and after;
a handful also run through a real ``python -m samat`` process. Tasks are tiny (the section 4
toy model with a few features, digits with a 4-channel CNN), so a case takes milliseconds.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml

from samat.cli import main

# -- base recipes ---------------------------------------------------------------------------------
TOY: dict[str, Any] = {
    "name": "toy",
    "seed": 0,
    "device": "cpu",
    "task": {"name": "toy_duality", "p": 0.75, "eta": 0.3, "n": 4, "n_train": 32, "n_test": 32,
             "theory_eps": [0.05]},
    "train": {
        "epochs": 1,
        "batch_size": 16,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "schedule": {"name": "cosine"},
        "weight_perturbation": {"name": "none"},
        "input_perturbation": {"name": "none"},
        "eval_every": 0,
    },
    "eval": {
        "batch_size": 32,
        "attacks": [
            {"name": "fgsm", "eps": 0.1},
            {"name": "pgd", "norm": "linf", "eps": 0.1, "alpha": 0.025, "steps": 2,
             "random_start": False},
        ],
    },
}
TOY_SAM = {**TOY, "train": {**TOY["train"], "weight_perturbation": {"name": "sam", "rho": 0.1}}}
TOY_ADAM = {**TOY, "train": {**TOY["train"], "optimizer": {"name": "adam", "lr": 0.001}}}
TOY_PGD = {**TOY, "train": {**TOY["train"], "input_perturbation": {
    "name": "pgd", "norm": "linf", "eps": 0.1, "alpha": 0.05, "steps": 2,
    "random_start": False}}}
DIGITS: dict[str, Any] = {
    "name": "digits",
    "seed": 0,
    "device": "cpu",
    "task": {"name": "image_classification", "dataset": "digits", "model": "small_cnn",
             "width": 4, "n_train": 64},
    "train": {
        "epochs": 1,
        "batch_size": 32,
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "schedule": {"name": "step", "milestones": [1], "gamma": 0.1},
        "weight_perturbation": {"name": "none"},
        "input_perturbation": {"name": "none"},
        "eval_every": 0,
    },
    "eval": {
        "batch_size": 64,
        "n_examples": 32,
        "attacks": [
            {"name": "fgsm", "eps": "8/255"},
            {"name": "pgd", "norm": "linf", "eps": "8/255", "alpha": "2/255", "steps": 2},
        ],
    },
}
SWEEP = {**TOY_SAM, "sweep": {"grid": {"seed": [0, 1]}}}

DELETE = object()
"""An ``edit`` value that removes the key."""
DIRECTORY = object()
"""A ``files`` value that makes an (empty) directory."""


def edit(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``{"dotted.key": value}`` set (integers index lists)."""
    data = copy.deepcopy(base)
    for key, value in changes.items():
        *parents, last = key.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        elif value is DELETE:
            del node[last]
        else:
            node[last] = value
    return data


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


# -- cases ----------------------------------------------------------------------------------------
@dataclass
class Case:
    """``samat ARGV`` in a directory holding ``files``, after ``setup(directory, trained)``;
    the error line must contain every string of ``match``. ``outside`` are paths outside the
    directory that must be left as they are too."""

    id: str
    argv: tuple[str, ...]
    match: tuple[str, ...]
    files: dict[str, Any] = field(default_factory=dict)
    setup: Callable[[Path, Path], None] | None = None
    outside: tuple[str, ...] = ()
    skip: str | None = None

    def param(self) -> Any:
        marks = [pytest.mark.skip(reason=self.skip)] if self.skip else []
        return pytest.param(self, id=self.id, marks=marks)


def recipe(id: str, changes: dict[str, Any], *match: str, base: dict[str, Any] = TOY,
           cmd: str = "run", args: tuple[str, ...] = ()) -> Case:
    """``samat CMD recipe.yaml ARGS`` on ``base`` edited by ``changes``."""
    return Case(id, (cmd, "recipe.yaml", *args), match, {"recipe.yaml": edit(base, changes)})


def override(id: str, *args: str, match: tuple[str, ...], base: dict[str, Any] = TOY,
             cmd: str = "run") -> Case:
    """``samat CMD recipe.yaml ARGS`` on an intact ``base``."""
    return Case(id, (cmd, "recipe.yaml", *args), match, {"recipe.yaml": base})


def text(id: str, content: str | bytes, *match: str, cmd: str = "run") -> Case:
    """``samat CMD recipe.yaml`` with ``recipe.yaml`` holding exactly ``content``."""
    return Case(id, (cmd, "recipe.yaml"), match, {"recipe.yaml": content})


TOY_TEXT = dump(TOY)
BOMB = "\n".join([
    "    a: &a [x, x, x, x, x, x, x, x, x, x]",
    *(f"    {c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
      for p, c in zip("abcdef", "bcdefg", strict=True)),
])
BOMB_VALUE = "[&a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(
    f"&{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcde", "bcdef", strict=True)) + "]"

YAML_FILES = [
    text("unclosed-flow-mapping", "task: {name: toy_duality\nseed: 0\n", "recipe.yaml:",
         "malformed YAML"),
    text("bad-indentation", "task:\n  name: toy_duality\n   p: 0.7\n", "recipe.yaml:",
         "malformed YAML"),
    text("tab-indentation", "task:\n\tname: toy_duality\n", "recipe.yaml:", "malformed YAML"),
    text("empty-file", "", "recipe.yaml", "empty"),
    text("only-comments", "# nothing here\n", "recipe.yaml", "empty"),
    text("list-at-top-level", "- task: toy_duality\n- seed: 0\n", "recipe.yaml",
         "expected a mapping"),
    text("scalar-at-top-level", "toy_duality\n", "recipe.yaml", "expected a mapping"),
    text("two-documents", TOY_TEXT + "---\nseed: 1\n", "recipe.yaml", "malformed YAML"),
    text("duplicate-top-level-key", TOY_TEXT + "seed: 3\n", "duplicate key 'seed'",
         "recipe.yaml:"),
    text("duplicate-nested-key", TOY_TEXT.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 2\n"),
         "duplicate key 'epochs'", "recipe.yaml:"),
    text("alias-bomb-in-component",
         TOY_TEXT.replace("  weight_perturbation:\n    name: none\n",
                          "  weight_perturbation:\n    name: none\n" + BOMB + "\n"),
         "recipe.yaml", "alias"),
    override("alias-bomb-in-override", f"train.weight_perturbation.extra={BOMB_VALUE}",
             match=("train.weight_perturbation.extra", "alias")),
    text("self-referencing-alias",
         TOY_TEXT.replace("  weight_perturbation:\n    name: none\n",
                          "  weight_perturbation: &w\n    name: none\n    me: *w\n"),
         "train.weight_perturbation"),
    text("non-utf8-bytes", b"name: toy\xff\xfe\ntask: toy_duality\n", "recipe.yaml", "UTF-8"),
    text("python-tag-os-system",
         TOY_TEXT + "description: !!python/object/apply:os.system ['touch pwned']\n",
         "recipe.yaml:", "python/object/apply:os.system"),
    text("python-name-tag", TOY_TEXT + "description: !!python/name:os.system\n",
         "recipe.yaml:", "python/name:os.system"),
    text("unhashable-key", TOY_TEXT + "? [a, b]\n: 1\n", "recipe.yaml:", "unhashable"),
    text("huge-integer-seed", TOY_TEXT.replace("seed: 0", "seed: " + "9" * 40), "seed:",
         str(2**32 - 1)),
    text("huge-integer-epochs", TOY_TEXT.replace("epochs: 1", "epochs: " + "9" * 40),
         "train.epochs"),
    text("huge-float", TOY_TEXT.replace("lr: 0.1", "lr: 1e999"), "train.optimizer.lr",
         "finite"),
    Case("directory-as-recipe", ("run", "recipe.yaml"), ("recipe.yaml", "directory"),
         {"recipe.yaml": DIRECTORY}),
    Case("missing-recipe-file", ("run", "missing.yaml"), ("missing.yaml", "not found")),
    Case("recipe-under-a-file", ("run", "recipe.yaml/inner.yaml"), ("recipe.yaml/inner.yaml",),
         {"recipe.yaml": TOY}),
]

UNKNOWN_KEYS = [
    recipe("top-level", {"bogus": 1}, "Unknown key 'bogus'"),
    recipe("top-level-typo", {"seeds": 1}, "Unknown key 'seeds'", "Did you mean: seed"),
    recipe("train", {"train.epoch": 2}, "Unknown key 'train.epoch'", "epochs"),
    recipe("eval", {"eval.attack": []}, "Unknown key 'eval.attack'", "attacks"),
    recipe("schedule", {"train.schedule.gama": 0.1}, "Unknown key 'train.schedule.gama'",
           "gamma"),
    recipe("task-param", {"task.pp": 0.7}, "Unknown key 'task.pp'"),
    recipe("optimizer-param", {"train.optimizer.lrr": 0.1}, "Unknown key 'train.optimizer.lrr'"),
    recipe("momentum-for-adam", {"train.optimizer.momentum": 0.9}, "train.optimizer.momentum",
           base=TOY_ADAM),
    recipe("weight-perturbation-param", {"train.weight_perturbation.rhoo": 0.1},
           "Unknown key 'train.weight_perturbation.rhoo'", "Did you mean: rho", base=TOY_SAM),
    recipe("input-perturbation-param", {"train.input_perturbation.epsilon": 0.1},
           "Unknown key 'train.input_perturbation.epsilon'", base=TOY_PGD),
    recipe("attack-param", {"eval.attacks.0.epss": 0.1}, "Unknown key 'eval.attacks.0.epss'",
           "eps"),
    recipe("digits-task-param", {"task.architecture": "small_cnn"},
           "Unknown key 'task.architecture'", base=DIGITS),
    recipe("image-attack-param", {"eval.attacks": [{"name": "apgd", "eps": 0.03, "step": 5}]},
           "Unknown key 'eval.attacks.0.step'", "steps", base=DIGITS),
    recipe("reserved-task-path", {"task.path": "x"}, "task.path", "reserved"),
    recipe("reserved-optimizer-in-perturbation", {"train.weight_perturbation.optimizer": "adam"},
           "train.weight_perturbation.optimizer", "reserved", base=TOY_SAM),
    recipe("reserved-attack-model", {"eval.attacks.0.model": "x"}, "eval.attacks.0.model",
           "reserved"),
    recipe("factory-internal-param", {"train.weight_perturbation.base_kwargs": {}},
           "train.weight_perturbation.base_kwargs", base=TOY_SAM),
]

WRONG_TYPES = [
    recipe("epochs-string", {"train.epochs": "ten"}, "train.epochs", "integer"),
    recipe("epochs-bool", {"train.epochs": True}, "train.epochs", "integer"),
    recipe("batch-size-float", {"train.batch_size": 1.5}, "train.batch_size", "integer"),
    recipe("seed-string", {"seed": "abc"}, "seed", "integer"),
    recipe("seed-fraction", {"seed": 1.5}, "seed", "integer"),
    recipe("train-list", {"train": [1, 2]}, "train", "mapping"),
    recipe("eval-string", {"eval": "none"}, "eval", "mapping"),
    recipe("attacks-mapping", {"eval.attacks": {"name": "fgsm"}}, "eval.attacks", "list"),
    recipe("gamma-bool", {"train.schedule": {"name": "step", "gamma": True}},
           "train.schedule.gamma", "number"),
    recipe("milestones-scalar", {"train.schedule": {"name": "step", "milestones": 5}},
           "train.schedule.milestones", "list"),
    recipe("drop-last-string", {"train.drop_last": "maybe"}, "train.drop_last", "true or false"),
    recipe("name-number", {"name": 5}, "name", "string"),
    recipe("device-number", {"device": 3}, "device", "string"),
    recipe("optimizer-number", {"train.optimizer": 5}, "train.optimizer", "mapping"),
    recipe("task-list", {"task": ["toy_duality"]}, "task", "mapping"),
    recipe("component-without-name", {"train.weight_perturbation": {"rho": 0.1}},
           "train.weight_perturbation.name"),
    recipe("label-number", {"eval.attacks.0.label": 5}, "eval.attacks.0.label", "string"),
    recipe("lr-string", {"train.optimizer.lr": "fast"}, "train.optimizer.lr"),
    recipe("betas-string", {"train.optimizer.betas": "x"}, "train.optimizer.betas",
           base=TOY_ADAM),
    recipe("rho-string", {"train.weight_perturbation.rho": "big"},
           "train.weight_perturbation", "rho", base=TOY_SAM),
    recipe("adaptive-string", {"train.weight_perturbation.adaptive": "x"},
           "train.weight_perturbation", "adaptive", base=TOY_SAM),
    recipe("eps-string", {"train.input_perturbation.eps": "big"}, "train.input_perturbation",
           "eps", base=TOY_PGD),
    recipe("random-start-string", {"train.input_perturbation.random_start": "x"},
           "train.input_perturbation", "random_start", base=TOY_PGD),
    recipe("bounds-number", {"train.input_perturbation.bounds": 5}, "train.input_perturbation",
           "bounds", base=TOY_PGD),
    recipe("theory-eps-scalar", {"task.theory_eps": 0.1}, "task", "theory_eps"),
    recipe("theory-eps-strings", {"task.theory_eps": ["x"]}, "task", "theory_eps"),
    recipe("augment-string", {"task.augment": "x"}, "task", "augment", base=DIGITS),
]

OUT_OF_RANGE = [
    recipe("epochs-0", {"train.epochs": 0}, "train.epochs", ">= 1"),
    recipe("epochs-negative", {"train.epochs": -1}, "train.epochs", ">= 1"),
    recipe("iterations-0", {"train.epochs": DELETE, "train.iterations": 0}, "train.iterations"),
    recipe("epochs-and-iterations", {"train.iterations": 10}, "train.epochs",
           "train.iterations"),
    recipe("neither-epochs-nor-iterations", {"train.epochs": DELETE}, "train.epochs",
           "train.iterations"),
    recipe("batch-size-0", {"train.batch_size": 0}, "train.batch_size", ">= 1"),
    recipe("batch-size-over-data-with-drop-last", {"train.batch_size": 64,
                                                   "train.drop_last": True},
           "train.batch_size", "drop_last"),
    recipe("eval-every-negative", {"train.eval_every": -1}, "train.eval_every", ">= 0"),
    recipe("checkpoint-every-0", {"train.checkpoint_every": 0}, "train.checkpoint_every"),
    recipe("num-workers-negative", {"train.num_workers": -1}, "train.num_workers"),
    recipe("eval-batch-size-0", {"eval.batch_size": 0}, "eval.batch_size"),
    recipe("eval-n-examples-0", {"eval.n_examples": 0}, "eval.n_examples"),
    recipe("schedule-gamma-0", {"train.schedule": {"name": "step", "gamma": 0}},
           "train.schedule.gamma", "(0, 1]"),
    recipe("schedule-gamma-2", {"train.schedule": {"name": "step", "gamma": 2}},
           "train.schedule.gamma", "(0, 1]"),
    recipe("milestones-decreasing", {"train.schedule": {"name": "step", "milestones": [5, 2]}},
           "train.schedule.milestones", "increasing"),
    recipe("milestone-0", {"train.schedule": {"name": "step", "milestones": [0]}},
           "train.schedule.milestones"),
    recipe("schedule-power-0", {"train.schedule": {"name": "poly", "power": 0}},
           "train.schedule.power"),
    recipe("schedule-min-lr-negative", {"train.schedule.min_lr": -1}, "train.schedule.min_lr"),
    recipe("schedule-unknown", {"train.schedule.name": "cosin"}, "train.schedule.name",
           "Did you mean: cosine"),
    recipe("precision-x", {"train.precision": "x"}, "train.precision", "fp32"),
    recipe("on-nonfinite-x", {"train.on_nonfinite": "ignore"}, "train.on_nonfinite", "skip"),
    recipe("device-x", {"device": "x"}, "device", "cpu"),
    recipe("device-gpu", {"device": "gpu"}, "device", "cuda"),
    recipe("duplicate-attack-labels", {"eval.attacks.1": {"name": "fgsm", "eps": 0.1}},
           "eval.attacks", "label"),
    recipe("seed-negative", {"seed": -1}, "seed", ">= 0"),
    recipe("seed-2-pow-32", {"seed": 2**32}, "seed", str(2**32 - 1)),
    recipe("seed-99999999999", {"seed": 99999999999}, "seed", str(2**32 - 1)),
    recipe("name-dotdot-path", {"name": "../../x"}, "name", "'../../x'", "output_dir"),
    recipe("name-with-slash", {"name": "a/b"}, "name", "'a/b'"),
    recipe("name-dotdot", {"name": ".."}, "name", "'..'"),
    recipe("name-hidden", {"name": ".hidden"}, "name", "'.hidden'"),
    recipe("name-with-space", {"name": "a b"}, "name", "'a b'"),
]


def _on_cpu_only(case: Case) -> Case:
    import torch

    case.skip = "this machine has CUDA" if torch.cuda.is_available() else None
    return case


DEVICES = [
    _on_cpu_only(recipe("device-cuda", {"device": "cuda"}, "device", "'cuda'",
                        "CUDA is not available")),
    _on_cpu_only(recipe("device-cuda-7", {"device": "cuda:7"}, "device", "'cuda:7'")),
]

NON_FINITE = [
    text("lr-nan", TOY_TEXT.replace("lr: 0.1", "lr: .nan"), "train.optimizer.lr", "finite"),
    text("lr-inf", TOY_TEXT.replace("lr: 0.1", "lr: .inf"), "train.optimizer.lr", "finite"),
    text("lr-minus-inf", TOY_TEXT.replace("lr: 0.1", "lr: -.inf"), "train.optimizer.lr",
         "finite"),
    text("momentum-inf", TOY_TEXT.replace("momentum: 0.9", "momentum: .inf"),
         "train.optimizer.momentum", "finite"),
    recipe("weight-decay-minus-inf", {"train.optimizer.weight_decay": float("-inf")},
           "train.optimizer.weight_decay", "finite"),
    recipe("rho-nan", {"train.weight_perturbation.rho": float("nan")},
           "train.weight_perturbation.rho", "finite", base=TOY_SAM),
    recipe("input-eps-inf", {"train.input_perturbation.eps": float("inf")},
           "train.input_perturbation.eps", "finite", base=TOY_PGD),
    recipe("attack-eps-nan", {"eval.attacks.0.eps": float("nan")}, "eval.attacks.0.eps",
           "finite"),
    recipe("alpha-nan", {"eval.attacks.1.alpha": float("nan")}, "eval.attacks.1.alpha",
           "finite"),
    recipe("looksam-alpha-inf", {"train.weight_perturbation": {"name": "looksam",
                                                                "alpha": float("inf")}},
           "train.weight_perturbation.alpha", "finite"),
    recipe("task-p-nan", {"task.p": float("nan")}, "task.p", "finite"),
    recipe("task-eta-inf", {"task.eta": float("inf")}, "task.eta", "finite"),
    recipe("theory-eps-inf", {"task.theory_eps": [0.05, float("inf")]}, "task.theory_eps.1",
           "finite"),
    recipe("schedule-gamma-nan", {"train.schedule.gamma": float("nan")}, "train.schedule.gamma",
           "finite"),
    recipe("seed-nan", {"seed": float("nan")}, "seed", "finite"),
    recipe("epochs-inf", {"train.epochs": float("inf")}, "train.epochs", "finite"),
    recipe("image-attack-eps-nan", {"eval.attacks": [{"name": "apgd", "eps": float("nan")}]},
           "eval.attacks.0.eps", "finite", base=DIGITS),
    override("override-lr-nan", "train.optimizer.lr=.nan", match=("train.optimizer.lr", "finite")),
    override("override-rho-inf", "train.weight_perturbation.rho=.inf",
             match=("train.weight_perturbation.rho", "finite"), base=TOY_SAM),
    override("override-eps-nan-word", "eval.attacks.0.eps=nan", match=("eval.attacks.0", "eps")),
    override("override-lr-inf-word", "train.optimizer.lr=inf", match=("train.optimizer.lr",)),
]

REGISTERED_NAMES = [
    recipe("task", {"task.name": "toy_dualty"}, "task.name", "Did you mean: toy_duality"),
    recipe("optimizer", {"train.optimizer.name": "sgdd"}, "train.optimizer.name",
           "Did you mean: sgd"),
    recipe("weight-perturbation", {"train.weight_perturbation.name": "samm"},
           "train.weight_perturbation.name", "Did you mean: sam"),
    recipe("input-perturbation", {"train.input_perturbation.name": "pgdd"},
           "train.input_perturbation.name", "Did you mean: pgd"),
    recipe("attack", {"eval.attacks.0.name": "fgsmm"}, "eval.attacks.0.name",
           "Did you mean: fgsm"),
    recipe("dataset", {"task.dataset": "digitz"}, "task", "Did you mean: digits", base=DIGITS),
    recipe("model", {"task.model": "small_cn"}, "task", "Did you mean: small_cnn", base=DIGITS),
]

OPTIMIZER = [
    recipe("lr-negative", {"train.optimizer.lr": -1}, "train.optimizer.lr"),
    recipe("momentum-negative", {"train.optimizer.momentum": -1}, "train.optimizer.momentum"),
    recipe("weight-decay-negative", {"train.optimizer.weight_decay": -1},
           "train.optimizer.weight_decay"),
    recipe("nesterov-without-momentum", {"train.optimizer.momentum": 0,
                                         "train.optimizer.nesterov": True},
           "train.optimizer", "Nesterov"),
    recipe("adam-betas-out-of-range", {"train.optimizer.betas": [2, 0.9]},
           "train.optimizer.betas", base=TOY_ADAM),
    recipe("adam-betas-one-value", {"train.optimizer.betas": [0.9]}, "train.optimizer.betas",
           base=TOY_ADAM),
    recipe("adam-eps-negative", {"train.optimizer.eps": -1}, "train.optimizer.eps",
           base=TOY_ADAM),
]

WEIGHT_PERTURBATION = [
    recipe("sam-rho-0", {"train.weight_perturbation.rho": 0}, "train.weight_perturbation",
           "rho must be > 0", base=TOY_SAM),
    recipe("sam-rho-negative", {"train.weight_perturbation.rho": -1},
           "train.weight_perturbation", "rho must be > 0", base=TOY_SAM),
    recipe("sam-ascent-x", {"train.weight_perturbation.ascent": "x"},
           "train.weight_perturbation", "ascent", base=TOY_SAM),
    recipe("asam-rho-0", {"train.weight_perturbation": {"name": "asam", "rho": 0}},
           "train.weight_perturbation", "rho"),
    recipe("esam-beta-0", {"train.weight_perturbation": {"name": "esam", "beta": 0}},
           "train.weight_perturbation", "beta"),
    recipe("esam-beta-1.5", {"train.weight_perturbation": {"name": "esam", "beta": 1.5}},
           "train.weight_perturbation", "beta"),
    recipe("esam-gamma-0", {"train.weight_perturbation": {"name": "esam", "gamma": 0}},
           "train.weight_perturbation", "gamma"),
    recipe("esam-rho-negative", {"train.weight_perturbation": {"name": "esam", "rho": -0.1}},
           "train.weight_perturbation", "rho"),
    recipe("looksam-k-0", {"train.weight_perturbation": {"name": "looksam", "k": 0}},
           "train.weight_perturbation", "k must be"),
    recipe("looksam-k-fraction", {"train.weight_perturbation": {"name": "looksam", "k": 1.5}},
           "train.weight_perturbation", "k must be an integer"),
    recipe("looksam-alpha-negative",
           {"train.weight_perturbation": {"name": "looksam", "alpha": -1}},
           "train.weight_perturbation", "alpha"),
]

INPUT_PERTURBATION = [
    recipe("pgd-eps-negative", {"train.input_perturbation.eps": -1}, "train.input_perturbation",
           "eps must be >= 0", base=TOY_PGD),
    recipe("pgd-steps-0", {"train.input_perturbation.steps": 0}, "train.input_perturbation",
           "steps", base=TOY_PGD),
    recipe("pgd-steps-fraction", {"train.input_perturbation.steps": 1.5},
           "train.input_perturbation", "steps", base=TOY_PGD),
    recipe("pgd-alpha-0", {"train.input_perturbation.alpha": 0}, "train.input_perturbation",
           "alpha", base=TOY_PGD),
    recipe("pgd-restarts-0", {"train.input_perturbation.restarts": 0},
           "train.input_perturbation", "restarts", base=TOY_PGD),
    recipe("pgd-restarts-without-random-start", {"train.input_perturbation.restarts": 2},
           "train.input_perturbation", "random_start", base=TOY_PGD),
    recipe("pgd-norm-l3", {"train.input_perturbation.norm": "l3"}, "train.input_perturbation",
           "norm", base=TOY_PGD),
    recipe("pgd-bounds-reversed", {"train.input_perturbation.bounds": [1, 0]},
           "train.input_perturbation", "bounds", base=TOY_PGD),
    recipe("fgsm-eps-negative", {"eval.attacks.0.eps": -0.1}, "eval.attacks.0", "eps"),
    recipe("attack-pgd-alpha-negative", {"eval.attacks.1.alpha": -0.1}, "eval.attacks.1",
           "alpha"),
    recipe("digits-pgd-linf-eps-2", {"train.input_perturbation": {
        "name": "pgd", "norm": "linf", "eps": 2, "alpha": "2/255", "steps": 2}},
        "train.input_perturbation", "eps must be <= 1", "[0, 1]", "2/255", base=DIGITS),
    recipe("digits-attack-pgd-linf-eps-5", {"eval.attacks.1.eps": 5}, "eval.attacks.1",
           "eps must be <= 1", "5/255", base=DIGITS),
    recipe("digits-fgsm-eps-2", {"eval.attacks.0.eps": 2}, "eval.attacks.0",
           "eps must be <= 1", "2/255", base=DIGITS),
    recipe("digits-fgsm-training-eps-8", {"train.input_perturbation": {"name": "fgsm",
                                                                       "eps": 8}},
           "train.input_perturbation", "eps must be <= 1", "8/255", base=DIGITS),
]

IMAGE_ATTACKS = [
    recipe(f"{attack['name']}-{id}", {"eval.attacks": [attack]}, "eval.attacks.0", *match,
           base=DIGITS)
    for id, attack, match in [
        ("eps-missing", {"name": "apgd"}, ("eps",)),
        ("eps-negative", {"name": "apgd", "eps": -1}, ("eps",)),
        ("linf-eps-2", {"name": "apgd", "eps": 2}, ("eps must be <= 1", "2/255")),
        ("loss-x", {"name": "apgd", "eps": 0.03, "loss": "x"}, ("loss",)),
        ("steps-0", {"name": "apgd", "eps": 0.03, "steps": 0}, ("steps",)),
        ("norm-l3", {"name": "apgd", "eps": 0.03, "norm": "l3"}, ("norm",)),
        ("rho-0", {"name": "apgd", "eps": 0.03, "rho": 0}, ("rho",)),
        ("n-classes-0", {"name": "autoattack", "eps": 0.03, "n_classes": 0}, ("n_classes",)),
        ("version-x", {"name": "autoattack", "eps": 0.03, "version": "fast"}, ("version",)),
        ("linf-eps-5", {"name": "autoattack", "eps": 5}, ("eps must be <= 1", "5/255")),
        ("seed-negative", {"name": "autoattack", "eps": 0.03, "seed": -1}, ("seed",)),
        ("n-classes-1", {"name": "fab", "eps": 0.5, "n_classes": 1}, ("n_classes",)),
        ("targeted-x", {"name": "fab", "eps": 0.5, "targeted": "x"}, ("targeted",)),
        ("eta-0", {"name": "fab", "eps": 0.5, "eta": 0}, ("eta",)),
        ("linf-eps-2", {"name": "fab", "eps": 2, "norm": "linf"}, ("eps must be <= 1",)),
        ("p-init-0", {"name": "square", "eps": 0.03, "p_init": 0}, ("p_init",)),
        ("n-queries-0", {"name": "square", "eps": 0.03, "n_queries": 0}, ("n_queries",)),
        ("rescale-x", {"name": "square", "eps": 0.03, "rescale_schedule": "x"},
         ("rescale_schedule",)),
        ("linf-eps-2", {"name": "square", "eps": 2}, ("eps must be <= 1",)),
        ("x-dimensions-0", {"name": "pixle", "x_dimensions": 0}, ("x_dimensions",)),
        ("pixel-mapping-x", {"name": "pixle", "pixel_mapping": "x"}, ("pixel_mapping",)),
        ("max-iterations-0", {"name": "pixle", "max_iterations": 0}, ("max_iterations",)),
        ("bound-0", {"name": "stadv", "bound": 0}, ("bound",)),
        ("tau-negative", {"name": "stadv", "tau": -1}, ("tau",)),
        ("steps-fraction", {"name": "stadv", "steps": 1.5}, ("steps",)),
        ("kappa-negative", {"name": "stadv", "kappa": -1}, ("kappa",)),
    ]
]

AA_100 = {"name": "autoattack", "eps": "8/255", "n_classes": 100, "version": "cheap"}
DIGITS_AA = edit(DIGITS, {"eval.attacks.1": {"name": "autoattack", "eps": "8/255",
                                             "version": "cheap"}})
N_CLASSES_100 = ("eval.attacks.1.n_classes: 100, but the model has 10 outputs (task "
                 "image_classification, dataset digits); set n_classes: 10")
ATTACK_FIT = [  # attacks checked against the model (Attack.check) before anything trains
    *[recipe(f"autoattack-n-classes-100-{cmd}", {"eval.attacks.1": AA_100}, N_CLASSES_100,
             base=DIGITS, cmd=cmd) for cmd in ("run", "validate")],
    *[override(f"override-n-classes-100-{cmd}", "eval.attacks.1.n_classes=100",
               match=(N_CLASSES_100,), base=DIGITS_AA, cmd=cmd) for cmd in ("run", "validate")],
    recipe("fab-t-n-classes-5", {"eval.attacks.1": {"name": "fab", "eps": 0.5, "n_classes": 5,
                                                   "targeted": True}},
           "eval.attacks.1.n_classes: 5, but the model has 10 outputs", "set n_classes: 10",
           base=DIGITS),
    *[recipe(f"{name}-on-features-{cmd}", {"eval.attacks.1": attack},
             f"eval.attacks.1: {name} attacks float (N, C, H, W) images", "task toy_duality",
             "choose an attack", cmd=cmd)
      for name, attack in (("apgd", {"name": "apgd", "eps": 0.1}),
                           ("stadv", {"name": "stadv", "steps": 1}))
      for cmd in ("run", "validate")],
    Case("sweep-n-classes-axis", ("sweep", "recipe.yaml", "eval.attacks.1.n_classes=10,100"),
         ("sweep point n_classes=100", "eval.attacks.1.n_classes: 100", "set n_classes: 10"),
         {"recipe.yaml": DIGITS_AA}),
]

TOY_TASK = [
    recipe("p-0.5", {"task.p": 0.5}, "task", "p must be"),
    recipe("p-1", {"task.p": 1}, "task", "p must be"),
    recipe("eta-0", {"task.eta": 0}, "task", "eta"),
    recipe("eta-negative", {"task.eta": -0.3}, "task", "eta"),
    recipe("n-0", {"task.n": 0}, "task", "n must be"),
    recipe("n-fraction", {"task.n": 2.5}, "task", "n must be an integer"),
    recipe("theory-eps-at-eta", {"task.theory_eps": [0.3]}, "task", "theory_eps", "eta=0.3"),
    recipe("theory-eps-negative", {"task.theory_eps": [-0.1]}, "task", "theory_eps"),
    recipe("n-train-0", {"task.n_train": 0}, "task", "n_train"),
    recipe("n-test-negative", {"task.n_test": -1}, "task", "n_test"),
    recipe("n-train-huge", {"task.n_train": 10**30}, "task", "lower n_train"),
    recipe("n-huge", {"task.n": 10**30}, "task", "lower n_train or n"),
]

DIGITS_TASK = [
    recipe(id, changes, "task", *match, base=DIGITS)
    for id, changes, match in [
        ("width-0", {"task.width": 0}, ("width",)),
        ("width-fraction", {"task.width": 2.5}, ("width",)),
        ("n-train-0", {"task.n_train": 0}, ("n_train",)),
        ("resize", {"task.resize": 8}, ("resize",)),
        ("download", {"task.download": True}, ("download",)),
        ("depth-for-small-cnn", {"task.depth": 3}, ("depth",)),
        ("wrn-depth-11", {"task.model": "wrn", "task.width": 1, "task.depth": 11}, ("depth",)),
        ("wrn-dropout-1.5", {"task.model": "wrn", "task.width": 1, "task.depth": 10,
                             "task.dropout": 1.5}, ("dropout",)),
        ("deit-width-4", {"task.model": "deit_tiny"}, ("width",)),
        ("seed-negative", {"task.seed": -1}, ("seed",)),
        ("cifar-without-data", {"task.dataset": "cifar10", "task.root": "nodata"},
         ("task.root",)),
    ]
]

OVERRIDES = [
    override("no-equals", "seed", match=("override 'seed'", "key.path=value")),
    override("no-key", "=1", match=("override '=1'", "key.path=value")),
    override("empty-component", "a..b=1", match=("a..b",)),
    override("trailing-dot", "seed.=1", match=("seed.",)),
    override("list-index-out-of-range", "eval.attacks.9.eps=1",
             match=("eval.attacks.9", "list has 2")),
    override("list-index-not-a-number", "eval.attacks.x.eps=1", match=("eval.attacks.x",)),
    override("through-a-scalar", "seed.x=1", match=("seed.x", "not a mapping")),
    override("through-a-name", "task.name.x=1", match=("task.name.x", "not a mapping")),
    override("invalid-yaml-value", "train.epochs=[1,", match=("train.epochs", "not valid YAML")),
    override("invalid-yaml-mapping", "train={a", match=("train", "not valid YAML")),
    override("unknown-key", "train.bogus=1", match=("Unknown key 'train.bogus'",)),
    override("wrong-type", "train.epochs=ten", match=("train.epochs", "integer")),
    override("python-tag", "seed=!!python/object/apply:os.system [ls]",
             match=("override 'seed=", "not valid YAML")),
    override("duplicate-key-in-value", "train.optimizer={name: sgd, lr: 1, lr: 2}",
             match=("train.optimizer", "duplicate key 'lr'")),
    override("validate-unknown-key", "bogus=1", match=("Unknown key 'bogus'",), cmd="validate"),
]


# -- runs to resume -------------------------------------------------------------------------------
RESUME = edit(TOY, {"output_dir": "run", "eval.attacks": [{"name": "fgsm", "eps": 0.1}]})
"""The tiny recipe ``trained`` trains for one epoch into ``run/``."""


def _run_quietly(directory: Path, argv: list[str]) -> tuple[int, str]:
    logger = logging.getLogger("samat")
    handlers, level = logger.handlers[:], logger.level
    cwd = os.getcwd()
    out, err = StringIO(), StringIO()
    os.chdir(directory)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(cwd)
        _restore_logger(handlers, level)
    return code, err.getvalue()


def _restore_logger(handlers: list[logging.Handler], level: int) -> None:
    """Drop the handlers ``main()`` added (the CLI adds a stderr handler per call)."""
    logger = logging.getLogger("samat")
    for handler in logger.handlers[:]:
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small/`` and ``large/`` (task.n 4 and 8): a recipe and its finished one-epoch run."""
    root = tmp_path_factory.mktemp("trained")
    for name, data in (("small", RESUME), ("large", edit(RESUME, {"task.n": 8}))):
        (root / name).mkdir()
        (root / name / "recipe.yaml").write_text(dump(data))
        code, err = _run_quietly(root / name, ["run", "recipe.yaml"])
        assert code == 0, err
    return root


def _copy_run(name: str = "small", finished: bool = False) -> Callable[[Path, Path], None]:
    def setup(directory: Path, trained: Path) -> None:
        shutil.copytree(trained / name, directory, dirs_exist_ok=True)
        if not finished:  # an interrupted run: a checkpoint but no metrics.json
            (directory / "run" / "metrics.json").unlink()
    return setup


def _then(*steps: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def setup(directory: Path, trained: Path) -> None:
        for step in steps:
            step(directory, trained)
    return setup


def _write(relative: str, content: str | bytes) -> Callable[[Path, Path], None]:
    def setup(directory: Path, trained: Path) -> None:
        path = directory / relative
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return setup


def _truncate(directory: Path, trained: Path) -> None:
    path = directory / "run" / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign_checkpoint(directory: Path, trained: Path) -> None:
    shutil.copy2(trained / "large" / "run" / "checkpoints" / "last.pt",
                 directory / "run" / "checkpoints" / "last.pt")


def _save(make: Callable[[dict[str, Any]], Any]) -> Callable[[Path, Path], None]:
    """Replace the checkpoint by ``torch.save(make(real checkpoint))``."""
    def setup(directory: Path, trained: Path) -> None:
        import torch

        path = directory / "run" / "checkpoints" / "last.pt"
        torch.save(make(torch.load(path, weights_only=True)), path)
    return setup


class _Payload:
    """Unpickling this runs ``touch pwned`` (only a full, non-weights-only unpickler would)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


CHECKPOINT = "run/checkpoints/last.pt"
RESUME_ARGS = ("run", "recipe.yaml", "--resume")
RESUME_CASES = [
    Case("no-run", RESUME_ARGS, ("--resume", "no run to resume under runs/toy/"),
         {"recipe.yaml": TOY}),
    Case("output-dir-without-run", (*RESUME_ARGS[:2], "output_dir=empty", "--resume"),
         ("--resume", "empty holds no run"), {"recipe.yaml": TOY, "empty": DIRECTORY}),
    Case("output-dir-missing", (*RESUME_ARGS[:2], "output_dir=nowhere", "--resume"),
         ("--resume", "nowhere holds no run"), {"recipe.yaml": TOY}),
    Case("config-missing", RESUME_ARGS, ("runs/toy/20240101-000000/config.yaml", "missing"),
         {"recipe.yaml": TOY, "runs/toy/20240101-000000/checkpoints": DIRECTORY}),
    Case("config-empty", RESUME_ARGS, ("run/config.yaml", "not a samat config"),
         setup=_then(_copy_run(), _write("run/config.yaml", ""))),
    Case("config-malformed", RESUME_ARGS, ("run/config.yaml", "unreadable"),
         setup=_then(_copy_run(), _write("run/config.yaml", "task: [toy\n"))),
    Case("config-not-a-mapping", RESUME_ARGS, ("run/config.yaml", "not a samat config"),
         setup=_then(_copy_run(), _write("run/config.yaml", "- task\n- seed\n"))),
    Case("config-not-utf8", RESUME_ARGS, ("run/config.yaml", "unreadable"),
         setup=_then(_copy_run(), _write("run/config.yaml", b"task: \xff\n"))),
    Case("config-invalid-recipe", RESUME_ARGS, ("run/config.yaml", "seed"),
         setup=_then(_copy_run(), _write("run/config.yaml", "task: toy_duality\nseed: -1\n"))),
    Case("different-recipe", (*RESUME_ARGS[:2], "train.optimizer.lr=0.05", "--resume"),
         ("--resume", "differs", "train.optimizer.lr: 0.1 vs 0.05"), setup=_copy_run()),
    Case("different-task-size", (*RESUME_ARGS[:2], "task.n=8", "--resume"),
         ("--resume", "task.n: 4 vs 8"), setup=_copy_run()),
    Case("metrics-corrupt", RESUME_ARGS, ("run/metrics.json", "unreadable"),
         setup=_then(_copy_run(finished=True), _write("run/metrics.json", "{\"status\": "))),
    Case("no-checkpoint", RESUME_ARGS, ("--resume", "before its first checkpoint"),
         setup=_then(_copy_run(), lambda d, t: (d / CHECKPOINT).unlink())),
    Case("checkpoint-truncated", RESUME_ARGS, (CHECKPOINT, "unreadable"),
         setup=_then(_copy_run(), _truncate)),
    Case("checkpoint-empty", RESUME_ARGS, (CHECKPOINT, "unreadable"),
         setup=_then(_copy_run(), _write(CHECKPOINT, b""))),
    Case("checkpoint-random-bytes", RESUME_ARGS, (CHECKPOINT, "unreadable"),
         setup=_then(_copy_run(), _write(CHECKPOINT, bytes(range(256)) * 64))),
    Case("checkpoint-is-a-directory", RESUME_ARGS, ("--resume", "run stopped before"),
         setup=_then(_copy_run(), lambda d, t: ((d / CHECKPOINT).unlink(),
                                                (d / CHECKPOINT).mkdir()))),
    Case("checkpoint-of-another-model", RESUME_ARGS, (CHECKPOINT, "model does not fit"),
         setup=_then(_copy_run(), _foreign_checkpoint)),
    Case("checkpoint-missing-keys", RESUME_ARGS, (CHECKPOINT, "missing optimizer"),
         setup=_then(_copy_run(), _save(lambda state: {"model": state["model"]}))),
    Case("checkpoint-not-a-mapping", RESUME_ARGS, (CHECKPOINT, "not a samat checkpoint"),
         setup=_then(_copy_run(), _save(lambda state: [1, 2, 3]))),
    Case("checkpoint-negative-progress", RESUME_ARGS, (CHECKPOINT, "progress"),
         setup=_then(_copy_run(), _save(lambda state: {
             **state, "progress": {**state["progress"], "epoch": -1}}))),
    Case("checkpoint-with-code", RESUME_ARGS, (CHECKPOINT, "unreadable"),
         setup=_then(_copy_run(), _save(lambda state: {**state, "x": _Payload()}))),
]

PATHS = [
    Case("output-dir-is-a-file", ("run", "recipe.yaml", "output_dir=out"),
         ("output_dir", "out is a file"), {"recipe.yaml": TOY, "out": "x"}),
    Case("output-dir-under-a-file", ("run", "recipe.yaml", "output_dir=out/sub"),
         ("output_dir", "under the file out"), {"recipe.yaml": TOY, "out": "x"}),
    Case("output-dir-dev-null", ("run", "recipe.yaml", "output_dir=/dev/null"),
         ("output_dir", "/dev/null")),
    Case("output-dir-in-proc", ("run", "recipe.yaml", "output_dir=/proc/samat_test"),
         ("output_dir", "/proc/samat_test"), {"recipe.yaml": TOY},
         outside=("/proc/samat_test",)),
    Case("output-dir-in-sys", ("run", "recipe.yaml", "output_dir=/sys/samat_test/run"),
         ("output_dir", "/sys/samat_test"), {"recipe.yaml": TOY},
         outside=("/sys/samat_test",)),
    Case("runs-is-a-file", ("run", "recipe.yaml"), ("name", "under the file runs"),
         {"recipe.yaml": TOY, "runs": "x"}),
    Case("output-dir-holds-a-run", ("run", "recipe.yaml", "output_dir=run"),
         ("output_dir", "already holds a run", "--resume"),
         setup=_copy_run(finished=True)),
]
for _case in PATHS:
    _case.files.setdefault("recipe.yaml", TOY)

SWEEP_ARGS = ("sweep", "recipe.yaml")
SWEEPS = [
    Case("bad-axis", (*SWEEP_ARGS, "train.weight_perturbation.rho=0.1,-1"),
         ("sweep point rho=-1", "rho must be > 0"), {"recipe.yaml": TOY_SAM}),
    Case("bad-axis-dry-run", (*SWEEP_ARGS, "train.weight_perturbation.rho=0.1,-1", "--dry-run"),
         ("sweep point rho=-1", "rho must be > 0"), {"recipe.yaml": TOY_SAM}),
    Case("bad-axis-with-output", (*SWEEP_ARGS, "train.weight_perturbation.rho=-1,0.1",
                                  "--output", "out"),
         ("sweep point rho=-1",), {"recipe.yaml": TOY_SAM}),
    Case("nan-axis", (*SWEEP_ARGS, "train.optimizer.lr=0.1,.nan"),
         ("train.optimizer.lr", "finite"), {"recipe.yaml": TOY}),
    Case("digits-linf-eps-axis", (*SWEEP_ARGS, "eval.attacks.0.eps=8/255,2"),
         ("sweep point eps=2", "eps must be <= 1"), {"recipe.yaml": DIGITS}),
    Case("empty-axis-value", (*SWEEP_ARGS, "seed=0,,1"), ("seed=0,,1", "empty value"),
         {"recipe.yaml": TOY}),
    Case("only-commas", (*SWEEP_ARGS, "seed=,"), ("seed=,",),
         {"recipe.yaml": TOY}),
    Case("jobs-0", (*SWEEP_ARGS, "--jobs", "0"), ("--jobs", ">= 1"), {"recipe.yaml": SWEEP}),
    Case("jobs-negative", (*SWEEP_ARGS, "--jobs", "-2"), ("--jobs", ">= 1"),
         {"recipe.yaml": SWEEP}),
    Case("nothing-to-sweep", SWEEP_ARGS, ("nothing to sweep",), {"recipe.yaml": TOY}),
    Case("same-directory-twice", (*SWEEP_ARGS, "seed=1,1"), ("same directory",),
         {"recipe.yaml": TOY}),
    Case("unknown-axis-key", (*SWEEP_ARGS, "bogus=1,2"), ("Unknown key 'bogus'",),
         {"recipe.yaml": TOY}),
    Case("block-unknown-key", SWEEP_ARGS, ("Unknown key 'sweep.bogus'",),
         {"recipe.yaml": edit(SWEEP, {"sweep.bogus": 1})}),
    Case("block-not-a-mapping", SWEEP_ARGS, ("sweep", "mapping"),
         {"recipe.yaml": edit(SWEEP, {"sweep": [1]})}),
    Case("block-grid-not-a-list", SWEEP_ARGS, ("sweep.grid.seed", "list"),
         {"recipe.yaml": edit(SWEEP, {"sweep.grid.seed": 5})}),
    Case("block-grid-empty-list", SWEEP_ARGS, ("sweep.grid.seed", "non-empty"),
         {"recipe.yaml": edit(SWEEP, {"sweep.grid.seed": []})}),
    Case("block-grid-a-list", SWEEP_ARGS, ("sweep.grid", "mapping"),
         {"recipe.yaml": edit(SWEEP, {"sweep.grid": [0, 1]})}),
    Case("block-bad-case-name", SWEEP_ARGS, ("sweep.cases", "'../x'"),
         {"recipe.yaml": edit(SWEEP, {"sweep.cases": {"../x": {}}})}),
    Case("block-case-not-a-mapping", SWEEP_ARGS, ("sweep.cases.a", "mapping"),
         {"recipe.yaml": edit(SWEEP, {"sweep.cases": {"a": [1]}})}),
    Case("block-axis-on-output-dir", SWEEP_ARGS, ("sweep.grid.output_dir",),
         {"recipe.yaml": edit(SWEEP, {"sweep.grid.output_dir": ["a", "b"]})}),
    Case("axis-on-output-dir", (*SWEEP_ARGS, "output_dir=a,b", "--dry-run"), ("output_dir",),
         {"recipe.yaml": TOY}),
    Case("axis-on-name", (*SWEEP_ARGS, "name=a,b", "--dry-run"), ("name",),
         {"recipe.yaml": TOY}),
    Case("output-is-a-file", (*SWEEP_ARGS, "--output", "out"), ("--output", "out is a file"),
         {"recipe.yaml": SWEEP, "out": "x"}),
    Case("output-in-proc", (*SWEEP_ARGS, "--output", "/proc/samat_test"),
         ("--output", "/proc/samat_test"), {"recipe.yaml": SWEEP},
         outside=("/proc/samat_test",)),
    Case("recipe-not-a-mapping", SWEEP_ARGS, ("recipe.yaml", "mapping"),
         {"recipe.yaml": "- 1\n"}),
    Case("missing-recipe", ("sweep", "missing.yaml", "seed=0,1"), ("missing.yaml",)),
]

REPORTS = [
    Case("missing-path", ("report", "nowhere"), ("report", "nowhere does not exist")),
    Case("no-runs", ("report", "empty"), ("report", "no finished run"), {"empty": DIRECTORY}),
    Case("metrics-not-json", ("report", "run"), ("run/metrics.json",),
         setup=_then(_copy_run(finished=True), _write("run/metrics.json", "{\"natural\": "))),
    Case("metrics-a-list", ("report", "run"), ("run/metrics.json", "not a samat metrics file"),
         setup=_then(_copy_run(finished=True), _write("run/metrics.json", "[1, 2]"))),
    Case("metrics-without-natural", ("report", "run"), ("run/metrics.json",),
         setup=_then(_copy_run(finished=True),
                     _write("run/metrics.json", '{"metric": "accuracy"}'))),
    Case("metrics-natural-without-metric", ("report", "run"), ("run/metrics.json",),
         setup=_then(_copy_run(finished=True),
                     _write("run/metrics.json", '{"metric": "accuracy", "natural": {}}'))),
    Case("metrics-attack-without-label", ("report", "run"), ("run/metrics.json",),
         setup=_then(_copy_run(finished=True), _write(
             "run/metrics.json",
             '{"metric": "accuracy", "natural": {"accuracy": 50}, "attacks": [{}]}'))),
    Case("metrics-not-utf8", ("report", "run"), ("run/metrics.json",),
         setup=_then(_copy_run(finished=True), _write("run/metrics.json", b"{\xff}"))),
    Case("config-malformed", ("report", "run"), ("run/config.yaml",),
         setup=_then(_copy_run(finished=True), _write("run/config.yaml", "task: [\n"))),
    Case("decimals-negative", ("report", "run", "--decimals", "-1"), ("--decimals",),
         setup=_copy_run(finished=True)),
    Case("extra-unknown", ("report", "run", "--extra", "bogus"), ("--extra bogus",),
         setup=_copy_run(finished=True)),
    Case("scatter-unknown", ("report", "run", "--scatter", "sharpness", "natural"),
         ("--scatter sharpness natural", "measures: none"), setup=_copy_run(finished=True)),
    Case("metrics-measure-nan", ("report", "run"), ("run/metrics.json", "measure 'm'"),
         setup=_then(_copy_run(finished=True), _write(
             "run/metrics.json",
             '{"metric": "accuracy", "natural": {"accuracy": 50}, "measures": '
             '[{"label": "m", "measure": {}, "key": "k", "value": NaN}]}'))),
    Case("out-is-a-file", ("report", "run", "--out", "out"), ("--out", "out"),
         {"out": "x"}, setup=_copy_run(finished=True)),
    Case("out-under-a-file", ("report", "run", "--out", "out/sub"), ("--out", "out"),
         {"out": "x"}, setup=_copy_run(finished=True)),
]

VALIDATE = [
    Case("missing-file", ("validate", "missing.yaml"), ("missing.yaml", "not found")),
    text("malformed", "task: [\n", "recipe.yaml:", "malformed YAML", cmd="validate"),
    recipe("unknown-key", {"train.bogus": 1}, "Unknown key 'train.bogus'", cmd="validate"),
    recipe("nan", {"train.optimizer.lr": float("nan")}, "train.optimizer.lr", cmd="validate"),
    recipe("linf-eps-over-range", {"eval.attacks.1.eps": 2}, "eval.attacks.1",
           "eps must be <= 1", base=DIGITS, cmd="validate"),
    recipe("bad-task", {"task.p": 2}, "task", "p must be", cmd="validate"),
    recipe("bad-optimizer", {"train.optimizer.lr": -1}, "train.optimizer.lr", cmd="validate"),
]

TOY_EVAL = edit(TOY, {"train.eval_every": 1})
"""TOY with a periodic evaluation (every epoch)."""
FGSM = {"name": "fgsm", "eps": 0.1}
BEST = [
    recipe("keep-best-x", {"train.keep_best": "lowest"}, "train.keep_best", "natural, robust",
           base=TOY_EVAL),
    recipe("keep-best-number", {"train.keep_best": 1}, "train.keep_best", "string",
           base=TOY_EVAL),
    recipe("keep-best-robust-without-attack", {"train.keep_best": "robust"},
           "train.keep_best", "train.eval_attack", base=TOY_EVAL),
    recipe("keep-best-without-eval-every", {"train.keep_best": "natural"}, "train.keep_best",
           "train.eval_every"),
    recipe("eval-attack-without-eval-every", {"train.eval_attack": FGSM}, "train.eval_attack",
           "train.eval_every"),
    recipe("eval-examples-without-eval-every", {"train.eval_examples": 8},
           "train.eval_examples", "train.eval_every"),
    recipe("eval-examples-0", {"train.eval_examples": 0}, "train.eval_examples", ">= 1",
           base=TOY_EVAL),
    recipe("eval-examples-fraction", {"train.eval_examples": 2.5}, "train.eval_examples",
           "integer", base=TOY_EVAL),
    recipe("eval-checkpoint-x", {"eval.checkpoint": "first"}, "eval.checkpoint", "last, best"),
    recipe("eval-checkpoint-best-without-keep-best", {"eval.checkpoint": "best"},
           "eval.checkpoint", "train.keep_best", base=TOY_EVAL),
    recipe("validate-eval-checkpoint-best-without-keep-best", {"eval.checkpoint": "best"},
           "eval.checkpoint", "train.keep_best", base=TOY_EVAL, cmd="validate"),
    override("override-eval-checkpoint-best", "eval.checkpoint=best",
             match=("eval.checkpoint", "train.keep_best")),
    recipe("eval-attack-unknown-name", {"train.eval_attack": {"name": "fgsmm"}},
           "train.eval_attack.name", "Did you mean: fgsm", base=TOY_EVAL),
    recipe("eval-attack-without-name", {"train.eval_attack": {"eps": 0.1}},
           "train.eval_attack.name", base=TOY_EVAL),
    recipe("eval-attack-unknown-key", {"train.eval_attack": {**FGSM, "epss": 0.1}},
           "Unknown key 'train.eval_attack.epss'", base=TOY_EVAL),
    recipe("eval-attack-eps-negative", {"train.eval_attack": {**FGSM, "eps": -0.1}},
           "train.eval_attack", "eps", base=TOY_EVAL),
    recipe("eval-attack-eps-nan", {"train.eval_attack": {**FGSM, "eps": float("nan")}},
           "train.eval_attack.eps", "finite", base=TOY_EVAL),
    recipe("eval-attack-digits-eps-2", {"train.eval_every": 1,
                                        "train.eval_attack": {**FGSM, "eps": 2}},
           "train.eval_attack", "eps must be <= 1", base=DIGITS),
    recipe("eval-attack-unknown-name-in-sweep", {"train.eval_every": 1,
                                                 "train.eval_attack": {"name": "fgsmm"}},
           "train.eval_attack.name", base=SWEEP, cmd="sweep", args=("--dry-run",)),
]

COMMAND_LINE = [
    Case("unknown-command", ("frobnicate",), ("invalid choice",)),
    Case("run-without-recipe", ("run",), ("recipe",)),
    Case("jobs-not-a-number", ("sweep", "recipe.yaml", "--jobs", "x"), ("--jobs",),
         {"recipe.yaml": SWEEP}),
]

GROUPS: dict[str, list[Case]] = {
    "yaml": YAML_FILES,
    "unknown-key": UNKNOWN_KEYS,
    "wrong-type": WRONG_TYPES,
    "range": OUT_OF_RANGE,
    "device": DEVICES,
    "non-finite": NON_FINITE,
    "name": REGISTERED_NAMES,
    "optimizer": OPTIMIZER,
    "weight": WEIGHT_PERTURBATION,
    "input": INPUT_PERTURBATION,
    "image-attack": IMAGE_ATTACKS,
    "attack-fit": ATTACK_FIT,
    "toy-task": TOY_TASK,
    "digits-task": DIGITS_TASK,
    "override": OVERRIDES,
    "resume": RESUME_CASES,
    "path": PATHS,
    "sweep": SWEEPS,
    "report": REPORTS,
    "validate": VALIDATE,
    "best": BEST,
    "command-line": COMMAND_LINE,
}
CASES = [Case(**{**case.__dict__, "id": f"{group}/{case.id}"})
         for group, cases in GROUPS.items() for case in cases]


# -- the harness ----------------------------------------------------------------------------------
def _file_state(path: Path) -> tuple[Any, ...]:
    stat = path.stat()
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return ("file", stat.st_size, stat.st_mtime_ns, digest)


def snapshot(*roots: Path) -> dict[str, Any]:
    """Every directory (its listing) and file (size, mtime, sha256) at or below ``roots``."""
    state: dict[str, Any] = {}
    for root in roots:
        if not root.exists() and not root.is_symlink():
            state[str(root)] = None
        elif not root.is_dir():
            state[str(root)] = _file_state(root)
        else:
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                state[str(here)] = ("dir", sorted(dirnames + filenames))
                for name in filenames:
                    state[str(here / name)] = _file_state(here / name)
    return state


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [f"{p}: {before.get(p)} -> {after.get(p)}" for p in sorted(set(before) | set(after))
            if before.get(p) != after.get(p)]


def prepare(case: Case, directory: Path, trained: Path | None) -> None:
    """Write ``case``'s files under ``directory`` and run its setup."""
    if case.setup is not None:
        assert trained is not None
        case.setup(directory, trained)
    for relative, content in case.files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIRECTORY:
            path.mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(dump(content))


def check_error(code: int | None, err: str, match: tuple[str, ...]) -> None:
    """Exit code 2, exactly one ``samat: error:`` line naming ``match``, no traceback."""
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("samat: error:")]
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert len(errors) == 1, f"{len(errors)} error lines:\n{err}"
    assert not any("Traceback" in line for line in lines), err
    missing = [m for m in match if m not in errors[0]]
    assert not missing, f"{missing} not in: {errors[0]}"


@pytest.fixture(autouse=True)
def _one_cli_logger():
    """``main()`` adds a stderr handler per call (one call per process in real use)."""
    logger = logging.getLogger("samat")
    handlers, level = logger.handlers[:], logger.level
    yield
    _restore_logger(handlers, level)


def test_every_group_is_large_enough() -> None:
    assert len(CASES) >= 120
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    trained = request.getfixturevalue("trained") if case.setup is not None else None
    monkeypatch.chdir(tmp_path)
    prepare(case, tmp_path, trained)
    outside = [Path(p) for p in case.outside]
    before = snapshot(tmp_path, *outside)
    capsys.readouterr()
    try:
        code = main(list(case.argv))
    except (Exception, SystemExit) as exc:  # the CLI must return, whatever the input
        pytest.fail(f"main() raised {exc!r} instead of returning; stderr:\n"
                    f"{capsys.readouterr().err}")
    check_error(code, capsys.readouterr().err, case.match)
    assert not (changed := _differences(before, snapshot(tmp_path, *outside))), changed


@pytest.mark.parametrize("base, changes", [
    pytest.param(DIGITS, {"eval.attacks.1": {"name": "pgd", "norm": "l2", "eps": 5, "alpha": 1,
                                             "steps": 2}}, id="digits-pgd-l2-eps-5"),
    pytest.param(DIGITS, {"eval.attacks": [{"name": "apgd", "norm": "l2", "eps": 5}]},
                 id="digits-apgd-l2-eps-5"),
    pytest.param(DIGITS, {"eval.attacks.0.eps": 1}, id="digits-fgsm-eps-1"),
    pytest.param(TOY, {"eval.attacks.1.eps": 2}, id="toy-unbounded-linf-eps-2"),
])
def test_radii_the_rules_allow(base: dict[str, Any], changes: dict[str, Any], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """The ℓ∞ rule is the input range's: ℓ2 radii are free, and so is ℓ∞ on unbounded
    inputs (the toy task's features)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipe.yaml").write_text(dump(edit(base, changes)))
    assert main(["validate", "recipe.yaml"]) == 0, capsys.readouterr().err


# -- the real CLI ---------------------------------------------------------------------------------
SUBPROCESS_CASES = {
    "missing-recipe": "yaml/missing-recipe-file",
    "malformed-yaml": "yaml/unclosed-flow-mapping",
    "nan-override": "non-finite/override-lr-nan",
    "linf-eps-over-range": "input/digits-attack-pgd-linf-eps-5",
    "n-classes-over-the-model": "attack-fit/autoattack-n-classes-100-run",
    "sweep-bad-axis": "sweep/bad-axis",
    "resume-without-run": "resume/no-run",
}


@pytest.fixture(scope="module")
def real_cli(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every subprocess case started at once (each is mostly interpreter start-up), then
    ``{name: (exit code, stderr, snapshot before, snapshot after)}``."""
    by_id = {c.id: c for c in CASES}
    started = {}
    for name, case_id in SUBPROCESS_CASES.items():
        directory = tmp_path_factory.mktemp(name)
        prepare(by_id[case_id], directory, None)
        before = snapshot(directory)
        proc = subprocess.Popen([sys.executable, "-m", "samat", *by_id[case_id].argv],
                                cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        started[name] = (proc, directory, before)
    finished = {}
    for name, (proc, directory, before) in started.items():
        _, err = proc.communicate(timeout=300)
        finished[name] = (proc.returncode, err, before, snapshot(directory))
    return finished


@pytest.mark.parametrize("name", list(SUBPROCESS_CASES))
def test_real_cli_prints_one_line(name: str, real_cli: dict[str, Any]) -> None:
    code, err, before, after = real_cli[name]
    check_error(code, err, next(c for c in CASES if c.id == SUBPROCESS_CASES[name]).match)
    assert err.strip().splitlines()[-1].startswith("samat: error:"), err
    assert not (changed := _differences(before, after)), changed
