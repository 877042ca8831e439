"""MLflow: one parent run per experiment fingerprint, one child run per cell.

The client talks to whatever tracking URI it is given: a team's ``mlflow server`` over REST, or a
local ``sqlite:///`` database (the default, ``mlflow.db`` beside the results store, whose
artifacts go to ``mlartifacts/`` beside it). ``mlflow`` is imported only when a tracker is made.

A dead server should cost the run seconds, not minutes: unless the environment says otherwise,
requests are retried twice and time out after 20 seconds (MLflow's own defaults retry for
minutes), and MLflow prints no "View run at" line per cell.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import require
from . import TRACKERS
from .base import CellRecord, ParentRecord, Tracker

FINGERPRINT_TAG = "noisegrid.fingerprint"
KIND_TAG = "noisegrid.kind"
CELL_TAG = "noisegrid.cell"
PARENT_TAG = "mlflow.parentRunId"

_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # Not a "View run at" line per cell on stdout (and not the extra request that builds it).
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
_PAGE = 1000
_BATCH_PARAMS = 100  # MLflow's per-request limit on params


@TRACKERS.register("mlflow")
class MlflowTracker(Tracker):
    """Logs to an MLflow tracking server or database through ``MlflowClient``."""

    extra = "mlflow"

    def __init__(self, *, uri: str, experiment: str) -> None:
        super().__init__(uri=uri, experiment=experiment)
        self.check()
        self._client_object: Any = None
        self._experiment_id: str | None = None
        self._unfinished: dict[str, dict[str, str]] = {}

    @classmethod
    def check(cls) -> None:
        require("mlflow", extra=cls.extra, purpose="tracking with MLflow ([track] to = 'mlflow')")

    @classmethod
    def default_uri(cls, store_folder: Path) -> str:
        """``$MLFLOW_TRACKING_URI``, else ``sqlite:///STORE_FOLDER/mlflow.db``."""
        env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        return env or f"sqlite:///{store_folder.absolute() / 'mlflow.db'}"

    @property
    def _client(self) -> Any:
        # Made on first use: a local database is created (and migrated, seconds) only when needed.
        if self._client_object is None:
            for key, value in _CLIENT_DEFAULTS.items():
                os.environ.setdefault(key, value)
            from mlflow.tracking import MlflowClient

            self._client_object = MlflowClient(tracking_uri=self.uri)
        return self._client_object

    # -- the experiment -------------------------------------------------------------------------
    def _experiment(self) -> str:
        if self._experiment_id is not None:
            return self._experiment_id
        found = self._client.get_experiment_by_name(self.experiment)
        if found is not None and found.lifecycle_stage == "deleted":
            self._client.restore_experiment(found.experiment_id)
        if found is not None:
            self._experiment_id = str(found.experiment_id)
        else:
            self._experiment_id = str(
                self._client.create_experiment(
                    self.experiment, artifact_location=self._artifact_location()
                )
            )
        return self._experiment_id

    def _artifact_location(self) -> str | None:
        # A local database keeps its artifacts beside it, not in the current directory.
        if not self.uri.startswith("sqlite:///"):
            return None
        db = Path(self.uri.removeprefix("sqlite:///"))
        return (db.absolute().parent / "mlartifacts" / self.experiment).as_uri()

    def _search(self, filter_string: str, *, order_by: list[str] | None = None) -> list[Any]:
        from mlflow.entities import ViewType

        runs: list[Any] = []
        token = None
        while True:
            page = self._client.search_runs(
                [self._experiment()],
                filter_string=filter_string,
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=_PAGE,
                order_by=order_by,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    # -- runs -----------------------------------------------------------------------------------
    def find_or_create_parent(self, parent: ParentRecord) -> str:
        found = self._search(
            f"tags.`{FINGERPRINT_TAG}` = '{parent.fingerprint}' "
            f"and tags.`{KIND_TAG}` = 'experiment'",
            order_by=["attributes.start_time ASC"],
        )
        if found:
            return str(found[0].info.run_id)
        tags = {**parent.tags, FINGERPRINT_TAG: parent.fingerprint, KIND_TAG: "experiment"}
        run = self._client.create_run(self._experiment(), run_name=parent.name, tags=tags)
        run_id = str(run.info.run_id)
        self._log_batch(run_id, params=parent.params)
        self._client.set_terminated(run_id)
        return run_id

    def logged_cells(self, parent_id: str) -> set[str]:
        done: set[str] = set()
        unfinished: dict[str, str] = {}
        for run in self._search(f"tags.`{PARENT_TAG}` = '{parent_id}'"):
            key = run.data.tags.get(CELL_TAG)
            if key is None:
                continue
            if run.info.status == "FINISHED":
                done.add(key)
            else:  # cut off half-way (killed, server gone): completed by log_cell
                unfinished.setdefault(key, str(run.info.run_id))
        self._unfinished[parent_id] = {k: v for k, v in unfinished.items() if k not in done}
        return done

    def log_cell(self, parent_id: str, cell: CellRecord) -> None:
        run_id = self._unfinished.get(parent_id, {}).pop(cell.key, None)
        if run_id is None:
            tags = {**cell.tags, PARENT_TAG: parent_id, CELL_TAG: cell.key, KIND_TAG: "cell"}
            run = self._client.create_run(self._experiment(), run_name=cell.name, tags=tags)
            run_id = str(run.info.run_id)
        self._log_batch(run_id, params=cell.params, metrics=cell.metrics)
        self._client.set_terminated(run_id)

    def attach(
        self, parent_id: str, *, files: Sequence[tuple[Path, str]], metrics: Mapping[str, float]
    ) -> None:
        for path, folder in files:
            self._client.log_artifact(parent_id, str(path), artifact_path=folder or None)
        self._log_batch(parent_id, metrics=metrics)

    def _log_batch(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        param_list = [Param(k, str(v)) for k, v in (params or {}).items()]
        metric_list = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        for start in range(0, max(len(param_list), 1), _BATCH_PARAMS):
            chunk = param_list[start : start + _BATCH_PARAMS]
            self._client.log_batch(run_id, metrics=metric_list if start == 0 else [], params=chunk)
