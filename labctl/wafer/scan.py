"""Measuring a wafer die by die: the prober's moves, and what is measured on each die.

On each die (:func:`scan_die`), within each pair's limits (the engine's safety envelope
checks every sweep before an instrument sees it):

1. contact: the chuck is brought up and the prober must report contact;
2. per pair, a low-bias current sweep of both devices (``low_points`` currents within
   +-``low_fraction`` x max_current_a): the low-bias resistance of each device (a
   least-squares V/I slope; NaN, and ``contact_ok`` False, when the device reads at its
   voltage compliance: open);
3. per pair, the current-bias I-V of both devices over +-max_current_a (``iv_points``);
4. per pair, the derivative scan (as ``labctl fd-scan``, with the I-V sweep as reference):
   the dI = 0 calibration, then for each dI of ``fd_steps_a`` the median |relative error|
   of forward raw, forward calibrated and swap estimates at ``fd_points`` test currents
   (all three from one swap-mode sweep, see :func:`forward_and_swap`); the dI with the
   smallest swap error is recommended, and its swap dV/dI kept;
5. where the SMU channels source voltage (every driver labctl has), a host-paced
   voltage-bias I-V of each device (``voltage_points`` levels within +-compliance_v, and
   within 0.6 x max_current_a x the device's low-bias resistance, so the current
   compliance = max_current_a is reached only by a device below it).

Each pair's results are written as events as soon as they are measured (streams of
:mod:`labctl.wafer.records`); the die's ``die`` event closes it. Between dies every
output is brought to zero and off (confirmed), then the chuck is separated before it
moves: the prober never moves in contact (and refuses to). Per-device compliance is not
in a paired sweep's readings (they flag a point where either SMU was in compliance), so
a device is taken to be in compliance at the points so flagged where it reads within 2 %
of the compliance voltage. Units: A, V, Ohm, s.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from instruments.ramps import ramp_levels
from instruments.transport import InstrumentError
from labctl.commands.fd_scan import local_slope
from labctl.records.session import SessionWriter, data_key
from labctl.station.runtime import Station
from labctl.wafer import records
from protocols.engine import Engine
from protocols.finite_difference import Calibration, calibrate, iv_sweep
from protocols.intents import Sweep

COMPLIANCE_FRACTION = 0.98  # |V| at or above this fraction of compliance_v: in compliance
VOLTAGE_FRACTION = 0.6  # voltage-bias span: this x max_current_a x R_low


class WaferScanError(ValueError):
    """Bad input, found before any motion: the message names what is wrong."""


class ProberFault(InstrumentError):
    """The prober reported an error or lost contact; the message names the die."""


@dataclass(frozen=True)
class ScanSettings:
    """What is measured on each die (see the module docstring). Currents in A."""

    nplc: float = 1.0
    low_points: int = 5
    low_fraction: float = 0.05
    iv_points: int = 101
    fd_steps_a: tuple[float, ...] = (0.5e-6, 1e-6, 2e-6)
    fd_points: int = 11
    cal_points: int = 41
    voltage_points: int = 11  # 0: no voltage-bias I-V

    def check(self) -> None:
        """ValueError naming the option for a setting that cannot be measured."""
        if not 0.01 <= self.nplc <= 10:
            raise WaferScanError(f"--nplc must be in 0.01..10, got {self.nplc!r}")
        for name, low in (("low_points", 2), ("iv_points", 9), ("fd_points", 2),
                          ("cal_points", 2)):
            if getattr(self, name) < low:
                raise WaferScanError(f"--{name.replace('_', '-')} must be at least {low}, "
                                     f"got {getattr(self, name)}")
        if self.voltage_points not in (0,) and self.voltage_points < 2:
            raise WaferScanError(f"--voltage-points must be 0 or at least 2, got "
                                 f"{self.voltage_points}")
        if not 0 < self.low_fraction <= 0.5:
            raise WaferScanError(f"low_fraction must be in (0, 0.5], got {self.low_fraction}")
        if not self.fd_steps_a or any(not (s > 0 and math.isfinite(s)) for s in self.fd_steps_a):
            raise WaferScanError(f"--fd-steps must be positive currents, got {self.fd_steps_a}")

    def record(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


Die = tuple[int, int]


def parse_dies(text: str) -> list[Die]:
    """``"2:1,3:1"`` -> [(2, 1), (3, 1)] (col:row, 1-based); WaferScanError otherwise."""
    out: list[Die] = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            die = (int(parts[0]), int(parts[1]))
        except ValueError:
            raise WaferScanError(f"--dies: {item.strip()!r} is not col:row (e.g. 2:1)") from None
        if die in out:
            raise WaferScanError(f"--dies: die {die[0]}:{die[1]} is given twice")
        out.append(die)
    return out


def check_map(prober_map: list[Die], wanted: list[Die] | None, source: str) -> list[Die]:
    """The dies to scan, in order: ``wanted`` (from ``source``, a file or the station file)
    if it is the prober's map exactly (the same dies, any order), else the prober's own.
    WaferScanError naming the dies one has and the other lacks."""
    if wanted is None:
        return list(prober_map)
    missing, extra = sorted(set(wanted) - set(prober_map)), sorted(set(prober_map) - set(wanted))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{_dies_text(missing)} not on the prober's map")
        if extra:
            parts.append(f"the prober's map also has {_dies_text(extra)}")
        raise WaferScanError(f"{source}: the wafer map does not match the prober's "
                             f"({len(wanted)} dies against {len(prober_map)}): "
                             f"{'; '.join(parts)}")
    return list(wanted)


def check_dies(dies: list[Die], prober_map: list[Die]) -> None:
    """Refuse (WaferScanError) any die of ``--dies`` the prober's map does not hold."""
    refused = [d for d in dies if d not in prober_map]
    if refused:
        raise WaferScanError(f"--dies: the prober has no die {_dies_text(refused)} "
                             f"(its map: {len(prober_map)} dies, e.g. "
                             f"{_dies_text(prober_map[:4])})")


def _dies_text(dies: list[Die]) -> str:
    return ", ".join(f"{c}:{r}" for c, r in dies)


def declare_streams(writer: SessionWriter, settings: ScanSettings, n_steps: int) -> dict:
    """The scan's streams (descriptor uids by name): die, device_iv, device_iv_voltage,
    pair_fd."""
    src = "labctl.wafer"
    die_keys = {"die_x": data_key(src, "integer"), "die_y": data_key(src, "integer"),
                "attempt": data_key(src, "string")}
    arr = (None,)
    device_keys = {
        **die_keys, "pair": data_key(src, "integer"), "device": data_key(src, "string"),
        "contact_ok": data_key(src, "boolean"), "r_low_ohm": data_key(src, units="Ohm"),
        "iv_mode": data_key(src, "string"),
        "iv_current_a": data_key("smu", "array", "A", arr, external=True),
        "iv_voltage_v": data_key("smu", "array", "V", arr, external=True),
        "compliance_hit": data_key("smu", "array", "", arr, external=True)}
    return {
        records.STREAM_DIE: writer.stream(records.STREAM_DIE, primary=True, data_keys={
            **die_keys, "status": data_key(src, "string"),
            "started_s": data_key(src, units="s"), "duration_s": data_key(src, units="s"),
            "reason": data_key(src, "string")}),
        **{name: writer.stream(name, device_keys)
           for name in (records.STREAM_DEVICE, records.STREAM_DEVICE_VOLTAGE)},
        records.STREAM_PAIR: writer.stream(records.STREAM_PAIR, {
            **die_keys, "pair": data_key(src, "integer"),
            "recommended_di_a": data_key(src, units="A"),
            "fd_steps_a": data_key(src, "array", "A", (n_steps,), external=True),
            "fd_current_a": data_key(src, "array", "A", (settings.fd_points,), external=True),
            "dvdi_ohm": data_key("adc", "array", "Ohm", (settings.fd_points,), external=True),
            **{f"fd_error_{m}": data_key(src, "array", "", (n_steps,), external=True)
               for m in records.FD_MODES}}),
    }


def record_map(writer: SessionWriter, dies: list[Die], source: str) -> None:
    """The wafer map scanned, as one ``wafer_map`` event (the reader's station["map"])."""
    stream = writer.stream(records.STREAM_MAP, {
        "die_x": data_key("labctl.wafer", "array", "", (len(dies),), external=True),
        "die_y": data_key("labctl.wafer", "array", "", (len(dies),), external=True),
        "source": data_key("labctl.wafer", "string")})
    writer.event(stream, {"die_x": np.array([d[0] for d in dies]),
                          "die_y": np.array([d[1] for d in dies]), "source": source})


# -- motion ------------------------------------------------------------------------------
def _prober(station: Station, die: Die, what: str, call: Callable):
    """A prober call; any error becomes ProberFault naming the die and the step."""
    try:
        return call()
    except InstrumentError as exc:
        raise ProberFault(f"die {die[0]}:{die[1]}: prober error while {what}: {exc}") from exc


def outputs_off(station: Station, die: Die) -> None:
    """Every output at zero and off, ADC disarmed, matrix open, confirmed; else an
    InstrumentError naming the die and what could not be confirmed."""
    report = station.safe_shutdown()
    if not report.confirmed:
        raise InstrumentError(f"die {die[0]}:{die[1]}: outputs not confirmed off: "
                              + "; ".join(report.problems))


def move_to(station: Station, die: Die) -> None:
    """Outputs off, separate, step to ``die``, contact; the prober must report the die
    and contact. Never an xy move in contact: separation is confirmed first."""
    prober = station.prober
    outputs_off(station, die)
    _prober(station, die, "separating", prober.separate)
    if _prober(station, die, "reading the chuck state", prober.in_contact):
        raise ProberFault(f"die {die[0]}:{die[1]}: the prober still reports contact after "
                          "separating; not moving")
    reached = _prober(station, die, "stepping", lambda: prober.move_to_die(*die))
    if tuple(reached) != tuple(die):
        raise ProberFault(f"die {die[0]}:{die[1]}: the prober stepped to {reached[0]}:"
                          f"{reached[1]} instead")
    _prober(station, die, "contacting", prober.contact)
    if not _prober(station, die, "reading the chuck state", prober.in_contact):
        raise ProberFault(f"die {die[0]}:{die[1]}: no contact after move_chuck_contact")


def check_contact(station: Station, die: Die) -> None:
    """ProberFault if the prober no longer reports contact (the die's data would be of
    nothing)."""
    if not _prober(station, die, "reading the chuck state", station.prober.in_contact):
        raise ProberFault(f"die {die[0]}:{die[1]}: the prober lost contact")


def park(station: Station) -> list[str]:
    """At the end or after a fault: outputs off (confirmed), then the chuck separated.
    Returns what could not be done (each named), never raises."""
    problems = []
    report = station.safe_shutdown()
    problems += list(report.problems)
    if report.confirmed and station.prober is not None:  # never lift off with a source on
        try:
            station.prober.separate()
            if station.prober.in_contact():
                problems.append("prober: still in contact after separating")
        except Exception as exc:  # noqa: BLE001 - report it, the caller raises the cause
            problems.append(f"prober: could not separate: {exc}")
    return problems


# -- measurement -------------------------------------------------------------------------
def _device_compliance(flags: np.ndarray, v: np.ndarray, compliance_v: float) -> np.ndarray:
    return flags & (np.abs(v) >= COMPLIANCE_FRACTION * compliance_v)


def low_bias_resistance(i: np.ndarray, v: np.ndarray, hit: np.ndarray) -> float:
    """Least-squares slope V/I through the origin (Ohm) of the points not in compliance;
    NaN with fewer than two."""
    ok = ~hit & (i != 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.sum(v[ok] * i[ok]) / np.sum(i[ok] ** 2))


def _median_rel_error(estimate: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> float:
    ok = valid & np.isfinite(estimate) & (reference != 0)
    if not ok.any():
        return math.nan
    return float(np.median(np.abs(estimate[ok] / reference[ok] - 1)))


@dataclass
class DieContext:
    """One pass over one die: what it writes to and how."""

    station: Station
    writer: SessionWriter
    streams: dict
    die: Die
    attempt: str
    settings: ScanSettings

    def keys(self) -> dict:
        return {"die_x": self.die[0], "die_y": self.die[1], "attempt": self.attempt}


def _measure_pair(ctx: DieContext, engine: Engine, pair: int) -> dict[str, float]:
    """Low bias, current I-V and derivative scan of ``pair``; writes its events. Returns
    each device's low-bias resistance (Ohm) by "A"/"B"."""
    s, limits = ctx.settings, ctx.station.wiring.pair(pair).limits
    i_max, v_comp = limits.max_current_a, limits.compliance_v
    low_i = np.linspace(-s.low_fraction * i_max, s.low_fraction * i_max, s.low_points)
    low = engine.run(iv_sweep(pair, low_i))
    iv_i = np.linspace(-i_max, i_max, s.iv_points)
    iv = engine.run(iv_sweep(pair, iv_i))
    r_low = {}
    for device, v_low, v_iv in (("A", low.v_a, iv.v_a), ("B", low.v_b, iv.v_b)):
        low_hit = _device_compliance(low.compliance, v_low, v_comp)
        r_low[device] = low_bias_resistance(low_i, v_low, low_hit)
        ctx.writer.event(ctx.streams[records.STREAM_DEVICE], {
            **ctx.keys(), "pair": pair, "device": device,
            "contact_ok": bool(math.isfinite(r_low[device])), "r_low_ohm": r_low[device],
            "iv_mode": "current", "iv_current_a": iv_i, "iv_voltage_v": v_iv,
            "compliance_hit": _device_compliance(iv.compliance, v_iv, v_comp)})
    _derivative_scan(ctx, engine, pair, iv_i, iv)
    return r_low


def _derivative_scan(ctx: DieContext, engine: Engine, pair: int, iv_i: np.ndarray,
                     iv) -> None:
    s = ctx.settings
    i_max = ctx.station.wiring.pair(pair).limits.max_current_a
    steps = np.asarray(s.fd_steps_a, dtype=float)
    ok = ~iv.compliance
    slope = np.full(len(iv_i), np.nan)
    if ok.sum() >= 9:  # the reference dV/dI of device A, as labctl fd-scan takes it
        slope[ok] = local_slope(iv_i[ok], iv.v_a[ok])[0]
    cal = engine.run(calibrate([pair], i_max, points=s.cal_points))
    test_i = np.linspace(-0.8 * i_max, 0.8 * i_max - steps.max(), s.fd_points)
    ref = np.interp(test_i, iv_i[ok], slope[ok]) if ok.sum() >= 9 else np.full(s.fd_points,
                                                                             np.nan)
    errors = {m: np.full(len(steps), np.nan) for m in records.FD_MODES}
    swaps = []
    for j, di in enumerate(steps):
        fd = engine.run(forward_and_swap(pair, test_i, di, cal))
        for mode in records.FD_MODES:
            errors[mode][j] = _median_rel_error(fd[mode], ref, fd["valid"])
        swaps.append(np.where(fd["valid"], fd["swap"], np.nan))
    swap_err = errors["swap"]
    best = int(np.nanargmin(swap_err)) if np.isfinite(swap_err).any() else None
    ctx.writer.event(ctx.streams[records.STREAM_PAIR], {
        **ctx.keys(), "pair": pair,
        "recommended_di_a": float(steps[best]) if best is not None else math.nan,
        "fd_steps_a": steps, "fd_current_a": test_i,
        "dvdi_ohm": swaps[best] if best is not None else np.full(s.fd_points, np.nan),
        **{f"fd_error_{m}": errors[m] for m in records.FD_MODES}})


def forward_and_swap(pair: int, currents: np.ndarray, di: float, cal: Calibration):
    """Plan: the swap-mode sweep of :func:`protocols.finite_difference.fd_batch` (A at I and
    B at I + dI, then the roles exchanged, in one list sweep), and from its first half,
    which is the forward-mode sweep point for point, the forward estimates too: raw and
    with the dI = 0 calibration subtracted. One sweep instead of three, so every mode is
    estimated from the same readings. Returns dV/dI (Ohm) per mode and ``valid`` (no
    compliance or overrange in either half)."""
    n = len(currents)
    r = yield Sweep(pair, np.concatenate([currents, currents + di]),
                    np.concatenate([currents + di, currents]), label="fd-swap")
    first, second = r.v_diff[:n], r.v_diff[n:]
    return {"forward_raw": first / di,
            "forward_cal": (first - cal.offset_at(pair, currents)) / di,
            "swap": (first - second) / (2 * di),
            "valid": r.valid[:n] & r.valid[n:]}


def _voltage_iv(ctx: DieContext, pair: int, device: str, r_low: float) -> None:
    """Host-paced voltage-bias I-V of one device (its pair connected, the other device's
    SMU at 0 A); back to a current source at 0 A afterwards. Writes its event."""
    station, s = ctx.station, ctx.settings
    w = station.wiring.pair(pair)
    limits, ratings = w.limits, station.wiring.ratings
    smu = station.smu(w.a.smu if device == "A" else w.b.smu)
    r_est = r_low if math.isfinite(r_low) and r_low > 0 else ratings.min_resistance_ohm
    v_max = min(limits.compliance_v, VOLTAGE_FRACTION * limits.max_current_a * r_est,
                smu.voltage_cap_v)
    levels = np.linspace(-v_max, v_max, s.voltage_points)
    step_v = min(smu.ramp_step_v, limits.ramp_step_a * max(r_est, 1.0))
    currents, volts, hits = [], [], []
    station.connect_pair(pair)
    smu.prepare_voltage_source(compliance_a=limits.max_current_a, nplc=s.nplc)
    present: float | None = 0.0  # prepare_voltage_source leaves it at 0 V
    try:
        for level in levels:
            # Every level since 0 V was set here, so the ramp needs no read-back: steps of
            # at most step_v written one by one (the driver's validator still caps each).
            steps, present = ramp_levels(present, step_v, float(level)), None
            for value in steps:
                smu.source_voltage = value
            present = float(level)
            reading = smu.measure_once()
            volts.append(float(reading.voltage[0]))
            currents.append(float(reading.current[0]))
            hits.append(bool(reading.compliance[0]))
    finally:
        if present is None:  # cut short mid-ramp: read the level back and ramp from it
            smu.ramp_voltage_to(0.0, step_v)
        else:
            for value in ramp_levels(present, step_v, 0.0):
                smu.source_voltage = value
        smu.prepare_current_source(compliance_v=limits.compliance_v, nplc=s.nplc)
    ctx.writer.event(ctx.streams[records.STREAM_DEVICE_VOLTAGE], {
        **ctx.keys(), "pair": pair, "device": device,
        "contact_ok": bool(math.isfinite(r_low)), "r_low_ohm": r_low, "iv_mode": "voltage",
        "iv_current_a": np.array(currents), "iv_voltage_v": np.array(volts),
        "compliance_hit": np.array(hits, dtype=bool)})


def scan_die(station: Station, writer: SessionWriter, streams: dict, die: Die,
             settings: ScanSettings, on_pair: Callable[[int], None] | None = None) -> str:
    """One pass over ``die``: move there, measure every pair, close it with a ``die``
    event ("done"; "failed" with the reason if anything raised, which is re-raised).
    Returns the attempt id."""
    ctx = DieContext(station, writer, streams, die, uuid.uuid4().hex[:12], settings)
    started, t0 = time.time(), time.monotonic()
    try:
        move_to(station, die)
        pairs = sorted(station.wiring.pairs)
        r_low: dict[int, dict[str, float]] = {}
        engine = Engine(station, nplc=settings.nplc)
        for pair in pairs:
            r_low[pair] = _measure_pair(ctx, engine, pair)
            if on_pair is not None:
                on_pair(pair)
            check_contact(station, die)  # a lost contact stops the die at the pair it hit
        if settings.voltage_points:
            for pair in pairs:
                w = station.wiring.pair(pair)
                for device, ch in (("A", w.a.smu), ("B", w.b.smu)):
                    if hasattr(station.smu(ch), "prepare_voltage_source"):
                        _voltage_iv(ctx, pair, device, r_low[pair][device])
        check_contact(station, die)
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        writer.event(streams[records.STREAM_DIE], {
            **ctx.keys(), "status": "failed", "started_s": started,
            "duration_s": time.monotonic() - t0, "reason": reason})
        raise
    writer.event(streams[records.STREAM_DIE], {
        **ctx.keys(), "status": "done", "started_s": started,
        "duration_s": time.monotonic() - t0, "reason": ""})
    return ctx.attempt
