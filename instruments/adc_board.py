"""Differential amplifier + 24-bit ADC board (LABCTL DIFFADC-24, docs/wire-protocols.md).

Settings are pymeasure controls with validators; :meth:`AdcBoard.read_samples` parses the
``ACQ:DATA?`` binary block (``#8`` + 8-digit length + records + CRC-32 + newline) into a
numpy structured array after checking its length and CRC. Every voltage is
input-referred. The board's pulse generator programs the device on bus A or B
(:meth:`AdcBoard.program_pulse`). Every text reply is checked against what its command
answers in docs/wire-protocols.md (:meth:`AdcBoard.reply_rule`). :meth:`AdcBoard.disarm`
and :meth:`AdcBoard.safe_state` (also :meth:`AdcBoard.shutdown`) leave the board
confirmed idle; :meth:`AdcBoard.configuration` reads its settings. Units: V, s, S/s, us
(sample timestamps).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from pymeasure.instruments import Instrument, SCPIMixin
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from instruments import replies
from instruments.transport import (
    GarbledReply,
    InstrumentError,
    InstrumentReportedError,
    InstrumentTimeout,
    LockedInstrumentMixin,
    SafeStateReport,
    drain_scpi_errors,
    read_setting,
)

#: One acquired sample: board time (us since reset), input-referred V, status (bit 0:
#: overrange). Packed little-endian, 17 bytes, as on the wire.
SAMPLE_DTYPE = np.dtype([("t_us", "<u8"), ("v", "<f8"), ("status", "i1")])
STATUS_OVERRANGE = 1
MAX_SAMPLES = 10_000
PULSE_BUSES = ("A", "B")  # the rows a pulse may take unless pulse_buses says more
MATRIX_ROWS = ("A", "B", "C", "D", "E", "F", "G", "H")  # every row a matrix card can have
PULSE_AMPLITUDE_RANGE_V = (-1.5, 1.5)
PULSE_WIDTH_RANGE_S = (1e-7, 1e-3)
_HEADER = 10  # "#8" and 8 length digits
_TRAILER = 5  # CRC-32 (4 bytes, little-endian) and "\n"
ACQ_STATES = ("IDLE", "ARMED", "DONE")

# What each query answers (docs/wire-protocols.md); keys are the upper-case header.
_RULES: dict[str, Callable[[str], str | None]] = {
    "*IDN?": replies.fields(replies.text, replies.text, replies.text, replies.text),
    "SYST:ERR?": replies.scpi_error,
    "GAIN?": replies.integer_in((1, 10, 100, 1000)),
    "RATE?": replies.number_in(10, 100_000),
    "AVER?": replies.integer_in(range(1, 1025)),
    "CHAN?": replies.integer_in((1, 2)),
    "ACQ:COUN?": replies.integer_in(range(1, MAX_SAMPLES + 1)),
    "ACQ:CHAN?": replies.text,
    "MEAS?": replies.fields(replies.number, replies.integer_in(range(0, 128))),
    "ACQ:STAT?": replies.fields(replies.one_of(*ACQ_STATES),
                                replies.integer_in(range(0, MAX_SAMPLES + 1))),
    "PROG:COUN?": replies.integer_in(range(0, 1 << 62)),
}


def parse_block(instrument: str, block: bytes) -> np.ndarray:
    """Samples of a complete ``ACQ:DATA?`` reply; :class:`GarbledReply` for a wrong header,
    a short block, a length that is not whole records, a bad CRC or a missing newline."""
    head = block[:_HEADER]
    if len(head) < _HEADER or head[:2] != b"#8" or not head[2:].isdigit():
        raise GarbledReply(instrument, block, "expected a #8 block header")
    length = int(head[2:])
    if length % SAMPLE_DTYPE.itemsize:
        raise GarbledReply(instrument, block, f"payload of {length} bytes is not whole "
                           f"{SAMPLE_DTYPE.itemsize}-byte records")
    body = block[_HEADER:]
    if len(body) < length + _TRAILER:
        raise GarbledReply(instrument, block, f"short block: {length} payload bytes "
                           f"announced, {max(len(body) - _TRAILER, 0)} arrived")
    payload, crc, end = body[:length], body[length : length + 4], body[length + 4 :]
    if end != b"\n":
        raise GarbledReply(instrument, block, "block does not end with a newline")
    expected = struct.unpack("<I", crc)[0]
    actual = zlib.crc32(payload) & 0xFFFFFFFF
    if expected != actual:
        raise GarbledReply(instrument, block, f"CRC-32 mismatch: block says {expected:08x}, "
                           f"payload has {actual:08x}")
    return np.frombuffer(payload, dtype=SAMPLE_DTYPE).copy()


class AdcBoard(LockedInstrumentMixin, SCPIMixin, Instrument):
    """The ADC board; no I/O on construction."""

    #: One sample per trigger-link pulse, read back as a block.
    capabilities = {"triggered_acquisition": True, "max_samples": MAX_SAMPLES,
                    "scan_inputs": (1, 2),
                    "binary_block": True, "programming_pulse": True}

    #: The buses (matrix rows) :meth:`program_pulse` accepts: A and B, or more on a bench
    #: whose matrix has them (a subset of A to H; set by whoever knows the bench).
    pulse_buses: tuple[str, ...] = PULSE_BUSES

    def __init__(self, adapter, name: str = "ADC board", **kwargs):
        super().__init__(adapter, name, **kwargs)

    def reply_rule(self, command: str) -> Callable[[str], str | None] | None:
        """The check of ``command``'s reply (docs/wire-protocols.md)."""
        head = command.strip().split(None, 1)[0].upper() if command.strip() else ""
        return _RULES.get(head)

    gain = Instrument.control(
        "GAIN?", "GAIN %d",
        """Control the amplifier gain (int, one of 1, 10, 100, 1000).""",
        validator=strict_discrete_set, values=[1, 10, 100, 1000], cast=int,
        check_set_errors=True,
    )
    rate = Instrument.control(
        "RATE?", "RATE %g",
        """Control the sample rate in S/s (float, 10 to 100000).""",
        validator=strict_range, values=[10, 100_000],
        check_set_errors=True,
    )
    averaging = Instrument.control(
        "AVER?", "AVER %d",
        """Control the samples averaged per reading (int, 1 to 1024); a reading integrates
        for averaging / rate seconds.""",
        validator=strict_discrete_set, values=range(1, 1025), cast=int,
        check_set_errors=True,
    )
    channel = Instrument.control(
        "CHAN?", "CHAN %d",
        """Control the input channel (int, 1 or 2).""",
        validator=strict_discrete_set, values=[1, 2], cast=int,
        check_set_errors=True,
    )
    acquisition_count = Instrument.control(
        "ACQ:COUN?", "ACQ:COUN %d",
        """Control the samples an armed acquisition takes (int, 1 to 10000).""",
        validator=strict_discrete_set, values=range(1, MAX_SAMPLES + 1), cast=int,
    )

    pulse_count = Instrument.measurement(
        "PROG:COUN?",
        """Get the programming pulses applied since power-on or the last reset (int).""",
        cast=int,
    )

    def program_pulse(self, bus: str, amplitude_v: float, width_s: float) -> None:
        """Apply one programming pulse of ``amplitude_v`` (V, within +-1.5) for ``width_s``
        (s, 1e-7 to 1e-3) to the device the switch matrix connects to ``bus``, one of
        :attr:`pulse_buses` ("A"/"B"; rows up to H on a bench whose matrix has them).

        Arguments are checked here (ValueError) so that nothing out of range reaches the
        wire. Ends with an error-queue query: when it returns the pulse has been applied,
        and a refused one (acquisition armed: -221) has raised
        :class:`InstrumentReportedError`. It is the caller's business that the pulse is
        safe for the device (see protocols.safety).
        """
        bus = strict_discrete_set(str(bus).upper(),
                                  [b for b in self.pulse_buses if b in MATRIX_ROWS])
        amplitude_v = strict_range(float(amplitude_v), PULSE_AMPLITUDE_RANGE_V)
        width_s = strict_range(float(width_s), PULSE_WIDTH_RANGE_S)
        with self.lock:
            # 9 significant digits: the board sees the value that was range-checked.
            self.write(f"PROG:PULS {bus},{amplitude_v:.9g},{width_s:.9g}")
            self.check_errors_raise()

    def measure(self) -> tuple[float, bool]:
        """One reading now: (input-referred volts, overrange)."""
        reply = self.ask("MEAS?")
        volts, _, status = reply.strip().partition(",")
        try:
            return float(volts), bool(int(status) & STATUS_OVERRANGE)
        except ValueError:
            raise GarbledReply(self.name, reply, "expected <volts>,<status>") from None

    def arm(self, count: int, inputs: tuple[int, ...] | None = None) -> None:
        """Arm an acquisition of ``count`` trigger pulses: one sample per pulse of the
        ``channel`` input, or with ``inputs`` (a scan list, e.g. (1, 2)) one sample of each
        listed input per pulse, in that order (``ACQ:CHAN``; ``(0,)`` returns to the
        ``channel`` input alone). :meth:`read_samples` then holds count x len(inputs)
        records, pulse by pulse.

        Ends with an error-queue query: when it returns the board is armed (so a sweep
        may start) and a refused arm (already armed: -221) has raised.
        """
        if inputs is not None:
            inputs = tuple(int(strict_discrete_set(int(n), [0, 1, 2])) for n in inputs)
            if not inputs or (0 in inputs and inputs != (0,)) or len(set(inputs)) != len(inputs):
                raise ValueError(f"ADC scan list {inputs!r}: distinct inputs 1 and 2, or (0,)")
        with self.lock:
            if inputs is not None:
                self.write(f"ACQ:CHAN {','.join(map(str, inputs))}")
            self.acquisition_count = count
            self.write("ACQ:ARM")
            self.check_errors_raise()

    def abort(self) -> None:
        """Disarm; the samples taken so far stay readable."""
        self.write("ACQ:ABOR")

    def disarm(self) -> tuple[str, int]:
        """Disarm (``ACQ:ABOR``) and confirm with ``ACQ:STAT?`` that the board is not
        armed; returns (state, samples acquired). :class:`InstrumentError` if it still
        reports ARMED."""
        with self.lock:
            self.abort()
            state, n = self.status()
        if state == "ARMED":
            raise InstrumentError(f"{self.name}: still ARMED after ACQ:ABOR")
        return state, n

    def safe_state(self) -> SafeStateReport:
        """Disarm and confirm it (resyncing first if the last exchange failed, and once
        more if disarming fails); never raises for the board's sake. The board has no
        output to turn off: its pulse generator only pulses on ``PROG:PULS``. Ctrl-C and
        SIGTERM wait until it is done (:func:`~instruments.transport.interrupts_deferred`).
        """
        def disarmed(report: SafeStateReport) -> None:
            state, n = self.disarm()  # raises if still ARMED
            report.state = {"acquisition": state, "samples": n}

        return self.confirm_safe("disarm", disarmed)

    def shutdown(self) -> SafeStateReport:
        """:meth:`safe_state`, then pymeasure's shutdown bookkeeping."""
        report = self.safe_state()
        Instrument.shutdown(self)
        return report

    def configuration(self) -> dict[str, Any]:
        """The settings worth recording: gain, rate (S/s), averaging, channel, acquisition
        count; ``"unreadable: <why>"`` for one that cannot be read."""
        queries = {"gain": ("GAIN?", int), "rate_sps": ("RATE?", float),
                   "averaging": ("AVER?", int), "channel": ("CHAN?", int),
                   "acquisition_count": ("ACQ:COUN?", int)}
        with self.lock:
            return {key: read_setting(self, query, lambda r, c=cast: c(float(r)))
                    for key, (query, cast) in queries.items()}

    def status(self) -> tuple[str, int]:
        """(state, samples acquired); state is IDLE, ARMED or DONE."""
        reply = self.ask("ACQ:STAT?")
        state, _, n = reply.strip().partition(",")
        if state not in ACQ_STATES or not n.isdigit():
            raise GarbledReply(self.name, reply, "expected <IDLE|ARMED|DONE>,<n>")
        return state, int(n)

    def read_samples(self, *, timeout_s: float | None = None) -> np.ndarray:
        """The acquired samples (structured array of :data:`SAMPLE_DTYPE`).

        The board answers once an armed acquisition is done; ``timeout_s`` (s) overrides
        the transport's timeout for this reply.
        """
        with self.lock, self.timeout_scope(timeout_s):
            self.write("ACQ:DATA?")
            head = self.read_bytes(_HEADER)
            if len(head) < _HEADER or head[:2] != b"#8" or not head[2:].isdigit():
                self._resync()
                raise GarbledReply(self.name, head, "expected a #8 block header")
            length = int(head[2:])
            try:
                rest = self.read_bytes(length + _TRAILER)
            except InstrumentTimeout as exc:
                raise GarbledReply(self.name, head + exc.partial, f"short block: {length} "
                                   f"payload bytes announced, {len(exc.partial)} bytes "
                                   f"arrived within {exc.timeout_s:g} s") from exc
        return parse_block(self.name, head + rest)

    def _resync(self) -> None:
        # The rest of a block we could not frame would be read as the next reply.
        flush = getattr(self.adapter, "flush_read_buffer", None)
        if flush is not None:
            try:
                flush()
            except Exception:  # noqa: BLE001 - best effort; the error below says what broke
                pass

    def check_errors_raise(self) -> None:
        """Empty the error queue (SYST:ERR?); raise :class:`InstrumentReportedError` with
        the board's own texts if it held any."""
        errors = drain_scpi_errors(self, "SYST:ERR?")
        if errors:
            raise InstrumentReportedError(self.name, errors)

    def check_set_errors(self) -> list:
        """pymeasure's hook after setting gain, rate, averaging or channel: a refused
        setting raises with the board's own text instead of passing silently."""
        self.check_errors_raise()
        return []
