"""Suite-wide settings: how many xdist workers ``-n auto`` starts.

pytest-xdist counts physical cores with psutil where it can; in a container that count is
the host's, not what the container may use, and a worker per host core on two usable ones
runs every module fixture many times over and starves the subprocesses the tests wait on.
Here ``auto`` is the CPUs this process may run on: its affinity, capped by a cgroup quota.
``PYTEST_XDIST_AUTO_NUM_WORKERS`` still overrides it (xdist reads it first).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 or v1 quota."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quotas = []
    v2 = Path("/sys/fs/cgroup/cpu.max")
    if v2.is_file():
        quota, _, period = v2.read_text().partition(" ")
        if quota != "max":
            quotas.append(int(quota) / int(period))
    v1 = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    quota_us = int(v1.read_text()) if v1.is_file() else -1
    if quota_us > 0:
        quotas.append(quota_us / int(Path(v1.parent, "cpu.cfs_period_us").read_text()))
    return max(1, min([count or 1, *(math.ceil(q) for q in quotas)]))


def pytest_xdist_auto_num_workers(config) -> int:
    return usable_cpus()


def pytest_report_header(config) -> str:
    return f"usable CPUs: {usable_cpus()} (os.cpu_count() {os.cpu_count()})"
