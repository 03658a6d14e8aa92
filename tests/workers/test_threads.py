"""A worker process runs beside one per core: its BLAS keeps to ``cpu_threads`` (ROOMCAST_CPU_THREADS), in the
in-process run's pool and in a Celery worker's pool processes, for numpy's OpenBLAS and for one loaded later
(scipy's, which clustering pulls in)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workers.config import Settings
from workers.runner import worker_pool

ROOT = Path(__file__).resolve().parents[2]


def blas_threads() -> dict[str, int]:
    """Each loaded BLAS library and its thread count, after scipy's has been loaded too."""
    import scipy.linalg  # noqa: F401
    import threadpoolctl

    return {info["filepath"]: info["num_threads"] for info in threadpoolctl.threadpool_info()
            if info["user_api"] == "blas"}


@pytest.mark.parametrize("threads", [1, 2])
def test_the_runners_worker_processes_hold_their_blas_to_cpu_threads(threads: int) -> None:
    with worker_pool(Settings(cpu_threads=threads), 2) as pool:
        found = [pool.submit(blas_threads).result() for _ in range(2)]
    for libraries in found:
        assert len(libraries) == 2, libraries  # numpy's OpenBLAS and scipy's
        assert set(libraries.values()) == {threads}, libraries


def test_a_celery_pool_process_holds_its_blas_to_cpu_threads() -> None:
    """What Celery does in each prefork pool process as it starts (``worker_process_init``), in a fresh process
    whose BLAS starts with two threads."""
    code = (
        "import json\n"
        "from celery import signals\n"
        "from workers import tasks\n"
        "from workers.config import Settings\n"
        "from tests.workers.test_threads import blas_threads\n"
        "before = blas_threads()\n"
        "tasks.configure(Settings(cpu_threads=1))\n"
        "signals.worker_process_init.send(sender=None)\n"
        "print(json.dumps([before, blas_threads()]))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = json.loads(done.stdout.splitlines()[-1])
    assert set(before.values()) == {2}, before
    assert set(after.values()) == {1}, after
