"""The station file: a TOML description of a probe station, validated with clear errors.

Example (docs/station-example.toml has the full form)::

    [instruments.k1]
    driver = "keithley2400"
    resource = "TCPIP::192.168.0.20::5025::SOCKET"
    identity = "MODEL 2400"
    timeout_s = 5.0

    [wiring]
    smu_a = "k1"          # the SMU channel that biases device A of every pair
    smu_b = "k2"          # ... device B (NAME or NAME:CHANNEL)
    trigger_master = "k1" # its trigger output paces the other SMU and the ADC
    adc = "adc"           # reads adc_polarity * (V_B - V_A) on adc_input
    adc_input = 1
    adc_polarity = 1
    switch = "switch"
    prober = "prober"
    n_pairs = 16          # pairs 1..16 on switch channels 1Akk / 1Bkk

    [limits]              # every device; a [[wiring.pair]] entry may lower them
    max_current_a = 100e-6
    compliance_v = 0.8
    ramp_step_a = 20e-6

    [ratings]             # the devices' absolute maximum ratings
    breakdown_v = 1.0

    [reference]           # optional: the bench's calibration resistor (station selftest)
    ohms = 1000.0
    tolerance = 0.01      # relative: a measurement within +-1 % passes
    channels = { k1 = "1A17", k2 = "1B17" }  # its switch channel per SMU channel;
                          # no channels: hard-wired to every SMU channel

A `[simulation]` table makes it a simulated station: instruments without a `resource`
are served by the in-process simulator, cabled as the wiring says. No file at all means
the built-in station (:data:`BUILTIN_TEXT`). The wiring model itself (pairs, channels,
limits, ratings) is :mod:`protocols.wiring`. Units: A, V, s, Ohm.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from instruments import is_visa_resource
from instruments.line_settings import (
    DATA_BITS,
    DEFAULT_VISA_LIBRARY,
    FLOW_CONTROLS,
    PARITIES,
    STOP_BITS,
    TERMINATIONS,
    visa_library_problem,
)
from protocols.wiring import (
    Channel,
    DeviceWiring,
    Limits,
    PairWiring,
    Ratings,
    Wiring,
    WiringError,
)
from simulators.device_shapes import MAX_TEMPERATURE_K, MIN_TEMPERATURE_K
from simulators.faults import FaultSpec
from simulators.mtj import PRESETS
from simulators.wafer import GRID, wafer_kind
from simulators.world import SimSettings

#: Driver name -> the channel ids its instrument has (None: not a source-meter).
DRIVER_CHANNELS: dict[str, tuple[str, ...] | None] = {
    "keithley2400": ("1",),
    "keithley2600": ("a", "b"),
    "keysight_b2902a": ("1", "2"),
    "adc_board": None,
    "switch_matrix": None,
    "prober": None,
}
DRIVERS = tuple(DRIVER_CHANNELS)
SMU_DRIVERS = tuple(d for d, ch in DRIVER_CHANNELS.items() if ch)
DEFAULT_IDENTITY = {
    "keithley2400": "MODEL 24",
    "keithley2600": "Model 26",
    "keysight_b2902a": "B2902A",
    "adc_board": "DIFFADC",
    "switch_matrix": "Model 70",
    "prober": "SENTIO",
}
BAUD_RATES = (300, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800,
              921600)
MAX_TIMEOUT_S = 600.0
MAX_PAIRS = 99
LINE_FREQUENCIES = (50.0, 60.0)
MAX_DIE_GRID = 20  # columns and rows of a simulated wafer
MAX_TIME_SCALE = 100.0
MAX_NOISE_V = 0.1
LIMIT_KEYS = ("max_current_a", "compliance_v", "ramp_step_a", "pulse_max_v",
              "pulse_max_current_a")
RATING_KEYS = ("breakdown_v", "max_current_a", "min_resistance_ohm", "max_step_a")
PAIR_KEYS = {"pair", "smu_a", "smu_b", "channel_a", "channel_b", "adc_input",
             "adc_polarity", *LIMIT_KEYS}


class StationFileError(ValueError):
    """A station file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class InstrumentConfig:
    """One instrument: its driver, resource string (None: served by the simulator), identity
    text, timeout (s), and how its link is set up.

    visa_library: the VISA library of a VISA resource (``"@py"``, pyvisa-py, the default;
    ``"@ivi"``; a vendor library's path). Serial line (a device path, pyserial URL or VISA
    ``ASRL`` resource): baud_rate (baud), parity (none/even/odd/mark/space), stop_bits (1,
    1.5, 2), data_bits (5 to 8), flow_control (none/xonxoff/rtscts). read_termination /
    write_termination: None for the driver's default (``"\\n"`` for every labctl driver).
    """

    name: str
    driver: str
    resource: str | None
    identity: str
    timeout_s: float = 5.0
    baud_rate: int = 115200
    visa_library: str = DEFAULT_VISA_LIBRARY
    parity: str = "none"
    stop_bits: float = 1
    data_bits: int = 8
    flow_control: str = "none"
    read_termination: str | None = None
    write_termination: str | None = None

    def link_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`instruments.open_adapter` for this instrument's
        link (visa_library only for a VISA resource; the serial settings go where they
        apply)."""
        out: dict[str, Any] = {
            "baud_rate": self.baud_rate, "parity": self.parity, "stop_bits": self.stop_bits,
            "data_bits": self.data_bits, "flow_control": self.flow_control,
            "read_termination": self.read_termination,
            "write_termination": self.write_termination,
        }
        if self.resource is None or is_visa_resource(self.resource):
            out["visa_library"] = self.visa_library
        return out


@dataclass(frozen=True)
class Miswiring:
    """Simulated stations only: how the simulated bench's cabling departs from the declared
    wiring, to rehearse a miswired bench (the ADC input reversed or left open)."""

    adc_reversed: bool = False
    adc_open: bool = False


@dataclass(frozen=True)
class ReferenceResistor:
    """The bench's calibration resistor (the ``[reference]`` table).

    ohms: its nominal value (Ohm); tolerance: the relative error a measurement of it may
    show and still pass (0.01 = 1 %); channels: SMU channel -> the switch channel that
    connects that channel to the resistor (empty: it is hard-wired to every SMU channel,
    a calibration bench). ``labctl station selftest`` measures it through every channel.
    """

    ohms: float
    tolerance: float = 0.01
    channels: dict[Channel, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StationConfig:
    """A validated station description: instruments, wiring (protocols.wiring), simulation."""

    source: str  # the file path, or "<built-in>"
    text: str  # the file as written, for session records
    instruments: dict[str, InstrumentConfig]
    wiring: Wiring
    simulation: SimSettings | None = None
    name: str = "station"
    miswiring: Miswiring = Miswiring()
    faults: dict[str, FaultSpec] = field(default_factory=dict)
    reference: ReferenceResistor | None = None
    #: The dies (col, row) of the wafer on the chuck, as the `[wafer]` table lists them
    #: (None: whatever the prober's map holds).
    wafer_map: tuple[tuple[int, int], ...] | None = None

    @property
    def pairs(self) -> dict[int, PairWiring]:
        return self.wiring.pairs

    @property
    def limits(self) -> Limits:
        return self.wiring.limits

    def pair(self, k: int) -> PairWiring:
        try:
            return self.wiring.pair(k)
        except WiringError as exc:
            raise StationFileError(str(exc)) from None

    def instrument_of(self, channel: Channel) -> InstrumentConfig:
        return self.instruments[channel.instrument]


BUILTIN_TEXT = """\
# The built-in simulated station: used when no station file is given.
[station]
name = "built-in simulated station"

[instruments.smu_a]
driver = "keithley2400"
[instruments.smu_b]
driver = "keithley2400"
[instruments.adc]
driver = "adc_board"
[instruments.switch]
driver = "switch_matrix"
[instruments.prober]
driver = "prober"

[wiring]
smu_a = "smu_a"
smu_b = "smu_b"
trigger_master = "smu_a"
adc = "adc"
adc_input = 1
adc_polarity = 1
switch = "switch"
prober = "prober"
n_pairs = 16

[limits]
max_current_a = 100e-6
compliance_v = 0.8
ramp_step_a = 20e-6

[ratings]
breakdown_v = 1.0

[simulation]
seed = 1
variability = "nominal"
n_pairs = 16
time_scale = 0.0
"""


class _Checker:
    """Reads typed values out of TOML tables, raising errors that name file and key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str) -> StationFileError:
        return StationFileError(f"{self.source}: {key}: {problem}")

    def table(self, data: dict, key: str, where: str, required: bool = False) -> dict:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(f"{where}{key}", "missing table")
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", f"must be a table, got {value!r}")
        return value

    def number(
        self,
        data: dict,
        key: str,
        where: str,
        default=None,
        *,
        positive=False,
        minimum=None,
        maximum=None,
        integer=False,
    ):
        if key not in data:
            if default is None:
                raise self.fail(f"{where}{key}", "missing")
            return default
        value = data[key]
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            raise self.fail(
                f"{where}{key}", f"must be {'an integer' if integer else 'a number'}, got {value!r}"
            )
        if positive and value <= 0:
            raise self.fail(f"{where}{key}", f"must be positive, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(f"{where}{key}", f"must be at least {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.fail(f"{where}{key}", f"must be at most {maximum}, got {value!r}")
        return value

    def string(self, data: dict, key: str, where: str, default: str | None = None) -> str:
        if key not in data:
            if default is None:
                raise self.fail(f"{where}{key}", "missing")
            return default
        value = data[key]
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}{key}", f"must be a non-empty string, got {value!r}")
        return value

    def unknown(self, data: dict, allowed: set[str], where: str) -> None:
        extra = sorted(set(data) - allowed)
        if extra:
            raise self.fail(
                f"{where}{extra[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
            )




def _limits(c: _Checker, data: dict, where: str, base: Limits) -> Limits:
    values = {key: c.number(data, key, where, getattr(base, key), positive=True)
              for key in LIMIT_KEYS}
    if "pulse_max_v" not in data and "compliance_v" in data:
        values["pulse_max_v"] = min(values["compliance_v"], base.pulse_max_v)
    return Limits(**values)


def _named(c: _Checker, name: str, key: str, instruments: dict) -> InstrumentConfig:
    """The instrument a wiring key names; refused if [instruments] has none so named."""
    if name not in instruments:
        raise c.fail(key, f"names {name!r}, which is not in [instruments]")
    return instruments[name]


def _channel(c: _Checker, data: dict, key: str, where: str, instruments: dict,
             default: str | None = None) -> Channel:
    text = c.string(data, key, where, default)
    try:
        ch = Channel.parse(text)
    except WiringError as exc:
        raise c.fail(f"{where}{key}", str(exc)) from None
    inst = _named(c, ch.instrument, f"{where}{key}", instruments)
    channels = DRIVER_CHANNELS[inst.driver]
    if not channels:
        raise c.fail(
            f"{where}{key}",
            f"{ch.instrument!r} has driver {inst.driver!r}, which is not a source-meter "
            f"(source-meter drivers: {', '.join(SMU_DRIVERS)})",
        )
    if ch.channel not in channels:
        raise c.fail(
            f"{where}{key}",
            f"{inst.driver} {ch.instrument!r} has no channel {ch.channel!r} "
            f"(channels: {', '.join(channels)})",
        )
    return ch


def _role(c: _Checker, wiring: dict, key: str, driver: str, instruments: dict,
          required: bool = True) -> str | None:
    if key not in wiring and not required:
        return None
    name = c.string(wiring, key, "[wiring] ")
    if _named(c, name, f"[wiring] {key}", instruments).driver != driver:
        raise c.fail(
            f"[wiring] {key}", f"{name!r} has driver {instruments[name].driver!r}, needs {driver!r}"
        )
    return name


def _polarity(c: _Checker, data: dict, where: str, default: int) -> int:
    value = c.number(data, "adc_polarity", where, default, integer=True)
    if value not in (1, -1):
        raise c.fail(f"{where}adc_polarity", f"must be 1 or -1, got {value!r}")
    return value


#: Keys of an ``[instruments.NAME]`` table.
INSTRUMENT_KEYS = {"driver", "resource", "identity", "timeout_s", "baud_rate", "visa_library",
                   "parity", "stop_bits", "data_bits", "flow_control", "read_termination",
                   "write_termination"}
SERIAL_KEYS = ("baud_rate", "parity", "stop_bits", "data_bits", "flow_control")
#: How the simulator serves an instrument without a resource: the ADC board on a serial
#: line (a pty), every other driver on a VISA socket (simulators/station.py).
SIMULATED_SERIAL_DRIVERS = frozenset({"adc_board"})
# GPIB[board]::primary[::secondary][::INSTR]: primary 0-30, secondary 0-30 (VISA numbering).
_GPIB = re.compile(r"GPIB(\d*)::(\d+)(?:::(\d+))?(?:::INSTR)?", re.IGNORECASE)


def _link_kind(resource: str | None, driver: str) -> str:
    """``serial`` (device path or pyserial URL), ``asrl`` (a VISA serial resource) or
    ``visa`` (LAN, GPIB, USB, ...): which link settings apply."""
    if resource is None:
        return "serial" if driver in SIMULATED_SERIAL_DRIVERS else "visa"
    if not is_visa_resource(resource):
        return "serial"
    return "asrl" if resource.upper().startswith("ASRL") else "visa"


def _resource(c: _Checker, inst: dict, where: str) -> str:
    """The resource string; a GPIB one checked for its board and addresses."""
    resource = c.string(inst, "resource", where)
    if resource.upper().startswith("GPIB") and not resource.upper().startswith("GPIB-VXI"):
        m = _GPIB.fullmatch(resource)
        if m is None:
            raise c.fail(f"{where}resource", f"{resource!r} is not a GPIB resource "
                                             "(GPIB<board>::<address>[::<secondary>]::INSTR, "
                                             "e.g. GPIB0::24::INSTR)")
        for part, label in ((m.group(2), "primary address"), (m.group(3), "secondary address")):
            if part is not None and not 0 <= int(part) <= 30:
                raise c.fail(f"{where}resource", f"{resource!r}: GPIB {label} {int(part)} is "
                                                 "not 0 to 30")
    return resource


def _choice(c: _Checker, inst: dict, key: str, where: str, allowed: tuple, default):
    """``inst[key]`` if it is one of ``allowed`` (strings, or numbers: 1 and 1.0 alike)."""
    if key not in inst:
        return default
    value = inst[key]
    numeric = not isinstance(allowed[0], str)
    kind_ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) if numeric \
        else isinstance(value, str)
    if not kind_ok or value not in allowed:
        shown = ", ".join(f"{a:g}" if numeric else repr(a) for a in allowed)
        raise c.fail(f"{where}{key}", f"must be one of {shown}, got {value!r}")
    return value


def _termination(c: _Checker, inst: dict, key: str, where: str) -> str | None:
    if key not in inst:
        return None
    value = inst[key]
    if value not in TERMINATIONS:
        raise c.fail(f"{where}{key}", 'must be one of "\\n", "\\r\\n", "\\r", "\\n\\r" '
                                      f"(TOML escapes), got {value!r}")
    return value


def _link(c: _Checker, inst: dict, where: str, resource: str | None, driver: str
          ) -> dict[str, Any]:
    """The link settings of one instrument table, each refused where it cannot apply: the
    serial line's on a LAN/GPIB/USB resource, visa_library on a serial device path."""
    kind = _link_kind(resource, driver)
    what = f"resource {resource!r}" if resource is not None else "the simulated link"
    if kind == "visa":
        for key in SERIAL_KEYS:
            if key in inst:
                raise c.fail(f"{where}{key}", f"applies to serial lines only (a device path, "
                                              f"pyserial URL or ASRL resource), not {what}")
    if "visa_library" in inst and kind == "serial":
        raise c.fail(f"{where}visa_library",
                     f"applies to VISA resources only; {what} is a serial line opened "
                     "with pyserial (or give an ASRL...::INSTR resource to use VISA)")
    library = c.string(inst, "visa_library", where, DEFAULT_VISA_LIBRARY)
    problem = visa_library_problem(library)
    if problem:
        raise c.fail(f"{where}visa_library", f"{library!r}: {problem}")
    baud = c.number(inst, "baud_rate", where, 115200, integer=True)
    if baud not in BAUD_RATES:
        raise c.fail(f"{where}baud_rate", f"{baud} is not a standard rate {BAUD_RATES}")
    return {
        "visa_library": library,
        "baud_rate": baud,
        "parity": _choice(c, inst, "parity", where, tuple(PARITIES), "none"),
        "stop_bits": _choice(c, inst, "stop_bits", where, STOP_BITS, 1),
        "data_bits": _choice(c, inst, "data_bits", where, DATA_BITS, 8),
        "flow_control": _choice(c, inst, "flow_control", where, FLOW_CONTROLS, "none"),
        "read_termination": _termination(c, inst, "read_termination", where),
        "write_termination": _termination(c, inst, "write_termination", where),
    }


def _instruments(c: _Checker, data: dict, simulated: bool) -> dict[str, InstrumentConfig]:
    instruments: dict[str, InstrumentConfig] = {}
    for name, inst in c.table(data, "instruments", "", required=True).items():
        where = f"[instruments.{name}] "
        if not isinstance(inst, dict):
            raise c.fail(f"[instruments] {name}", "must be a table")
        if ":" in name:
            raise c.fail(f"[instruments] {name}", "an instrument name may not contain ':'")
        c.unknown(inst, INSTRUMENT_KEYS, where)
        driver = c.string(inst, "driver", where)
        if driver not in DRIVERS:
            raise c.fail(
                f"{where}driver", f"unknown driver {driver!r} (known: {', '.join(DRIVERS)})"
            )
        resource = inst.get("resource")
        if resource is None and not simulated:
            raise c.fail(
                f"{where}resource", "missing (only a station with [simulation] may omit it)"
            )
        if resource is not None:
            resource = _resource(c, inst, where)
        instruments[name] = InstrumentConfig(
            name=name,
            driver=driver,
            resource=resource,
            identity=c.string(inst, "identity", where, DEFAULT_IDENTITY[driver]),
            timeout_s=c.number(inst, "timeout_s", where, 5.0, positive=True,
                               maximum=MAX_TIMEOUT_S),
            **_link(c, inst, where, resource, driver),
        )
    return instruments


def _wiring(c: _Checker, data: dict, instruments: dict, n_chip: int | None) -> Wiring:
    wiring = c.table(data, "wiring", "", required=True)
    c.unknown(wiring, {"smu_a", "smu_b", "trigger_master", "adc", "adc_input", "adc_polarity",
                       "switch", "prober", "n_pairs", "pair"}, "[wiring] ")
    limits_table = c.table(data, "limits", "")
    c.unknown(limits_table, set(LIMIT_KEYS), "[limits] ")
    limits = _limits(c, limits_table, "[limits] ", Limits())
    ratings_table = c.table(data, "ratings", "")
    c.unknown(ratings_table, set(RATING_KEYS), "[ratings] ")
    ratings = Ratings(**{key: c.number(ratings_table, key, "[ratings] ",
                                       getattr(Ratings(), key), positive=True)
                         for key in RATING_KEYS})
    adc = _role(c, wiring, "adc", "adc_board", instruments)
    switch = _role(c, wiring, "switch", "switch_matrix", instruments)
    prober = _role(c, wiring, "prober", "prober", instruments, required=False)
    smu_a = _channel(c, wiring, "smu_a", "[wiring] ", instruments)
    smu_b = _channel(c, wiring, "smu_b", "[wiring] ", instruments)
    adc_input = c.number(wiring, "adc_input", "[wiring] ", 1, integer=True, minimum=1, maximum=2)
    polarity = _polarity(c, wiring, "[wiring] ", 1)
    master = _channel(c, wiring, "trigger_master", "[wiring] ", instruments, str(smu_a))

    def beyond_chip(k: int, key: str) -> None:
        if n_chip is not None and k > n_chip:
            raise c.fail(key, f"pair {k} is beyond the simulated chip's {n_chip} pairs "
                              "([simulation] n_pairs)")

    def pair_wiring(k: int, entry: dict, where: str) -> PairWiring:
        return PairWiring(
            pair=k,
            a=DeviceWiring(_channel(c, entry, "smu_a", where, instruments, str(smu_a)),
                           c.string(entry, "channel_a", where, f"1A{k:02d}")),
            b=DeviceWiring(_channel(c, entry, "smu_b", where, instruments, str(smu_b)),
                           c.string(entry, "channel_b", where, f"1B{k:02d}")),
            adc_input=c.number(entry, "adc_input", where, adc_input, integer=True, minimum=1,
                               maximum=2),
            adc_polarity=_polarity(c, entry, where, polarity),
            limits=_limits(c, entry, where, limits),
        )

    pairs: dict[int, PairWiring] = {}
    if "n_pairs" in wiring:
        n = c.number(wiring, "n_pairs", "[wiring] ", integer=True, minimum=1, maximum=MAX_PAIRS)
        beyond_chip(n, "[wiring] n_pairs")
        pairs = {k: pair_wiring(k, {}, "[wiring] ") for k in range(1, n + 1)}
    entries = wiring.get("pair", [])
    if not isinstance(entries, list):
        raise c.fail("[wiring] pair", "must be an array of tables ([[wiring.pair]])")
    seen: set[int] = set()
    for i, entry in enumerate(entries):
        where = f"[[wiring.pair]] #{i + 1} "
        if not isinstance(entry, dict):
            raise c.fail(where.strip(), "must be a table")
        c.unknown(entry, PAIR_KEYS, where)
        k = c.number(entry, "pair", where, integer=True, minimum=1, maximum=MAX_PAIRS)
        beyond_chip(k, f"{where}pair")
        if k in seen:
            raise c.fail(f"{where}pair", f"pair {k} has a [[wiring.pair]] entry already")
        seen.add(k)
        pairs[k] = pair_wiring(k, entry, where)
    if not pairs:
        raise c.fail("[wiring]", "no pairs: give n_pairs or [[wiring.pair]] entries")
    result = Wiring(pairs=dict(sorted(pairs.items())), limits=limits, ratings=ratings, adc=adc,
                    switch=switch, trigger_master=master, prober=prober, source=c.source)
    try:
        result.validate()
    except WiringError as exc:
        raise StationFileError(f"{c.source}: {exc}") from None
    return result


def _reference(c: _Checker, data: dict, wiring: Wiring) -> ReferenceResistor | None:
    """The optional ``[reference]`` table: ohms, tolerance, and channels, a table of SMU
    channel -> switch channel (every SMU channel of the wiring, each its own channel, none a
    device's), or absent for a resistor hard-wired to every SMU channel."""
    if "reference" not in data:
        return None
    ref = c.table(data, "reference", "")
    c.unknown(ref, {"ohms", "tolerance", "channels"}, "[reference] ")
    ohms = c.number(ref, "ohms", "[reference] ", positive=True)
    tolerance = c.number(ref, "tolerance", "[reference] ", 0.01, positive=True, maximum=0.5)
    table = c.table(ref, "channels", "[reference] ")
    smus = wiring.smu_channels()
    devices = {ch for p in wiring.pairs.values() for ch in p.switch_channels}
    channels: dict[Channel, str] = {}
    for key in table:
        where = f"[reference.channels] {key}"
        try:
            smu = Channel.parse(key)
        except WiringError as exc:
            raise c.fail(where, str(exc)) from None
        if smu not in smus:
            raise c.fail(where, f"biases no device; the SMU channels are "
                                f"{', '.join(map(str, smus))}")
        name = c.string(table, key, "[reference.channels] ").strip().upper()
        if not re.fullmatch(r"[1-9][A-Z]\d\d", name):
            raise c.fail(where, f"{table[key]!r} is not a switch channel (like 1A00)")
        if name in devices:
            raise c.fail(where, f"switch channel {name} reaches a device in [wiring]")
        if name in channels.values():
            raise c.fail(where, f"switch channel {name} is given for two SMU channels")
        channels[smu] = name
    missing = [str(ch) for ch in smus if ch not in channels]
    if table and missing:
        raise c.fail("[reference.channels]", f"no switch channel for {', '.join(missing)}")
    return ReferenceResistor(float(ohms), float(tolerance), channels)


def _simulation(c: _Checker, s: dict) -> tuple[SimSettings, Miswiring, dict[str, FaultSpec]]:
    where = "[simulation] "
    c.unknown(s, {"seed", "variability", "n_pairs", "die_grid", "time_scale", "line_frequency",
                  "smu_noise_v", "adc_noise_v", "drift_a_per_sqrt_s", "miswire", "faults",
                  "wafer", *MEASURED_KEYS, "temperature_k"},
              where)
    devices, table = _measured_devices(c, s, where)
    variability = c.string(s, "variability", where, "nominal")
    if variability not in PRESETS:
        raise c.fail(
            f"{where}variability", f"unknown preset {variability!r} (known: {', '.join(PRESETS)})"
        )
    grid = s.get("die_grid", [2, 2])
    if (
        not isinstance(grid, list)
        or len(grid) != 2
        or not all(isinstance(g, int) and not isinstance(g, bool) and 1 <= g <= MAX_DIE_GRID
                   for g in grid)
    ):
        raise c.fail(
            f"{where}die_grid",
            f"must be [columns, rows], each an integer 1..{MAX_DIE_GRID}, got {grid!r}",
        )
    wafer = c.string(s, "wafer", where, GRID)
    try:
        kind, size = wafer_kind(wafer)
    except ValueError as exc:
        raise c.fail(f"{where}wafer", str(exc)) from None
    if kind != GRID:
        if "die_grid" in s and list(s["die_grid"]) != [size, size]:
            raise c.fail(f"{where}die_grid", f"{s['die_grid']!r} disagrees with wafer = "
                         f"{wafer!r} (a {size} x {size} grid); give one or the other")
        grid = [size, size]
    line = c.number(s, "line_frequency", where, 60.0, positive=True)
    if float(line) not in LINE_FREQUENCIES:
        raise c.fail(f"{where}line_frequency", f"must be 50 or 60 (Hz), got {line!r}")
    sim = SimSettings(
        seed=c.number(s, "seed", where, 1, integer=True, minimum=0, maximum=2**63 - 1),
        variability=variability,
        n_pairs=_measured_n_pairs(c, s, where, table),
        die_grid=(grid[0], grid[1]),
        time_scale=c.number(s, "time_scale", where, 0.0, minimum=0.0, maximum=MAX_TIME_SCALE),
        line_frequency=float(line),
        wafer=wafer,
        **{
            key: c.number(s, key, where, minimum=0.0, maximum=MAX_NOISE_V) if key in s else None
            for key in ("smu_noise_v", "adc_noise_v")
        },
        drift_a_per_sqrt_s=(c.number(s, "drift_a_per_sqrt_s", where, minimum=0.0, maximum=1e-6)
                            if "drift_a_per_sqrt_s" in s else None),
        temperature_k=(c.number(s, "temperature_k", where, minimum=MIN_TEMPERATURE_K,
                                maximum=MAX_TEMPERATURE_K) if "temperature_k" in s else None),
        devices=devices,
        device_table=table,
    )
    mis = c.table(s, "miswire", where)
    c.unknown(mis, {"adc_reversed", "adc_open"}, "[simulation.miswire] ")
    for key, value in mis.items():
        if not isinstance(value, bool):
            raise c.fail(f"[simulation.miswire] {key}", f"must be true or false, got {value!r}")
    faults = {}
    for name, spec in c.table(s, "faults", where).items():
        if not isinstance(spec, dict):
            raise c.fail(f"[simulation.faults] {name}", "must be a table")
        try:
            faults[name] = FaultSpec.from_dict(spec)
        except ValueError as exc:
            raise c.fail(f"[simulation.faults.{name}]", str(exc)) from None
    return sim, Miswiring(**mis), faults


#: [simulation] keys of measured devices: a CSV table (simulators.measured_devices) or
#: `labctl iv` session directories, paths relative to the station file; ``device_table``
#: is what a session records (the points themselves), not for station files.
MEASURED_KEYS = ("devices", "iv_sessions", "device_table")


def _measured_devices(c: _Checker, s: dict, where: str
                      ) -> tuple[str | None, tuple[tuple[int, str, float, float], ...] | None]:
    """(where the measured devices come from, their points) of a [simulation] table, or
    (None, None) for drawn devices."""
    from simulators.measured_devices import MeasuredDevices, MeasuredTableError

    given = [k for k in ("devices", "iv_sessions") if k in s]
    if len(given) > 1:
        raise c.fail(f"{where}iv_sessions", "given beside devices: give one or the other")
    base = Path(c.source).parent if not c.source.startswith("<") else Path.cwd()
    try:
        if "device_table" in s:  # a recorded session: the points, not the files
            rows = s["device_table"]
            if not isinstance(rows, list | tuple) or not all(
                    isinstance(r, list | tuple) and len(r) == 4 for r in rows):
                raise c.fail(f"{where}device_table", "must be a list of [pair, device, "
                                                     "current_a, voltage_v]")
            points: dict[tuple[int, str], tuple[list, list]] = {}
            for pair, dev, current, volts in rows:
                i, v = points.setdefault((int(pair), str(dev)), ([], []))
                i.append(float(current))
                v.append(float(volts))
            label = str(s.get("devices") or "recorded device_table")
            measured = MeasuredDevices.from_arrays(
                {k: (np.array(i), np.array(v)) for k, (i, v) in points.items()}, label)
        elif "devices" in s:
            label = c.string(s, "devices", where)
            measured = MeasuredDevices.from_csv(base / label)
            label = str(base / label)
        elif "iv_sessions" in s:
            from labctl.station.measured_iv import measured_from_iv_sessions

            sessions = s["iv_sessions"]
            if not isinstance(sessions, list) or not sessions or not all(
                    isinstance(x, str) for x in sessions):
                raise c.fail(f"{where}iv_sessions", "must be a list of session directories")
            paths = [base / x for x in sessions]
            measured = measured_from_iv_sessions(paths, f"{c.source}: {where}iv_sessions")
            label = "iv sessions " + ", ".join(str(p) for p in paths)
        else:
            return None, None
    except MeasuredTableError as exc:
        key = next((k for k in MEASURED_KEYS if k in s), "devices")
        raise c.fail(f"{where}{key}", str(exc)) from None
    table = tuple((k + 1, "AB"[d], float(x), float(y))
                  for (k, d), curve in sorted(measured.curves.items())
                  for x, y in zip(curve.x, curve.interp(curve.x), strict=True))
    return label, table


def _measured_n_pairs(c: _Checker, s: dict, where: str, table) -> int:
    """n_pairs of a [simulation] table: as given (16 by default), or the measured table's."""
    if table is None:
        return c.number(s, "n_pairs", where, 16, integer=True, minimum=1, maximum=MAX_PAIRS)
    n = max(row[0] for row in table)
    if "n_pairs" in s and s["n_pairs"] != n:
        raise c.fail(f"{where}n_pairs", f"{s['n_pairs']!r} disagrees with the {n} pairs of the "
                                        "measured devices; leave it out")
    return n


def _check_measured_cover(c: _Checker, sim: SimSettings | None, wiring: Wiring) -> None:
    """Measured devices must cover every pair's current limit: the curves are not
    extrapolated where an instrument can bias."""
    measured = sim.measured_devices() if sim is not None else None
    if measured is None:
        return
    for k, pair in wiring.pairs.items():
        limit = pair.limits.max_current_a
        short = [e for e in measured.covers(-limit, limit) if e.startswith(f"pair {k} ")]
        if short:
            raise c.fail("[simulation] devices",
                         f"the measured range of {short[0]} does not cover pair {k}'s "
                         f"max_current_a = +-{limit:g} A (sweep it wider, or lower the limit)")


def simulation_from_record(data: Any, source: str) -> SimSettings:
    """Simulation settings as a session's start document records them (SimSettings' fields),
    held to the same bounds as a station file's ``[simulation]`` table; ``source`` names
    where they were read in every error."""
    if not isinstance(data, dict):
        raise StationFileError(f"{source}: must be a table, got {data!r}")
    sim, _, _ = _simulation(_Checker(source), {k: v for k, v in data.items() if v is not None})
    return sim


def one_smu_station_text(driver: str, *, time_scale: float = 0.0) -> str:
    """A simulated station like the built-in one, but with one two-channel SMU of
    ``driver`` (``keithley2600``, ``keysight_b2902a``) biasing both devices of every pair
    on its two channels (its first channel the trigger master)."""
    channels = DRIVER_CHANNELS.get(driver)
    if not channels or len(channels) != 2:
        raise ValueError(f"{driver!r} is not a two-channel source-meter driver")
    a, b = channels
    return f"""\
[station]
name = "one {driver}"

[instruments.smu]
driver = "{driver}"
[instruments.adc]
driver = "adc_board"
[instruments.switch]
driver = "switch_matrix"
[instruments.prober]
driver = "prober"

[wiring]
smu_a = "smu:{a}"
smu_b = "smu:{b}"
trigger_master = "smu:{a}"
adc = "adc"
switch = "switch"
prober = "prober"
n_pairs = 16

[limits]
max_current_a = 100e-6
compliance_v = 0.8
ramp_step_a = 20e-6

[simulation]
seed = 1
variability = "nominal"
n_pairs = 16
time_scale = {time_scale!r}
"""


def parse_station(text: str, source: str) -> StationConfig:
    """Validate a station file's text; ``source`` names it in every error."""
    c = _Checker(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StationFileError(f"{source}: not valid TOML: {exc}") from None
    c.unknown(data, {"station", "instruments", "wiring", "limits", "ratings", "simulation",
                     "reference", "wafer"}, "")
    station = c.table(data, "station", "")
    c.unknown(station, {"name"}, "[station] ")
    simulated = "simulation" in data
    sim, miswiring, faults = (
        _simulation(c, c.table(data, "simulation", "")) if simulated else (None, Miswiring(), {})
    )
    instruments = _instruments(c, data, simulated)
    served = [name for name, cfg in instruments.items() if cfg.resource is not None]
    if simulated and served:
        # The simulator would serve devices nobody measures, and the record would describe
        # them as the devices of instruments that talk to something else.
        raise c.fail(f"[instruments.{served[0]}] resource",
                     "given beside [simulation]: a simulated station simulates every "
                     "instrument and names no resources (remove the resources, or the "
                     "[simulation] table for a station of real instruments"
                     f"{'; also ' + ', '.join(served[1:]) if served[1:] else ''})")
    wiring = _wiring(c, data, instruments, sim.n_pairs if sim else None)
    _check_measured_cover(c, sim, wiring)
    for name in faults:
        if name not in instruments:
            raise c.fail(f"[simulation.faults.{name}]", "names no instrument in [instruments]")
    return StationConfig(
        source=source,
        text=text,
        instruments=instruments,
        wiring=wiring,
        simulation=sim,
        name=c.string(station, "name", "[station] ", "station"),
        miswiring=miswiring,
        faults=faults,
        reference=_reference(c, data, wiring),
        wafer_map=(parse_wafer_map(data["wafer"], source, "[wafer] ")
                   if "wafer" in data else None),
    )


def load_station(path: str | Path | None, **simulation_overrides) -> StationConfig:
    """Load and validate a station file; None gives the built-in simulated station.

    ``simulation_overrides`` (seed, variability, time_scale, ...) replace fields of the
    `[simulation]` table; they are refused for a station without one.
    """
    if path is None:
        config = parse_station(BUILTIN_TEXT, "<built-in station>")
    else:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise StationFileError(f"{p}: cannot read station file: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise StationFileError(f"{p}: not a text file (expected TOML)") from None
        config = parse_station(text, str(p))
    overrides = {k: v for k, v in simulation_overrides.items() if v is not None}
    if overrides:
        if config.simulation is None:
            raise StationFileError(
                f"{config.source}: {', '.join(overrides)} given, "
                "but the station has no [simulation]"
            )
        if "time_scale" in overrides and not 0 <= overrides["time_scale"] <= MAX_TIME_SCALE:
            raise StationFileError(
                f"--time-scale must be between 0 and {MAX_TIME_SCALE}, got "
                f"{overrides['time_scale']!r}"
            )
        temperature = overrides.get("temperature_k")
        if temperature is not None and not MIN_TEMPERATURE_K <= temperature <= MAX_TEMPERATURE_K:
            raise StationFileError(
                f"--temperature-k must be between {MIN_TEMPERATURE_K:g} and "
                f"{MAX_TEMPERATURE_K:g} K, got {temperature!r}"
            )
        config = replace(config, simulation=replace(config.simulation, **overrides))
    return config


MAX_DIES = 10_000


def parse_wafer_map(table: Any, source: str, where: str = "") -> tuple[tuple[int, int], ...]:
    """A wafer map: a table ``dies = [[col, row], ...]`` (1-based, each die once), as a
    station file's `[wafer]` table or a map file (``labctl wafer scan --map``) has it.
    StationFileError names ``source``, the key and the bad entry."""
    c = _Checker(source)
    if not isinstance(table, dict):
        raise c.fail(where.strip() or "wafer map", "must be a table with dies = [[col, row], ...]")
    c.unknown(table, {"dies"}, where)
    dies = table.get("dies")
    if not isinstance(dies, list) or not dies or len(dies) > MAX_DIES:
        raise c.fail(f"{where}dies", f"must be a list of 1..{MAX_DIES} [col, row] pairs, "
                     f"got {dies!r}"[:200])
    out: list[tuple[int, int]] = []
    for i, die in enumerate(dies):
        if (not isinstance(die, list) or len(die) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                           for v in die)):
            raise c.fail(f"{where}dies[{i}]", f"must be [col, row], integers >= 1, got {die!r}")
        if tuple(die) in out:
            raise c.fail(f"{where}dies[{i}]", f"die {die!r} is listed twice")
        out.append((die[0], die[1]))
    return tuple(out)


def load_wafer_map(path: str | Path) -> tuple[tuple[int, int], ...]:
    """A wafer map file (TOML, ``dies = [[col, row], ...]``)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as exc:
        raise StationFileError(f"{p}: cannot read wafer map: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StationFileError(f"{p}: not a wafer map (TOML): {exc}") from None
    return parse_wafer_map(data, str(p))
