"""Measured devices from `labctl iv` sessions: the labctl side of simulators.measured_devices.

Units: A, V.

Each `labctl iv --pair K` session holds ``iv.csv`` (columns current_a, v_a_v, v_b_v, ...)
and, in its start document's configuration, the pair K it swept. The curves of devices A
and B of pair K become that pair's measured devices; points the sweep flagged (compliance
or ADC overrange) are left out, since they are not the device's I-V. Several sessions give
several pairs; two sessions of one pair are refused (which one would be the device?).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from labctl.records.session import DOCUMENTS, first_start
from simulators.measured_devices import MeasuredDevices, MeasuredTableError


def _pair_of(session: Path) -> int:
    start = first_start(session)
    if start is None:
        raise MeasuredTableError(f"{session}: not a readable session (no start document in "
                                 f"{session / DOCUMENTS})")
    config = start.get("config") or {}
    if config.get("command") != "iv" or not isinstance(config.get("pair"), int):
        raise MeasuredTableError(f"{session}: not a `labctl iv` session (its start document "
                                 f"records command {config.get('command')!r})")
    return int(config["pair"])


def _iv_points(session: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = session / "iv.csv"
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except OSError as exc:
        raise MeasuredTableError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        good = [r for r in rows if not int(r["compliance"]) and not int(r["overrange"])]
        current = np.array([float(r["current_a"]) for r in good])
        v_a = np.array([float(r["v_a_v"]) for r in good])
        v_b = np.array([float(r["v_b_v"]) for r in good])
    except (KeyError, ValueError) as exc:
        raise MeasuredTableError(f"{path}: not an iv.csv of `labctl iv` ({exc})") from None
    return current, v_a, v_b


def measured_from_iv_sessions(sessions: list[str | Path], source: str) -> MeasuredDevices:
    """The measured devices of ``sessions`` (session directories of `labctl iv`); ``source``
    names them in errors (e.g. the station file and key)."""
    data: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
    seen: dict[int, Path] = {}
    for entry in sessions:
        session = Path(entry)
        pair = _pair_of(session)
        if pair in seen:
            raise MeasuredTableError(
                f"{source}: sessions {seen[pair]} and {session} both sweep pair {pair}")
        seen[pair] = session
        current, v_a, v_b = _iv_points(session)
        data[(pair, "A")] = (current, v_a)
        data[(pair, "B")] = (current, v_b)
    return MeasuredDevices.from_arrays(data, source)
