"""Image-classification attacks: invariants on a small trained model, AutoAttack's reference
configuration, StAdv's geometry, parameter validation and the RobustBench record."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import one_thread
from torch import nn

from samat import AttackMismatch, Probe
from samat.errors import SamatError
from samat.factories import call_factory
from samat_image.attacks import ATTACKS
from samat_image.attacks.apgd import apgd
from samat_image.attacks.autoattack import autoattack
from samat_image.attacks.fab import fab
from samat_image.attacks.pixle import pixle
from samat_image.attacks.robustbench import robustbench_record
from samat_image.attacks.square import square
from samat_image.attacks.stadv import flow_smoothness, stadv, warp

pytest.importorskip("torchattacks")
datasets = pytest.importorskip("sklearn.datasets")

N_EVAL = 24


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models run far faster on one thread than on two contended cores."""
    with one_thread():
        yield


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny CNN trained for a few seconds on scikit-learn's digits (3×8×8 in [0, 1]), and
    held-out examples it classifies."""
    digits = datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None].repeat(1, 3, 1, 1) / 16
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = tiny_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        perm = torch.randperm(1500)
        for i in range(0, 1500, 50):
            idx = perm[i : i + 50]
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model, x[1500 : 1500 + N_EVAL], y[1500 : 1500 + N_EVAL]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


CASES = {  # variants of the registered attacks (norms, losses, targeted)
    "autoattack-linf-cheap": (lambda m: autoattack(m, eps=0.1, version="cheap"), "linf", 0.1),
    "autoattack-l2-cheap": (lambda m: autoattack(m, norm="l2", eps=1.0, version="cheap"),
                            "l2", 1.0),
    "apgd-ce": (lambda m: apgd(m, eps=0.1, steps=10), "linf", 0.1),
    "apgd-dlr-l2": (lambda m: apgd(m, norm="l2", eps=1.0, steps=10, loss="dlr"), "l2", 1.0),
    "fab-l2": (lambda m: fab(m, eps=1.0, steps=10), "l2", 1.0),
    "fab-t-linf": (lambda m: fab(m, norm="linf", eps=0.15, steps=5, targeted=True), "linf", 0.15),
    "square-linf": (lambda m: square(m, eps=0.1, n_queries=60), "linf", 0.1),
    "square-l2": (lambda m: square(m, norm="l2", eps=1.0, n_queries=60), "l2", 1.0),
    "pixle": (lambda m: pixle(m, restarts=3, x_dimensions=(1, 2), y_dimensions=(1, 2)),
              "pixle", 3 * 2 * 2),
    "stadv": (lambda m: stadv(m, bound=1.0, steps=15, lr=0.1), "flow", 1.0),
}


def check_bound(kind: str, bound: float, attack, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    delta = (x_adv - x).flatten(1)
    if kind == "linf":
        assert delta.abs().amax(1).max() <= bound + 1e-6
    elif kind == "l2":
        assert delta.norm(dim=1).max() <= bound + 1e-5
    elif kind == "flow":
        assert attack.last_flow.abs().max() <= bound
    else:  # pixle: a few pixels changed, each to the value of a pixel of the same clean image
        changed = (x_adv != x).any(dim=1).flatten(1)  # (N, H*W)
        assert changed.sum(1).max() <= bound
        for i in range(len(x)):
            clean_pixels = x[i].flatten(1).T  # (H*W, C)
            for value in x_adv[i].flatten(1).T[changed[i]]:
                assert (clean_pixels == value).all(1).any()


@pytest.mark.parametrize("case", sorted(CASES))
def test_attack_invariants_on_trained_model(case, trained):
    """What these attacks promise beyond the contract every registered attack keeps (restored
    modes, BatchNorm statistics and gradients, shape, bounds, eps ball, describe: checked on
    each registration's example in test_contracts.py): the global RNG restored, a detached
    result, per-variant bounds, no better accuracy, misclassified examples left alone."""
    model, x, y = trained
    make, kind, bound = CASES[case]
    attack = make(model)
    model.eval()
    rng = torch.get_rng_state()
    x_adv = attack(x, y)
    assert torch.equal(torch.get_rng_state(), rng)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    clean, robust = accuracy(model, x, y), accuracy(model, x_adv, y)
    assert robust <= clean
    check_bound(kind, bound, attack, x, x_adv)
    with torch.no_grad():
        wrong = model(x).argmax(1) != y
    assert torch.equal(x_adv[wrong], x[wrong])  # misclassified examples are left alone
    record = json.loads(json.dumps(attack.describe()))
    assert record["name"] == attack.name == case.split("-")[0]
    if record["library"] == "torchattacks":
        assert record["library_version"] == importlib.metadata.version("torchattacks")


@pytest.mark.parametrize("case", ["autoattack-linf-cheap", "apgd-ce", "stadv", "pixle"])
def test_attack_lowers_accuracy(case, trained):
    model, x, y = trained
    assert accuracy(model, CASES[case][0](model)(x, y), y) < accuracy(model, x, y)


def test_autoattack_standard_has_reference_strength():
    model = tiny_cnn()
    record = autoattack(model, norm="l2", eps=32 / 255).describe()
    assert record["version"] == "standard" and record["norm"] == "l2"
    parts = {c["attack"]: c for c in record["components"]}
    assert list(parts) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert parts["apgd-ce"]["class"] == "torchattacks.APGD"
    ce = parts["apgd-ce"]
    assert (ce["steps"], ce["n_restarts"], ce["loss"], ce["rho"], ce["norm"]) == (
        100, 1, "ce", 0.75, "L2")
    assert (parts["apgd-t"]["steps"], parts["apgd-t"]["n_target_classes"]) == (100, 9)
    assert parts["fab-t"]["multi_targeted"] is True
    assert (parts["fab-t"]["steps"], parts["fab-t"]["n_target_classes"]) == (100, 9)
    assert parts["square"]["n_queries"] == 5000 and parts["square"]["p_init"] == 0.8
    assert parts["square"]["resc_schedule"] is False
    assert all(c["n_restarts"] == 1 and c["eps"] == 32 / 255 for c in parts.values())
    many = autoattack(model, eps=8 / 255, n_classes=100).describe()["components"]
    few = autoattack(model, eps=8 / 255, n_classes=5).describe()["components"]
    assert many[1]["n_target_classes"] == 9 and few[1]["n_target_classes"] == 4
    cheap = autoattack(model, eps=8 / 255, version="cheap").describe()["components"]
    assert [c["attack"] for c in cheap] == ["apgd-ce", "apgd-t"]
    assert cheap[0]["steps"] < 100 and cheap[1]["n_target_classes"] < 9


def test_autoattack_runs_components_in_order_on_still_robust_points(trained, monkeypatch):
    """The standard sequence (shrunk to a few steps/queries) attacks only the points still
    robust, and the targeted components are configured with their target count."""
    model, x, y = trained
    attack = autoattack(model, eps=0.03)
    for _, component in attack.components:
        for key, small in (("steps", 3), ("n_queries", 20)):
            if key in component.kwargs:
                component.kwargs[key] = small
    seen: list[tuple[str, int]] = []
    for label, component in attack.components:
        build = component.build

        def spy(model_, device, label=label, build=build):
            inner = build(model_, device)
            if hasattr(inner, "n_target_classes"):
                assert inner.n_target_classes == 9
            return lambda xs, ys: seen.append((label, len(xs))) or inner(xs, ys)

        monkeypatch.setattr(component, "build", spy)
    x_adv = attack(x, y)
    with torch.no_grad():
        n_correct = int((model(x).argmax(1) == y).sum())
    assert seen[0] == ("apgd-ce", n_correct)
    assert [n for _, n in seen] == sorted((n for _, n in seen), reverse=True)
    assert [label for label, _ in seen] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert (x_adv - x).abs().max() <= 0.03 + 1e-6
    assert accuracy(model, x_adv, y) <= accuracy(model, x, y)


def test_n_classes_must_match_the_model(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="n_classes=100"):
        autoattack(model, eps=0.1, n_classes=100, version="cheap")(x, y)
    with pytest.raises(ValueError, match="n_classes=5"):
        fab(model, eps=0.5, n_classes=5, targeted=True)(x, y)


def test_inputs_outside_unit_range_and_non_square_pixle_are_refused(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        apgd(model, eps=0.1)(x * 2 - 0.5, y)
    with pytest.raises(ValueError, match="square"):
        pixle(model)(x[..., :6], y)


def probe(x=(1, 3, 8, 8), classes=10, bounds=(0.0, 1.0), output=None) -> Probe:
    """A probe of a model with ``classes`` outputs on one input of shape ``x`` (or ``x``)."""
    x = torch.rand(x) if isinstance(x, tuple) else x
    return Probe(x, torch.zeros(1, dtype=torch.long),
                 torch.zeros(1, classes) if output is None else output, bounds)


FITTING = [
    (autoattack, {"eps": 0.1}), (autoattack, {"eps": 0.1, "version": "cheap"}),
    (apgd, {"eps": 0.1, "loss": "dlr"}), (fab, {"eps": 0.5, "targeted": True}),
    (square, {"eps": 0.1}), (pixle, {}), (stadv, {}),
]


@pytest.mark.parametrize(("factory", "params"), FITTING, ids=[
    "autoattack", "autoattack-cheap", "apgd-dlr", "fab-t", "square", "pixle", "stadv"])
def test_check_accepts_a_ten_class_image_classifier(factory, params):
    assert factory(tiny_cnn(), **params).check(probe()) is None


@pytest.mark.parametrize(
    ("factory", "params", "shown", "key", "problem", "fix"),
    [
        (autoattack, {"eps": 0.1, "n_classes": 100}, probe(), "n_classes",
         "100, but the model has 10 outputs", "set n_classes: 10"),
        (fab, {"eps": 0.5, "n_classes": 5, "targeted": True}, probe(), "n_classes",
         "5, but the model has 10 outputs", "set n_classes: 10"),
        (fab, {"eps": 0.5}, probe(classes=3), "n_classes", "10, but the model has 3 outputs",
         "set n_classes: 3"),
        (autoattack, {"eps": 0.1, "n_classes": 4}, probe(classes=3), None,
         "autoattack needs a model with at least 4 outputs (APGD-T's targeted DLR loss), but "
         "this one has 3", "choose an attack"),
        (apgd, {"eps": 0.1, "loss": "dlr"}, probe(classes=2), "loss",
         "dlr, but the DLR loss needs at least 3 classes and the model has 2", "set loss: ce"),
        (apgd, {"eps": 0.1}, probe(x=(1, 8)), None,
         "apgd attacks float (N, C, H, W) images, but the task's inputs are float32 of shape "
         "(1, 8)", "choose an attack"),
        (square, {"eps": 0.1}, probe(x={"input_ids": torch.zeros(1, 4)}), None,
         "square attacks float (N, C, H, W) images, but the task's inputs are dict",
         "choose an attack"),
        (apgd, {"eps": 0.1}, probe(x=torch.zeros(1, 3, 8, 8, dtype=torch.long)), None,
         "int64 of shape (1, 3, 8, 8)", "choose an attack"),
        (apgd, {"eps": 0.1}, probe(bounds=None), None,
         "apgd attacks images in [0, 1], but the task's input_bounds are None",
         "choose an attack"),
        (fab, {"eps": 0.5}, probe(bounds=(-1.0, 1.0)), None, "input_bounds are [-1.0, 1.0]",
         "choose an attack"),
        (stadv, {}, probe(output=torch.zeros(1, 5, 8, 8)), None,
         "stadv attacks classifiers with (N, classes) logits, but the model outputs float32 of "
         "shape (1, 5, 8, 8)", "choose an attack"),
        (pixle, {}, probe(x=(1, 3, 8, 6)), None,
         "pixle needs square images, but the task's are 8x6", "choose an attack"),
        (stadv, {}, probe(x=(1, 3, 1, 1)), None,
         "stadv needs images of at least 2x2 pixels, but the task's are 1x1", "choose an attack"),
    ],
    ids=["autoattack-n-classes", "fab-t-n-classes", "fab-default-n-classes",
         "autoattack-3-classes", "apgd-dlr-2-classes", "apgd-flat-inputs", "square-dict-inputs",
         "apgd-integer-inputs", "apgd-unbounded", "fab-bounds-beyond-unit", "stadv-segmenter",
         "pixle-non-square", "stadv-1x1"],
)
def test_check_refuses_what_the_attack_cannot_run_on(factory, params, shown, key, problem, fix):
    with pytest.raises(AttackMismatch) as raised:
        factory(tiny_cnn(), **params).check(shown)
    assert raised.value.key == key
    assert problem in raised.value.problem
    assert raised.value.fix.startswith(fix)


@pytest.mark.parametrize(
    ("factory", "params", "word"),
    [
        (autoattack, {"eps": 0.1, "norm": "l1"}, "norm"),
        (autoattack, {"eps": -0.1}, "eps"),
        (autoattack, {"eps": 0.1, "version": "plus"}, "version"),
        (autoattack, {"eps": 0.1, "n_classes": 3}, "n_classes"),
        (apgd, {"eps": 0.1, "loss": "mse"}, "loss"),
        (apgd, {"eps": 0.1, "steps": 0}, "steps"),
        (fab, {"eps": 0.1, "targeted": "yes"}, "targeted"),
        (square, {"eps": 0.1, "n_queries": 1.5}, "n_queries"),
        (pixle, {"x_dimensions": (0, 2)}, "x_dimensions"),
        (pixle, {"pixel_mapping": "nearest"}, "pixel_mapping"),
        (pixle, {"max_iterations": 0}, "max_iterations"),
        (stadv, {"bound": 0}, "bound"),
        (stadv, {"tau": -1}, "tau"),
    ],
)
def test_invalid_parameters_name_the_parameter(factory, params, word):
    with pytest.raises(ValueError, match=word):
        factory(tiny_cnn(), **params)


def test_factories_fit_samat_create_attack_convention():
    model = tiny_cnn()
    kw = {"args": (model,), "skip": ("model", "loss_fn"), "defaults": {"loss_fn": None}}
    assert call_factory(apgd, {"eps": 0.1}, "attack", **kw).name == "apgd"
    with pytest.raises(SamatError, match="eps"):
        call_factory(square, {}, "attack", **kw)  # eps is required
    with pytest.raises(SamatError, match="steps"):
        call_factory(stadv, {"steps": -1}, "attack", **kw)


def test_registered_names_resolve_and_the_package_is_import_light():
    assert [name for name, _, _, _ in ATTACKS] == [
        "autoattack", "apgd", "fab", "square", "pixle", "stadv"
    ]
    for _, path, description, example in ATTACKS:
        module, attr = path.split(":")
        assert callable(getattr(importlib.import_module(module), attr)) and description
        assert isinstance(example, dict)  # built and checked in test_contracts.py
    code = "import sys, samat_image.attacks; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- StAdv geometry ---------------------------------------------------------------------------


def test_zero_flow_is_the_identity():
    x = torch.rand(3, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    assert (warp(x, torch.zeros(3, 2, 7, 9)) - x).abs().max() <= 1e-6


def test_constant_image_is_invariant_to_any_flow():
    x = torch.full((2, 3, 6, 6), 0.37)
    flow = 3 * torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(warp(x, flow), x, atol=1e-6)


def test_one_pixel_translation_equals_roll_on_interior_pixels():
    x = torch.rand(2, 3, 6, 8, generator=torch.Generator().manual_seed(2))
    right = torch.zeros(2, 2, 6, 8)
    right[:, 0] = 1.0  # read from one pixel to the right
    assert torch.allclose(warp(x, right)[..., :-1], torch.roll(x, -1, dims=-1)[..., :-1],
                          atol=1e-6)
    down = torch.zeros(2, 2, 6, 8)
    down[:, 1] = 1.0
    assert torch.allclose(warp(x, down)[..., :-1, :], torch.roll(x, -1, dims=-2)[..., :-1, :],
                          atol=1e-6)


def test_smoothness_of_constant_flow_is_near_zero_and_grows_with_roughness():
    gen = torch.Generator().manual_seed(3)
    constant = torch.full((1, 2, 8, 8), 0.7)
    noise = torch.randn(1, 2, 8, 8, generator=gen)
    losses = [flow_smoothness(constant + s * noise).item() for s in (0.0, 0.1, 0.5, 1.0)]
    n_pairs = 2 * 8 * 7  # horizontal + vertical adjacent pairs of an 8x8 grid
    assert losses[0] == pytest.approx(2 * n_pairs * 1e-4)  # sqrt(ε) per term, ε = 1e-8
    assert losses == sorted(losses) and losses[1] > 10 * losses[0]
    # the paper's double sum counts each adjacent pair from both sides: a single unit step
    step = torch.zeros(1, 2, 2, 3)
    step[:, 0, :, 2] = 1.0
    assert flow_smoothness(step, eps=0.0).item() == pytest.approx(2 * 2)


def test_stadv_keeps_clean_images_of_misclassified_examples_and_respects_the_bound(trained):
    model, x, y = trained
    attack = stadv(model, bound=0.25, steps=10, lr=0.2)
    x_adv = attack(x, 9 - y)  # most labels now wrong: those are kept as they are
    assert attack.last_flow.abs().max() <= 0.25
    with torch.no_grad():
        wrong = model(x).argmax(1) != 9 - y
    assert torch.equal(x_adv[wrong], x[wrong])
    assert attack.describe()["bound"] == 0.25


# --- RobustBench record -----------------------------------------------------------------------


def robustbench(entry: dict, n_test: int = 10000) -> dict:
    return robustbench_record(entry, natural_acc=94.5, dataset="cifar10",
                              architecture="PreActResNet-18 (width 64)", name="SAM rho=0.1",
                              n_test=n_test)


def test_robustbench_record():
    """RobustBench's model-info field names and types; samat's extras under "samat"."""
    entry = {"label": "aa", "attack": autoattack(tiny_cnn(), eps=8 / 255).describe(),
             "accuracy": 41.256, "n_examples": 10000}
    record = robustbench(entry)
    assert record["footnote"] == ("Evaluated by samat with standard AutoAttack on all 10000 "
                                  "test examples.")
    samat = record.pop("samat")
    assert record == {
        "link": "", "name": "SAM rho=0.1", "authors": "", "additional_data": False,
        "number_forward_passes": 1, "dataset": "cifar10", "venue": "",
        "architecture": "PreActResNet-18 (width 64)", "eps": "8/255", "clean_acc": "94.50",
        "reported": "", "autoattack_acc": "41.26", "footnote": record["footnote"],
    }
    assert (samat["threat_model"], samat["n_examples"], samat["n_test"]) == ("Linf", 10000, 10000)
    assert samat["full_test_set"] is True
    assert samat["attack"]["version"] == "standard" and samat["attack"]["seed"] == 0
    assert samat["attack"]["library"] == "torchattacks"
    l2 = {"attack": autoattack(tiny_cnn(), norm="l2", eps=0.5).describe(), "accuracy": 50,
          "n_examples": 30}
    assert robustbench(l2)["eps"] == "0.5"
    assert robustbench(l2)["samat"]["threat_model"] == "L2"
    assert robustbench(l2)["samat"]["full_test_set"] is False
    assert "first 30 of the 10000" in robustbench(l2)["footnote"]
    cheap = {"attack": autoattack(tiny_cnn(), eps=0.1, version="cheap").describe(),
             "accuracy": 1.0, "n_examples": 30}
    with pytest.raises(ValueError, match="standard"):
        robustbench(cheap)
    with pytest.raises(ValueError, match="autoattack"):
        robustbench({"attack": {"name": "pgd"}, "accuracy": 1.0, "n_examples": 30})
