"""Simulated differential amplifier + 24-bit ADC board (docs/wire-protocols.md).

The board reads ``world.differential(channel)``, the difference of the rows its input
cable in the world's cabling names (on the default cabling input 1 is V(bus B) - V(bus A),
input 2 is open). It takes triggered samples on the pulses that reach its trigger input,
``(name, trigger_line)``, along the cabling's trigger cables: one record per pulse of the
input ``CHAN`` selects, or, with a scan list (``ACQ:CHAN 1,2``), one record per listed
input per pulse, in list order (the inputs are sampled together, as on a board with one
converter per input), so that one trigger master pacing two pairs on two couples of rows
gets both pairs' V_B - V_A from one acquisition. A reading is amplified by the
gain, gets the ADC's noise (input-referred, so it is amplified too), is clipped at the
ADC's +-10 V full scale and is divided back by the gain, so every value on the wire is
input-referred (V). Its pulse generator applies programming pulses to the device on a bus,
any row of the world's matrix (``world.program``). Units: V, s, S/s.

The fixed command set is parsed here directly (no SCPI tree): header and one optional
argument separated by whitespace, headers case-insensitive.
"""

from __future__ import annotations

import math
import struct
import threading
import zlib
from collections import deque
from dataclasses import dataclass

from simulators.world import StationWorld

FULL_SCALE_V = 10.0  # the ADC's input range after the amplifier
GAINS = (1, 10, 100, 1000)
RATE_RANGE = (10.0, 100_000.0)  # S/s
AVER_RANGE = (1, 1024)
COUNT_RANGE = (1, 10_000)
CHANNELS = (1, 2)
PULSE_BUSES = ("A", "B")  # the default rows; the board pulses any row of its world
PULSE_AMPLITUDE_V = 1.5  # the pulse generator's +- range
PULSE_WIDTH_RANGE_S = (1e-7, 1e-3)
RECORD = struct.Struct("<Qdb")  # timestamp (us), input-referred V, status
STATUS_OVERRANGE = 1
ERROR_QUEUE_DEPTH = 10

IDLE, ARMED, DONE = "IDLE", "ARMED", "DONE"

_ERRORS = {
    -104: "Data type error",
    -113: "Undefined header",
    -221: "Settings conflict",
    -222: "Data out of range",
    -350: "Queue overflow",
}


class _CommandError(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


@dataclass
class Sample:
    """One acquired reading: board time (us since reset), input-referred V, status bits."""

    timestamp_us: int
    volts: float
    status: int


def encode_block(samples: list[Sample]) -> bytes:
    """The ``ACQ:DATA?`` reply: ``#8``, 8-digit length, records, CRC-32 LE, newline."""
    payload = b"".join(RECORD.pack(s.timestamp_us, s.volts, s.status) for s in samples)
    crc = zlib.crc32(payload) & 0xFFFFFFFF
    return b"#8" + f"{len(payload):08d}".encode() + payload + struct.pack("<I", crc) + b"\n"


def decode_block(block: bytes) -> list[tuple[int, float, int]]:
    """Parse an ``ACQ:DATA?`` reply into (timestamp_us, V, status) tuples.

    Raises ValueError on a malformed header, a length that is not a whole number of
    records, or a CRC mismatch.
    """
    if not block.startswith(b"#8") or len(block) < 10:
        raise ValueError(f"not a #8 block: {block[:10]!r}")
    length = int(block[2:10])
    payload = block[10 : 10 + length]
    crc_bytes = block[10 + length : 14 + length]
    if len(payload) != length or len(crc_bytes) != 4:
        raise ValueError("block truncated")
    if length % RECORD.size:
        raise ValueError(f"payload of {length} bytes is not whole {RECORD.size}-byte records")
    if struct.unpack("<I", crc_bytes)[0] != zlib.crc32(payload) & 0xFFFFFFFF:
        raise ValueError("CRC mismatch")
    return [RECORD.unpack_from(payload, k) for k in range(0, length, RECORD.size)]


def _format_number(value: float) -> str:
    # Integral settings read back as integers ("1000", not "1000.0"), as the board stores them.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class SimAdcBoard:
    """The ADC board's line protocol acting on a :class:`StationWorld`.

    Its state is guarded by ``world.lock`` (not a lock of its own): trigger pulses arrive
    with the world lock held, so a separate board lock could be taken in the opposite
    order by a command thread and deadlock.
    """

    def __init__(
        self,
        world: StationWorld,
        *,
        name: str | None = None,
        serial: str = "ADC0001",
        trigger_line: int = 1,
    ):
        # Its instrument name on the trigger link (default: the cabling's ADC name).
        self.name = world.cabling.adc if name is None else name
        self.world = world
        self.serial = serial
        self.trigger_line = trigger_line
        self._changed = threading.Condition(world.lock)
        self._errors: deque[int] = deque()
        self._subscription: int | None = None
        self._closed = False
        self._reset()

    # -- state -----------------------------------------------------------------------
    def _reset(self) -> None:
        with self.world.lock:
            self._disarm()
            self.gain = 10
            self.rate = 1000.0
            self.aver = 1
            self.channel = 1
            self.scan: tuple[int, ...] = ()  # empty: the CHAN input alone
            self.count = 1
            self.state = IDLE
            self.samples: list[Sample] = []
            self.pulses = 0
            self._pulse_width_s = 0.0
            self._t0 = self.world.clock.now(self.name)

    def _disarm(self) -> None:
        if self._subscription is not None:
            self.world.unsubscribe_trigger(self._subscription)
            self._subscription = None
        self._changed.notify_all()

    def close(self) -> None:
        """Disarm and release any client waiting in ``ACQ:DATA?`` (station shutdown)."""
        with self.world.lock:
            self._closed = True
            self._disarm()
            if self.state == ARMED:
                self.state = IDLE

    @property
    def integration_s(self) -> float:
        """Integration time (s) of one reading: AVER / RATE."""
        return self.aver / self.rate

    def _push_error(self, code: int) -> None:
        if len(self._errors) >= ERROR_QUEUE_DEPTH:
            # SCPI keeps the oldest errors and marks the loss in the last slot.
            self._errors[-1] = -350
        else:
            self._errors.append(code)

    # -- measurement -----------------------------------------------------------------
    def read(self, channel: int | None = None) -> tuple[float, int]:
        """One reading of input ``channel`` (default: the CHAN input) now: (input-referred
        V, status); spends no clock time."""
        channel = self.channel if channel is None else channel
        with self.world.lock:
            amplified = (
                self.world.differential(channel) + self.world.adc_noise(self.integration_s)
            ) * self.gain
        status = STATUS_OVERRANGE if abs(amplified) > FULL_SCALE_V else 0
        amplified = min(max(amplified, -FULL_SCALE_V), FULL_SCALE_V)
        return amplified / self.gain, status

    def _on_trigger(self, step: int) -> None:
        # Called by world.pulse with world.lock held; the sample sees every source's new
        # level because sources subscribe with a lower order.
        if self.state != ARMED:
            return
        stamp = max(round((self.world.clock.now(self.name) - self._t0) * 1e6), 0)
        for channel in self.scan or (self.channel,):
            volts, status = self.read(channel)
            self.samples.append(Sample(stamp, volts, status))
        if len(self.samples) >= self.count * len(self.scan or (self.channel,)):
            self.state = DONE
            self._disarm()

    # -- protocol --------------------------------------------------------------------
    def handle(self, line: str) -> str | bytes | None:
        """Execute one command line; returns the reply (None for commands without one)."""
        text = line.strip()
        if not text:
            return None
        header, *rest = text.split(None, 1)
        header, arg = header.upper(), (rest[0].strip() if rest else "")
        if header == "ACQ:DATA?":
            if arg:
                with self.world.lock:
                    self._push_error(-104)
                return None
            # Waits outside the dispatch so the world lock is free for the pulses.
            return self._data()
        with self.world.lock:
            try:
                reply = self._dispatch(header, arg)
            except _CommandError as err:
                self._push_error(err.code)
                return None
            # Read under the lock: the pty and the socket endpoint share this board.
            pulse_s = self._pulse_width_s if header == "PROG:PULS" else 0.0
        if header == "MEAS?":
            # The integration takes time; spend it without holding the world lock so the
            # other instruments keep running (matters when time_scale > 0).
            self.world.clock.spend(self.name, self.integration_s)
        elif pulse_s:
            self.world.clock.spend(self.name, pulse_s)
        return reply

    def _dispatch(self, header: str, arg: str) -> str | None:
        queries = {
            "*IDN?": lambda: f"LABCTL,DIFFADC-24,{self.serial},1.0",
            "SYST:ERR?": self._next_error,
            "GAIN?": lambda: str(self.gain),
            "RATE?": lambda: _format_number(self.rate),
            "AVER?": lambda: str(self.aver),
            "CHAN?": lambda: str(self.channel),
            "ACQ:COUN?": lambda: str(self.count),
            "ACQ:CHAN?": lambda: ",".join(map(str, self.scan)) if self.scan else "0",
            "ACQ:STAT?": lambda: f"{self.state},{len(self.samples)}",
            "PROG:COUN?": lambda: str(self.pulses),
            "MEAS?": self._measure,
        }
        actions = {"*RST": self._reset, "*CLS": self._errors.clear, "ACQ:ARM": self._arm,
                   "ACQ:ABOR": self._abort}
        setters = {"GAIN": self._set_gain, "RATE": self._set_rate, "AVER": self._set_aver,
                   "CHAN": self._set_chan, "ACQ:COUN": self._set_count}
        if header in queries or header in actions:
            if arg:
                raise _CommandError(-104)  # these take no parameter
            if header in queries:
                return queries[header]()
            actions[header]()
            return None
        if header in setters:
            setters[header](_parse_number(arg))
            return None
        if header == "PROG:PULS":
            self._pulse(arg)
            return None
        if header == "ACQ:CHAN":
            self._set_scan(arg)
            return None
        raise _CommandError(-113)

    def _next_error(self) -> str:
        if not self._errors:
            return '0,"No error"'
        code = self._errors.popleft()
        return f'{code},"{_ERRORS[code]}"'

    def _measure(self) -> str:
        volts, status = self.read()
        return f"{volts:.9e},{status}"

    def _set_gain(self, value: float) -> None:
        if value not in GAINS:
            raise _CommandError(-222)
        self.gain = int(value)

    def _set_rate(self, value: float) -> None:
        if not RATE_RANGE[0] <= value <= RATE_RANGE[1]:
            raise _CommandError(-222)
        self.rate = float(value)

    def _set_aver(self, value: float) -> None:
        self.aver = _integer_in(value, AVER_RANGE)

    def _set_chan(self, value: float) -> None:
        if value not in CHANNELS:
            raise _CommandError(-222)
        self.channel = int(value)

    def _set_scan(self, arg: str) -> None:
        """``ACQ:CHAN <n>[,<n>]``: the inputs each pulse samples, in order; ``0``: the CHAN
        input alone (the reset state)."""
        fields = [f.strip() for f in arg.split(",")] if arg else []
        if not fields:
            raise _CommandError(-104)
        numbers = [_parse_number(f) for f in fields]
        if numbers == [0]:
            scan: tuple[int, ...] = ()
        elif any(n not in CHANNELS for n in numbers) or len(set(numbers)) != len(numbers):
            raise _CommandError(-222)
        else:
            scan = tuple(int(n) for n in numbers)
        if self.state == ARMED:
            raise _CommandError(-221)  # the running acquisition was armed for the old list
        if self.count * max(len(scan), 1) > COUNT_RANGE[1]:
            raise _CommandError(-221)  # more records than the board's memory
        self.scan = scan

    def _set_count(self, value: float) -> None:
        count = _integer_in(value, COUNT_RANGE)
        if self.state == ARMED:
            raise _CommandError(-221)  # the running acquisition was armed for the old count
        if count * max(len(self.scan), 1) > COUNT_RANGE[1]:
            raise _CommandError(-221)  # more records than the board's memory
        self.count = count

    def _arm(self) -> None:
        if self.state == ARMED:
            raise _CommandError(-221)
        self.samples = []
        self.state = ARMED
        self._subscription = self.world.subscribe_trigger(
            self.name, self.trigger_line, self._on_trigger, order=10
        )

    def _pulse(self, arg: str) -> None:
        """``PROG:PULS <row>,<amplitude V>,<width s>``: every check before the pulse fires."""
        fields = [f.strip() for f in arg.split(",")] if arg else []
        if len(fields) != 3 or not fields[0]:
            raise _CommandError(-104)
        bus = fields[0].upper()
        amplitude, width = _parse_number(fields[1]), _parse_number(fields[2])
        if bus not in self.world.rows or abs(amplitude) > PULSE_AMPLITUDE_V:
            raise _CommandError(-222)
        if not PULSE_WIDTH_RANGE_S[0] <= width <= PULSE_WIDTH_RANGE_S[1]:
            raise _CommandError(-222)
        if self.state == ARMED:
            # The pulse would land on the buses in the middle of the acquisition's samples.
            raise _CommandError(-221)
        self.world.program(bus, amplitude, width)
        self.pulses += 1
        self._pulse_width_s = width

    def _abort(self) -> None:
        if self.state == ARMED:
            self.state = IDLE
        self._disarm()

    def _data(self) -> bytes:
        with self._changed:
            # Answer when the acquisition is done, aborted, reset or the board is closed.
            while self.state == ARMED and not self._closed:
                self._changed.wait(0.5)
            return encode_block(list(self.samples))


def _parse_number(arg: str) -> float:
    if not arg:
        raise _CommandError(-104)
    try:
        value = float(arg)
    except ValueError:
        raise _CommandError(-104) from None
    if not math.isfinite(value):
        raise _CommandError(-104)
    return value


def _integer_in(value: float, bounds: tuple[int, int]) -> int:
    if not value.is_integer():
        raise _CommandError(-104)
    if not bounds[0] <= value <= bounds[1]:
        raise _CommandError(-222)
    return int(value)
