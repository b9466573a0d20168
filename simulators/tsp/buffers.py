"""Reading buffers of the simulated 2600B (``smuX.nvbuffer1/2``, ``smuX.makebuffer(n)``).

Per reading: the reading (V, A, Ohm or W), the source value at the time (A or V, when
``collectsourcevalues`` is 1), the timestamp (s, when ``collecttimestamps`` is 1; relative
to the buffer's first reading, its ``basetimestamp``) and the status (bit 0x40 compliance,
Series 2600B Reference Manual, "Buffer status bits"). Capacities follow the 2602B
datasheet ("Reading buffers": > 60,000 samples with timestamp and source setting, > 140,000
without); a dynamic buffer holds the n readings it was made for. A full buffer keeps what
it has and drops further readings (fill once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CAPACITY_FULL = 60_000  # with timestamps or source values
CAPACITY_BARE = 140_000
STATUS_COMPLIANCE = 0x40
FIELDS = ("readings", "sourcevalues", "timestamps", "statuses")


@dataclass
class ReadingBuffer:
    """One reading buffer; ``size`` None for a dedicated (nvbuffer) one."""

    size: int | None = None
    appendmode: int = 0
    collectsourcevalues: int = 0
    collecttimestamps: int = 1
    readings: list[float] = field(default_factory=list)
    sourcevalues: list[float] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    statuses: list[float] = field(default_factory=list)
    basetimestamp: float = 0.0

    @property
    def capacity(self) -> int:
        if self.size is not None:
            return self.size
        if self.collectsourcevalues or self.collecttimestamps:
            return CAPACITY_FULL
        return CAPACITY_BARE

    @property
    def n(self) -> int:
        return len(self.readings)

    def clear(self) -> None:
        for name in FIELDS:
            getattr(self, name).clear()
        self.basetimestamp = 0.0

    def store(self, reading: float, source: float, time_s: float, status: int) -> None:
        """Append one reading (dropped when the buffer is full)."""
        if self.n >= self.capacity:
            return
        if not self.readings:
            self.basetimestamp = time_s
        self.readings.append(float(reading))
        self.sourcevalues.append(float(source) if self.collectsourcevalues else 0.0)
        self.timestamps.append(time_s - self.basetimestamp if self.collecttimestamps else 0.0)
        self.statuses.append(float(status))

    def column(self, name: str) -> list[float]:
        return getattr(self, name)
