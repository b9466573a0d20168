"""Fault injection for the simulated instruments: broken links, bad replies, broken devices.

A :class:`FaultSpec` describes the faults of ONE instrument; every fault is off by default
and every fault is deterministic (message counts, plus ``seed`` for the bytes a garble
picks). :class:`FaultyInstrument` wraps a line instrument with a spec: it counts the
lines the server actually hands it (1-based; lines a dropped link discards are not
counted), runs each one on the instrument, applies the instrument faults, and returns the
framed reply bytes the server sends as they are (None: send nothing). To drop the link it
raises :class:`DropLink`, which carries the reply still to be sent first; both servers in
:mod:`simulators.server` honour it (``TcpServer(instrument, port, faults=spec)``,
``PtyServer(instrument, faults=spec)``, or an instrument already wrapped with :func:`wrap`).

Command-line form (``FaultSpec.from_option``): ``"drop_after=40"``,
``"garble_after=10,every=5"``, ``"break_device_after=3,break_device=2B"``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

#: Faults that hit the reply to one message and repeat with ``every``.
REPLY_FAULTS = (
    "stall_after",
    "garble_after",
    "truncate_after",
    "duplicate_after",
    "non_ascii_after",
)
_COUNTS = ("drop_after", *REPLY_FAULTS, "stick_compliance_after", "break_device_after", "every")
TRUNCATE_MODES = ("half", "unterminated")
MAX_DELAY_S = 60.0
_PRINTABLE = bytes(range(0x21, 0x7F))
log = logging.getLogger(__name__)


class DropLink(Exception):  # noqa: N818 - a signal to the server, not an error
    """The server must send ``reply`` (may be empty) and then drop the link."""

    def __init__(self, reply: bytes = b""):
        super().__init__("fault: drop the link")
        self.reply = reply


def frame(reply: str | bytes | None) -> bytes:
    """The bytes a server sends for a reply: str gets ``\\n``, bytes go as they are."""
    if reply is None:
        return b""
    if isinstance(reply, bytes):
        return reply
    return reply.encode("ascii", "replace") + b"\n"


@dataclass(frozen=True)
class FaultSpec:
    """The faults of one simulated instrument; all off by default.

    Message numbers N count the lines the instrument received, from 1, across clients.

    ======================== ============= ====================================================
    knob                     unit          effect
    ======================== ============= ====================================================
    drop_after               messages      after message N (executed, its reply sent) the link
                                           drops, once: TCP closes the client's socket, a pty
                                           ignores input until the client reopens the device
    delay_s                  s (wall)      every reply is sent this much later (0..60)
    stall_after              message       the reply to message N is never sent (the command
                                           still runs)
    garble_after             message       printable bytes of the reply are changed
    truncate_after           message       the reply is cut short, see ``truncate_mode``
    truncate_mode            "half" |      "half": the first half of the payload, then the
                             "unterminated" terminator; "unterminated": the whole payload,
                                           no terminator
    duplicate_after          message       the reply is sent twice
    non_ascii_after          message       a 0xff byte is inserted into the reply
    every                    messages      stall/garble/truncate/duplicate/non-ASCII repeat
                                           every ``every`` messages after their N
    stick_compliance_after   message       after message N an SMU reports compliance in the
                                           status of every reading
    break_device_after       message       after message N the device ``break_device`` of the
                                           die under the probes is destroyed (a short)
    break_device             (pair, dev)   pair from 1, device "A" or "B"
    seed                     -             seeds which bytes a garble or 0xff fault touches
    ======================== ============= ====================================================

    A reply fault on a message that has no reply does nothing. Instrument faults take effect
    once message N has been handled, so the reply to N itself is not affected.
    """

    drop_after: int | None = None
    delay_s: float = 0.0
    stall_after: int | None = None
    garble_after: int | None = None
    truncate_after: int | None = None
    truncate_mode: str = "half"
    duplicate_after: int | None = None
    non_ascii_after: int | None = None
    every: int | None = None
    stick_compliance_after: int | None = None
    break_device_after: int | None = None
    break_device: tuple[int, str] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for key in _COUNTS:
            value = getattr(self, key)
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"fault {key}: expected an integer >= 1, got {value!r}")
        delay = self.delay_s
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
            or not 0.0 <= delay <= MAX_DELAY_S
        ):
            raise ValueError(
                f"fault delay_s: expected seconds in 0..{MAX_DELAY_S:g}, got {delay!r}"
            )
        if self.truncate_mode not in TRUNCATE_MODES:
            raise ValueError(
                f"fault truncate_mode: expected one of {', '.join(TRUNCATE_MODES)}, "
                f"got {self.truncate_mode!r}"
            )
        if type(self.seed) is not int or self.seed < 0:
            raise ValueError(f"fault seed: expected an integer >= 0, got {self.seed!r}")
        device = self.break_device
        if device is not None:
            if (
                not isinstance(device, tuple)
                or len(device) != 2
                or type(device[0]) is not int
                or device[0] < 1
                or device[1] not in ("A", "B")
            ):
                raise ValueError(
                    f"fault break_device: expected (pair >= 1, 'A' or 'B'), got {device!r}"
                )
        if (self.break_device_after is None) != (device is None):
            missing = "break_device" if device is None else "break_device_after"
            raise ValueError(f"fault {missing}: break_device_after and break_device go together")
        if self.every is not None and all(getattr(self, k) is None for k in REPLY_FAULTS):
            raise ValueError(f"fault every: repeats one of {', '.join(REPLY_FAULTS)}; none is set")

    @property
    def active(self) -> bool:
        """Whether any fault is on."""
        return self != FaultSpec(seed=self.seed, truncate_mode=self.truncate_mode)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        """A spec from a mapping (a station file table, JSON, or parsed option text).

        Values may be given as their types or as strings; unknown keys and bad values raise
        ValueError naming the key.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(
                f"unknown fault key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**{key: _convert(key, value) for key, value in data.items()})

    @classmethod
    def from_option(cls, text: str) -> FaultSpec:
        """A spec from ``key=value[,key=value...]``, e.g. ``"garble_after=10,every=5"``."""
        data: dict[str, str] = {}
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValueError(f"fault option {item!r}: expected key=value")
            if key in data:
                raise ValueError(f"fault {key}: given twice")
            data[key] = value.strip()
        return cls.from_dict(data)


def _convert(key: str, value: Any) -> Any:
    """A value of ``key`` as the dataclass wants it; strings are parsed."""
    if isinstance(value, str):
        text = value.strip()
        if key == "break_device":
            return _parse_device(text)
        if key == "truncate_mode":
            return text.lower()
        if text.lower() in ("", "none", "off"):
            if key == "delay_s":
                return 0.0
            if key == "seed":
                return 0
            return None
        try:
            return float(text) if key == "delay_s" else int(text)
        except ValueError:
            raise ValueError(f"fault {key}: not a number: {value!r}") from None
    if key == "break_device" and isinstance(value, list | tuple):
        return tuple(value)
    return value


def _parse_device(text: str) -> tuple[int, str] | None:
    """``"3A"``, ``"3:A"`` or ``"3 A"`` -> (3, "A")."""
    if text.lower() in ("", "none", "off"):
        return None
    pair, dev = text[:-1].strip(" :/"), text[-1:].upper()
    if not pair.isdigit() or dev not in ("A", "B"):
        raise ValueError(
            f"fault break_device: expected e.g. 3A (pair, device A or B), got {text!r}"
        )
    return int(pair), dev


def _hits(after: int | None, n: int, every: int | None) -> bool:
    if after is None or n < after:
        return False
    return n == after or (every is not None and (n - after) % every == 0)


class FaultyInstrument:
    """A line instrument with the faults of ``spec``: ``handle`` returns framed bytes.

    ``world`` (default: the instrument's own ``world``) is needed by ``break_device_after``;
    ``stick_compliance_after`` needs an instrument with ``stick_compliance()`` (the 2400).
    ``messages`` counts the lines handled so far. Exceptions of the instrument propagate
    (the servers log them); the line still counts.
    """

    def __init__(self, instrument: Any, spec: FaultSpec, world: Any = None, name: str = ""):
        self.instrument = instrument
        self.spec = spec
        self.world = world if world is not None else getattr(instrument, "world", None)
        self.name = name or type(instrument).__name__
        self.messages = 0
        self._lock = threading.Lock()
        if spec.stick_compliance_after is not None and not hasattr(instrument, "stick_compliance"):
            raise ValueError(
                f"fault stick_compliance_after: {self.name} has no compliance to stick"
            )
        if spec.break_device is not None:
            if self.world is None or not hasattr(self.world, "destroy_device"):
                raise ValueError(f"fault break_device: {self.name} has no world with devices")
            n_pairs = self.world.settings.n_pairs
            if spec.break_device[0] > n_pairs:
                raise ValueError(
                    f"fault break_device: pair {spec.break_device[0]} beyond the {n_pairs} pairs"
                )

    def handle(self, line: str) -> bytes | None:
        """Run one received line; the bytes to send (None: nothing). Raises DropLink."""
        spec = self.spec
        with self._lock:
            self.messages += 1
            n = self.messages
        try:
            reply = self.instrument.handle(line)
        except Exception:
            self._instrument_faults(n)
            if n == spec.drop_after:
                log.exception("%s: message %d failed; dropping the link as planned", self.name, n)
                raise DropLink(b"") from None
            raise
        self._instrument_faults(n)
        out = self._reply_faults(n, frame(reply))
        if out and spec.delay_s > 0:
            time.sleep(spec.delay_s)
        if n == spec.drop_after:
            raise DropLink(out or b"")
        return out or None

    # -- faults ------------------------------------------------------------------------
    def _instrument_faults(self, n: int) -> None:
        spec = self.spec
        if n == spec.stick_compliance_after:
            self.instrument.stick_compliance(True)
        if n == spec.break_device_after and spec.break_device is not None:
            pair, dev = spec.break_device
            self.world.destroy_device(pair - 1, "AB".index(dev))

    def _reply_faults(self, n: int, out: bytes) -> bytes:
        spec, every = self.spec, self.spec.every
        if not out:
            return out
        if _hits(spec.stall_after, n, every):
            return b""
        rng = random.Random(spec.seed * 1_000_003 + n)
        term = b"\n" if out.endswith(b"\n") else b""
        payload = out[: len(out) - len(term)]
        if _hits(spec.garble_after, n, every):
            payload = garble(payload, rng)
        if _hits(spec.non_ascii_after, n, every):
            at = rng.randrange(len(payload) + 1)
            payload = payload[:at] + b"\xff" + payload[at:]
        if _hits(spec.truncate_after, n, every):
            if spec.truncate_mode == "half":
                payload = payload[: len(payload) // 2]
            else:
                term = b""
        out = payload + term
        if _hits(spec.duplicate_after, n, every):
            out += out
        return out


def garble(payload: bytes, rng: random.Random) -> bytes:
    """``payload`` with about one printable byte in ten (at least one) changed to another."""
    spots = [i for i, b in enumerate(payload) if 0x21 <= b < 0x7F]
    if not spots:
        return payload
    data = bytearray(payload)
    for i in rng.sample(spots, max(1, len(spots) // 10)):
        data[i] = rng.choice([c for c in _PRINTABLE if c != data[i]])
    return bytes(data)


def wrap(instrument: Any, spec: FaultSpec | None, world: Any = None, name: str = "") -> Any:
    """``instrument`` with the faults of ``spec``; the instrument itself when none is on."""
    if spec is None or not spec.active:
        return instrument
    return FaultyInstrument(instrument, spec, world, name)
