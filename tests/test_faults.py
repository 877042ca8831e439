"""Faults: killed drivers, killed workers, Ctrl-C, two runs on one store.

Every test ends with the same checks: each cell of the grid is stored exactly once, the cells that
were stored before the fault are unchanged (same finished_at, same worker pid: nothing was
recomputed), and SQLite's integrity check passes.

The drivers are real ``noisegrid run`` subprocesses running the ``sleep`` backend, so there is time
to interrupt them between cells and in the middle of one.
"""

from __future__ import annotations

import os
import signal

import pytest

from executor_support import (
    N_CELLS,
    SIZES,
    keys,
    make_spec,
    rows,
    run_cli,
    start_cli_run,
    wait_for_rows,
    wait_gone,
    worker_pids,
    write_config,
    write_tiny_dataset,
)
from noisegrid import load_spec, run_experiment
from noisegrid.store import ResultStore
from ray_fixtures import shared_ray_head

# Long enough that a busy machine's driver cannot store the whole grid before a signal reaches it.
SLOW_CELL = {"name": "sleep", "seconds": 0.8}


@pytest.fixture(scope="session")
def ray_head(pytestconfig):
    return shared_ray_head(pytestconfig)


@pytest.fixture
def data(tmp_path):
    return write_tiny_dataset(tmp_path / "data")


def check_store(store, *, before=()):
    """Every cell stored once, all done, the rows in ``before`` unchanged, integrity ok."""
    stored = rows(store)
    assert len(stored) == N_CELLS
    assert len(set(keys(stored))) == N_CELLS
    assert {r["status"] for r in stored} == {"done"}
    by_key = dict(zip(keys(stored), stored, strict=True))
    for old in before:
        new = by_key[(old["train_size"], old["noise_rate"], old["seed"])]
        assert (new["finished_at"], new["info"], new["accuracy"]) == (
            old["finished_at"],
            old["info"],
            old["accuracy"],
        )
    with ResultStore(store) as s:
        assert s.integrity_ok()
    return stored


def kill_driver_and_resume(config, store, *, sig, env=None, n_before=2, resume_with=()):
    """Start a run, send ``sig`` to the driver once ``n_before`` cells are stored, then resume.

    ``resume_with`` are ``--set`` overrides for the re-run (e.g. another executor).
    """
    driver = start_cli_run(config, env=env)
    wait_for_rows(store, n_before, process=driver)
    driver.send_signal(sig)
    _, err = driver.communicate(timeout=60)
    before = rows(store)
    assert n_before <= len(before) < N_CELLS, "the run finished before it could be interrupted"
    summary = run_experiment(load_spec(config, overrides=resume_with))
    # Only the missing cells ran again: nothing completed was lost or recomputed.
    assert (summary.n_done, summary.n_failed, summary.n_skipped) == (
        N_CELLS - len(before),
        0,
        len(before),
    )
    return driver.returncode, err, before, check_store(store, before=before)


# -- the driver dies ---------------------------------------------------------------------------


def test_sigkill_of_the_driver_then_rerun_completes_the_grid(data, tmp_path):
    store = tmp_path / "runs.sqlite"
    config = write_config(tmp_path / "exp.toml", data, store, backend=SLOW_CELL, run={"workers": 2})
    code, _, before, _ = kill_driver_and_resume(config, store, sig=signal.SIGKILL)
    assert code == -signal.SIGKILL
    # Worker processes do not outlive their driver (nor keep its store lock).
    assert not wait_gone(worker_pids(before))


def test_ctrl_c_stops_the_run_and_a_rerun_resumes(data, tmp_path):
    store = tmp_path / "runs.sqlite"
    config = write_config(tmp_path / "exp.toml", data, store, backend=SLOW_CELL, run={"workers": 2})
    # Resumed in-process: a grid started with one executor can be finished with another.
    code, err, before, _ = kill_driver_and_resume(
        config, store, sig=signal.SIGINT, resume_with=["run.workers=1"]
    )
    assert code == 130
    assert "interrupted: finished cells are stored" in err
    assert not wait_gone(worker_pids(before))


def test_a_second_run_on_the_same_store_refuses(data, tmp_path):
    store = tmp_path / "runs.sqlite"
    config = write_config(
        tmp_path / "exp.toml", data, store, backend={"name": "sleep", "seconds": 4.0}
    )
    first = start_cli_run(config)
    wait_for_rows(store, 1, process=first)
    second = run_cli(config)
    assert second.returncode == 2
    assert f"another noisegrid run (pid {first.pid} on " in second.stderr
    assert "is writing to" in second.stderr and "use a different --store" in second.stderr
    assert "Traceback" not in second.stderr
    # The first run goes on storing cells after the refusal.
    n_seen = len(rows(store))
    assert n_seen < N_CELLS, "the first run finished before the second one started"
    wait_for_rows(store, n_seen + 1, process=first)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert first.returncode == 130
    stored = rows(store)
    assert len(stored) == len(set(keys(stored)))
    with ResultStore(store) as s:
        assert s.integrity_ok()


# -- a worker dies -----------------------------------------------------------------------------


def _kill_one_worker_mid_cell(spec):
    """Run ``spec``, SIGKILL the worker of the first result while it runs its next cell."""
    killed = []

    def on_result(result):
        if not killed and result.ok:
            # The driver hands an idle worker its next cell before storing this result, so the
            # worker is now in the middle of a cell (its fit sleeps).
            killed.append(result.info["pid"])
            os.kill(result.info["pid"], signal.SIGKILL)

    summary = run_experiment(spec, on_result=on_result)
    return summary, killed


def test_a_worker_killed_mid_cell_is_replaced_and_the_cell_retried(data, tmp_path):
    store = tmp_path / "runs.sqlite"
    spec = make_spec(
        data, store, backend={"name": "sleep", "seconds": 1.0}, run={"workers": 2, "max_retries": 1}
    )
    summary, killed = _kill_one_worker_mid_cell(spec)
    assert (summary.n_done, summary.n_failed) == (N_CELLS, 0)
    stored = check_store(store)
    retried = [r for r in stored if r["attempts"] == 2]
    assert len(retried) == 1
    assert worker_pids(retried) != set(killed)
    assert {r["attempts"] for r in stored} == {1, 2}


def test_a_cell_whose_worker_keeps_dying_fails_after_max_retries(data, tmp_path):
    store = tmp_path / "runs.sqlite"
    spec = make_spec(
        data,
        store,
        backend={"name": "sleep", "seconds": 1.0, "fail_sizes": [12]},
        run={"workers": 2, "max_retries": 0},
    )
    summary, _ = _kill_one_worker_mid_cell(spec)
    failed = {f.cell.key: f for f in summary.failures}
    died = [f for f in failed.values() if "died" in f.error]
    assert len(died) == 1
    assert "died on all 1 attempt(s) (killed by SIGKILL)" in died[0].error
    # A cell that raises is stored as failed on its first attempt, never retried.
    raised = [f for f in failed.values() if f.cell.train_size == 12 and "died" not in f.error]
    assert raised and all(f.attempts == 1 for f in raised)
    assert all("fails cells of size 12" in f.error for f in raised)
    stored = rows(store)
    assert len(stored) == N_CELLS == len(set(keys(stored)))
    with ResultStore(store) as s:
        assert s.integrity_ok()


# -- Ray -----------------------------------------------------------------------------------------


@pytest.mark.ray
def test_ray_actor_killed_mid_cell_is_retried(data, tmp_path, ray_head):
    store = tmp_path / "runs.sqlite"
    spec = make_spec(
        data,
        store,
        backend={"name": "sleep", "seconds": 1.0, "fail_sizes": [12]},
        run={"executor": "ray", "address": ray_head.address, "max_retries": 2},
    )
    summary, _ = _kill_one_worker_mid_cell(spec)
    n_raised = N_CELLS // len(SIZES)  # the cells of size 12
    assert (summary.n_done, summary.n_failed) == (N_CELLS - n_raised, n_raised)
    stored = rows(store)
    assert len(stored) == N_CELLS == len(set(keys(stored)))
    assert len([r for r in stored if r["attempts"] == 2]) == 1
    assert all(r["attempts"] == 1 for r in stored if r["status"] == "failed")
    with ResultStore(store) as s:
        assert s.integrity_ok()


@pytest.mark.ray
def test_sigkill_of_a_ray_driver_then_rerun_completes_the_grid(data, tmp_path, ray_head):
    store = tmp_path / "runs.sqlite"
    config = write_config(
        tmp_path / "exp.toml",
        data,
        store,
        backend=SLOW_CELL,
        run={"executor": "ray", "address": ray_head.address},
    )
    code, _, before, _ = kill_driver_and_resume(
        config, store, sig=signal.SIGKILL, env=ray_head.driver_env()
    )
    assert code == -signal.SIGKILL
    # Ray ends a dead driver's actors, so their CPUs were free for the re-run.
    assert not wait_gone(worker_pids(before), timeout=30)
