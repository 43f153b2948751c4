"""Registers the built-in loggers (lazy paths: loading this plugin imports none of them)."""

from __future__ import annotations

from samat import Register, hookimpl


@hookimpl
def samat_register_loggers(register: Register) -> None:
    register("tensorboard", "samat_tracking.tensorboard_logger:TensorBoardLogger",
             "TensorBoard scalars and hparams (<run_dir>/tensorboard)")
    register("wandb", "samat_tracking.wandb_logger:WandbLogger",
             "Weights & Biases run (offline in <run_dir>/wandb unless mode is set)")
    register("mlflow", "samat_tracking.mlflow_logger:MlflowLogger",
             "MLflow run: params, metrics, status (file store <run_dir>/mlruns by default)")
