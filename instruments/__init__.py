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

# VISA resource strings start with an interface type and board number, then "::"; a serial
# one may name its port by path instead (pyvisa-py: ASRL/dev/ttyUSB0::INSTR).
_VISA = re.compile(r"^(?:(?:TCPIP|GPIB|USB|VXI|GPIB-VXI|PXI|VICP)\d*|ASRL[^:]*)::",
                   re.IGNORECASE)


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
    parity: str = "none",
    stop_bits: float = 1,
    data_bits: int = 8,
    flow_control: str = "none",
    read_termination: str | None = None,
    write_termination: str | None = None,
    visa_library: str | None = None,
    **kwargs: Any,
):
    """Open the transport for ``resource``: VISA for VISA resource strings
    (``TCPIP::host::port::SOCKET``, ``GPIB0::5::INSTR``, ``ASRL/dev/ttyS0::INSTR``, ...),
    pyserial for device paths and URLs (``/dev/ttyUSB0``, ``/dev/pts/4``,
    ``socket://host:port``, ``rfc2217://host:port``, ``loop://``).

    timeout_s: longest wait for a reply (s). The serial line settings (baud_rate in baud,
    parity, stop_bits, data_bits, flow_control: see :mod:`instruments.line_settings`) go to
    pyserial, and to pyvisa for VISA ``ASRL`` resources; other VISA resources (LAN, GPIB,
    USB) have no serial line and ignore them. read_termination / write_termination (None:
    ``"\\n"``, what every labctl driver speaks) go to either transport. visa_library (None:
    ``"@py"``, pyvisa-py) selects the VISA library of a VISA resource (``"@ivi"`` or a
    vendor library's path); it is refused (ValueError) for a serial path. Further keyword
    arguments go to the transport's constructor.
    Raises :class:`InstrumentConnectionError` if the link cannot be opened (or the VISA
    library cannot be loaded), ValueError for settings no transport accepts.
    """
    from instruments.line_settings import DEFAULT_TERMINATION, LinkSettings

    line = LinkSettings(
        baud_rate=baud_rate, parity=parity, stop_bits=stop_bits, data_bits=data_bits,
        flow_control=flow_control,
        read_termination=read_termination or DEFAULT_TERMINATION,
        write_termination=write_termination or DEFAULT_TERMINATION,
    )
    terminations = {"read_termination": line.read_termination,
                    "write_termination": line.write_termination}
    if is_visa_resource(resource):
        from instruments.visa_transport import VisaTransport

        if resource.upper().startswith("ASRL"):
            for key, value in line.pyvisa_serial_kwargs().items():
                kwargs.setdefault(key, value)
        if visa_library is not None:
            kwargs["visa_library"] = visa_library
        return VisaTransport(resource, timeout_s=timeout_s, wire_log=wire_log, name=name,
                             **terminations, **kwargs)
    if visa_library is not None:
        raise ValueError(f"{name or resource}: visa_library {visa_library!r} given for "
                         f"{resource!r}, which is not a VISA resource (a serial device path "
                         "or pyserial URL opens without VISA)")
    from instruments.serial_transport import SerialTransport

    return SerialTransport(resource, timeout_s=timeout_s, line=line, wire_log=wire_log,
                           name=name, **kwargs)
