"""`labctl station selftest`: measure the bench's reference resistor through every SMU channel.

Before any device is contacted (the prober, if any, is separated first and the switch
matrix opened), each SMU channel of the wiring measures the station's ``[reference]``
resistor twice: current-sourced (a current source, V/I) and voltage-sourced (a voltage
source with a current compliance, V/I). The test levels stay within the channel's limits,
the smallest of the pairs it biases: a current of at most half ``max_current_a`` whose
voltage across the nominal resistor is at most half ``compliance_v``, a voltage of at most
half ``compliance_v`` that draws at most half ``max_current_a``, the compliances at the
limits themselves (``compliance_v``; ``max_current_a`` for the voltage source, whose
driver is also capped at |V| <= ``compliance_v``), every level ramped in steps whose
current through the resistor stays within ``ramp_step_a``. A table per channel gives the
expected and measured resistance, the relative error and the verdict against the
reference's tolerance (a reading in compliance fails). Every output is ramped to zero,
turned off and confirmed at the end. Every SMU driver labctl has sources voltage (the 2400,
and each channel of a 2602B or B2902A, capped per channel); a driver without a voltage
source gets a "not measured" voltage row, which does not fail the bench.

Identity and error queue of every instrument are checked first (as ``labctl station
check`` does). A station without a ``[reference]`` table is told so, and the command ends
with those checks (exit 0 when they pass). Exit status 1 on any failure.

The self-test is a session like any command's (``labctl.commands.lifecycle``: wire logs,
safe exit on any signal): an ``instrument_check`` stream (a row per instrument) and the
``reference_check`` stream (its primary one, a row per measurement); ``fail`` if anything
failed. Units: A, V, Ohm.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

from instruments.transport import InstrumentError
from labctl.commands.lifecycle import (
    ShutdownNotConfirmed,
    add_station_arguments,
    instrument_session,
    report_problem,
    station_config,
)
from labctl.commands.station_check import check_instruments, table
from labctl.records.session import SessionWriter, data_key
from labctl.station.file import ReferenceResistor, StationConfig
from labctl.station.runtime import Station
from protocols.wiring import Channel, Limits

SOURCE = "labctl.selftest"
REFERENCE_KEYS = {
    "channel": data_key(SOURCE, "string"),
    "source": data_key(SOURCE, "string"),
    "voltage_v": data_key(SOURCE, units="V"),
    "current_a": data_key(SOURCE, units="A"),
    "expected_ohm": data_key(SOURCE, units="Ohm"),
    "measured_ohm": data_key(SOURCE, units="Ohm"),
    "relative_error": data_key(SOURCE),
    "ok": data_key(SOURCE, "boolean"),
    "verdict": data_key(SOURCE, "string"),
}
CHANNEL_HEADER = ("source", "level", "expected (Ohm)", "measured (Ohm)", "error", "verdict")
NPLC = 1.0
FRACTION = 0.5  # of each limit a test level may use


@dataclass(frozen=True)
class Measurement:
    """One measurement of the reference through one channel: the source ("current" or
    "voltage"), its level (A or V), the reading's voltage (V) and current (A), the
    resistance found (Ohm; nan if none) and why it could not be had ("" if it could)."""

    source: str
    level: float
    volts: float
    amps: float
    measured_ohm: float
    problem: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_station_arguments(parser)


def channel_limits(config: StationConfig, channel: Channel) -> Limits:
    """The limits that hold on ``channel``: the smallest of every pair it biases."""
    pairs = [p for p in config.pairs.values() if channel in (p.a.smu, p.b.smu)]
    return Limits(**{
        name: min(getattr(p.limits, name) for p in pairs)
        for name in ("max_current_a", "compliance_v", "ramp_step_a", "pulse_max_v",
                     "pulse_max_current_a")
    })


def levels_for(ohms: float, limits: Limits) -> tuple[float, float]:
    """(test current in A, test voltage in V) for a nominal resistor of ``ohms`` within
    ``limits`` (see the module docstring)."""
    current = FRACTION * min(limits.max_current_a, limits.compliance_v / ohms)
    voltage = FRACTION * min(limits.compliance_v, limits.max_current_a * ohms)
    return current, voltage


def _separate_and_open(station: Station) -> None:
    """No device contacted: the prober separated, every switch channel open."""
    if station.prober is not None and station.prober.in_contact():
        station.prober.separate()
    station.switch.open()


def _current_sourced(smu, ohms: float, limits: Limits) -> Measurement:
    current, _ = levels_for(ohms, limits)
    smu.ramp_to(0.0, limits.ramp_step_a)
    smu.prepare_current_source(compliance_v=limits.compliance_v, nplc=NPLC)
    try:
        smu.ramp_to(current, limits.ramp_step_a)
        reading = smu.measure_once()
    finally:
        smu.ramp_to(0.0, limits.ramp_step_a)
    return _measurement("current", current, float(reading.voltage[0]), current,
                        bool(reading.compliance[0]))


def _voltage_sourced(smu, ohms: float, limits: Limits) -> Measurement:
    _, voltage = levels_for(ohms, limits)
    if not hasattr(smu, "prepare_voltage_source"):
        return Measurement("voltage", voltage, math.nan, math.nan, math.nan,
                           f"not measured: driver {type(smu).__name__} has no voltage source")
    # Through the resistor a voltage step of ramp_step_a * R moves the current by ramp_step_a.
    step_v = min(smu.ramp_step_v, limits.ramp_step_a * ohms)
    smu.limit_voltage_source(max_abs_v=limits.compliance_v,
                             max_compliance_a=limits.max_current_a)
    smu.ramp_to(0.0, limits.ramp_step_a)
    smu.prepare_voltage_source(compliance_a=limits.max_current_a, nplc=NPLC)
    try:
        smu.ramp_voltage_to(voltage, step_v)
        reading = smu.measure_once()
    finally:
        smu.ramp_voltage_to(0.0, step_v)
    return _measurement("voltage", voltage, float(reading.voltage[0]),
                        float(reading.current[0]), bool(reading.compliance[0]))


def _measurement(source: str, level: float, volts: float, amps: float,
                 compliance: bool) -> Measurement:
    if compliance:
        return Measurement(source, level, volts, amps, math.nan,
                           "in compliance (open or wrong load?)")
    if not (math.isfinite(volts) and math.isfinite(amps)) or amps == 0.0:
        return Measurement(source, level, volts, amps, math.nan,
                           f"no resistance from V={volts:g}, I={amps:g}")
    return Measurement(source, level, volts, amps, volts / amps)


def measure_channel(station: Station, channel: Channel, ref: ReferenceResistor
                    ) -> list[Measurement]:
    """Both measurements of the reference through ``channel`` (its switch channel closed
    for them, if it has one); an instrument error becomes a failed measurement."""
    smu = station.smu(channel)
    limits = channel_limits(station.config, channel)
    switch_channel = ref.channels.get(channel)
    out = []
    try:
        if switch_channel is not None:
            station.switch.exclusive_close([switch_channel])
        for measure in (_current_sourced, _voltage_sourced):
            try:
                out.append(measure(smu, ref.ohms, limits))
            except (InstrumentError, ValueError) as exc:
                kind = "current" if measure is _current_sourced else "voltage"
                out.append(Measurement(kind, math.nan, math.nan, math.nan, math.nan,
                                       f"error: {exc}"))
    finally:
        if switch_channel is not None:
            station.switch.open([switch_channel])
    return out


def _verdict(ref: ReferenceResistor, m: Measurement) -> tuple[bool, str, float]:
    """(passed, verdict, relative error) of one measurement; a driver without a voltage
    source is not a failure of the bench."""
    if m.problem:
        return m.problem.startswith("not measured"), f"FAIL: {m.problem}", math.nan
    error = m.measured_ohm / ref.ohms - 1.0
    if abs(error) <= ref.tolerance:
        return True, "pass", error
    return False, f"FAIL: beyond +-{100 * ref.tolerance:g} %", error


def _record(writer: SessionWriter, stream: str, channel: Channel, ref: ReferenceResistor,
            results: list[Measurement]) -> tuple[list[tuple], bool]:
    """The table rows of one channel's measurements (each also an event); True if all
    passed."""
    rows, ok = [], True
    for m in results:
        passed, verdict, error = _verdict(ref, m)
        ok = ok and passed
        unit = "A" if m.source == "current" else "V"
        level = f"{m.level:.4g} {unit}" if math.isfinite(m.level) else "-"
        rows.append((m.source, level, f"{ref.ohms:.6g}",
                     f"{m.measured_ohm:.6g}" if math.isfinite(m.measured_ohm) else "-",
                     f"{100 * error:+.3f} %" if math.isfinite(error) else "-", verdict))
        writer.event(stream, {
            "channel": str(channel), "source": m.source, "voltage_v": m.volts,
            "current_a": m.amps, "expected_ohm": ref.ohms, "measured_ohm": m.measured_ohm,
            "relative_error": error, "ok": passed, "verdict": verdict})
    return rows, ok


def _selftest(station: Station, writer: SessionWriter) -> str:
    """Every check of the self-test; the problem ("" if none), for the session."""
    config = station.config
    failed = check_instruments(station, writer, SOURCE)
    ref = config.reference
    stream = writer.stream("reference_check", REFERENCE_KEYS, primary=True)
    if failed:
        print("reference: not measured (an instrument failed)")
        return f"instrument(s) failed: {', '.join(failed)}"
    if ref is None:
        print("reference: none declared ([reference] table): checked identities and "
              "error queues only")
        return ""
    where = ("hard-wired to every SMU channel" if not ref.channels else
             "via " + ", ".join(f"{ch} {sw}" for ch, sw in sorted(ref.channels.items())))
    print(f"reference: {ref.ohms:.6g} Ohm +-{100 * ref.tolerance:g} %, {where}")
    try:
        _separate_and_open(station)
    except InstrumentError as exc:
        print(f"reference: not measured: {exc}")
        return f"reference not measured: {exc}"
    bad = []
    for channel in config.wiring.smu_channels():
        rows, passed = _record(writer, stream, channel, ref,
                               measure_channel(station, channel, ref))
        print(f"channel {channel}: {'pass' if passed else 'FAIL'}")
        table(CHANNEL_HEADER, rows, indent="  ")
        if not passed:
            bad.append(str(channel))
    return f"reference out of tolerance through {', '.join(bad)}" if bad else ""


def run(args: argparse.Namespace) -> int:
    config = station_config(args)
    print(f"station: {config.name} ({config.source})")
    try:
        with instrument_session(args, "station selftest", {"settings": {}}, seeds={},
                                station_cfg=config, report_failures=True) as run_:
            run_.problem = _selftest(run_.station, run_.writer)
            ref = config.reference
            run_.summary.update(reference_ohm=ref.ohms if ref else None,
                                channels=len(config.wiring.smu_channels()))
            run_.headline = run_.problem or (
                f"reference {ref.ohms:.6g} Ohm ok through every SMU channel" if ref
                else "instruments ok (no reference declared)")
    except ShutdownNotConfirmed as exc:
        print(f"labctl: {exc}", file=sys.stderr)
        return 1
    print("outputs: every SMU at 0 and off, switch open (confirmed)")
    return report_problem(run_)
