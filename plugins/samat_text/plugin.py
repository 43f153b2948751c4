"""Entry point of the text plugin (import-light: no torch, transformers or textattack here)."""

from __future__ import annotations

from typing import Any

from samat import Register, RegisterMetric, hookimpl


@hookimpl
def samat_register_tasks(register: Register) -> None:
    register(
        "text_classification",
        "samat_text.task:TextClassificationTask",
        "Sentence classification (Rotten Tomatoes, local files, demo set) with a HF model",
        example={"model": "embedded-minilm", "dataset": "demo", "n_train": 16, "n_eval": 8,
                 "max_length": 16, "download": False},  # the text-demo extra's model, offline
        environment=("download",),
        model_builder="samat_text.model:exported_model",
    )


_SMALL = {"n_examples": 2, "query_budget": 20, "pop_size": 2, "max_iters": 1,
          "stopwords": "fallback"}
"""Small search budgets and resources built offline from the model (the attacks' examples)."""


@hookimpl
def samat_register_attacks(register: Register) -> None:
    register("pso", "samat_text.attacks:pso",
             "TextAttack PSOZang2020: HowNet word swaps, particle swarm search (text)",
             example={**_SMALL, "hownet": "fallback", "pos_tagger": "fallback"})
    register("iga", "samat_text.attacks:iga",
             "TextAttack IGAWang2019: counter-fitted embedding swaps, improved GA (text)",
             example={**_SMALL, "embedding": "fallback"})


@hookimpl
def samat_register_metrics(register: RegisterMetric) -> None:
    register("attack_success_rate", "attack success rate", higher_is_better=False)


@hookimpl
def samat_reference_results() -> list[dict[str, Any]]:
    """The paper's Rotten Tomatoes tables (``reference_results.yaml``) for ``--against paper``."""
    from importlib import resources

    import yaml

    path = resources.files("samat_text").joinpath("reference_results.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))["tables"]
