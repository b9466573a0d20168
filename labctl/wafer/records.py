"""A wafer scan read back from its session: dies, devices and pairs as measured.

``labctl wafer scan`` records every die as Bluesky documents through
:mod:`labctl.records.session` as it is measured (nothing is kept only in memory); this
module builds :class:`WaferScan` from those documents alone. Streams (every event carries
the die ``die_x``, ``die_y`` and the ``attempt`` it belongs to, a string unique per pass over
that die, so a die measured again after a kill or a resume is told apart from the first,
half-finished pass):

``die``
    one event per die pass that ended: ``status`` ("done" | "failed" | "skipped"),
    ``started_s`` (s since the epoch), ``duration_s`` (s), ``reason`` ("" when done).
``device_iv``
    one event per device and bias mode: ``pair`` (1-based), ``device`` ("A" | "B"),
    ``contact_ok``, ``r_low_ohm`` (low-bias resistance, Ohm; NaN when open), ``iv_mode``
    ("current" | "voltage"), arrays ``iv_current_a`` (A), ``iv_voltage_v`` (V),
    ``compliance_hit`` (bool per point).
``device_iv_voltage``
    the same for the voltage-bias I-V (``iv_mode`` "voltage"; a stream of its own as its
    arrays have another length).
``pair_fd``
    one event per pair: ``pair``, ``recommended_di_a`` (A), arrays ``fd_steps_a`` (A), one
    median |relative error| array per finite-difference mode (``fd_error_<mode>``, modes in
    :data:`FD_MODES`), ``fd_current_a`` (A) and ``dvdi_ohm`` (Ohm, the swap estimate at the
    recommended dI at those currents).

Reading rule: per die, the last pass that has a ``die`` event wins, "done" before
"failed"; a pass without one (killed mid-die) is dropped when a later or a finished pass of
that die exists, else kept as "failed" (what it measured is not lost). So no die appears
twice in :attr:`WaferScan.dies`.

``wafer_map``
    one event: the dies scanned, in order (arrays ``die_x``, ``die_y``), and ``source``
    ("prober", "station file" or the map file's path) -- known only once the prober has
    been asked, so it is not in the start document.

:attr:`WaferScan.station` is the start document's ``config["wafer"]`` (``seed`` and
``preset`` (variability) of a simulated station, None on hardware; ``limits`` per pair;
``settings``: NPLC and the sweeps' points, see :class:`labctl.wafer.scan.ScanSettings`;
``dies``: the ``--dies`` asked for, None for all) plus ``map``: [[col, row], ...] from
the ``wafer_map`` stream and ``map_source``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from labctl.records.session import RecordError, Session

STREAM_DIE = "die"
STREAM_DEVICE = "device_iv"
STREAM_DEVICE_VOLTAGE = "device_iv_voltage"  # same keys; its sweeps have their own length
STREAM_PAIR = "pair_fd"
STREAM_MAP = "wafer_map"
#: Finite-difference modes of the derivative scan: forward raw, forward with the dI = 0
#: offset subtracted, swap (as ``labctl fd-scan``).
FD_MODES = ("forward_raw", "forward_cal", "swap")
DIE_STATUSES = ("done", "failed", "skipped")


@dataclass
class DeviceScan:
    """One device's measurement in one bias mode. Units: A, V, Ohm."""

    pair: int  # 1-based
    device: str  # "A" | "B"
    contact_ok: bool
    r_low_ohm: float  # low-bias resistance (Ohm); NaN when open
    iv_current_a: np.ndarray  # current through the device at each point (A)
    iv_voltage_v: np.ndarray  # voltage across it (V)
    iv_mode: str  # "current" (current bias) | "voltage" (voltage bias)
    compliance_hit: np.ndarray  # bool per point: the SMU was at its compliance


@dataclass
class PairScan:
    """One pair's derivative scan. Units: A, Ohm."""

    pair: int
    fd_steps_a: np.ndarray  # dI tried (A)
    fd_error: dict[str, np.ndarray]  # mode -> median |relative error| per dI (FD_MODES)
    recommended_di_a: float  # the dI with the smallest swap error (A); NaN if none valid
    dvdi_ohm: np.ndarray  # swap dV/dI at recommended_di_a (Ohm), NaN where invalid
    fd_current_a: np.ndarray  # the test currents of dvdi_ohm (A)


@dataclass
class DieScan:
    """One die: what its (kept) pass measured."""

    die: tuple[int, int]
    status: str  # "done" | "failed" | "skipped"
    devices: list[DeviceScan] = field(default_factory=list)
    pairs: list[PairScan] = field(default_factory=list)
    started_s: float = math.nan  # s since the epoch
    duration_s: float = math.nan  # s
    reason: str = ""  # why it failed or was skipped
    attempt: str = ""

    def device(self, pair: int, device: str, mode: str = "current") -> DeviceScan | None:
        """The scan of ``device`` of ``pair`` in bias ``mode``, None if not measured."""
        for d in self.devices:
            if d.pair == pair and d.device == device and d.iv_mode == mode:
                return d
        return None

    def pair(self, pair: int) -> PairScan | None:
        for p in self.pairs:
            if p.pair == pair:
                return p
        return None


@dataclass
class WaferScan:
    """A wafer scan session read back: dies in the order they were first measured."""

    path: str
    dies: list[DieScan]
    station: dict  # config["wafer"] of the start document
    status: str  # the session's last exit status, "interrupted" without a stop document

    def die(self, die: tuple[int, int]) -> DieScan | None:
        for d in self.dies:
            if d.die == tuple(die):
                return d
        return None


DIE_KEYS = {"die_x": "number", "die_y": "number", "attempt": "string", "status": "string",
            "started_s": "number", "duration_s": "number", "reason": "string"}
DEVICE_KEYS = {"die_x": "number", "die_y": "number", "attempt": "string", "pair": "number",
               "device": "string", "contact_ok": "boolean", "r_low_ohm": "number",
               "iv_mode": "string", "iv_current_a": "external", "iv_voltage_v": "external",
               "compliance_hit": "external"}
PAIR_KEYS = {"die_x": "number", "die_y": "number", "attempt": "string", "pair": "number",
             "recommended_di_a": "number", "fd_steps_a": "external",
             "fd_current_a": "external", "dvdi_ohm": "external",
             **{f"fd_error_{m}": "external" for m in FD_MODES}}


def _die_of(row: dict) -> tuple[int, int]:
    return int(row["die_x"]), int(row["die_y"])


def read_scan(session_dir: str | os.PathLike) -> WaferScan:
    """The wafer scan recorded in ``session_dir`` (see the module docstring for the rule
    that keeps one pass per die). Raises :class:`RecordError` naming the session when it
    is not a wafer scan or its streams lack a key."""
    session = Session(session_dir)
    if STREAM_MAP in session.descriptors:
        rows = session.events(STREAM_MAP, fill=True)
        if rows:
            last = rows[-1]
            wafer_map = [[int(c), int(r)] for c, r in zip(last["die_x"], last["die_y"],
                                                          strict=True)]
        else:
            wafer_map = None
    else:
        wafer_map = None
    if session.start.get("plan_name") != "wafer-scan":
        raise RecordError(f"{session_dir}: not a wafer scan session "
                          f"(command {session.start.get('plan_name')!r})")
    wafer = dict(session.start.get("config", {}).get("wafer", {}))
    if wafer_map is not None:
        wafer["map"] = wafer_map
        wafer["map_source"] = str(rows[-1]["source"])
    present = set(session.descriptors)
    for name, keys in ((STREAM_DIE, DIE_KEYS), (STREAM_DEVICE, DEVICE_KEYS),
                       (STREAM_DEVICE_VOLTAGE, DEVICE_KEYS), (STREAM_PAIR, PAIR_KEYS)):
        if name in present:
            session.check_stream(name, keys)
    # attempt -> its die, in order of first appearance
    order: dict[str, tuple[int, int]] = {}
    ends: dict[str, dict] = {}
    devices: dict[str, list[DeviceScan]] = {}
    pairs: dict[str, list[PairScan]] = {}
    device_rows = [row for name in (STREAM_DEVICE, STREAM_DEVICE_VOLTAGE) if name in present
                   for row in session.events(name, fill=True)]
    if device_rows:
        for row in device_rows:
            order.setdefault(row["attempt"], _die_of(row))
            devices.setdefault(row["attempt"], []).append(DeviceScan(
                pair=int(row["pair"]), device=str(row["device"]),
                contact_ok=bool(row["contact_ok"]), r_low_ohm=float(row["r_low_ohm"]),
                iv_current_a=np.asarray(row["iv_current_a"], dtype=float),
                iv_voltage_v=np.asarray(row["iv_voltage_v"], dtype=float),
                iv_mode=str(row["iv_mode"]),
                compliance_hit=np.asarray(row["compliance_hit"], dtype=bool)))
    if STREAM_PAIR in present:
        for row in session.events(STREAM_PAIR, fill=True):
            order.setdefault(row["attempt"], _die_of(row))
            pairs.setdefault(row["attempt"], []).append(PairScan(
                pair=int(row["pair"]),
                fd_steps_a=np.asarray(row["fd_steps_a"], dtype=float),
                fd_error={m: np.asarray(row[f"fd_error_{m}"], dtype=float) for m in FD_MODES},
                recommended_di_a=float(row["recommended_di_a"]),
                dvdi_ohm=np.asarray(row["dvdi_ohm"], dtype=float),
                fd_current_a=np.asarray(row["fd_current_a"], dtype=float)))
    if STREAM_DIE in present:
        for row in session.events(STREAM_DIE):
            order.setdefault(row["attempt"], _die_of(row))
            ends[row["attempt"]] = row
    # Pick one pass per die: the last ended "done", else the last ended, else the last.
    by_die: dict[tuple[int, int], list[str]] = {}
    for attempt, die in order.items():
        by_die.setdefault(die, []).append(attempt)
    dies = []
    for die, attempts in by_die.items():
        done = [a for a in attempts if a in ends and ends[a]["status"] == "done"]
        ended = [a for a in attempts if a in ends]
        chosen = (done or ended or attempts)[-1]
        end = ends.get(chosen)
        if end is None:
            scan = DieScan(die, "failed", reason="interrupted before the die was finished")
        else:
            scan = DieScan(die, str(end["status"]), started_s=float(end["started_s"]),
                           duration_s=float(end["duration_s"]), reason=str(end["reason"]))
        scan.attempt = chosen
        scan.devices = devices.get(chosen, [])
        scan.pairs = pairs.get(chosen, [])
        dies.append(scan)
    status = session.stop["exit_status"] if session.stop else "interrupted"
    return WaferScan(str(session_dir), dies, wafer, status)


def finished_dies(session_dir: str | os.PathLike) -> set[tuple[int, int]]:
    """Dies of a scan session already measured to their end ("done"): a resume skips them."""
    return {d.die for d in read_scan(session_dir).dies if d.status == "done"}
