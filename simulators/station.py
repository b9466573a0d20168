"""The whole simulated probe station: one world, its instruments, served on loopback.

What is built and how it is cabled is a :class:`~simulators.cabling.Cabling` (default
:data:`~simulators.cabling.DEFAULT_CABLING`: SMUs smu_a on row A and smu_b on row B, adc,
switch, prober). Every SMU (a Keithley 2400, SCPI, unless ``smu_models`` names another:
``keithley2600`` a 2602B speaking TSP, ``keysight_b2902a`` a B2902A; a two-channel SMU is one
instrument with a cable per channel), the switch matrix and the prober are served on
loopback TCP sockets (VISA ``TCPIP::127.0.0.1::<port>::SOCKET``); the ADC board
is served on a pseudo-terminal (its serial port) and, as a fallback for clients without pty
support, on a TCP socket (pyserial ``socket://``). Both ADC endpoints talk to the same board.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping

from simulators.adc_board import SimAdcBoard
from simulators.cabling import DEFAULT_CABLING, Cabling
from simulators.faults import FaultSpec, wrap
from simulators.prober import SimProber
from simulators.server import PtyServer, TcpServer
from simulators.switch_matrix import SimSwitchMatrix
from simulators.world import SimSettings, StationWorld

#: First serial number of the simulated SMUs; the i-th SMU of the cabling gets base + i.
SMU_SERIAL_BASE = 4000001
#: The simulated source-meter models, by the name a station file's driver gives them.
SMU_MODELS = ("keithley2400", "keithley2600", "keysight_b2902a")


def _build_smu(model: str, world: StationWorld, cables: list, serial: str):
    """One simulated SMU of ``model`` on its cables (one per channel it has cabled)."""
    # Imported here so this module imports before the SMU simulators exist.
    if model == "keithley2400":
        from simulators.keithley2400 import SimKeithley2400

        if len(cables) != 1:
            raise ValueError(f"{cables[0].instrument}: a 2400 has one channel, "
                             f"{len(cables)} are cabled")
        return SimKeithley2400(world, cables[0], serial=serial)
    if model == "keithley2600":
        from simulators.keithley2600 import SimKeithley2600

        return SimKeithley2600(world, {c.channel: c for c in cables}, serial=serial)
    if model == "keysight_b2902a":
        from simulators.keysight_b2900 import SimB2902A

        return SimB2902A(world, {c.channel: c for c in cables}, serial=serial)
    raise ValueError(f"no simulated SMU model {model!r} (known: {', '.join(SMU_MODELS)})")


class HostTimed:
    """An instrument as the host reaches it: each command starts on the instrument's
    timeline no earlier than the host's time, and each reply brings the host up to the
    instrument's time (:class:`~simulators.world.SimClock`). The host is one client
    that talks to one instrument after another; this is how a command it sends after
    another instrument's reply waits for that reply."""

    def __init__(self, instrument, clock, name: str):
        self.instrument = instrument
        self.world = getattr(instrument, "world", None)
        self._clock = clock
        self._name = name

    def handle(self, line: str):
        self._clock.command(self._name)
        reply = self.instrument.handle(line)
        if reply is not None:
            self._clock.reply(self._name)
        return reply

    def __getattr__(self, attr: str):
        return getattr(self.instrument, attr)


def tcp_names(cabling: Cabling) -> tuple[str, ...]:
    """Names of the TCP endpoints in the order their ports are assigned from a port base:
    the SMUs in cabling order, the ADC's socket endpoint ``<adc>_socket``, the switch
    matrix, the prober."""
    return (*cabling.smu_names, f"{cabling.adc}_socket", cabling.switch, cabling.prober)


def resource_names(cabling: Cabling) -> tuple[str, ...]:
    """Keys of :meth:`SimulatedStation.resources`, in order: the SMUs in cabling order, the
    ADC (its pty), ``<adc>_socket``, the switch matrix, the prober."""
    return (*cabling.smu_names, cabling.adc, f"{cabling.adc}_socket", cabling.switch,
            cabling.prober)


#: TCP endpoint and resource names of the default cabling.
TCP_NAMES = tcp_names(DEFAULT_CABLING)
NAMES = resource_names(DEFAULT_CABLING)


class SimulatedStation:
    """A simulated station; ``start()`` serves it, ``stop()`` (or leaving ``with``) ends it.

    ``cabling`` names and cables the instruments (validated: a bad one raises ValueError);
    one simulated SMU is built per SMU instrument of the cabling (a Keithley 2400 unless
    ``smu_models`` maps its name to another of :data:`SMU_MODELS`), with serial numbers
    :data:`SMU_SERIAL_BASE` + i in cabling order. ``port_base`` gives the TCP servers the
    fixed ports ``port_base + i`` in the order of :func:`tcp_names` (SMUs in cabling order,
    then the ADC socket, switch, prober: on the default cabling :data:`TCP_NAMES`); None
    (the default) takes ephemeral ports. ``faults`` injects faults per instrument name
    (:class:`~simulators.faults.FaultSpec`).
    """

    def __init__(
        self,
        settings: SimSettings | None = None,
        *,
        cabling: Cabling = DEFAULT_CABLING,
        faults: Mapping[str, FaultSpec] | None = None,
        port_base: int | None = None,
        smu_models: Mapping[str, str] | None = None,
    ):
        self.settings = settings or SimSettings()
        self.cabling = cabling.validate()
        self.faults = dict(faults or {})
        unknown = sorted(set(self.faults) - set(self.cabling.instruments))
        if unknown:
            raise ValueError(f"faults for {unknown[0]!r}, which the cabling does not name")
        self.port_base = port_base
        self.smu_models = dict(smu_models or {})
        unknown = sorted(set(self.smu_models) - set(self.cabling.smu_names))
        if unknown:
            raise ValueError(f"an SMU model for {unknown[0]!r}, which the cabling does not name")
        self.world = StationWorld(self.settings, self.cabling)
        self.instruments: dict[str, object] = {}
        self.servers: dict[str, TcpServer | PtyServer] = {}
        self._started = False

    def start(self) -> SimulatedStation:
        """Build the instruments and start serving them; returns self."""
        if self._started:
            return self
        world, cabling = self.world, self.cabling
        adc = SimAdcBoard(world, name=cabling.adc, trigger_line=1)
        self.instruments = {
            name: _build_smu(self.smu_models.get(name, "keithley2400"), world,
                             [c for c in cabling.smus if c.instrument == name],
                             str(SMU_SERIAL_BASE + i))
            for i, name in enumerate(cabling.smu_names)
        }
        self.instruments[cabling.adc] = adc
        self.instruments[cabling.switch] = SimSwitchMatrix(world)
        self.instruments[cabling.prober] = SimProber(world)
        # One fault wrapper per instrument: the ADC's two endpoints share its message count.
        served = {
            name: wrap(HostTimed(inst, world.clock, name), self.faults.get(name), world, name)
            for name, inst in self.instruments.items()
        }
        served[f"{cabling.adc}_socket"] = served[cabling.adc]
        try:
            self.servers[cabling.adc] = PtyServer(served[cabling.adc]).start()
            for offset, name in enumerate(tcp_names(cabling)):
                port = 0 if self.port_base is None else self.port_base + offset
                self.servers[name] = TcpServer(served[name], port).start()
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
        adc = self.instruments.get(self.cabling.adc)
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
        """Resource string of each instrument, keyed by its name in the cabling (in the
        order of :func:`resource_names`): VISA socket strings, the ADC's pty path (under
        its name, ``adc`` by default) and its ``socket://`` URL (``<name>_socket``)."""
        if not self._started:
            raise RuntimeError("the simulated station is not started")
        out = {}
        for name in resource_names(self.cabling):
            server = self.servers[name]
            if isinstance(server, PtyServer):
                out[name] = server.path
            elif name == f"{self.cabling.adc}_socket":
                out[name] = server.url
            else:
                out[name] = server.resource
        return out

    def __enter__(self) -> SimulatedStation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
