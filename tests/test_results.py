"""The end-of-run table (``results_table``) for runs and for ``samat eval`` of models samat
did not train."""

from __future__ import annotations

from typing import Any

from samat.results import results_table


def _metrics(**changes: Any) -> dict[str, Any]:
    return {
        "metric": "accuracy", "higher_is_better": True, "seed": 0,
        "recipe": {"path": "r.yaml", "name": "r"}, "task": {"name": "text_classification"},
        "natural": {"accuracy": 62.5, "n_examples": 80},
        "attacks": [{"label": "PSO", "accuracy": 20.0, "n_examples": 5, "attack": {
            "name": "pso", "query_budget": 2000, "resources": {
                "stopwords": "fallback: NLTK's English stopword list shipped with samat_text",
                "hownet": "/data/hownet.pkl"}}}],
        "average_under_attack": 20.0, "run_dir": "runs/r",
        "training": {"weight_perturbation": {"name": "sam"},
                     "input_perturbation": {"name": "none"}},
        **changes,
    }


def test_a_trained_run_names_its_perturbations() -> None:
    title = results_table(_metrics()).splitlines()[0]
    assert title == ("r: task=text_classification weight=sam input=none seed=0  (accuracy, "
                     "higher is better)")


def test_an_evaluated_model_names_its_source_instead() -> None:
    metrics = _metrics(training=None, evaluated={"kind": "huggingface", "source": "my/model"})
    table = results_table(metrics)  # training None: samat eval of a weights file, hub model...
    assert table.splitlines()[0].startswith(
        "r: task=text_classification evaluated=huggingface:my/model seed=0")
    assert "average over attacks" in table


def test_mapping_parameters_are_brief_in_the_table() -> None:
    (row,) = [line for line in results_table(_metrics()).splitlines() if line.startswith("PSO")]
    assert "resources={stopwords: fallback, hownet: /data/hownet.pkl}" in row
    assert "NLTK" not in row  # the whole text stays in metrics.json
