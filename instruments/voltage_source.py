"""Capped voltage sourcing for an SMU channel driver: what the 2400 driver has, for channels.

:class:`CappedVoltageSource` is mixed into a channel driver (the 2602B's and the
B2902A's) that has two pymeasure controls declared with ``dynamic=True``:
``source_voltage`` (V) and ``compliance_current`` (A, the current limit of a voltage
source). :meth:`CappedVoltageSource.limit_voltage_source` narrows their validators per
instance, so that a station's pair limits (``compliance_v``, ``max_current_a``) are refused
beyond, with ValueError, before a byte is sent: exactly as
:meth:`instruments.keithley2400.Keithley2400.limit_voltage_source`. The mixin also gives
:meth:`~CappedVoltageSource.ramp_voltage_to` and
:meth:`~CappedVoltageSource.source_voltage_and_measure`; the driver provides
``prepare_voltage_source``, ``present_state``, ``measure_once``, ``lock``, ``name`` and
:meth:`~CappedVoltageSource._write_voltage_uncapped`.

Units: V, A, s.
"""

from __future__ import annotations

import math
import time
from typing import Any

from instruments.ramps import ramp_levels
from instruments.transport import InstrumentError


class CappedVoltageSource:
    """Voltage-sourcing caps and voltage ramps for a channel driver (see the module).

    Class attributes a driver sets: :attr:`max_voltage_v` and :attr:`max_compliance_a`
    (the instrument's own ranges, V and A), which are also the caps until
    :meth:`limit_voltage_source` narrows them; :attr:`ramp_step_v` (V) and
    :attr:`ramp_delay_s` (s).
    """

    max_voltage_v: float
    max_compliance_a: float
    #: The caps in force (V, A): the instrument's ranges until limit_voltage_source.
    voltage_cap_v: float
    compliance_cap_a: float
    ramp_step_v = 0.05
    ramp_delay_s = 1e-3

    name: str
    lock: Any

    def limit_voltage_source(self, *, max_abs_v: float, max_compliance_a: float) -> None:
        """Cap voltage sourcing on this channel: |source voltage| <= ``max_abs_v`` (V) and
        the current compliance <= ``max_compliance_a`` (A). :attr:`source_voltage` and
        :attr:`compliance_current` then refuse anything beyond with ValueError before
        anything is sent. No I/O."""
        top_v, top_a = self.max_voltage_v, self.max_compliance_a
        if not (math.isfinite(max_abs_v) and 0 < max_abs_v <= top_v):
            raise ValueError(f"{self.name}: max_abs_v must be in (0, {top_v:g}] V, got "
                             f"{max_abs_v!r}")
        if not (math.isfinite(max_compliance_a) and 0 < max_compliance_a <= top_a):
            raise ValueError(f"{self.name}: max_compliance_a must be in (0, {top_a:g}] A, "
                             f"got {max_compliance_a!r}")
        self._set_values("source_voltage", [-max_abs_v, max_abs_v])
        self._set_values("compliance_current", [0.0, max_compliance_a])
        # pymeasure keeps dynamic values write-only: the caps, readable.
        self.voltage_cap_v, self.compliance_cap_a = float(max_abs_v), float(max_compliance_a)

    def _set_values(self, prop: str, values: list[float]) -> None:
        # The instance attribute a DynamicProperty reads its ``values`` from: its prefix
        # (pymeasure's reserved one) + "<name>_values". Set directly, so that it also works
        # on channels that are not pymeasure CommonBase objects (the 2600's).
        descriptor = getattr(type(self), prop)
        setattr(self, f"{descriptor.prefix}{prop}_values", values)

    def check_compliance_a(self, compliance_a: float) -> None:
        """ValueError unless 0 < ``compliance_a`` (A) <= the current-compliance cap."""
        high = self.compliance_cap_a
        if not (math.isfinite(compliance_a) and 0 < compliance_a <= high):
            raise ValueError(f"{self.name}: current compliance {compliance_a!r} A is outside "
                             f"(0, {high:g}] A")

    def source_voltage_and_measure(self, voltage_v: float) -> Any:
        """Set the voltage source to ``voltage_v`` (V, within the cap) and take one reading
        (the current it draws, the compliance flag)."""
        with self.lock:
            self.source_voltage = voltage_v
            return self.measure_once()  # type: ignore[attr-defined]

    def ramp_voltage_to(self, level_v: float, step_v: float | None = None,
                        delay_s: float | None = None) -> float:
        """Move a voltage source from its present level (read back first) to ``level_v`` (V,
        within the cap) in steps of at most ``step_v`` (V; default :attr:`ramp_step_v`),
        ``delay_s`` (s) apart; returns the level reached. ValueError beyond the cap (nothing
        sent); InstrumentError if the source function is not VOLT."""
        step = self.ramp_step_v if step_v is None else step_v
        delay = self.ramp_delay_s if delay_s is None else delay_s
        if not step > 0:
            raise ValueError(f"step_v must be > 0 V, got {step!r}")
        cap = self.voltage_cap_v
        if not (math.isfinite(level_v) and abs(level_v) <= cap):
            raise ValueError(f"{self.name}: {level_v!r} V is beyond the voltage cap +-{cap:g} V")
        with self.lock:
            state = self.present_state()  # type: ignore[attr-defined]
            if state.function != "VOLT":
                raise InstrumentError(f"{self.name}: ramp_voltage_to needs a voltage source, "
                                      f"the source function is {state.function}")
            for value in ramp_levels(state.level, step, level_v):
                # Towards the target always: a level left beyond the cap must come down.
                if abs(value) <= cap:
                    self.source_voltage = value
                else:
                    self._write_voltage_uncapped(value)
                if delay > 0:
                    time.sleep(delay)
        return float(level_v)

    def _write_voltage_uncapped(self, value_v: float) -> None:
        """Write a fixed voltage level without the cap's check (only ever on the way down
        from a level beyond it)."""
        raise NotImplementedError
