"""Source ramps: the levels an SMU steps through on its way from one level to another."""

from __future__ import annotations

import math
import time
from typing import Any

from instruments.transport import InstrumentError


def ramp_levels(start: float, step: float, target: float = 0.0) -> list[float]:
    """Levels from ``start`` to exactly ``target`` (default 0), each at most ``step`` from
    the previous one (``start`` itself not included); A or V, as the source is."""
    if not step > 0:
        raise ValueError(f"ramp step must be > 0, got {step!r}")
    n = math.ceil(abs(start - target) / step - 1e-9)
    # "+ 0.0" turns a negative start's final -0.0 into 0.0.
    return [target + (start - target) * (n - k) / n + 0.0 for k in range(1, n + 1)]


class RampedSource:
    """``ramp_to`` for an SMU channel driver: one ramp, whatever the instrument's commands.

    The driver provides ``present_state()`` (function, level, output), ``lock``, ``name``,
    :attr:`ramp_step_a` (A), :attr:`ramp_step_v` (V), :attr:`ramp_delay_s` (s),
    :meth:`_check_level_a` (refuse a target beyond its range, before anything is sent) and
    :meth:`_write_level` (one fixed source level, ``"CURR"`` in A or ``"VOLT"`` in V).
    """

    ramp_step_a: float
    ramp_step_v: float
    ramp_delay_s: float
    name: str
    lock: Any

    def ramp_to(self, level_a: float, step_a: float | None = None,
                delay_s: float | None = None) -> float:
        """Move the current source from its present level (read back first) to ``level_a``
        (A) in steps of at most ``step_a`` (A; default :attr:`ramp_step_a`), ``delay_s`` (s)
        apart; returns the level reached. A voltage source sources no current: with its
        output off there is nothing to ramp; with it on, ``ramp_to(0.0)`` ramps the voltage
        to 0 in steps of :attr:`ramp_step_v` (then :meth:`_after_voltage_ramp`). Any other
        target needs a current source (:class:`InstrumentError`). Not protected from
        Ctrl-C: an interrupted ramp stops where it is and ``shutdown`` ramps down from
        there."""
        step = self.ramp_step_a if step_a is None else step_a
        delay = self.ramp_delay_s if delay_s is None else delay_s
        self._check_level_a(level_a)
        if not step > 0:
            raise ValueError(f"step_a must be > 0 A, got {step!r}")
        with self.lock:
            state = self.present_state()  # type: ignore[attr-defined]
            if state.function == "CURR":
                function, levels = "CURR", ramp_levels(state.level, step, level_a)
            elif level_a == 0.0:
                function = "VOLT"
                levels = ramp_levels(state.level, self.ramp_step_v) if state.output_on else []
            else:
                raise InstrumentError(f"{self.name}: ramp_to({level_a:g}) needs a current "
                                      f"source, the source function is {state.function}")
            for value in levels:
                self._write_level(function, value)
                if delay > 0:
                    time.sleep(delay)
            if function == "VOLT" and state.output_on:
                self._after_voltage_ramp()
        return float(level_a)

    def _check_level_a(self, level_a: float) -> None:
        raise NotImplementedError

    def _write_level(self, function: str, value: float) -> None:
        raise NotImplementedError

    def _after_voltage_ramp(self) -> None:
        """What follows ramping a voltage source down (nothing, unless the driver says)."""
