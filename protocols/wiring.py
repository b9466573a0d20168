"""The bench's wiring model: which SMU channel biases which device, what the ADC reads, limits.

A pair's two devices (A at I, B at I + dI) are each biased by one *channel* of a source-
meter (:class:`Channel`: an instrument name and a channel id, "1" for a single-channel
instrument), reached through one switch-matrix channel. The differential amplifier's input
``adc_input`` reads ``adc_polarity * (V_B - V_A)``. In a list sweep, ``trigger_master``'s
trigger output paces every other SMU channel and the ADC (the bench's trigger cabling).

Every limit lies within the devices' absolute maximum :class:`Ratings`. Units: A, V, Ohm.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The trigger output line on which the pacing SMU (the trigger master, or the instrument
#: that sweeps both devices of a pair) pulses once per step, and which reaches the ADC board.
TRIGGER_LINE = 1


class WiringError(ValueError):
    """A wiring that cannot be used; the message names the pair or the problem."""


@dataclass(frozen=True)
class Ratings:
    """Absolute maximum ratings of the devices: nothing may ever exceed them.

    breakdown_v: barrier breakdown voltage (V); every compliance and pulse amplitude stays
    below it. max_current_a: the largest |I| a device survives (A). min_resistance_ohm: the
    lowest resistance of a healthy device (Ohm): a pulse of V volts can drive at most
    V / min_resistance_ohm through it. max_step_a: the largest step of the bias current
    the devices tolerate (A); every ramp step stays within it.
    """

    breakdown_v: float = 1.0
    max_current_a: float = 400e-6
    min_resistance_ohm: float = 2000.0
    max_step_a: float = 25e-6


@dataclass(frozen=True)
class Limits:
    """Safety limits of one device.

    max_current_a: largest |I| ever sourced (A); compliance_v: voltage compliance (V);
    ramp_step_a: largest change of the source current from one level to the next (A): every
    output ramps to and from zero in such steps; pulse_max_v: largest |amplitude| of a
    programming pulse (V); pulse_max_current_a: largest current a pulse may drive (A),
    reckoned as |amplitude| / Ratings.min_resistance_ohm.
    """

    max_current_a: float = 100e-6
    compliance_v: float = 0.8
    ramp_step_a: float = 20e-6
    pulse_max_v: float = 0.8
    pulse_max_current_a: float = 300e-6

    def pulse_amplitude_limit_v(self, ratings: Ratings) -> float:
        """The largest |pulse amplitude| (V) both pulse limits allow on these devices."""
        return min(self.pulse_max_v, self.pulse_max_current_a * ratings.min_resistance_ohm)


@dataclass(frozen=True, order=True)
class Channel:
    """One source channel: ``instrument`` (a station instrument name) and its ``channel``."""

    instrument: str
    channel: str = "1"

    @classmethod
    def parse(cls, text: str) -> Channel:
        """``"smu"`` (channel 1) or ``"smu:b"``."""
        name, _, ch = text.partition(":")
        if not name or (_ and not ch):
            raise WiringError(f"{text!r} is not an SMU channel (write NAME or NAME:CHANNEL)")
        return cls(name, ch or "1")

    def __str__(self) -> str:
        return self.instrument if self.channel == "1" else f"{self.instrument}:{self.channel}"


@dataclass(frozen=True)
class DeviceWiring:
    """One device: the SMU channel that biases it and the switch channel that reaches it."""

    smu: Channel
    switch_channel: str


@dataclass(frozen=True)
class PairWiring:
    """Pair ``pair`` (1-based): its devices, its ADC input and sign, and its limits."""

    pair: int
    a: DeviceWiring
    b: DeviceWiring
    adc_input: int
    adc_polarity: int
    limits: Limits

    @property
    def switch_channels(self) -> tuple[str, str]:
        return (self.a.switch_channel, self.b.switch_channel)

    def describe(self) -> str:
        """Where the pair's readings come from, for messages."""
        return (f"device A on {self.a.smu} via {self.a.switch_channel}, device B on "
                f"{self.b.smu} via {self.b.switch_channel}, ADC input {self.adc_input}")


@dataclass(frozen=True)
class Wiring:
    """A whole bench: its pairs, its instruments by job, the trigger cabling and limits."""

    pairs: dict[int, PairWiring]
    limits: Limits
    ratings: Ratings
    adc: str
    switch: str
    trigger_master: Channel
    prober: str | None = None
    source: str = "<wiring>"  # where it was read from, for messages

    def pair(self, k: int) -> PairWiring:
        if k not in self.pairs:
            raise WiringError(
                f"{self.source}: no pair {k} in [wiring] "
                f"(pairs {min(self.pairs)}..{max(self.pairs)})"
            )
        return self.pairs[k]

    def smu_channels(self) -> list[Channel]:
        """Every SMU channel that biases a device, in a fixed order."""
        return sorted({d.smu for p in self.pairs.values() for d in (p.a, p.b)})

    def smu_instruments(self) -> list[str]:
        return sorted({c.instrument for c in self.smu_channels()})

    def min_ramp_step_a(self) -> float:
        return min(p.limits.ramp_step_a for p in self.pairs.values())

    def max_current_a(self) -> float:
        """The smallest current limit of any pair (A): what a run over all pairs may use."""
        return min(p.limits.max_current_a for p in self.pairs.values())

    def operating_point(self) -> tuple[float, float]:
        """Default bias centre (at zero pre-activation) and scale (per unit of it), A: 40 %
        and 20 % of :meth:`max_current_a`."""
        limit = self.max_current_a()
        return 0.4 * limit, 0.2 * limit

    def validate(self) -> None:
        """Refuse aliased wiring and limits outside the ratings (WiringError, naming why)."""
        check_limits(self.limits, self.ratings, "[limits]")
        owner: dict[str, int] = {}
        for k, p in sorted(self.pairs.items()):
            if p.a.smu == p.b.smu:
                raise WiringError(
                    f"[wiring] pair {k}: devices A and B are both on SMU channel {p.a.smu}"
                )
            if p.a.switch_channel == p.b.switch_channel:
                raise WiringError(
                    f"[wiring] pair {k}: devices A and B share switch channel {p.a.switch_channel}"
                )
            for ch in p.switch_channels:
                if ch in owner:
                    raise WiringError(
                        f"[wiring] pair {k}: switch channel {ch} is already pair {owner[ch]}'s"
                    )
                owner[ch] = k
            if p.adc_polarity not in (1, -1):
                raise WiringError(f"[wiring] pair {k}: adc_polarity must be +1 or -1")
            check_limits(p.limits, self.ratings, f"[wiring] pair {k}")
            for name in ("max_current_a", "compliance_v", "ramp_step_a", "pulse_max_v",
                         "pulse_max_current_a"):
                if getattr(p.limits, name) > getattr(self.limits, name) * (1 + 1e-12):
                    raise WiringError(
                        f"[wiring] pair {k}: {name} = {getattr(p.limits, name):.6g} is above the "
                        f"station's [limits] {name} = {getattr(self.limits, name):.6g}"
                    )
        if self.trigger_master not in self.smu_channels():
            raise WiringError(
                f"[wiring] trigger_master {self.trigger_master} biases no device; it must be "
                f"one of {', '.join(map(str, self.smu_channels()))}"
            )


def check_limits(lim: Limits, ratings: Ratings, where: str) -> None:
    """Every limit positive and within the devices' absolute maximum ratings."""
    for name in ("max_current_a", "compliance_v", "ramp_step_a", "pulse_max_v",
                 "pulse_max_current_a"):
        if not getattr(lim, name) > 0:
            raise WiringError(f"{where}: {name} must be positive, got {getattr(lim, name)!r}")
    bounds = (
        ("max_current_a", lim.max_current_a, "max_current_a", ratings.max_current_a),
        ("compliance_v", lim.compliance_v, "breakdown_v", ratings.breakdown_v),
        ("pulse_max_v", lim.pulse_max_v, "breakdown_v", ratings.breakdown_v),
        ("pulse_max_current_a", lim.pulse_max_current_a, "max_current_a",
         ratings.max_current_a),
        ("ramp_step_a", lim.ramp_step_a, "max_step_a", ratings.max_step_a),
    )
    for name, value, rating, bound in bounds:
        if value > bound * (1 + 1e-12):
            raise WiringError(
                f"{where}: {name} = {value:.6g} exceeds the devices' absolute maximum rating "
                f"{rating} = {bound:.6g} ([ratings])"
            )
