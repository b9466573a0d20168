"""The whole simulated probe station: one world, five instruments, served on loopback.

SMU A and SMU B (Keithley 2400 SCPI), the switch matrix and the prober are served on
loopback TCP sockets (VISA ``TCPIP::127.0.0.1::<port>::SOCKET``); the ADC board is served
on a pseudo-terminal (its serial port) and, as a fallback for clients without pty support,
on a TCP socket (pyserial ``socket://``). Both ADC endpoints talk to the same board.
"""

from __future__ import annotations

import contextlib
import socket

from simulators.adc_board import SimAdcBoard
from simulators.prober import SimProber
from simulators.server import PtyServer, TcpServer
from simulators.switch_matrix import SimSwitchMatrix
from simulators.world import SimSettings, StationWorld

#: Instrument names in the order their TCP ports are assigned from a port base.
TCP_NAMES = ("smu_a", "smu_b", "adc_socket", "switch", "prober")
NAMES = ("smu_a", "smu_b", "adc", "adc_socket", "switch", "prober")


class SimulatedStation:
    """A simulated station; ``start()`` serves it, ``stop()`` (or leaving ``with``) ends it.

    ``port_base`` gives the TCP servers the fixed ports ``port_base + i`` in the order of
    :data:`TCP_NAMES`; None (the default) takes ephemeral ports.
    """

    def __init__(self, settings: SimSettings | None = None, *, port_base: int | None = None):
        self.settings = settings or SimSettings()
        self.port_base = port_base
        self.world = StationWorld(self.settings)
        self.instruments: dict[str, object] = {}
        self.servers: dict[str, TcpServer | PtyServer] = {}
        self._started = False

    def start(self) -> SimulatedStation:
        """Build the instruments and start serving them; returns self."""
        if self._started:
            return self
        # Imported here so this module imports before the SMU simulator exists.
        from simulators.keithley2400 import SimKeithley2400

        world = self.world
        adc = SimAdcBoard(world, trigger_line=1)
        self.instruments = {
            "smu_a": SimKeithley2400(world, "A", serial="4000001"),
            "smu_b": SimKeithley2400(world, "B", serial="4000002"),
            "adc": adc,
            "switch": SimSwitchMatrix(world),
            "prober": SimProber(world),
        }
        backing = {"smu_a": "smu_a", "smu_b": "smu_b", "adc_socket": "adc",
                   "switch": "switch", "prober": "prober"}
        try:
            self.servers["adc"] = PtyServer(adc).start()
            for offset, name in enumerate(TCP_NAMES):
                port = 0 if self.port_base is None else self.port_base + offset
                self.servers[name] = TcpServer(self.instruments[backing[name]], port).start()
        except BaseException:
            self._shutdown()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop every server and release any client waiting on the ADC; idempotent."""
        self._shutdown()
        self._started = False

    def _shutdown(self) -> None:
        adc = self.instruments.get("adc")
        if isinstance(adc, SimAdcBoard):
            adc.close()
        for server in self.servers.values():
            # Closing a listener does not wake a thread blocked in accept() on Linux, which
            # keeps the port listening and serves one more client; shutdown() does wake it.
            # (Belongs in TcpServer.stop; done here until server.py does it.)
            listener = getattr(server, "_listener", None)
            if listener is not None:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                server.stop()
        self.servers = {}

    def resources(self) -> dict[str, str]:
        """Resource string of each instrument: VISA socket strings, the ADC's pty path
        (``adc``) and its ``socket://`` URL (``adc_socket``)."""
        if not self._started:
            raise RuntimeError("the simulated station is not started")
        out = {}
        for name in NAMES:
            server = self.servers[name]
            if isinstance(server, PtyServer):
                out[name] = server.path
            elif name == "adc_socket":
                out[name] = server.url
            else:
                out[name] = server.resource
        return out

    def __enter__(self) -> SimulatedStation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
