"""Entry point of the text plugin (import-light: no torch, transformers or textattack here)."""

from __future__ import annotations

from samat.hookspecs import Register, hookimpl


@hookimpl
def samat_register_tasks(register: Register) -> None:
    register(
        "text_classification",
        "samat_text.task:TextClassificationTask",
        "Sentence classification (Rotten Tomatoes, local files, demo set) with a HF model",
    )


@hookimpl
def samat_register_attacks(register: Register) -> None:
    register("pso", "samat_text.attacks:pso",
             "TextAttack PSOZang2020: HowNet word swaps, particle swarm search (text)")
    register("iga", "samat_text.attacks:iga",
             "TextAttack IGAWang2019: counter-fitted embedding swaps, improved GA (text)")

