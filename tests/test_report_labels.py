"""samat.report.labels: method labels from the registered perturbations, radii, metric titles."""

from __future__ import annotations

from report_fixtures import AT, SAM

from samat.report import format_eps, method_label, metric_title, natural_key


def _train(**train: object) -> dict:
    return {"train": train}


def test_radii() -> None:
    assert format_eps(8 / 255) == "8/255" and format_eps(0.25 / 255) == "0.25/255"
    assert format_eps(1.0) == "1" and format_eps(0.1) == "0.1"
    assert format_eps(1.7) == "1.7" and format_eps(0.123456789) == "0.123457"


def test_plain_optimizers_by_their_torch_names() -> None:
    assert method_label({}) == "SGD"
    assert method_label(_train(optimizer={"name": "adam"})) == "Adam"
    assert method_label(_train(optimizer={"name": "adamw"})) == "AdamW"
    zero = _train(input_perturbation={**AT, "eps": 0.0})
    assert method_label(zero) == "SGD"  # a zero-radius perturbation is no perturbation


def test_perturbation_labels_come_from_the_registries() -> None:
    assert method_label(_train(weight_perturbation=SAM)) == "SAM ρ=0.1"  # no label: capitals
    assert method_label(_train(input_perturbation=AT)) == "AT ℓ∞ ε=8/255"  # pgd's label
    fgsm = _train(input_perturbation={"name": "fgsm", "eps": 8 / 255})
    assert method_label(fgsm) == "FGSM-AT ℓ∞ ε=8/255"
    looksam = _train(weight_perturbation={"name": "looksam", "rho": 0.1, "k": 5, "alpha": 0.1})
    assert method_label(looksam) == "LookSAM ρ=0.1 k=5 α=0.1"
    esam = _train(weight_perturbation={"name": "esam", "rho": 0.05, "beta": 0.6, "gamma": 0.5})
    assert method_label(esam) == "ESAM ρ=0.05 β=0.6 γ=0.5"
    both = _train(weight_perturbation=SAM, input_perturbation=AT)
    assert method_label(both) == "SAM ρ=0.1 + AT ℓ∞ ε=8/255"
    unknown = _train(input_perturbation={"name": "mystery", "norm": "l2", "eps": 0.5})
    assert method_label(unknown) == "MYSTERY-AT ℓ2 ε=0.5"  # training on it is AT


def test_a_recipe_label_wins() -> None:
    labelled = _train(weight_perturbation={**SAM, "label": "mine"},
                      input_perturbation={**AT, "label": "robust"})
    assert method_label(labelled) == "mine ρ=0.1 + robust"


def test_metric_titles() -> None:
    assert metric_title("accuracy") == "accuracy"
    assert metric_title("miou") == "mIoU"  # declared by samat_segmentation
    assert metric_title("attack_success_rate") == "attack success rate"  # by samat_text
    assert metric_title("undeclared_key") == "undeclared_key"


def test_natural_sort() -> None:
    labels = ["SAM ρ=0.1", "SAM ρ=0.05", "SAM ρ=0.4", "AT ℓ∞ ε=8/255", "AT ℓ∞ ε=16/255"]
    assert sorted(labels, key=natural_key) == [
        "AT ℓ∞ ε=8/255", "AT ℓ∞ ε=16/255", "SAM ρ=0.05", "SAM ρ=0.1", "SAM ρ=0.4"]
