"""A real Ray head on this machine, shared by every Ray test of a pytest session.

``ray start --head --block`` runs as a child of the test session with its own temporary folder,
free ports, 2 CPUs, a small object store and token authentication. The token is Ray's default one
(``~/.ray/auth_token``, created by ``ray get-auth-token --generate`` if missing), the same one a
local instance started by ``ray.init`` uses: Ray caches the token it first loads for the life of a
process, so a second token would lock the test process out. ``RAY_AUTH_MODE=token`` is exported to
the test process and its subprocesses while the head runs. The head is started once, on first use,
and stopped when the session ends: the ``ray start`` process is terminated and every process it
started is ended by pid. ``ray stop`` is not used, since it stops every Ray instance on the
machine.

Use from a test module::

    from ray_fixtures import shared_ray_head

    @pytest.fixture(scope="session")
    def ray_head(pytestconfig):
        return shared_ray_head(pytestconfig)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HEAD_START_TIMEOUT_S = 180.0
HEAD_STOP_TIMEOUT_S = 20.0
HEAD_CPUS = 2
HEAD_OBJECT_STORE_BYTES = 128 * 1024**2


@dataclass
class RayHead:
    """A running head: its address and the environment a driver needs to join it."""

    address: str
    temp_dir: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    def driver_env(self) -> dict[str, str]:
        """``os.environ`` plus what joining this head needs (for driver subprocesses)."""
        return {**os.environ, **self.env}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else "ray"


def start_ray_head() -> RayHead:
    """Start a head on loopback and wait until it accepts drivers."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ngray-", dir="/tmp"))
    port = free_port()
    env = {"RAY_AUTH_MODE": "token"}
    subprocess.run(
        [_ray_cli(), "get-auth-token", "--generate"], capture_output=True, check=True, timeout=120
    )
    log_path = temp_dir / "head.log"
    cmd = [
        _ray_cli(), "start", "--head", "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={HEAD_CPUS}",
        "--num-gpus=0",
        f"--object-store-memory={HEAD_OBJECT_STORE_BYTES}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    head = RayHead(address=f"127.0.0.1:{port}", temp_dir=temp_dir, process=process, env=env)
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if "Ray runtime started" in text:
            return head
        if process.poll() is not None:
            stop_ray_head(head)
            raise RuntimeError(f"`ray start --head` exited early:\n{text[-3000:]}")
        time.sleep(0.5)
    stop_ray_head(head)
    raise RuntimeError(f"`ray start --head` not ready in {HEAD_START_TIMEOUT_S:.0f}s")


def stop_ray_head(head: RayHead) -> None:
    """Stop the head and every process it started (by pid), then remove its folder."""
    import psutil

    try:
        children = psutil.Process(head.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if head.process.poll() is None:
        head.process.send_signal(signal.SIGTERM)
        try:
            head.process.wait(timeout=HEAD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            head.process.kill()
            head.process.wait(timeout=HEAD_STOP_TIMEOUT_S)
    end_processes(children)
    shutil.rmtree(head.temp_dir, ignore_errors=True)


def end_processes(processes: list, *, grace_s: float = 5.0) -> None:
    """Terminate the given psutil processes that are still running; kill those that linger."""
    import psutil

    alive = [p for p in processes if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, lingering = psutil.wait_procs(alive, timeout=grace_s)
    for p in lingering:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


_HEAD: RayHead | None = None


def shared_ray_head(config: pytest.Config) -> RayHead:
    """The session's head, started on first use; its token is exported while it runs."""
    global _HEAD
    if _HEAD is None:
        head = start_ray_head()
        patch = pytest.MonkeyPatch()
        for key, value in head.env.items():
            patch.setenv(key, value)

        def stop() -> None:
            global _HEAD
            patch.undo()
            stop_ray_head(head)
            _HEAD = None

        config.add_cleanup(stop)
        _HEAD = head
    return _HEAD
