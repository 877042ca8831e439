"""Executors: local worker processes and Ray (a real local instance and a real head on loopback)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import numpy as np
import pytest

from executor_support import N_CELLS, keys, make_spec, rows, wait_gone, write_tiny_dataset
from noisegrid import Worker, expand_grid, load_corpus, run_experiment
from noisegrid.config import RunSpec
from noisegrid.errors import ConfigError, MissingDependencyError, NoisegridError
from noisegrid.executors import get_executor_class, make_executor
from noisegrid.executors._pool import (
    THREAD_ENV_VARS,
    describe_exit,
    limit_threads,
    run_in_processes,
    threads_per_worker,
)
from noisegrid.executors.ray import actors_for, actors_that_fit, ray_options
from noisegrid.store import ResultStore
from ray_fixtures import free_port, shared_ray_head


@pytest.fixture(scope="session")
def ray_head(pytestconfig):
    return shared_ray_head(pytestconfig)


@pytest.fixture
def data(tmp_path):
    return write_tiny_dataset(tmp_path / "data")


def _metrics(store):
    return {
        (r["train_size"], r["noise_rate"], r["seed"]): (r["accuracy"], r["log_loss"])
        for r in rows(store)
    }


# -- pure helpers ------------------------------------------------------------------------------


def test_threads_per_worker_never_oversubscribes():
    for cores in (1, 2, 3, 8, 16):
        for workers in (1, 2, 3, 4, 16):
            threads = threads_per_worker(workers, cores=cores)
            assert threads >= 1
            assert workers * threads <= max(cores, workers)


def test_describe_exit():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(None) == "unknown exit status"


def test_ray_options_translate_resources():
    assert ray_options({"cpu": 4, "gpu": 0.5}) == {"num_cpus": 4.0, "num_gpus": 0.5}
    assert ray_options({"gpu": 1}) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert ray_options({"CPU": 2, "memory": 2e9, "accel": 0.25}) == {
        "num_cpus": 2.0,
        "memory": 2_000_000_000,
        "resources": {"accel": 0.25},
    }


@pytest.mark.parametrize(
    ("resources", "match"),
    [
        ({"gpu": 1.5}, r"resources\.gpu = 1\.5: amounts above 1 must be whole numbers"),
        ({"cpu": -1}, r"resources\.cpu must be a non-negative number, got -1"),
    ],
)
def test_ray_options_reject_invalid_resources(resources, match):
    with pytest.raises(ConfigError, match=match):
        ray_options(resources)


def test_invalid_resources_fail_before_any_work(data, tmp_path):
    spec = make_spec(
        data, tmp_path / "s.sqlite", run={"executor": "ray", "resources": {"gpu": 2.5}}
    )
    with pytest.raises(ConfigError, match=r"resources\.gpu = 2\.5"):
        make_executor(spec)


def test_actors_that_fit():
    assert actors_that_fit({"cpu": 1}, {"CPU": 8.0}) == 8
    assert actors_that_fit({"cpu": 2, "gpu": 0.25}, {"CPU": 8.0, "GPU": 2.0}) == 4
    assert actors_that_fit({"gpu": 1}, {"CPU": 8.0}) == 0
    assert actors_that_fit({"cpu": 1, "slot": 1}, {"CPU": 8.0, "slot": 3.0}) == 3
    assert actors_that_fit({"cpu": 0.5}, {"CPU": 2.0}) == 4


def test_actors_for_a_run():
    cluster = {"CPU": 8.0, "GPU": 2.0}
    assert actors_for(RunSpec(), cluster, n_cells=100) == 8
    assert actors_for(RunSpec(), cluster, n_cells=3) == 3
    assert actors_for(RunSpec(resources={"cpu": 2, "gpu": 0.5}), cluster, n_cells=100) == 4
    # [run] workers sets the number on a cluster (waiting actors can make it grow) ...
    assert actors_for(RunSpec(workers=12, address="auto"), cluster, n_cells=100) == 12
    # ... but never beyond what a private local instance holds.
    assert actors_for(RunSpec(workers=12), cluster, n_cells=100) == 8
    # "auto" (the default) and 1 both mean as many as fit.
    assert actors_for(RunSpec(workers="auto"), cluster, n_cells=100) == 8
    assert actors_for(RunSpec(workers=1), cluster, n_cells=100) == 8


def _grid_spec(backend, sizes, workers="auto"):
    from noisegrid import ExperimentSpec

    return ExperimentSpec.from_dict(
        {
            "grid": {"sizes": sizes, "noise_rates": [0.0, 0.1]},
            "backend": {"name": backend},
            "run": {"workers": workers},
        }
    )


def test_auto_workers_follow_the_backends_threads_and_the_grids_size(monkeypatch):
    from noisegrid.executors import local

    monkeypatch.setattr(local, "n_cores", lambda: 4)
    big = _grid_spec("tfidf", [5000, 10000])
    assert local.n_local_workers(big, expand_grid(big)) == 4  # tfidf: one thread per worker
    small = _grid_spec("tfidf", [100, 200])
    assert local.n_local_workers(small, expand_grid(small)) == 1  # too little work to pay
    one_process = _grid_spec("sleep", [5000, 10000])
    assert local.n_local_workers(one_process, expand_grid(one_process)) == 1
    fixed = _grid_spec("tfidf", [100], workers=3)
    assert local.n_local_workers(fixed, expand_grid(fixed)) == 3


def test_auto_runs_one_worker_per_gpu_each_pinned_to_its_own(data, tmp_path, monkeypatch):
    """A machine with three GPUs (faked): "auto" starts three workers for a GPU backend, worker i
    sees GPU i alone (as its cuda:0), and the groups spread over them."""
    import json

    from noisegrid.backends.sleep import SleepBackend
    from noisegrid.executors import local

    monkeypatch.setattr(SleepBackend, "uses_gpu", True)
    monkeypatch.setattr(local, "visible_gpus", lambda: ["1", "4", "6"])
    spec = make_spec(data, tmp_path / "s.sqlite", backend={"name": "sleep", "seconds": 0.3})
    cells = expand_grid(spec)
    assert local.n_local_workers(spec, cells) == 3
    summary = run_experiment(spec)
    assert (summary.n_done, summary.n_failed) == (N_CELLS, 0)
    infos = [json.loads(r["info"]) for r in rows(tmp_path / "s.sqlite")]
    by_worker: dict[int, set[str]] = {}
    for info in infos:
        by_worker.setdefault(info["pid"], set()).add(info["cuda_visible_devices"])
    assert all(len(gpus) == 1 for gpus in by_worker.values())  # pinned: one GPU per worker
    assert set.union(*by_worker.values()) == {"1", "4", "6"}
    # A CPU backend on the same machine keeps its own rule.
    cpu = _grid_spec("tfidf", [100, 200])
    assert local.n_local_workers(cpu, expand_grid(cpu)) == 1


def test_workers_must_be_auto_or_positive():
    with pytest.raises(ValueError, match='workers must be "auto" or an integer >= 1'):
        RunSpec(workers=0)
    with pytest.raises(ValueError, match="workers"):
        RunSpec(workers="many")


def test_a_cell_larger_than_the_local_machine_is_refused():
    with pytest.raises(
        NoisegridError,
        match=r"a cell needs \[run\] resources = .*'gpu': 1.0.*"
        r"more than this machine has \(CPU=8\); lower \[run\] resources",
    ):
        actors_for(RunSpec(resources={"gpu": 1}), {"CPU": 8.0}, n_cells=4)
    # On a cluster the run waits for resources instead (an autoscaler may add GPU nodes).
    assert actors_for(RunSpec(resources={"gpu": 1}, address="auto"), {"CPU": 8.0}, n_cells=4) == 1


def test_ray_without_the_extra_names_it(data, tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "ray" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    spec = make_spec(data, tmp_path / "s.sqlite", run={"executor": "ray"})
    with pytest.raises(MissingDependencyError, match=r"pip install 'noisegrid\[ray\]'"):
        make_executor(spec)


def test_ray_is_registered():
    assert get_executor_class("ray").extra == "ray"


def test_unreachable_ray_address_fails_fast(data, tmp_path):
    spec = make_spec(
        data, tmp_path / "s.sqlite", run={"executor": "ray", "address": f"127.0.0.1:{free_port()}"}
    )
    t0 = time.monotonic()
    with pytest.raises(NoisegridError, match=r"no Ray cluster answers at \[run\] address"):
        make_executor(spec)
    assert time.monotonic() - t0 < 30


def test_malformed_ray_address(data, tmp_path):
    spec = make_spec(data, tmp_path / "s.sqlite", run={"executor": "ray", "address": "head-node"})
    with pytest.raises(ConfigError, match=r"address = 'head-node' is not 'auto', 'host:port'"):
        make_executor(spec)


# -- the sleep backend -------------------------------------------------------------------------


def test_sleep_backend_predicts_the_prior_and_fails_on_request(data, tmp_path):
    spec = make_spec(data, tmp_path / "s.sqlite", backend={"name": "sleep", "fail_sizes": [8]})
    worker = Worker(spec)
    cells = {c.train_size: c for c in expand_grid(spec) if c.noise_rate == 0 and c.seed == 0}
    ok = worker.run_cell(cells[4])
    assert ok.ok
    assert ok.metrics["accuracy"] == pytest.approx(0.5)  # balanced classes: a constant guess
    assert np.isfinite(ok.metrics["log_loss"])
    failed = worker.run_cell(cells[8])
    assert failed.status == "failed"
    assert "fails cells of size 8" in failed.error


# -- local worker processes ------------------------------------------------------------------


def test_workers_give_the_same_results_as_one_process(data, tmp_path):
    backend = {"name": "tfidf", "min_df": 1}
    one = make_spec(data, tmp_path / "one.sqlite", backend=backend)
    two = make_spec(data, tmp_path / "two.sqlite", backend=backend, run={"workers": 2})
    assert one.fingerprint() == two.fingerprint()  # the executor never changes results
    summary = run_experiment(two)
    assert (summary.n_done, summary.n_failed) == (N_CELLS, 0)
    run_experiment(one)
    stored = rows(tmp_path / "two.sqlite")
    assert sorted(keys(stored)) == sorted(set(keys(stored)))
    assert {r["attempts"] for r in stored} == {1}
    assert _metrics(tmp_path / "two.sqlite") == _metrics(tmp_path / "one.sqlite")
    with ResultStore(tmp_path / "two.sqlite") as store:
        assert store.integrity_ok()


def test_closing_the_iterator_stops_the_workers(data, tmp_path):
    spec = make_spec(data, tmp_path / "s.sqlite", backend={"name": "sleep", "seconds": 2.0})
    results = run_in_processes(
        spec, expand_grid(spec), corpus=load_corpus(spec.dataset), n_workers=1, max_retries=0
    )
    first = next(results)
    assert first.ok
    pid = first.info["pid"]
    assert pid != os.getpid()
    t0 = time.monotonic()
    results.close()  # as the driver does on --fail-fast or Ctrl-C: the busy worker is stopped
    assert time.monotonic() - t0 < 15
    assert not wait_gone({pid}, timeout=5)


def test_limit_threads_caps_loaded_and_later_libraries(monkeypatch):
    from threadpoolctl import threadpool_info

    for var in THREAD_ENV_VARS:
        monkeypatch.setenv(var, "")
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    limiter = limit_threads(1)
    try:
        assert {info["num_threads"] for info in threadpool_info()} == {1}
        assert all(os.environ[var] == "1" for var in THREAD_ENV_VARS)
    finally:
        limiter.restore_original_limits()
        if torch is not None:
            torch.set_num_threads(torch_threads)


# -- Ray -------------------------------------------------------------------------------------


@pytest.mark.ray
def test_ray_local_instance_runs_a_grid(data, tmp_path, monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    backend = {"name": "tfidf", "min_df": 1}
    spec = make_spec(data, tmp_path / "ray.sqlite", backend=backend, run={"executor": "ray"})
    summary = run_experiment(spec)
    assert (summary.n_done, summary.n_failed) == (N_CELLS, 0)
    assert not ray.is_initialized()  # the instance started for the run is stopped after it
    run_experiment(make_spec(data, tmp_path / "local.sqlite", backend=backend))
    assert _metrics(tmp_path / "ray.sqlite") == _metrics(tmp_path / "local.sqlite")


@pytest.mark.ray
def test_ray_joins_a_running_cluster_with_address_auto(data, tmp_path, ray_head, monkeypatch):
    import ray

    monkeypatch.setenv("RAY_ADDRESS", ray_head.address)
    spec = make_spec(
        data,
        tmp_path / "s.sqlite",
        backend={"name": "sleep", "seconds": 0.2},
        run={"executor": "ray", "address": "auto"},
    )
    seen = []
    summary = run_experiment(spec, on_result=seen.append)
    assert (summary.n_done, summary.n_failed) == (N_CELLS, 0)
    assert not ray.is_initialized()
    stored = rows(tmp_path / "s.sqlite")
    assert len(stored) == N_CELLS == len(set(keys(stored)))
    # 2 head CPUs, 1 per cell: two actors, each built its Worker once and ran several cells.
    assert len({r.info["pid"] for r in seen}) == 2


@pytest.mark.ray
def test_ray_fail_fast_stops_the_actors(data, tmp_path, ray_head):
    import ray

    spec = make_spec(
        data,
        tmp_path / "s.sqlite",
        backend={"name": "sleep", "seconds": 5.0, "fail_sizes": [12]},
        run={"executor": "ray", "address": ray_head.address},
    )
    t0 = time.monotonic()
    summary = run_experiment(spec, fail_fast=True)  # the size-12 cells run first and fail
    assert summary.stopped_early and summary.n_failed == 1
    assert time.monotonic() - t0 < 60
    ray.init(address=ray_head.address, log_to_driver=False)
    try:
        deadline = time.monotonic() + 20
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == 2  # no actor of the run holds a CPU
    finally:
        ray.shutdown()
