"""Instrument drivers and transports of labctl.

Transports (one module each, pymeasure adapters): :mod:`instruments.visa_transport`
(VISA resource strings), :mod:`instruments.serial_transport` (device paths and pyserial
URLs); :func:`open_adapter` picks one from the resource string. Drivers (pymeasure
instruments): :mod:`instruments.keithley2400`, :mod:`instruments.adc_board`,
:mod:`instruments.switch_matrix`, :mod:`instruments.prober`.
"""

from __future__ import annotations

import re
from typing import Any

from instruments.transport import (
    GarbledReply,
    IdentityMismatch,
    InstrumentConnectionError,
    InstrumentError,
    InstrumentReportedError,
    InstrumentTimeout,
    SafeStateReport,
    StaleReply,
    UnexpectedReply,
    WireLog,
    interrupts_deferred,
    verify_identity,
)

__all__ = [
    "GarbledReply",
    "IdentityMismatch",
    "InstrumentConnectionError",
    "InstrumentError",
    "InstrumentReportedError",
    "InstrumentTimeout",
    "SafeStateReport",
    "StaleReply",
    "UnexpectedReply",
    "WireLog",
    "interrupts_deferred",
    "is_visa_resource",
    "open_adapter",
    "verify_identity",
]

# VISA resource strings start with an interface type and board number, then "::".
_VISA = re.compile(r"^(TCPIP|GPIB|USB|ASRL|VXI|GPIB-VXI|PXI|VICP)\d*::", re.IGNORECASE)


def is_visa_resource(resource: str) -> bool:
    """True for a VISA resource string, False for a device path or pyserial URL."""
    return bool(_VISA.match(resource))


def open_adapter(
    resource: str,
    *,
    timeout_s: float,
    wire_log: WireLog | None = None,
    name: str | None = None,
    baud_rate: int = 115200,
    **kwargs: Any,
):
    """Open the transport for ``resource``: VISA for VISA resource strings
    (``TCPIP::host::port::SOCKET``, ``GPIB0::5::INSTR``, ...), pyserial for device paths
    and URLs (``/dev/ttyUSB0``, ``/dev/pts/4``, ``socket://host:port``, ``loop://``).

    timeout_s: longest wait for a reply (s); baud_rate: for serial lines (VISA ``ASRL``
    resources too); further keyword arguments go to the transport's constructor.
    Raises :class:`InstrumentConnectionError` if the link cannot be opened.
    """
    if is_visa_resource(resource):
        from instruments.visa_transport import VisaTransport

        if resource.upper().startswith("ASRL"):
            kwargs.setdefault("baud_rate", baud_rate)
        return VisaTransport(resource, timeout_s=timeout_s, wire_log=wire_log, name=name,
                             **kwargs)
    from instruments.serial_transport import SerialTransport

    return SerialTransport(resource, timeout_s=timeout_s, baud_rate=baud_rate,
                           wire_log=wire_log, name=name, **kwargs)
