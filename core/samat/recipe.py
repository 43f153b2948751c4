"""Recipes: YAML -> validated, typed configuration, with ``key.path=value`` overrides.

Loaded with ``yaml.safe_load`` only; nothing in a recipe is imported or executed except through
the registries. Strings such as ``8/255`` or ``5e-4`` are read as numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import re
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from samat.errors import MissingDataError, SamatError
from samat.names import did_you_mean, unknown_key_message
from samat.packaged import name_of, packaged_recipe, recipe_names

INTERNAL = "samat_internal"
"""Metadata flag of a dataclass field that is no recipe key (neither read nor written)."""
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(rf"^\s*{_NUMBER}\s*$")
_FRACTION_RE = re.compile(rf"^\s*({_NUMBER})\s*/\s*({_NUMBER})\s*$")


def parse_number(value: str) -> float | None:
    """``"8/255"`` -> 0.0313..., ``"5e-4"`` -> 0.0005; ``None`` if ``value`` is not a number."""
    if _NUMBER_RE.match(value):
        return float(value)
    m = _FRACTION_RE.match(value)
    if m and float(m.group(2)) != 0:
        return float(m.group(1)) / float(m.group(2))
    return None


def normalize(value: Any) -> Any:
    """Recursively turn numeric strings (fractions, exponents) into floats."""
    if isinstance(value, str):
        number = parse_number(value)
        return value if number is None else number
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def expand_home(value: Any) -> Any:
    """``value`` with every string that starts with ``~`` (``output_dir: ~/runs``,
    ``task.root=~/data``) expanded to the home directory, at any depth."""
    if isinstance(value, str):
        return os.path.expanduser(value) if value.startswith("~") else value
    if isinstance(value, dict):
        return {k: expand_home(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_home(v) for v in value]
    return value


@dataclass
class Component:
    """A registry name plus the keyword parameters for its factory (written inline in YAML)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    written: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def column(self) -> str:
        """How results name this component: its ``label``, else ``name-norm-eps`` with ``eps``
        as written in the recipe (``8/255`` stays ``8/255``)."""
        if self.label:
            return self.label
        parts = [self.name]
        for key in ("norm", "eps"):
            if key in self.params:
                value = self.written.get(key, self.params[key])
                parts.append(str(value).replace(" ", "") if isinstance(value, str)
                             else f"{value:g}" if isinstance(value, float) else str(value))
        return "-".join(parts)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.label is not None:
            data["label"] = self.label
        data.update(self.params)
        return data


@dataclass
class Schedule:
    """Learning-rate schedule, stepped every iteration."""

    name: str = "constant"
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    power: float = 0.9
    min_lr: float = 0.0


@dataclass
class TrainConfig:
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int = 128
    optimizer: Component = field(
        default_factory=lambda: Component("sgd", {"lr": 0.1})
    )
    schedule: Schedule = field(default_factory=Schedule)
    weight_perturbation: Component = field(default_factory=lambda: Component("none"))
    input_perturbation: Component = field(default_factory=lambda: Component("none"))
    eval_every: int = 1
    eval_attack: Component | None = None
    eval_examples: int | None = None
    keep_best: str | None = None
    checkpoint_every: int | None = None
    num_workers: int = 0
    drop_last: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    on_nonfinite: str = "stop"


@dataclass
class EvalConfig:
    batch_size: int = 256
    n_examples: int | None = None
    attacks: list[Component] = field(default_factory=list)
    measures: list[Component] = field(default_factory=list)
    checkpoint: str = "last"


@dataclass
class Recipe:
    task: Component
    name: str = ""
    description: str = ""
    seed: int = 0
    device: str = "auto"
    output_dir: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: list[Component] = field(default_factory=list)
    """Experiment loggers (``tensorboard``, ``wandb``, ``mlflow``, ...): names or mappings of a
    name and its options (docs/tracking.md)."""
    origin: Origin | None = field(default=None, repr=False, compare=False,
                                  metadata={INTERNAL: True})
    """Where each key was written (set by :func:`load_recipe`); not a recipe key."""

    def as_dict(self) -> dict[str, Any]:
        """Plain data that reloads into an equal recipe (what ``config.yaml`` holds)."""
        return _dump(self)


OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
"""``train.optimizer.name`` -> the ``torch.optim`` class (and how reports name it)."""
SCHEDULES = ("constant", "step", "cosine", "poly")
PRECISIONS = ("fp32", "bf16", "fp16")
ON_NONFINITE = ("stop", "skip")
KEEP_BEST = ("natural", "robust")
"""``train.keep_best``: select ``checkpoints/best.pt`` by the natural metric or under
``train.eval_attack``."""
EVAL_CHECKPOINTS = ("last", "best")
MAX_SEED = 2**32 - 1
"""Largest seed every generator samat seeds (NumPy's legacy ``np.random.seed``) accepts."""
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
"""A recipe ``name``: one path component under ``runs/`` (no separators, no ``..``)."""
MAX_VALUES = 100_000
"""Most values a recipe may hold once YAML aliases are expanded (guards against alias bombs)."""
MAX_COUNT = 2**63 - 1
"""Largest count (epochs, batch size, ...) a recipe may give: a 64-bit integer."""
"""Most values a recipe may hold once YAML aliases are expanded (guards against alias bombs)."""


def _keys(cls: Any) -> list[dataclasses.Field]:
    """The fields of the dataclass (or instance) ``cls`` that are recipe keys."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get(INTERNAL)]


def _dump(obj: Any) -> Any:
    if isinstance(obj, Component):
        return obj.as_dict()
    if dataclasses.is_dataclass(obj):
        return {f.name: _dump(getattr(obj, f.name)) for f in _keys(obj)}
    if isinstance(obj, list):
        return [_dump(v) for v in obj]
    return obj


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are kept as values."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, path)
    if tp is Component:
        return _component(value, path)
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise SamatError(f"{path}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{path}.{i}") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise SamatError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise SamatError(f"{path}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            number = parse_number(value)
            if number is not None:
                return number
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SamatError(f"{path}: expected a number (e.g. 0.1 or 8/255), got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SamatError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported recipe field type {_type_name(tp)} at {path}")


def _component(value: Any, path: str) -> Component:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise SamatError(f"{path}: expected a mapping with a 'name' key, got {value!r}")
    params = normalize(dict(value))
    written = {k: v for k, v in value.items() if isinstance(v, str)}
    name = params.pop("name", None)
    if not isinstance(name, str) or not name:
        raise SamatError(f"{path}.name: missing; give the registered name, e.g. name: pgd")
    label = params.pop("label", None)
    if label is not None and not isinstance(label, str):
        raise SamatError(f"{path}.label: expected a string, got {label!r}")
    return Component(name, params, label, written)


def from_mapping(cls: type, value: Any, path: str) -> Any:
    """The dataclass ``cls`` from plain data, each field coerced to its annotated type
    (numbers such as ``8/255`` included); unknown keys, wrong types and missing required keys
    are one-line errors naming ``path``."""
    check_finite(normalize(value), path)
    return _dataclass(cls, value, path)


def _dataclass(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        where = path or "recipe"
        raise SamatError(f"{where}: expected a mapping of keys, got {value!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in _keys(cls)]
    kwargs = {}
    for key, item in value.items():
        if key not in names:
            raise SamatError(unknown_key_message(path, str(key), names))
        kwargs[key] = _coerce(item, hints[key], f"{path}.{key}" if path else key)
    missing = [
        f.name for f in _keys(cls)
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        where = f"{path}.{missing[0]}" if path else missing[0]
        raise SamatError(f"{where}: required key missing")
    return cls(**kwargs)


def _check_ranges(recipe: Recipe) -> None:
    def positive(path: str, value: Any) -> None:
        if value is not None and value < 1:
            raise SamatError(f"{path}: must be >= 1, got {value}")
        if value is not None and value > MAX_COUNT:
            raise SamatError(f"{path}: must be at most 2**63-1, got {value}")

    t, e = recipe.train, recipe.eval
    for path, value in [
        ("train.epochs", t.epochs), ("train.iterations", t.iterations),
        ("train.batch_size", t.batch_size), ("train.checkpoint_every", t.checkpoint_every),
        ("train.eval_examples", t.eval_examples),
        ("eval.batch_size", e.batch_size), ("eval.n_examples", e.n_examples),
    ]:
        positive(path, value)
    for path, value in [("seed", recipe.seed), ("train.eval_every", t.eval_every),
                        ("train.num_workers", t.num_workers)]:
        if value < 0:
            raise SamatError(f"{path}: must be >= 0, got {value}")
        if path != "seed":
            positive(path, value or None)
    if recipe.seed > MAX_SEED:
        raise SamatError(f"seed: must be at most 2**32-1 = {MAX_SEED}, got {recipe.seed}")
    if recipe.name and (not NAME_RE.fullmatch(recipe.name) or ".." in recipe.name):
        raise SamatError(
            f"name: {recipe.name!r} must be a plain directory name (letters, digits, '.', '_', "
            "'+', '-'; no '/' or '..'): runs go to runs/<name>/; use output_dir for a path")
    if t.on_nonfinite not in ON_NONFINITE:
        raise SamatError(f"train.on_nonfinite: expected one of {', '.join(ON_NONFINITE)}, "
                         f"got {t.on_nonfinite!r}")
    if (t.epochs is None) == (t.iterations is None):
        raise SamatError("train: set exactly one of train.epochs or train.iterations")
    s = t.schedule
    if s.name not in SCHEDULES:
        raise SamatError(
            f"Unknown schedule 'train.schedule.name={s.name}'.{did_you_mean(s.name, SCHEDULES)} "
            f"Available: {', '.join(SCHEDULES)}"
        )
    if not 0 < s.gamma <= 1:
        raise SamatError(f"train.schedule.gamma: must be in (0, 1], got {s.gamma}")
    if s.power <= 0:
        raise SamatError(f"train.schedule.power: must be > 0, got {s.power}")
    if s.min_lr < 0:
        raise SamatError(f"train.schedule.min_lr: must be >= 0, got {s.min_lr}")
    if any(m <= 0 for m in s.milestones) or s.milestones != sorted(s.milestones):
        raise SamatError(f"train.schedule.milestones: must be increasing positive epochs, "
                         f"got {s.milestones}")
    if t.precision not in PRECISIONS:
        raise SamatError(f"train.precision: expected one of {', '.join(PRECISIONS)}, "
                         f"got {t.precision!r}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", recipe.device):
        raise SamatError(f"device: expected auto, cpu, cuda or cuda:N, got {recipe.device!r}")
    _check_best(t, e)
    labels = [a.column() for a in e.attacks]
    if len(set(labels)) != len(labels):
        raise SamatError("eval.attacks: two attacks share a label; give each a distinct 'label'")
    labels = [m.label or m.name for m in e.measures]
    if len(set(labels)) != len(labels):
        raise SamatError("eval.measures: two measures share a label (a measure's label is its "
                         "name unless set); give each a distinct 'label'")


def _check_best(t: TrainConfig, e: EvalConfig) -> None:
    """The periodic evaluation keys (``train.eval_*``, ``train.keep_best``) and
    ``eval.checkpoint`` fit together."""
    if t.keep_best is not None and t.keep_best not in KEEP_BEST:
        raise SamatError(f"train.keep_best: expected one of {', '.join(KEEP_BEST)} or null, "
                         f"got {t.keep_best!r}")
    if e.checkpoint not in EVAL_CHECKPOINTS:
        raise SamatError(f"eval.checkpoint: expected one of {', '.join(EVAL_CHECKPOINTS)}, "
                         f"got {e.checkpoint!r}")
    if not t.eval_every:
        for key, value in (("eval_attack", t.eval_attack), ("eval_examples", t.eval_examples),
                           ("keep_best", t.keep_best)):
            if value is not None:
                raise SamatError(f"train.{key}: set, but train.eval_every is 0 (no periodic "
                                 "evaluation); set train.eval_every >= 1 or remove it")
    if t.keep_best == "robust" and t.eval_attack is None:
        raise SamatError("train.keep_best: robust needs train.eval_attack (the attack to select "
                         "by, e.g. {name: pgd, eps: 8/255, ...}); set it or use keep_best: "
                         "natural")
    if e.checkpoint == "best" and t.keep_best is None:
        raise SamatError("eval.checkpoint: best needs train.keep_best (natural or robust) to "
                         "choose checkpoints/best.pt; set train.keep_best or use "
                         "eval.checkpoint: last")


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (plain PyYAML keeps the
    last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: PyYAML reports it below
                continue
            if duplicate:
                first = seen[key].start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.line + 1}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """Parse YAML like ``yaml.safe_load`` (no tags that build objects), refusing duplicate
    keys."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def check_size(data: Any, where: str) -> None:
    """Raise if ``data`` holds more than :data:`MAX_VALUES` values once YAML aliases are
    expanded (a "billion laughs" document is small but expands exponentially)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # being counted: meeting one again is a cycle

    def size(node: Any, path: str) -> int:
        if not isinstance(node, dict | list):
            return 1
        if id(node) in open_nodes:
            raise SamatError(f"{where}: {path or 'the top level'} holds a YAML alias to a "
                             "mapping or list that contains it (a cycle); write the values out")
        if id(node) not in sizes:
            open_nodes.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            sizes[id(node)] = 1 + sum(size(child, f"{path}.{key}" if path else str(key))
                                      for key, child in items)
            open_nodes.discard(id(node))
        return sizes[id(node)]

    try:
        total = size(data, "")
    except RecursionError:
        total = MAX_VALUES + 1
    if total > MAX_VALUES:
        raise SamatError(f"{where}: YAML aliases expand to more than {MAX_VALUES} values (an "
                         "alias bomb?); write the values out or use fewer nested aliases")


FLOAT32_MAX = 3.4028234663852886e38


def check_finite(data: Any, path: str = "") -> None:
    """Raise on the first NaN, infinite or beyond-float32 number in ``data`` (tensors are
    float32: a larger value cannot even be applied), naming its key path."""
    if isinstance(data, float) and not math.isfinite(data):
        raise SamatError(f"{path or 'recipe'}: must be a finite number, got {data}")
    if isinstance(data, float) and abs(data) > FLOAT32_MAX:
        raise SamatError(f"{path or 'recipe'}: {data:g} is beyond the float32 range "
                         f"(±{FLOAT32_MAX:.3g}); use a smaller value")
    if isinstance(data, dict):
        for key, value in data.items():
            check_finite(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_finite(value, f"{path}.{i}" if path else str(i))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.weight_perturbation.rho=0.1"`` -> (["train", ...], 0.1)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SamatError(f"override '{text}': expected key.path=value, e.g. seed=1")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        raise SamatError(f"override '{text}': value is not valid YAML ({problem})") from None
    check_size(value, f"override '{key.strip()}'")
    parts = key.strip().split(".")
    if not all(parts):
        raise SamatError(f"override '{text}': empty key in '{key.strip()}' (a leading, trailing "
                         "or doubled '.'); write key.path=value, e.g. train.optimizer.lr=0.1")
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set ``value`` at ``parts`` in nested ``data`` (integers index lists)."""
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SamatError(f"override '{where}': no list item {part} (list has {len(node)})")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if isinstance(node.get(part), str) and part != "name":  # `task: toy` shorthand
                    node[part] = {"name": node[part]}
                node = node.setdefault(part, {})
        else:
            raise SamatError(f"override '{where}': the parent is not a mapping or list")


def _with_defaults(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every omitted section and component filled in from the defaults, so an
    override such as ``train.optimizer.lr=0.05`` edits the default optimizer."""
    hints = typing.get_type_hints(cls)
    for f in _keys(cls):
        tp = hints[f.name]
        if not (tp is Component or dataclasses.is_dataclass(tp)):
            continue
        if f.name not in data and f.default_factory is not dataclasses.MISSING:
            data[f.name] = _dump(f.default_factory())
        elif tp is not Component and isinstance(data.get(f.name), dict):
            data[f.name] = _with_defaults(tp, data[f.name])
    return data


def recipe_from_dict(data: Any, overrides: list[str] = (), *, path: Path | None = None,
                     sources: dict[str, str] | None = None) -> Recipe:
    """Validate plain data (after applying ``overrides``) into a :class:`Recipe`. With the
    recipe file ``path`` and the ``file:line`` of each key (:func:`compose_recipe`), errors
    about a key a parent or fragment set name it, then and when the run is built
    (``Recipe.origin``)."""
    origin = None if path is None else Origin(path, sources or {}, tuple(overrides))
    with located(origin):
        recipe = _recipe(data, overrides)
    recipe.origin = origin
    return recipe


def _recipe(data: Any, overrides: list[str]) -> Recipe:
    check_size(data, "recipe")
    data = copy.deepcopy(data)
    if not isinstance(data, dict):
        raise SamatError(f"recipe: expected a mapping of keys at the top level, got {data!r}")
    data = _with_defaults(Recipe, data)
    for text in overrides:
        apply_override(data, *parse_override(text))
    check_finite(normalize(data))
    recipe = _dataclass(Recipe, expand_home(data), "")
    _check_ranges(recipe)
    return recipe


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file with ``yaml.safe_load``; errors name the file and line."""
    return _read_lines(Path(path).expanduser())[0]


def _read_lines(path: Path) -> tuple[Any, dict[str, int]]:
    """The data of the YAML file ``path`` and the line of each flattened key path in it."""
    if path.is_dir():
        raise SamatError(f"{path} is a directory, not a recipe file; give a .yaml file (recipes "
                         "live in recipes/)")
    if not path.is_file():
        raise SamatError(
            f"recipe file not found: {path} (check the path; recipes live in recipes/)"
        )
    try:
        loader = _StrictLoader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            data = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise SamatError(f"{where}: malformed YAML: {exc.problem}") from None
    except UnicodeDecodeError as exc:
        raise SamatError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                         f"{exc.start}); save the file as UTF-8") from None
    except (yaml.YAMLError, OSError) as exc:
        raise SamatError(f"{path}: malformed YAML: {exc}") from None
    if data is None:
        raise SamatError(f"{path}: the file is empty (or only comments); a recipe is a mapping "
                         "with at least a task (see recipes/ and samat list tasks)")
    check_size(data, str(path))
    lines: dict[str, int] = {}
    _node_lines(node, "", lines)
    return data, lines


def _node_lines(node: yaml.Node, prefix: str, lines: dict[str, int]) -> None:
    """Record the line of every key and list item under ``node`` (bounded: ``check_size`` has
    refused alias bombs and cycles)."""
    if isinstance(node, yaml.MappingNode):
        children = [(str(key.value), key, value) for key, value in node.value
                    if isinstance(key, yaml.ScalarNode)]
    elif isinstance(node, yaml.SequenceNode):
        children = [(str(i), value, value) for i, value in enumerate(node.value)]
    else:
        return
    for key, marked, value in children:
        path = f"{prefix}.{key}" if prefix else key
        lines.setdefault(path, marked.start_mark.line + 1)
        _node_lines(value, path, lines)


EXTENDS = "extends"
"""The top-level key naming the recipe(s) a recipe is written on top of."""
OWN_KEYS = ("name", "description")
"""Top-level keys a recipe does not inherit: its identity (runs go to ``runs/<name>/``)."""


def find_recipe(text: str | Path) -> Path:
    """The recipe file ``text`` names: an existing path wins, else a shipped recipe's name
    (``cifar10/sam``, with or without ``.yaml``; ``samat list recipes``)."""
    path = Path(text).expanduser()
    if path.exists():
        return path
    shipped = packaged_recipe(str(text))
    if shipped is not None:
        return shipped
    name = name_of(str(text))
    raise SamatError(f"recipe file not found: {path} (no such file, and no shipped recipe named "
                     f"{name!r}).{did_you_mean(name, recipe_names())} Give a path or a name "
                     "from samat list recipes")


def shipped_recipes() -> list[tuple[str, str]]:
    """Every shipped recipe's name and ``description`` (what ``samat list recipes`` shows)."""
    rows = []
    for name in recipe_names():
        data = read_yaml(packaged_recipe(name))
        description = data.get("description", "") if isinstance(data, dict) else ""
        rows.append((name, str(description or "")))
    return rows


def merge(base: Any, over: Any) -> Any:
    """``over`` written on top of ``base``: mappings merge key by key, recursively; a scalar, a
    list or ``null`` in ``over`` replaces; so does a component under another name
    (``{name: none}`` over ``{name: sam, rho: 0.1}`` is ``{name: none}``: no stray ``rho``)."""
    if not (isinstance(base, dict) and isinstance(over, dict)) or (
            "name" in base and "name" in over and base["name"] != over["name"]):
        return over
    merged = dict(base)
    for key, value in over.items():
        merged[key] = merge(base[key], value) if key in base else value
    return merged


def compose_recipe(path: str | Path) -> tuple[Any, dict[str, str]]:
    """The data of the recipe file ``path`` with its ``extends:`` resolved (each parent in
    order, then the file itself, merged by :func:`merge`), and for each flattened key path the
    ``file:line`` that set it."""
    data, sources = _compose(Path(path), ())
    return data, {key: f"{file}:{line}" for key, (file, line) in sources.items()}


def _compose(path: Path, chain: tuple[tuple[Path, Path], ...]
             ) -> tuple[Any, dict[str, tuple[Path, int]]]:
    data, lines = _read_lines(path)
    if chain and not isinstance(data, dict):
        raise SamatError(f"{path}: a recipe that others extend is a mapping of keys (train:, "
                         f"eval:, ...), got a {type(data).__name__}")
    if not isinstance(data, dict) or EXTENDS not in data:
        return data, {key: (path, line) for key, line in lines.items()}
    real = path.resolve()
    if any(real == seen for seen, _ in chain):
        cycle = " -> ".join(str(shown) for _, shown in (*chain, (real, path)))
        raise SamatError(f"{path}:{lines[EXTENDS]}: extends: a cycle ({cycle}); a recipe "
                         "cannot extend itself, directly or through others")
    data = dict(data)
    merged: Any = {}
    sources: dict[str, tuple[Path, int]] = {}
    for entry, line in _parents(data.pop(EXTENDS), path, lines):
        parent, parent_sources = _compose(_find_parent(entry, path, line),
                                          (*chain, (real, path)))
        merged = merge(merged, {k: v for k, v in parent.items() if k not in OWN_KEYS})
        sources.update({k: v for k, v in parent_sources.items()
                        if k.split(".", 1)[0] not in OWN_KEYS})
    sources.update({key: (path, line) for key, line in lines.items()
                    if key.split(".", 1)[0] != EXTENDS})
    return merge(merged, data), sources


def compose_parents(value: Any, including: Path, line: int) -> dict[str, Any]:
    """The recipes that an ``extends:`` value written at ``including:line`` names (a file
    relative to ``including`` or a shipped name, or a list of them), each composed, merged in
    order; without their own keys (``name``, ``description``) and ``sweep:`` blocks."""
    merged: dict[str, Any] = {}
    for entry, at in _parents(value, including, {EXTENDS: line}):
        found = _find_parent(entry, including, at)
        parent, _ = _compose(found, ())
        if not isinstance(parent, dict):
            raise SamatError(f"{found}: a recipe that others extend is a mapping of keys "
                             f"(train:, eval:, ...), got a {type(parent).__name__}")
        merged = merge(merged, {k: v for k, v in parent.items()
                                if k not in (*OWN_KEYS, "sweep")})
    return merged


def merge_overrides(base: Any, over: Any, prefix: str = "") -> dict[str, Any]:
    """The fewest ``key.path: value`` overrides that turn ``base`` into ``merge(base, over)``:
    a value equal to ``base``'s is left out, a component under another name is replaced
    whole (so no stray parameter is kept)."""
    if isinstance(base, dict) and isinstance(over, dict) and not (
            "name" in base and "name" in over and base["name"] != over["name"]):
        out: dict[str, Any] = {}
        for key, value in over.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.update(merge_overrides(base[key], value, path) if key in base
                       else {path: value})
        return out
    return {} if base == over else {prefix: over}


def _parents(value: Any, path: Path, lines: dict[str, int]) -> list[tuple[str, int]]:
    entries = value if isinstance(value, list) else [value]
    if not entries or not all(isinstance(e, str) and e.strip() for e in entries):
        raise SamatError(f"{path}:{lines[EXTENDS]}: extends: expected a recipe file or a list "
                         f"of them (paths relative to this file, or shipped names), got "
                         f"{value!r}")
    if isinstance(value, str):
        return [(value, lines[EXTENDS])]
    return [(e, lines.get(f"{EXTENDS}.{i}", lines[EXTENDS])) for i, e in enumerate(entries)]


def _find_parent(entry: str, including: Path, line: int) -> Path:
    """``entry`` of ``including``'s ``extends:``: relative to that file, else a shipped name."""
    path = including.parent / Path(entry).expanduser()
    if path.is_file():
        return path
    shipped = packaged_recipe(entry, fragments=True)
    if shipped is not None:
        return shipped
    raise SamatError(f"{including}:{line}: extends: {entry!r} not found (no file {path}, and no "
                     "shipped recipe of that name); give a path relative to this file or a "
                     "name from samat list recipes")


_AT_KEY = re.compile(r"\(at (?P<at>[\w.-]+)\)$")
"""A registry's error ends with its key: ``Unknown attack 'x'. ... (at eval.attacks.0.name)``."""
_KEY_PATH = re.compile(r"(?:Unknown [\w ]+ '(?P<quoted>[^'=]+)[^']*'|(?P<plain>[\w.-]+):)")


@dataclass(frozen=True)
class Origin:
    """Where a composed recipe's keys were written: the main file, the ``file:line`` that set
    each flattened key path (:func:`compose_recipe`) and the overrides given on top."""

    path: Path
    sources: dict[str, str]
    overrides: tuple[str, ...] = ()

    def locate(self, message: str) -> str:
        """``message`` (an error about a key path) prefixed with the ``file:line`` of the
        fragment or parent that set that key; unchanged if the key is the main file's, a
        default's or an override's."""
        match = _AT_KEY.search(message) or _KEY_PATH.match(message)
        if not match:
            return message
        key = match.group("at") if match.re is _AT_KEY else (
            match.group("quoted") or match.group("plain"))
        related = [o.partition("=")[0].strip() for o in self.overrides]
        if any(o == key or o.startswith(f"{key}.") or key.startswith(f"{o}.") for o in related):
            return message
        parts = key.split(".")
        where = next((self.sources[p] for p in (".".join(parts[:n])
                                                for n in range(len(parts), 0, -1))
                      if p in self.sources), None)
        if where is None or where.rsplit(":", 1)[0] == str(self.path):
            return message
        return f"{where}: {message}"


@contextmanager
def located(origin: Origin | None) -> Iterator[None]:
    """Re-raise a :class:`SamatError` about a key that a fragment or parent recipe set with
    that file's ``file:line`` in front (see :meth:`Origin.locate`); same exception, same class.
    Missing data is left as it is: its fix is on disk, not in the file."""
    try:
        yield
    except MissingDataError:
        raise
    except SamatError as exc:
        if origin is not None:
            exc.args = (origin.locate(str(exc)), *exc.args[1:])
        raise


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Load, compose (``extends:``), override and validate the recipe at ``path`` (a file, or
    a shipped recipe's name: :func:`find_recipe`); ``name`` defaults to the file stem.

    A top-level ``sweep:`` block (see :mod:`samat.sweep`) is not part of the run: the recipe
    loads as its base point."""
    path = find_recipe(path)
    data, sources = compose_recipe(path)
    if isinstance(data, dict) and "sweep" in data:
        data = {k: v for k, v in data.items() if k != "sweep"}
        logging.getLogger("samat").info(
            "%s declares a sweep; this is its base point (run all points with samat sweep)", path)
    if not isinstance(data, dict):
        raise SamatError(f"{path}: expected a mapping of keys (task:, train:, eval:, ...) at the "
                         f"top level, got a {type(data).__name__}: {data!r:.60}")
    recipe = recipe_from_dict(data, overrides, path=path, sources=sources)
    if not recipe.name:
        recipe.name = path.stem
    return recipe
