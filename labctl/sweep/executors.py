"""Where cells run: local processes (the default) or a Dask distributed cluster.

Both run :func:`labctl.sweep.runner.run_attempt` (a cell's run as a subprocess) and give
futures with ``done()`` and ``result()``. Local: a pool of ``jobs`` threads in this
process, each waiting on one cell's subprocess (no new dependency). Dask: a scheduler at
an address (``--scheduler``, e.g. one started on SLURM with dask-jobqueue) or a
``LocalCluster`` of ``jobs`` single-threaded worker processes (``--executor dask``); the
sweep directory must be on a filesystem the workers share.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from typing import Any

from labctl.sweep.runner import run_attempt

DASK_MISSING = (
    "the Dask executor needs dask.distributed, which is not installed: "
    "pip install 'labctl[dask]' (or pip install 'dask[distributed]')"
)


def default_jobs() -> int:
    return os.cpu_count() or 1


class LocalExecutor:
    """``jobs`` cells at a time, each a subprocess of this process."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise ValueError(f"-j must be at least 1, got {jobs}")
        self.jobs = jobs
        self._pool = cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep-cell")

    def capacity(self) -> int:
        return self.jobs

    def submit(self, spec: dict, key: str) -> cf.Future:
        return self._pool.submit(run_attempt, spec)

    def wait(self, futures: list[Any], timeout_s: float) -> set[Any]:
        done, _ = cf.wait(futures, timeout=timeout_s, return_when=cf.FIRST_COMPLETED)
        return set(done)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class DaskExecutor:
    """Cells as Dask tasks: on the scheduler at ``address``, or on a LocalCluster of
    ``jobs`` worker processes with one thread each."""

    name = "dask"

    def __init__(self, address: str | None, jobs: int) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise RuntimeError(DASK_MISSING) from None
        self._cluster = None
        if address is None:
            import logging

            # labctl's root handler would print distributed's INFO chatter on stderr.
            logging.getLogger("distributed").setLevel(logging.WARNING)
            self._cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=logging.WARNING)
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(address, timeout="20s")
            except OSError as exc:
                raise RuntimeError(f"--scheduler {address}: cannot reach it: {exc}") from None
        self.address = self._client.scheduler.address

    def capacity(self) -> int:
        """Worker threads on the cluster now (at least 1, so a scaling cluster starts)."""
        workers = self._client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def submit(self, spec: dict, key: str) -> Any:
        return self._client.submit(run_attempt, spec, key=key, pure=False)

    def wait(self, futures: list[Any], timeout_s: float) -> set[Any]:
        from distributed import wait

        try:
            done, _ = wait(futures, timeout=timeout_s, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return set(done)

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(kind: str, jobs: int, scheduler: str | None) -> LocalExecutor | DaskExecutor:
    if scheduler is not None or kind == "dask":
        return DaskExecutor(scheduler, jobs)
    if kind != "local":
        raise ValueError(f"--executor must be local or dask, got {kind!r}")
    return LocalExecutor(jobs)
