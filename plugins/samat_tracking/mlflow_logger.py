"""MLflow: a run with the recipe as params, every event's scalars as metrics and the run's
status. The tracking store is ``tracking_uri``, else a file store in ``<run_dir>/mlruns``."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from samat import (
    EpochEnded,
    EvalResult,
    RunEnded,
    RunStarted,
    StepLogged,
    event_scalars,
    hookimpl,
    write_text,
)
from samat_tracking.common import ScalarLogger, flat_config, log, require

STATUS = {"finished": "FINISHED", "stopped": "KILLED"}
"""samat's run status -> MLflow's (anything else: FAILED)."""
ID_FILE = "mlflow-run-id"
"""In the run directory: the MLflow run id, so that ``--resume`` continues the same run."""
BATCH = 100
"""Most params MLflow takes in one ``log_batch``."""


def store_uri(run_dir: str) -> str:
    """The default tracking store: a local file store under the run directory."""
    return (Path(run_dir).resolve() / "mlruns").as_uri()


def metric_key(tag: str) -> str:
    """``tag`` with the characters MLflow refuses in a metric name replaced by ``_``."""
    return re.sub(r"[^\w\-. :/]", "_", tag)


class MlflowLogger(ScalarLogger):
    """MLflow run (``tracking_uri``, default a file store in ``<run_dir>/mlruns``;
    ``experiment``; ``run_name``)."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "samat",
                 run_name: str | None = None) -> None:
        require("mlflow", "mlflow-skinny", "mlflow")
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.client: Any = None
        self.run_id: str | None = None

    @hookimpl
    def samat_on_run_started(self, event: RunStarted) -> None:
        uri = self.tracking_uri or store_uri(event.run_dir)
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # local, offline store
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)
        id_file = Path(event.run_dir) / ID_FILE
        if event.resumed and id_file.is_file():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = self.client.get_experiment_by_name(self.experiment)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(self.experiment))
            run = self.client.create_run(experiment_id, run_name=self.run_name or
                                         Path(event.run_dir).name,
                                         tags={"samat.run_dir": event.run_dir,
                                               "samat.kind": event.kind})
            self.run_id = run.info.run_id
            write_text(id_file, self.run_id)
            params = [Param(k, str(v)[:6000]) for k, v in flat_config(event.config).items()]
            for start in range(0, len(params), BATCH):
                self.client.log_batch(self.run_id, params=params[start:start + BATCH])
        log.info("mlflow: run %s in %s", self.run_id, uri)

    def log_scalars(self, event: StepLogged | EpochEnded | EvalResult) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(metric_key(tag), value, now, event.step)
            for tag, value in event_scalars(event).items()])

    @hookimpl
    def samat_on_run_ended(self, event: RunEnded) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, STATUS.get(event.status, "FAILED"))
