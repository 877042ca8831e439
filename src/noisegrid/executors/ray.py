"""``ray``: cells run on a Ray cluster — one machine or many, CPUs or GPUs.

Design: a pool of actors, each holding one :class:`~noisegrid.worker.Worker`.

- **Where.** No ``[run] address``: a private local Ray instance is started for the run and stopped
  after it (no dashboard, a small object store, worker logs kept out of the terminal).
  ``address = "auto"``, ``"host:port"`` or ``"ray://host:port"``: the run joins that cluster as a
  driver and leaves it running.
- **Shared inputs once.** The spec and the corpus are put in the object store once
  (``ray.put``); every actor receives the references, so each node fetches the corpus once, and
  each actor builds its Worker (noise model, backend, caches) once, on its first cell — never once
  per cell.
- **Resources.** Each actor reserves ``[run] resources`` (``cpu``, ``gpu``, ``memory`` in bytes,
  and any custom resource) for its lifetime; fractional GPUs pack several actors on one device.
  As many actors are started as the cluster's resources fit when the run starts (at most one per
  cell); ``[run] workers > 1`` sets the number instead, for example to make an autoscaling cluster
  grow.
- **Streaming.** Each actor runs one cell at a time, largest training sizes first; the driver waits
  for whichever cell finishes first (``ray.wait``), gives that actor its next cell, and stores the
  result at once.
- **Faults.** A cell that raises comes back as a ``failed`` result and is not retried. An actor
  whose process or node dies is replaced and its cell retried, up to ``[run] max_retries`` times;
  the stored ``attempts`` says how many it took. If the driver dies, Ray ends the run's actors; a
  re-run resumes from the store.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, NoisegridError, require
from . import EXECUTORS
from ._pool import Attempt, limit_threads, queue_groups, worker_died_results
from .base import Executor

if TYPE_CHECKING:
    from ..config import ExperimentSpec, RunSpec
    from ..data import Corpus
    from ..grid import Cell, SiblingGroup
    from ..records import CellResult
    from ..worker import Worker

log = logging.getLogger("noisegrid")

LOCAL_OBJECT_STORE_MIN_BYTES = 256 * 1024**2
"""Object store of a local instance: at least this, or three times the corpus text if larger."""

ADDRESS_PROBE_TIMEOUT_S = 5.0
"""How long to try reaching an explicit ``host:port`` before giving up (Ray itself retries for
minutes)."""

_BUILTIN_RESOURCES = {"cpu": "num_cpus", "gpu": "num_gpus", "memory": "memory"}
_CLUSTER_KEYS = {"cpu": "CPU", "gpu": "GPU", "memory": "memory"}


def ray_options(resources: Mapping[str, float]) -> dict[str, Any]:
    """Translate ``[run] resources`` into Ray actor options; raise ConfigError if invalid.

    Keys ``cpu``, ``gpu`` and ``memory`` (bytes) are Ray's built-in resources; any other key is a
    custom resource. ``cpu`` defaults to 1. Amounts above 1 must be whole numbers (Ray's rule).

    Examples
    --------
    >>> ray_options({"cpu": 4, "gpu": 0.5})
    {'num_cpus': 4.0, 'num_gpus': 0.5}
    >>> ray_options({"gpu": 1, "tpu_slice": 1})
    {'num_cpus': 1.0, 'num_gpus': 1.0, 'resources': {'tpu_slice': 1.0}}
    """
    options: dict[str, Any] = {"num_cpus": 1.0}
    custom: dict[str, float] = {}
    for key, raw in resources.items():
        amount = float(raw)
        if not math.isfinite(amount) or amount < 0:
            raise ConfigError(
                f"[run] resources.{key} must be a non-negative number, got {raw!r}; "
                "e.g. resources = { cpu = 1, gpu = 0.5 }"
            )
        if amount > 1 and not amount.is_integer():
            raise ConfigError(
                f"[run] resources.{key} = {raw!r}: amounts above 1 must be whole numbers "
                "(Ray shares a device only in fractions of one); use e.g. 0.5 or 2"
            )
        name = _BUILTIN_RESOURCES.get(key.lower())
        if name is None:
            custom[key] = amount
        elif name == "memory":
            options[name] = int(amount)
        else:
            options[name] = amount
    if custom:
        options["resources"] = custom
    return options


def actors_that_fit(resources: Mapping[str, float], cluster: Mapping[str, float]) -> int:
    """How many actors reserving ``resources`` fit in ``cluster`` (``ray.cluster_resources()``).

    Examples
    --------
    >>> actors_that_fit({"cpu": 1, "gpu": 0.5}, {"CPU": 16.0, "GPU": 2.0})
    4
    >>> actors_that_fit({"cpu": 1, "gpu": 1}, {"CPU": 16.0})
    0
    """
    needs = {"cpu": 1.0}
    for key, amount in resources.items():
        needs[key.lower() if key.lower() in _CLUSTER_KEYS else key] = float(amount)
    fits = []
    for key, need in needs.items():
        if need <= 0:
            continue
        have = float(cluster.get(_CLUSTER_KEYS.get(key, key), 0.0))
        fits.append(math.floor(have / need + 1e-9))
    return min(fits) if fits else 1


def actors_for(run: RunSpec, cluster: Mapping[str, float], *, n_cells: int) -> int:
    """How many actors a run starts: as many as fit, or ``[run] workers`` if above 1.

    Never more than one per cell. Raises NoisegridError when one cell's resources do not fit a
    private local instance; on a cluster (``address`` set) the run waits instead, since an
    autoscaling cluster can add nodes.
    """
    fit = actors_that_fit(run.resources, cluster)
    workers = run.workers if isinstance(run.workers, int) else 1  # "auto": as many as fit
    if fit < 1:
        if run.address is None:
            raise NoisegridError(
                f"a cell needs [run] resources = {dict(run.resources)}, more than this machine "
                f"has ({_describe(cluster)}); lower [run] resources, or join a cluster that has "
                "them with [run] address"
            )
        log.warning(
            "the Ray cluster has %s now, less than one cell's [run] resources %s; waiting for "
            "resources (an autoscaling cluster adds nodes)",
            _describe(cluster),
            dict(run.resources),
        )
        wanted = workers
    elif workers > 1:
        # A private instance cannot grow: actors beyond what fits would wait forever.
        wanted = workers if run.address is not None else min(workers, fit)
    else:
        wanted = fit
    return max(1, min(wanted, n_cells))


class CellActor:
    """A Ray actor holding one Worker; it runs one sibling group per call.

    Parameters
    ----------
    spec : ExperimentSpec
    corpus : Corpus
        Both arrive from the object store (the driver passes references).
    n_threads : int
        Threads for numerical libraries (the actor's CPU reservation).
    """

    def __init__(self, spec: ExperimentSpec, corpus: Corpus, n_threads: int) -> None:
        limit_threads(n_threads)
        self._spec = spec
        self._corpus = corpus
        self._worker: Worker | None = None

    def run_group(self, group: SiblingGroup) -> list[CellResult]:
        """Run one sibling group (building the Worker first, on the first call)."""
        if self._worker is None:
            from ..worker import Worker

            self._worker = Worker(self._spec, corpus=self._corpus)
        return self._worker.run_group(group)

    def pid(self) -> int:
        """The actor's process id (diagnostics and tests)."""
        return os.getpid()


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Ray: a local instance, or a cluster via ``[run] address``; one actor per resource bundle."""

    extra = "ray"

    @classmethod
    def check(cls, spec: ExperimentSpec) -> None:
        """The ``ray`` extra is installed, resources are valid, an explicit address answers."""
        require("ray", extra="ray", purpose="the 'ray' executor ([run] executor = \"ray\")")
        ray_options(spec.run.resources)
        _probe_address(spec.run.address)

    def run(
        self, spec: ExperimentSpec, cells: Sequence[Cell], *, corpus: Corpus
    ) -> Iterator[CellResult]:
        """Run ``cells`` on Ray actors; yield results in completion order."""
        if not cells:
            return
        import ray

        connected_here = _connect(spec.run, corpus)
        actors: list[Any] = []
        try:
            yield from _run_on_actors(spec, cells, corpus, actors)
        finally:
            for actor in actors:
                _kill(actor)
            if connected_here:
                ray.shutdown()


def _connect(run: RunSpec, corpus: Corpus) -> bool:
    """Start or join Ray unless this process already is connected; True if connected here."""
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "include_dashboard": False,
    }
    try:
        if run.address is None:
            text_bytes = sum(len(t) for t in corpus.train.texts) + sum(
                len(t) for t in corpus.test.texts
            )
            ray.init(
                address="local",
                object_store_memory=max(LOCAL_OBJECT_STORE_MIN_BYTES, 3 * text_bytes),
                **common,
            )
        else:
            ray.init(address=run.address, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"[run] address = {run.address!r}" if run.address else "a local Ray instance"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NoisegridError(
            f"could not start or join Ray ({where}): {first}; check the address (e.g. "
            'address = "auto" on a cluster node, or "ray://head:10001"), and if the cluster '
            "uses token authentication set RAY_AUTH_MODE=token with its token available"
        ) from None
    return True


def _run_on_actors(
    spec: ExperimentSpec, cells: Sequence[Cell], corpus: Corpus, actors: list[Any]
) -> Iterator[CellResult]:
    import ray

    options = ray_options(spec.run.resources)
    n_threads = max(1, int(options["num_cpus"]))
    n_actors = actors_for(spec.run, ray.cluster_resources(), n_cells=len(cells))
    queue = queue_groups(spec, cells, n_workers=n_actors)
    n_actors = min(n_actors, len(queue))
    log.info(
        "running %d cells in %d sibling groups on %d Ray actors (%s each)",
        len(cells),
        len(queue),
        n_actors,
        options,
    )

    actor_class = ray.remote(max_restarts=0, max_task_retries=0)(CellActor).options(**options)
    spec_ref = ray.put(spec)
    corpus_ref = ray.put(corpus)

    def new_actor() -> Any:
        actor = actor_class.remote(spec_ref, corpus_ref, n_threads)
        actors.append(actor)
        return actor

    idle = [new_actor() for _ in range(n_actors)]
    in_flight: dict[Any, tuple[Any, Attempt]] = {}

    def dispatch() -> None:
        while idle and queue:
            actor, attempt = idle.pop(), queue.popleft()
            in_flight[actor.run_group.remote(attempt.group)] = (actor, attempt)

    dispatch()
    while in_flight:
        done, _ = ray.wait(list(in_flight), num_returns=1)
        finished: list[CellResult] = []
        for ref in done:
            actor, attempt = in_flight.pop(ref)
            outcome = _outcome(ref)
            if not isinstance(outcome, Exception):
                for result in outcome:
                    result.attempts = attempt.number
                finished.extend(outcome)
                idle.append(actor)
                continue
            # The actor's process or node died with the group in flight: retry on a new actor.
            attempt.deaths.append(_describe_death(outcome))
            _kill(actor)
            actors.remove(actor)
            if len(attempt.deaths) > spec.run.max_retries:
                finished.extend(worker_died_results(spec, attempt))
            else:
                attempt.number += 1
                queue.appendleft(attempt)
            if queue:
                idle.append(new_actor())
        dispatch()
        if not queue:
            # Nothing left to hand out: release idle actors' resources (to other jobs, or to
            # actors of this run still waiting for a place).
            for actor in idle:
                _kill(actor)
                actors.remove(actor)
            idle.clear()
        yield from finished


def _outcome(ref: Any) -> list[CellResult] | Exception:
    """A finished call's results, or the Ray error saying its actor died.

    Raises the experiment's set-up error when the actor could not build its Worker.
    """
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError

    try:
        results: list[CellResult] = ray.get(ref)
    except RayTaskError as exc:
        # run_group never raises once its Worker exists: building the Worker failed.
        raise _setup_error(exc) from None
    except RayActorError as exc:
        if exc.actor_init_failed:
            raise _setup_error(exc) from None
        return exc
    except RayError as exc:
        return exc
    return results


def _setup_error(exc: Exception) -> Exception:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, NoisegridError):
        return cause
    error = cause if cause is not None else exc
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return NoisegridError(
        f"a Ray worker could not set up the experiment: {type(error).__name__}: {first}; is "
        "noisegrid (with the backend's extra) installed on every node of the cluster?"
    )


def _describe_death(exc: Exception) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:200]


def _describe(resources: Mapping[str, float]) -> str:
    shown = {k: v for k, v in resources.items() if not k.startswith("node:")}
    return ", ".join(f"{k}={v:g}" for k, v in sorted(shown.items())) or "no resources"


def _kill(actor: Any) -> None:
    import ray

    try:
        ray.kill(actor, no_restart=True)
    except Exception as exc:  # the actor or the connection is already gone
        log.debug("could not kill Ray actor: %s", exc)


def _probe_address(address: str | None) -> None:
    """Fail fast when an explicit ``host:port`` does not answer (Ray would retry for minutes)."""
    if address is None or address == "auto" or address == "local":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(
            f"[run] address = {address!r} is not 'auto', 'host:port' or 'ray://host:port'; "
            'e.g. address = "auto" on a cluster node, or "ray://head.example.com:10001"'
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), ADDRESS_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise NoisegridError(
            f"no Ray cluster answers at [run] address = {address!r} ({exc.strerror or exc}); "
            "start one with `ray start --head`, fix the address, or remove [run] address to "
            "start a local instance"
        ) from None
