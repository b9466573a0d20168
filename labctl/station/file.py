"""The station file: a TOML description of a probe station, validated with clear errors.

Example (docs/station-example.toml has the full form)::

    [instruments.smu_a]
    driver = "keithley2400"
    resource = "TCPIP::192.168.0.20::5025::SOCKET"
    identity = "MODEL 2400"
    timeout_s = 5.0

    [wiring]
    smu_a = "smu_a"   # biases device A of every pair
    smu_b = "smu_b"   # biases device B
    adc = "adc"       # reads V_B - V_A through the differential amplifier
    switch = "switch"
    prober = "prober"
    n_pairs = 16      # pairs 1..16 on channels 1Akk / 1Bkk, ADC input 1

    [limits]          # every device; a [[wiring.pair]] entry may override them
    max_current_a = 100e-6
    compliance_v = 0.8
    ramp_step_a = 20e-6

A `[simulation]` table makes it a simulated station: instruments without a `resource`
are served by the in-process simulator. No file at all means :func:`builtin_station`.
Units: A, V, s.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from simulators.mtj import PRESETS
from simulators.world import SimSettings

DRIVERS = ("keithley2400", "adc_board", "switch_matrix", "prober")
ROLES = {
    "smu_a": "keithley2400",
    "smu_b": "keithley2400",
    "adc": "adc_board",
    "switch": "switch_matrix",
    "prober": "prober",
}
DEFAULT_IDENTITY = {
    "keithley2400": "MODEL 24",
    "adc_board": "DIFFADC",
    "switch_matrix": "Model 70",
    "prober": "SENTIO",
}
HARD_MAX_CURRENT_A = 1.05  # the 2400's own source limit


class StationFileError(ValueError):
    """A station file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class InstrumentConfig:
    """One instrument: its driver, resource string (None: served by the simulator)."""

    name: str
    driver: str
    resource: str | None
    identity: str
    timeout_s: float = 5.0
    baud_rate: int = 115200


@dataclass(frozen=True)
class Limits:
    """Safety limits of one device.

    max_current_a: largest |I| ever sourced (A); compliance_v: voltage compliance (V), kept
    below the barrier's breakdown; ramp_step_a: largest change of the source current from
    one level to the next (A): every output ramps to and from zero in such steps.
    """

    max_current_a: float = 100e-6
    compliance_v: float = 0.8
    ramp_step_a: float = 20e-6


@dataclass(frozen=True)
class PairWiring:
    """How pair ``pair`` (1-based) is reached: switch channels and the ADC input."""

    pair: int
    channel_a: str
    channel_b: str
    adc_input: int
    limits: Limits


@dataclass(frozen=True)
class StationConfig:
    """A validated station description."""

    source: str  # the file path, or "<built-in>"
    text: str  # the file as written, for session records
    instruments: dict[str, InstrumentConfig]
    roles: dict[str, str]  # role (smu_a, smu_b, adc, switch, prober) -> instrument name
    pairs: dict[int, PairWiring]
    limits: Limits
    simulation: SimSettings | None = None
    name: str = "station"
    extra: dict[str, Any] = field(default_factory=dict)

    def pair(self, k: int) -> PairWiring:
        if k not in self.pairs:
            raise StationFileError(
                f"{self.source}: no pair {k} in [wiring] "
                f"(pairs {min(self.pairs)}..{max(self.pairs)})"
            )
        return self.pairs[k]


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
    return Limits(
        max_current_a=c.number(
            data,
            "max_current_a",
            where,
            base.max_current_a,
            positive=True,
            maximum=HARD_MAX_CURRENT_A,
        ),
        compliance_v=c.number(
            data, "compliance_v", where, base.compliance_v, positive=True, maximum=210.0
        ),
        ramp_step_a=c.number(data, "ramp_step_a", where, base.ramp_step_a, positive=True),
    )


def parse_station(text: str, source: str) -> StationConfig:
    """Validate a station file's text; ``source`` names it in every error."""
    c = _Checker(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StationFileError(f"{source}: not valid TOML: {exc}") from None
    c.unknown(data, {"station", "instruments", "wiring", "limits", "simulation"}, "")
    station = c.table(data, "station", "")
    simulation_table = data.get("simulation")
    simulated = simulation_table is not None

    instruments: dict[str, InstrumentConfig] = {}
    for name, inst in c.table(data, "instruments", "", required=True).items():
        where = f"[instruments.{name}] "
        if not isinstance(inst, dict):
            raise c.fail(f"[instruments] {name}", "must be a table")
        c.unknown(inst, {"driver", "resource", "identity", "timeout_s", "baud_rate"}, where)
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
            resource = c.string(inst, "resource", where)
        instruments[name] = InstrumentConfig(
            name=name,
            driver=driver,
            resource=resource,
            identity=c.string(inst, "identity", where, DEFAULT_IDENTITY[driver]),
            timeout_s=c.number(inst, "timeout_s", where, 5.0, positive=True),
            baud_rate=c.number(inst, "baud_rate", where, 115200, positive=True, integer=True),
        )

    wiring = c.table(data, "wiring", "", required=True)
    c.unknown(wiring, set(ROLES) | {"n_pairs", "pair"}, "[wiring] ")
    roles: dict[str, str] = {}
    for role, driver in ROLES.items():
        if role == "prober" and role not in wiring:
            continue
        name = c.string(wiring, role, "[wiring] ")
        if name not in instruments:
            raise c.fail(f"[wiring] {role}", f"names {name!r}, which is not in [instruments]")
        if instruments[name].driver != driver:
            raise c.fail(
                f"[wiring] {role}",
                f"{name!r} has driver {instruments[name].driver!r}, needs {driver!r}",
            )
        roles[role] = name
    if roles["smu_a"] == roles["smu_b"]:
        raise c.fail("[wiring] smu_b", "must be a different SMU from smu_a")

    limits = _limits(c, c.table(data, "limits", ""), "[limits] ", Limits())
    c.unknown(
        c.table(data, "limits", ""), {"max_current_a", "compliance_v", "ramp_step_a"}, "[limits] "
    )

    pairs: dict[int, PairWiring] = {}
    if "n_pairs" in wiring:
        n = c.number(wiring, "n_pairs", "[wiring] ", integer=True, minimum=1, maximum=99)
        for k in range(1, n + 1):
            pairs[k] = PairWiring(k, f"1A{k:02d}", f"1B{k:02d}", 1, limits)
    entries = wiring.get("pair", [])
    if not isinstance(entries, list):
        raise c.fail("[wiring] pair", "must be an array of tables ([[wiring.pair]])")
    for i, entry in enumerate(entries):
        where = f"[[wiring.pair]] #{i + 1} "
        if not isinstance(entry, dict):
            raise c.fail(where.strip(), "must be a table")
        c.unknown(
            entry,
            {
                "pair",
                "channel_a",
                "channel_b",
                "adc_input",
                "max_current_a",
                "compliance_v",
                "ramp_step_a",
            },
            where,
        )
        k = c.number(entry, "pair", where, integer=True, minimum=1)
        pairs[k] = PairWiring(
            k,
            c.string(entry, "channel_a", where, f"1A{k:02d}"),
            c.string(entry, "channel_b", where, f"1B{k:02d}"),
            c.number(entry, "adc_input", where, 1, integer=True, minimum=1, maximum=2),
            _limits(c, entry, where, limits),
        )
    if not pairs:
        raise c.fail("[wiring]", "no pairs: give n_pairs or [[wiring.pair]] entries")

    sim = None
    if simulated:
        s = c.table(data, "simulation", "")
        where = "[simulation] "
        c.unknown(
            s,
            {
                "seed",
                "variability",
                "n_pairs",
                "die_grid",
                "time_scale",
                "line_frequency",
                "smu_noise_v",
                "adc_noise_v",
                "drift_a_per_sqrt_s",
            },
            where,
        )
        variability = c.string(s, "variability", where, "nominal")
        if variability not in PRESETS:
            raise c.fail(
                f"{where}variability",
                f"unknown preset {variability!r} (known: {', '.join(PRESETS)})",
            )
        grid = s.get("die_grid", [2, 2])
        if (
            not isinstance(grid, list)
            or len(grid) != 2
            or not all(isinstance(g, int) and g >= 1 for g in grid)
        ):
            raise c.fail(
                f"{where}die_grid", f"must be [columns, rows] of positive integers, got {grid!r}"
            )
        sim = SimSettings(
            seed=c.number(s, "seed", where, 1, integer=True, minimum=0),
            variability=variability,
            n_pairs=c.number(s, "n_pairs", where, 16, integer=True, minimum=1, maximum=99),
            die_grid=(grid[0], grid[1]),
            time_scale=c.number(s, "time_scale", where, 0.0, minimum=0.0),
            line_frequency=c.number(s, "line_frequency", where, 60.0, positive=True),
            **{
                key: c.number(s, key, where, minimum=0.0) if key in s else None
                for key in ("smu_noise_v", "adc_noise_v", "drift_a_per_sqrt_s")
            },
        )
        too_far = [k for k in pairs if k > sim.n_pairs]
        if too_far:
            raise c.fail(
                "[wiring]",
                f"pair {too_far[0]} beyond the simulated chip's "
                f"{sim.n_pairs} pairs ([simulation] n_pairs)",
            )

    return StationConfig(
        source=source,
        text=text,
        instruments=instruments,
        roles=roles,
        pairs=pairs,
        limits=limits,
        simulation=sim,
        name=c.string(station, "name", "[station] ", "station"),
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
        config = parse_station(text, str(p))
    overrides = {k: v for k, v in simulation_overrides.items() if v is not None}
    if overrides:
        if config.simulation is None:
            raise StationFileError(
                f"{config.source}: {', '.join(overrides)} given, "
                "but the station has no [simulation]"
            )
        from dataclasses import replace

        config = replace(config, simulation=replace(config.simulation, **overrides))
    return config
