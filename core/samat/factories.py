"""Create tasks, perturbations and attacks by registered name, with parameter validation.

Parameters are checked against the factory's signature before the call, so an unknown key
fails with a suggestion and the recipe path that holds it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pluggy
import torch

from samat.errors import SamatError, UnknownNameError, first_line
from samat.interfaces import (
    Attack,
    InputPerturbation,
    LossFn,
    Measure,
    Task,
    WeightPerturbation,
)
from samat.names import unknown_key_message, unknown_name_message
from samat.plugins import plugin_manager, registries
from samat.recipe import OPTIMIZERS, Component, Recipe


def _parameters(factory: Callable[..., Any]) -> tuple[list[str], bool]:
    """Keyword names a factory accepts, and whether it takes ``**kwargs`` (assumed when the
    signature cannot be read)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return [], True
    names = [
        p.name for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


_EXPECTED = {"bool": "true or false", "int": "an integer", "float": "a number (e.g. 0.1 or 8/255)",
             "str": "a string"}


def _simple_type(annotation: Any) -> tuple[str, bool] | None:
    """``("float", False)`` for an annotation ``float``, ``("int", True)`` for ``int | None``;
    None for anything else (not checked)."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    parts = [p.strip() for p in text.split("|")]
    rest = [p for p in parts if p != "None"]
    return (rest[0], len(rest) < len(parts)) if len(rest) == 1 and rest[0] in _EXPECTED else None


def _fits(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float)


def check_types(factory: Callable[..., Any], params: dict[str, Any], path: str) -> None:
    """Raise on a value of ``params`` that does not fit the simple type (bool, int, float,
    str, optionally ``| None``) its parameter is annotated with. :func:`call_factory` checks
    after the factory, whose own message (naming the parameter) comes first."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    for key, value in params.items():
        expected = _simple_type(parameters[key].annotation) if key in parameters else None
        if expected is None or (value is None and expected[1]):
            continue
        if not _fits(expected[0], value):
            raise SamatError(f"{path}.{key}: expected {_EXPECTED[expected[0]]}, got {value!r}")


def check_keys(
    factory: Callable[..., Any], params: dict[str, Any], path: str, skip: tuple[str, ...] = ()
) -> list[str]:
    """Raise on a key of ``params`` that ``factory`` does not take; return the names it takes."""
    names, var_kw = _parameters(factory)
    valid = [n for n in names if n not in skip]
    if not var_kw:
        for key in params:
            if key not in valid:
                raise SamatError(unknown_key_message(path, key, valid, also=("name",)))
    return names


def call_factory(
    factory: Callable[..., Any],
    params: dict[str, Any],
    path: str,
    *,
    args: tuple = (),
    skip: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
) -> Any:
    """``factory(*args, **params)`` after checking ``params``; errors name ``path``.

    ``defaults`` are passed only where the factory accepts them and the user did not set them.
    """
    names = check_keys(factory, params, path, skip)
    kwargs = dict(params)
    for key, value in (defaults or {}).items():
        if key not in kwargs and key in names:
            kwargs[key] = value
    try:
        built = factory(*args, **kwargs)
    except ValueError as exc:
        raise SamatError(f"{path}: {exc}") from None
    except TypeError as exc:
        check_types(factory, params, path)  # says which value has the wrong type, if one does
        raise SamatError(f"{path}: {exc}") from None
    check_types(factory, params, path)  # a value of the wrong type the factory took unchecked
    return built


def _entry(registry_attr: str, name: str, path: str) -> Any:
    try:
        return getattr(registries(), registry_attr).get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{exc} (at {path}.name)") from None


def create_task(name: str, path: str = "task", **params: Any) -> Task:
    """Instantiate the task registered as ``name``."""
    return call_factory(_entry("tasks", name, path).factory, params, path)


def task_params(name: str, params: dict[str, Any], seed: int, path: str = "task") -> dict[str, Any]:
    """``params`` plus ``seed`` when the task's factory takes one and the recipe did not set it."""
    names, _ = _parameters(_entry("tasks", name, path).factory)
    return {"seed": seed, **params} if "seed" in names and "seed" not in params else dict(params)


def create_input_perturbation(
    name: str, path: str = "input_perturbation", task: Task | None = None, **params: Any
) -> InputPerturbation:
    """Instantiate an input perturbation; ``bounds``/``mask`` default to the task's."""
    factory = _entry("input_perturbations", name, path).factory
    return call_factory(factory, params, path, defaults=_task_domain(task))


def create_weight_perturbation(
    name: str,
    model_params: Any,
    optimizer: str = "sgd",
    optimizer_params: dict[str, Any] | None = None,
    path: str = "weight_perturbation",
    optimizer_path: str = "optimizer",
    task: Task | None = None,
    **params: Any,
) -> WeightPerturbation:
    """A weight perturbation (plain step, SAM, ...) over the base optimizer ``optimizer``;
    ``task`` is passed to factories that take one (e.g. for per-example losses)."""
    factory = _entry("weight_perturbations", name, path).factory
    if optimizer not in OPTIMIZERS:
        raise UnknownNameError(
            unknown_name_message("optimizer", optimizer, sorted(OPTIMIZERS))
            + f" (at {optimizer_path}.name)"
        )
    base_cls = getattr(torch.optim, OPTIMIZERS[optimizer])
    base_kwargs = dict(optimizer_params or {})
    names, _ = _parameters(base_cls)
    for key in base_kwargs:
        if key not in names or key == "params":
            raise SamatError(
                f"Unknown key '{optimizer_path}.{key}'. Valid keys for {base_cls.__name__}: "
                f"{', '.join(n for n in names if n != 'params')}"
            )
    _check_optimizer(base_cls, base_kwargs, optimizer_path)
    return call_factory(
        factory, params, path, args=(model_params, base_cls, base_kwargs),
        skip=("params", "base_optimizer_cls", "base_kwargs", "task"),
        defaults={"task": task} if task is not None else None,
    )


def _check_optimizer(base_cls: type[torch.optim.Optimizer], kwargs: dict[str, Any],
                     path: str) -> None:
    """Build ``base_cls`` with ``kwargs`` once; errors name the key at fault: a value of
    another type than the parameter's default, or the key that alone makes torch refuse."""
    parameters = inspect.signature(base_cls).parameters
    for key, value in kwargs.items():
        default = parameters[key].default
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(default, bool):
            ok, what = isinstance(value, bool), "true or false"
        elif isinstance(default, int | float):
            ok, what = number, "a number"
        elif isinstance(default, tuple):
            ok = isinstance(value, list | tuple) and len(value) == len(default) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            what = f"a list of {len(default)} numbers, e.g. {list(default)}"
        else:
            continue
        if not ok:
            raise SamatError(f"{path}.{key}: expected {what}, got {value!r}")

    def build(**given: Any) -> None:
        base_cls([torch.zeros(1, requires_grad=True)], **given)

    try:
        build(**kwargs)
    except (ValueError, TypeError, IndexError) as exc:
        culprit = None
        for key in kwargs:
            try:
                build(**{key: kwargs[key]})
            except (ValueError, TypeError, IndexError):
                culprit = key
                break
        at = f" (at {path}.{culprit})" if culprit else ""
        raise SamatError(f"{path}: {exc}{at}") from None


def create_attack(
    name: str,
    model: torch.nn.Module,
    loss_fn: LossFn | None = None,
    *,
    path: str = "attack",
    task: Task | None = None,
    **params: Any,
) -> Attack:
    """An attack bound to ``model``, torchattacks style: ``create_attack("pgd", model,
    norm="linf", eps=8/255, alpha=2/255, steps=10)(x, y) -> x_adv``; the factory is called as
    ``factory(model, loss_fn=loss_fn, **params)`` (``task`` supplies the loss, bounds and mask
    the factory takes and the recipe did not set)."""
    factory = _entry("attacks", name, path).factory
    if loss_fn is None and task is not None:
        loss_fn = task.loss
    return call_factory(
        factory, params, path, args=(model,), skip=("model", "loss_fn"),
        defaults={"loss_fn": loss_fn, **_task_domain(task)},
    )


def create_measure(name: str, *, path: str = "measure", run_seed: int = 0, **params: Any
                   ) -> Measure:
    """A measure of a trained model (``sam_sharpness``, ``hessian``, ...), called as
    ``factory(**params, seed=run_seed)`` (``seed`` only if the factory takes it and the recipe
    did not set it)."""
    factory = _entry("measures", name, path).factory
    return call_factory(factory, params, path, defaults={"seed": run_seed})


def create_loggers(components: list[Component]) -> list[tuple[str, Any]]:
    """The loggers a recipe's ``logging:`` list names, as ``(name, logger)``: each factory is
    called as ``factory(**options)`` (it checks its options and library; nothing is written
    yet). Errors name ``logging.K``."""
    loggers = []
    for i, component in enumerate(components):
        path = f"logging.{i}"
        factory = _entry("loggers", component.name, path).factory
        try:
            logger = call_factory(factory, component.params, path)
            _check_hooks(logger)
        except SamatError as exc:
            if str(exc).startswith(path):
                raise
            raise SamatError(f"{path} ({component.name}): {exc}") from None
        loggers.append((component.name, logger))
    return loggers


def _check_hooks(logger: Any) -> None:
    """Raise unless ``logger``'s hook methods take the arguments their hooks give."""
    manager = plugin_manager()
    try:
        manager.register(logger, name=f"check-{id(logger):x}")
    except pluggy.PluginValidationError as exc:
        detail = " ".join(str(exc).split("\n")[1:]) or first_line(exc)  # not the probe's name
        raise SamatError(f"not a valid logger: {detail}") from None
    manager.unregister(logger)


def _task_domain(task: Task | None) -> dict[str, Any]:
    if task is None:
        return {}
    return {"bounds": task.input_bounds, "mask": task.input_mask()}


def check_components(recipe: Recipe) -> None:
    """Registered names and parameter keys of every component of ``recipe``, checked without
    building anything (a sweep checks all its points this way before the first runs)."""
    t = recipe.train
    if t.optimizer.name not in OPTIMIZERS:
        raise UnknownNameError(unknown_name_message("optimizer", t.optimizer.name,
                                                    sorted(OPTIMIZERS))
                               + " (at train.optimizer.name)")
    components = [
        ("tasks", recipe.task, "task", (), create_task),
        ("weight_perturbations", t.weight_perturbation, "train.weight_perturbation",
         ("params", "base_optimizer_cls", "base_kwargs", "task"), create_weight_perturbation),
        ("input_perturbations", t.input_perturbation, "train.input_perturbation", (),
         create_input_perturbation),
        *[("attacks", a, f"eval.attacks.{i}", ("model", "loss_fn"), create_attack)
          for i, a in enumerate(recipe.eval.attacks)],
        *[("attacks", a, "train.eval_attack", ("model", "loss_fn"), create_attack)
          for a in [t.eval_attack] if a is not None],
        *[("measures", m, f"eval.measures.{i}", (), create_measure)
          for i, m in enumerate(recipe.eval.measures)],
    ]
    for registry, component, path, skip, create in components:
        factory = _entry(registry, component.name, path).factory
        reserved = [k for k in component.params if k in _parameters(create)[0]]
        if reserved:  # would collide with the create_* function's own arguments
            raise SamatError(f"Unknown key '{path}.{reserved[0]}': reserved by samat; remove it")
        check_keys(factory, component.params, path, skip)
    for i, logger in enumerate(recipe.logging):
        check_keys(_entry("loggers", logger.name, f"logging.{i}").factory, logger.params,
                   f"logging.{i}")
