"""Entry point of the example plugin (``[project.entry-points.samat] example = ...``).

Import-light on purpose: samat imports this module whenever it lists plugins, so torch and the
task code are imported only when the task is actually created (the lazy "module:attr" path).
"""

from __future__ import annotations

from samat import Register, hookimpl


@hookimpl
def samat_register_tasks(register: Register) -> None:
    register(
        "example_blobs",
        "samat_example.task:BlobsTask",
        "Example plugin: seeded Gaussian blobs in [0,1]^d, k classes, small MLP",
        example={"n_train": 64, "n_test": 32},  # small and fast: samat's contract tests use it
        model_builder="samat_example.task:mlp",  # rebuilds exported models (samat.load_model)
    )
