"""How one instrument's link is set up: VISA library, serial line settings, terminations.

:class:`LinkSettings` holds what a station file may choose per instrument and turns it into
the keyword arguments of the two transports: pyserial's (``serial_for_url``: ``baudrate``,
``bytesize``, ``parity``, ``stopbits``, ``xonxoff``, ``rtscts``) and pyvisa's
(``open_resource`` on an ``ASRL`` resource: ``baud_rate``, ``data_bits``, ``parity``,
``stop_bits``, ``flow_control``). The allowed values are the module's constants, which
the station file's validation uses too, so that a value it accepts is one the transports
can pass on. Units: baud.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: The VISA library when none is chosen: pyvisa-py (pure Python, no vendor install).
DEFAULT_VISA_LIBRARY = "@py"
#: Parity names -> pyserial's constants (``serial.PARITY_*``).
PARITIES = {"none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}
#: Stop bits -> pyserial's values (``serial.STOPBITS_*``).
STOP_BITS = (1, 1.5, 2)
DATA_BITS = (5, 6, 7, 8)
FLOW_CONTROLS = ("none", "xonxoff", "rtscts")
#: Line terminations a station file may choose (read and write).
TERMINATIONS = ("\n", "\r\n", "\r", "\n\r")
#: What every labctl transport uses unless told otherwise (both ways).
DEFAULT_TERMINATION = "\n"
# "@py", "@ivi", "@sim", or a path to a vendor library optionally followed by "@backend".
_BACKEND = re.compile(r"@[a-z][a-z0-9_-]*")


def visa_library_problem(value: str) -> str | None:
    """Why ``value`` cannot name a VISA library for pyvisa (None: it can). A backend is
    ``@py``, ``@ivi``, ``@sim`` (any installed ``pyvisa_<name>``); anything else is a path
    to a vendor VISA library, optionally ``path@backend``. Whether it loads is only known
    when it is opened."""
    if not value.strip() or value != value.strip():
        return "must be a backend such as \"@py\" or \"@ivi\", or a path to a VISA library"
    if any(not ch.isprintable() for ch in value):
        return "contains a control character"
    path, at, backend = value.rpartition("@")
    if at and not _BACKEND.fullmatch("@" + backend):
        return f"{'@' + backend!r} is not a pyvisa backend name (such as @py or @ivi)"
    return None


@dataclass(frozen=True)
class LinkSettings:
    """A serial line's settings and a link's terminations.

    baud_rate (baud); parity: one of :data:`PARITIES`; stop_bits: 1, 1.5 or 2; data_bits: 5
    to 8; flow_control: ``none``, ``xonxoff`` (software) or ``rtscts`` (hardware);
    read_termination / write_termination: one of :data:`TERMINATIONS`.
    """

    baud_rate: int = 115200
    parity: str = "none"
    stop_bits: float = 1
    data_bits: int = 8
    flow_control: str = "none"
    read_termination: str = DEFAULT_TERMINATION
    write_termination: str = DEFAULT_TERMINATION

    def __post_init__(self) -> None:
        # The transports' last line of defence; a station file reports these with its key.
        checks = (
            ("parity", self.parity in PARITIES, sorted(PARITIES)),
            ("stop_bits", self.stop_bits in STOP_BITS, STOP_BITS),
            ("data_bits", self.data_bits in DATA_BITS, DATA_BITS),
            ("flow_control", self.flow_control in FLOW_CONTROLS, FLOW_CONTROLS),
            ("read_termination", self.read_termination in TERMINATIONS, TERMINATIONS),
            ("write_termination", self.write_termination in TERMINATIONS, TERMINATIONS),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name} {getattr(self, name)!r} is not one of "
                                 f"{', '.join(map(repr, allowed))}")
        if isinstance(self.baud_rate, bool) or not isinstance(self.baud_rate, int) \
                or self.baud_rate <= 0:
            raise ValueError(f"baud_rate must be a positive integer, got {self.baud_rate!r}")

    def pyserial_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``serial.serial_for_url`` for these line settings."""
        return {
            "baudrate": self.baud_rate,
            "bytesize": self.data_bits,
            "parity": PARITIES[self.parity],
            "stopbits": self.stop_bits,
            "xonxoff": self.flow_control == "xonxoff",
            "rtscts": self.flow_control == "rtscts",
        }

    def pyvisa_serial_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of pyvisa's ``open_resource`` for an ``ASRL`` resource."""
        from pyvisa.constants import ControlFlow, Parity, StopBits

        return {
            "baud_rate": self.baud_rate,
            "data_bits": self.data_bits,
            "parity": getattr(Parity, self.parity),
            "stop_bits": {1: StopBits.one, 1.5: StopBits.one_and_a_half,
                          2: StopBits.two}[self.stop_bits],
            "flow_control": {"none": ControlFlow.none, "xonxoff": ControlFlow.xon_xoff,
                             "rtscts": ControlFlow.rts_cts}[self.flow_control],
        }
