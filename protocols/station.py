"""The station interface the engine drives, and what it answers.

:class:`StationInterface` is what a bench must offer the protocol layer: prepare the
sources, connect a pair, run a list sweep or a host-paced sweep on it, fire a programming
pulse, and shut down safely; it declares what it can (:class:`Capabilities`). A station
whose capabilities declare ``parallel_pairs`` also connects several pairs at once
(``connect_pairs``) and sweeps them together (``list_sweep_many``). labctl's
station runtime implements it over real drivers; a test may implement it in memory.
Units: A, V, s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from protocols.wiring import Wiring


@dataclass(frozen=True)
class Capabilities:
    """list_sweep: every SMU channel runs source lists on the trigger cabling and the ADC
    takes one triggered sample per step, so a pair's whole list is one sweep.
    parallel_pairs: pairs on different SMU instruments and different ADC inputs can be
    connected together and swept in one step (``list_sweep_many``): one trigger master
    paces every SMU channel of them and the ADC samples each pair's input per step."""

    list_sweep: bool
    parallel_pairs: bool = False


@dataclass(frozen=True)
class RawSweep:
    """Readings of every step of one padded sweep (ramp points included), in step order.

    v_a, v_b: device voltages read by the SMU channels (V); v_diff: V_B - V_A as read by the
    differential amplifier, already corrected for the input's declared polarity (V);
    compliance: an SMU channel was in compliance; overrange: the ADC was overranged.
    """

    v_a: np.ndarray
    v_b: np.ndarray
    v_diff: np.ndarray
    compliance: np.ndarray
    overrange: np.ndarray

    def __post_init__(self):
        n = len(self.v_a)
        for name in ("v_b", "v_diff", "compliance", "overrange"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"sweep readings: {name} has {len(getattr(self, name))} "
                                 f"values, v_a has {n}")


@dataclass
class ShutdownReport:
    """What a safe shutdown confirmed: every output at 0 A and off, ADC disarmed, switch
    open. ``problems`` names each instrument whose state could not be confirmed;
    ``notes`` what went wrong on the way to a state that was then confirmed (a resync)."""

    confirmed: bool = True
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.confirmed = False
        self.problems.append(problem)


@runtime_checkable
class StationInterface(Protocol):
    """A bench the engine can drive (see :mod:`protocols.engine`)."""

    wiring: Wiring

    def capabilities(self) -> Capabilities: ...

    def prepare_sources(self, *, compliance_v: float, nplc: float, adc_gain: int) -> None:
        """Every SMU channel a current source at 0 A with the compliance, output on."""

    def connect_pair(self, pair: int) -> None:
        """Connect pair ``pair`` (break before make) and select its ADC input."""

    def list_sweep(self, pair: int, levels_a: np.ndarray, levels_b: np.ndarray, *,
                   nplc: float) -> RawSweep:
        """Device A through ``levels_a``, B through ``levels_b`` (A), as one list sweep."""

    def connect_pairs(self, pairs: list[int]) -> None:
        """Connect every pair of ``pairs`` at once (break before make; needs
        ``parallel_pairs``); sources must be at 0 A."""

    def list_sweep_many(self, sweeps: list[tuple[int, np.ndarray, np.ndarray]], *,
                        nplc: float) -> list[RawSweep]:
        """(pair, levels_a, levels_b) of each connected pair, swept together in lockstep
        (lists of unequal length: the shorter ones hold 0 A after their end); the readings
        of each, its own length."""

    def host_sweep(self, pair: int, levels_a: np.ndarray, levels_b: np.ndarray, *,
                   nplc: float) -> RawSweep:
        """The same readings, point by point from the host."""

    def program_pulse(self, pair: int, device: str, amplitude_v: float,
                      width_s: float) -> None:
        """A programming pulse (V, s) on device "A" or "B" of the connected pair."""

    def safe_shutdown(self) -> ShutdownReport: ...
