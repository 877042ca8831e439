"""Tracking: every stored cell as an MLflow run, live and after the fact, never at the store's cost.

Read back with ``MlflowClient`` from a real MLflow: a local ``sqlite:///`` database (shared by the
module: creating one costs seconds) and, marked slow, an ``mlflow server`` on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from noisegrid import (
    ConfigError,
    MissingDependencyError,
    ResultStore,
    TrackerError,
    export_to_tracker,
    load_spec,
    run_experiment,
    track_results,
)
from noisegrid.cli import app
from noisegrid.results import resolve_spec
from noisegrid.tracking import cell_key

needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None, reason="needs mlflow (pip install '.[mlflow]')"
)


def mlflow_client(uri: str) -> Any:
    """An ``MlflowClient`` (mlflow is imported here: the module's other tests run without it)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


CELL_METRICS = ("accuracy", "macro_f1", "log_loss", "realized_noise", "fit_seconds")


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def tracked_config(
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    request: pytest.FixtureRequest,
) -> Callable[..., Path]:
    """A tiny tfidf grid (4 cells) tracked by ``uri`` in an experiment named after the test."""

    def write(uri: str, **kwargs: Any) -> Path:
        track = f'\n[track]\nto = "mlflow"\nuri = "{uri}"\nexperiment = "{request.node.name}"\n'
        extra = "workers = 1\n" + kwargs.pop("extra", "") + track
        return write_config(make_dataset(), extra=extra, **kwargs)

    return write


def runs_of_kind(uri: str, experiment: str, kind: str) -> list[Any]:
    """The experiment's runs tagged ``noisegrid.kind = kind`` ("cell" or "experiment")."""
    client = mlflow_client(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("noisegrid.kind") == kind]


def cell_runs(uri: str, experiment: str) -> list[Any]:
    return runs_of_kind(uri, experiment, "cell")


def parent_runs(uri: str, experiment: str) -> list[Any]:
    return runs_of_kind(uri, experiment, "experiment")


def check_runs_match_store(cfg: Path, uri: str, experiment: str) -> None:
    """One finished child run per stored done cell, under its parent, with the store's metrics."""
    spec = resolve_spec(cfg)
    with ResultStore(spec.run.store) as store:
        frame = store.frame(spec.fingerprint())
    stored = {
        cell_key(int(r.train_size), float(r.noise_rate), int(r.seed)): r
        for r in frame.itertuples()
        if r.status == "done"
    }
    runs = cell_runs(uri, experiment)
    keys = [r.data.tags["noisegrid.cell"] for r in runs]
    assert sorted(keys) == sorted(stored), "one child run per stored cell, no duplicates"
    (parent,) = parent_runs(uri, experiment)
    assert parent.data.tags["noisegrid.fingerprint"] == spec.fingerprint()
    assert parent.data.tags["noisegrid.data_identity"] == spec.data_identity
    assert parent.data.params["backend.name"] == "tfidf"
    for run in runs:
        row = stored[run.data.tags["noisegrid.cell"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params["train_size"] == str(row.train_size)
        assert run.data.params["noise_model"] == "uniform"
        for name in CELL_METRICS:
            assert run.data.metrics[name] == getattr(row, name)  # exactly the stored value


# -- the [track] section --------------------------------------------------------------------------


def test_track_section_is_validated_and_not_fingerprinted(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    cfg = write_config(make_dataset())
    plain = load_spec(cfg)
    tracked = load_spec(cfg, overrides=["track.to=mlflow", "track.experiment=team"])
    assert tracked.track is not None and tracked.track.experiment == "team"
    assert tracked.fingerprint() == plain.fingerprint()
    with pytest.raises(ConfigError, match=r"unknown tracker 'neptune' in track.to; available: "):
        load_spec(cfg, overrides=["track.to=neptune"])
    with pytest.raises(ConfigError, match=r"tracker 'wandb' is not available yet"):
        load_spec(cfg, overrides=["track.to=wandb"])
    with pytest.raises(ConfigError, match=r"'uri' in \[track\]: must not be empty"):
        load_spec(cfg, overrides=["track.to=mlflow", 'track.uri=""'])
    with pytest.raises(ConfigError, match=r"unknown key 'url' in \[track\]"):
        load_spec(cfg, overrides=["track.to=mlflow", "track.url=x"])
    with pytest.raises(ConfigError, match=r"missing required key 'to' in \[track\]"):
        load_spec(cfg, overrides=["track.uri=sqlite:///x.db"])


def test_missing_mlflow_names_the_extra(
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "mlflow" else find_spec(name, *args),
    )
    spec = load_spec(write_config(make_dataset()), overrides=["track.to=mlflow"])
    with (
        pytest.raises(MissingDependencyError, match=r"pip install 'noisegrid\[mlflow\]'"),
        track_results(spec),
    ):
        pass  # pragma: no cover - raises on entry
    assert not Path(spec.run.store).exists(), "nothing ran"


def test_export_without_a_tracker_says_how_to_name_one(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    from typer.testing import CliRunner

    cfg = write_config(make_dataset())
    result = CliRunner().invoke(app, ["export", str(cfg)])
    assert result.exit_code == 2
    assert "export needs --out FILE (or --to mlflow" in result.stderr


# -- a local sqlite:/// database ------------------------------------------------------------------


@needs_mlflow
def test_run_logs_every_cell_once_across_resume_and_exports(
    tracked_config: Callable[..., Path], sqlite_uri: str, request: pytest.FixtureRequest
) -> None:
    name = request.node.name
    cfg = tracked_config(sqlite_uri)
    spec = load_spec(cfg)
    with track_results(spec) as tracked:
        summary = run_experiment(spec, on_result=tracked(None))
    assert summary.n_done == 4
    check_runs_match_store(cfg, sqlite_uri, name)

    # A resume of a grown grid logs only the new cells; the same parent takes them.
    grown = load_spec(cfg, overrides=["grid.sizes=[20, 40, 60]"])
    with track_results(grown) as tracked:
        assert run_experiment(grown, on_result=tracked(None)).n_skipped == 4
    assert len(cell_runs(sqlite_uri, name)) == 6

    # Two exports after the fact find everything there: no duplicates.
    for _ in range(2):
        done = export_to_tracker(resolve_spec(grown))
        assert (done.n_logged, done.n_already, done.n_experiments) == (0, 6, 1)
    assert len(cell_runs(sqlite_uri, name)) == 6
    assert len(parent_runs(sqlite_uri, name)) == 1


@needs_mlflow
def test_export_catches_up_and_completes_a_half_logged_cell(
    tracked_config: Callable[..., Path], sqlite_uri: str, request: pytest.FixtureRequest
) -> None:
    name = request.node.name
    cfg = tracked_config(sqlite_uri)
    run_experiment(load_spec(cfg))  # not tracked: nothing in MLflow yet
    spec = resolve_spec(cfg)
    first = export_to_tracker(spec)
    assert (first.n_logged, first.n_already) == (4, 0)
    # A cell whose run was cut off half-way (created, never finished) is completed, not doubled.
    client = mlflow_client(sqlite_uri)
    (half,) = [r for r in cell_runs(sqlite_uri, name) if r.data.tags["noisegrid.cell"] == "20/0/0"]
    client.set_terminated(half.info.run_id, status="RUNNING")
    again = export_to_tracker(spec)
    assert (again.n_logged, again.n_already) == (1, 3)
    check_runs_match_store(cfg, sqlite_uri, name)


@needs_mlflow
def test_cli_run_export_report_with_track(
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    sqlite_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)
    cfg = write_config(make_dataset(), extra="workers = 1\n")
    result = runner.invoke(app, ["run", str(cfg), "--quiet", "--track", "mlflow"])
    assert result.exit_code == 0, result.output
    # The experiment defaults to the spec's name; this spec has none.
    assert len(cell_runs(sqlite_uri, "noisegrid")) >= 4
    before = len(cell_runs(sqlite_uri, "noisegrid"))
    result = runner.invoke(app, ["export", str(cfg), "--to", "mlflow"])
    assert result.exit_code == 0, result.output
    assert "logged 0 cell(s) to mlflow at sqlite:///" in result.stdout
    assert "(4 already there)" in result.stdout
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", str(cfg), "--out", str(out), "--track", "mlflow"])
    assert result.exit_code == 0, result.output
    assert "report attached" in result.stdout
    assert len(cell_runs(sqlite_uri, "noisegrid")) == before
    fingerprint = resolve_spec(cfg).fingerprint()
    (parent,) = [
        p
        for p in parent_runs(sqlite_uri, "noisegrid")
        if p.data.tags["noisegrid.fingerprint"] == fingerprint
    ]
    client = mlflow_client(sqlite_uri)
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "summary.md", "results.csv", "figures"} <= names
    figures = [a.path for a in client.list_artifacts(parent.info.run_id, "figures")]
    assert figures and all(f.endswith(".png") for f in figures)
    assert "exchange_rate" in client.get_run(parent.info.run_id).data.metrics


@needs_mlflow
def test_default_uri_is_a_database_beside_the_store(
    make_dataset: Callable[..., Path],
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from noisegrid.tracking import make_tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = load_spec(write_config(make_dataset()), overrides=["track.to=mlflow", "name=demo"])
    tracker = make_tracker(spec)
    assert tracker.uri == f"sqlite:///{Path(spec.run.store).parent / 'mlflow.db'}"
    assert tracker.experiment == "demo"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert make_tracker(spec).uri == "http://mlflow.example:5000"


# -- a tracker that is down -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@needs_mlflow
@pytest.mark.parametrize("uri", ["http://127.0.0.1:{port}", "nosuchscheme://tracker"])
def test_unreachable_tracker_loses_nothing_and_warns_once(
    tracked_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    uri: str,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = uri.format(port=_free_port())
    cfg = tracked_config(uri)
    spec = load_spec(cfg)
    with caplog.at_level(logging.WARNING, logger="noisegrid"), track_results(spec) as tracked:
        summary = run_experiment(spec, on_result=tracked(None))
    assert summary.n_done == 4
    with ResultStore(spec.run.store) as store:
        assert len(store.frame(resolve_spec(cfg).fingerprint())) == 4
    warnings = [r.getMessage() for r in caplog.records if "not logged" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("4 of 4 cells are stored in ")
    assert "noisegrid export CONFIG --to mlflow` logs them later" in warnings[0]
    with pytest.raises(TrackerError, match=rf"could not log to mlflow at {re.escape(uri)}: "):
        export_to_tracker(resolve_spec(cfg))


# -- a real mlflow server -------------------------------------------------------------------------


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """``mlflow server`` on a free port of 127.0.0.1; yields (url, its database, the process)."""
    port = _free_port()
    db = tmp_path / "server.db"
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [
        *(str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{db}"),
        *("--artifacts-destination", str(tmp_path / "artifacts")),
    ]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server starts workers: stop the whole group
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start")
                time.sleep(0.2)
        yield url, db, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@needs_mlflow
def test_mlflow_server_over_rest_then_killed_mid_run(
    tracked_config: Callable[..., Path],
    mlflow_server: tuple[str, Path, subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    url, db, proc = mlflow_server
    name = request.node.name
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    cfg = tracked_config(url)
    spec = load_spec(cfg)
    with track_results(spec) as tracked:
        assert run_experiment(spec, on_result=tracked(None)).n_done == 4
    check_runs_match_store(cfg, url, name)
    # A resume and a second export add nothing.
    with track_results(spec) as tracked:
        assert run_experiment(spec, on_result=tracked(None)).n_skipped == 4
    assert export_to_tracker(resolve_spec(cfg)).n_already == 4
    assert len(cell_runs(url, name)) == 4

    # The server dies after the 2nd new cell is logged: every cell is stored, one warning.
    grown = load_spec(cfg, overrides=["grid.sizes=[20, 40, 60, 80]"])
    seen: list[str] = []

    def kill_after_two(result: Any) -> None:
        seen.append(result.cell.label())
        if len(seen) == 2:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    with caplog.at_level(logging.WARNING, logger="noisegrid"), track_results(grown) as tracked:
        summary = run_experiment(grown, on_result=tracked(kill_after_two))
    assert (summary.n_done, summary.n_skipped) == (4, 4)
    with ResultStore(grown.run.store) as store:
        assert len(store.frame(resolve_spec(cfg).fingerprint())) == 8
    warnings = [r.getMessage() for r in caplog.records if "not logged" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("2 of 4 cells are stored"), warnings

    # The server's own database holds the 6 cells logged; an export against it catches up.
    local = f"sqlite:///{db}"
    assert len(cell_runs(local, name)) == 6
    catch_up = resolve_spec(cfg, overrides=["grid.sizes=[20, 40, 60, 80]", f"track.uri={local}"])
    assert export_to_tracker(catch_up).n_logged == 2
    check_runs_match_store(cfg, local, name)


def test_explain_keeps_the_track_section(
    make_dataset: Callable[..., Path], write_config: Callable[..., Path]
) -> None:
    from noisegrid.explain import explain_spec
    from noisegrid.runner import prepare_run

    spec = load_spec(write_config(make_dataset()), overrides=["track.to=mlflow"])
    text = explain_spec(spec, prepare_run(spec))
    assert '[track]\nto = "mlflow"\n# uri: not set ($MLFLOW_TRACKING_URI' in text
