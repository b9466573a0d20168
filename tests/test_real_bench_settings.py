"""Real benches: the station file's link settings reach the transports, over real links.

* terminations: the simulated ADC board served on a pseudo-terminal that ends lines with
  ``\\r\\n`` or ``\\r`` (as an instrument set up for them does), opened by a station file
  that says so, and refused (a timeout naming it) by one that does not;
* serial settings: a 2400 on ``labctl sim serve --smu-serial`` opened as a VISA ``ASRL``
  resource with a baud rate, stop bits and flow control, read back from pyvisa and from
  the tty itself; parity, data bits and baud through pyserial, read back from the open
  port; a pty's own settings read back by the kernel;
* the VISA library: ``"@py"`` given is the default's one manager; a library that cannot
  be loaded is an error naming the instrument and the key; GPIB without a GPIB driver;
* voltage caps on the 2602B's and the B2902A's channels, set by the station from its
  limits, refusing beyond them with nothing sent.
"""

from __future__ import annotations

import os
import queue
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

import pytest
import serial
import serial.rfc2217

from instruments import InstrumentConnectionError, InstrumentTimeout, open_adapter
from instruments.adc_board import AdcBoard
from instruments.keithley2400 import Keithley2400
from instruments.visa_transport import VisaLibraryError, VisaTransport, resource_manager
from labctl.station.file import BUILTIN_TEXT, parse_station
from labctl.station.runtime import open_station
from simulators.station import SimulatedStation
from simulators.world import SimSettings

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class TerminatedPty:
    """Serve a simulated instrument (``handle(line)``) on a pty whose lines end in
    ``ending`` both ways (an instrument whose terminator is set to CR LF, or CR)."""

    def __init__(self, instrument, ending: bytes):
        self.instrument, self.ending = instrument, ending
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.lines: list[bytes] = []  # every line as it arrived, ending included
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            if not select.select([self._master], [], [], 0.02)[0]:
                continue
            try:
                buffer += os.read(self._master, 4096)
            except OSError:
                time.sleep(0.01)  # no client has it open
                continue
            while (end := buffer.find(self.ending)) >= 0:
                line, buffer = buffer[:end], buffer[end + len(self.ending):]
                self.lines.append(line + self.ending)
                reply = self.instrument.handle(line.decode("ascii"))
                if isinstance(reply, str):
                    os.write(self._master, reply.encode("ascii") + self.ending)
                elif reply:  # a binary block carries its own framing
                    os.write(self._master, reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self._master)
        os.close(self._slave)


@pytest.fixture
def bench():
    """A simulated bench in process: its resources, and the simulated ADC board."""
    with SimulatedStation(SimSettings(seed=3)) as sim:
        yield sim.resources(), sim.instruments["adc"]


def client_text(resources: dict[str, str], adc_resource: str, adc_extra: str = "",
                smu_b_extra: str = "") -> str:
    """A station file of real resources (no [simulation]): the served SMUs, switch and
    prober, the ADC at ``adc_resource`` with ``adc_extra`` lines in its table."""
    return f"""
[instruments.smu_a]
driver = "keithley2400"
resource = "{resources['smu_a']}"
[instruments.smu_b]
driver = "keithley2400"
resource = "{resources['smu_b']}"
{smu_b_extra}
[instruments.adc]
driver = "adc_board"
resource = "{adc_resource}"
timeout_s = 1.0
{adc_extra}
[instruments.switch]
driver = "switch_matrix"
resource = "{resources['switch']}"
[instruments.prober]
driver = "prober"
resource = "{resources['prober']}"
[wiring]
smu_a = "smu_a"
smu_b = "smu_b"
adc = "adc"
switch = "switch"
prober = "prober"
n_pairs = 4
"""


@pytest.mark.parametrize("link", ["pyserial", "visa"])
@pytest.mark.parametrize("ending, toml", [(b"\r\n", r"\r\n"), (b"\r", r"\r"),
                                         (b"\n\r", r"\n\r")])
def test_a_station_file_termination_reaches_a_pty_with_other_line_endings(bench, ending,
                                                                          toml, link):
    resources, adc = bench
    pty = TerminatedPty(adc, ending)
    try:
        # The same tty as a device path (pyserial) or as a VISA serial resource (pyvisa-py).
        resource = pty.path if link == "pyserial" else f"ASRL{pty.path}::INSTR"
        text = client_text(resources, resource, f'read_termination = "{toml}"\n'
                                                f'write_termination = "{toml}"\n')
        config = parse_station(text, "crlf.toml")
        assert config.instruments["adc"].read_termination == ending.decode()
        with open_station(config) as station:
            assert "DIFFADC" in station.identities["adc"]
            volts, over = station.adc.measure()
            assert isinstance(volts, float) and not over
            station.adc.check_errors_raise()
        # What crossed the line ended in the chosen termination, never in a bare "\n".
        assert pty.lines and all(line.endswith(ending) for line in pty.lines)
        assert not any(b"\n" in line[:-len(ending)] for line in pty.lines)
    finally:
        pty.close()


def test_without_the_termination_a_cr_instrument_times_out_naming_it(bench):
    _, adc = bench
    pty = TerminatedPty(adc, b"\r")
    try:
        # "\n"-terminated commands never end a line there: no reply, a clear timeout.
        board = AdcBoard(open_adapter(pty.path, timeout_s=0.3, name="adc"), name="adc")
        with pytest.raises(InstrumentTimeout, match=r"adc .*timed out after 0.3 s"):
            board.ask("*IDN?")
        board.adapter.close()
    finally:
        pty.close()


def test_pyserial_gets_parity_data_bits_baud_and_terminations():
    # loop:// is pyserial's own port: it keeps what it was set to and echoes what is sent.
    adapter = open_adapter("loop://", timeout_s=0.3, baud_rate=9600, parity="even",
                           data_bits=7, stop_bits=2, flow_control="xonxoff",
                           read_termination="\r\n", write_termination="\r\n")
    try:
        port = adapter.connection
        assert (port.baudrate, port.parity, port.bytesize, port.stopbits) == (9600, "E", 7, 2)
        assert port.xonxoff and not port.rtscts
        adapter.write("PING")
        assert adapter.read() == "PING"  # sent with CR LF, read up to CR LF, stripped
    finally:
        adapter.close()
    odd = open_adapter("loop://", timeout_s=0.3, parity="mark", stop_bits=1.5,
                       flow_control="rtscts")
    try:
        assert (odd.connection.parity, odd.connection.stopbits) == ("M", 1.5)
        assert odd.connection.rtscts
    finally:
        odd.close()


class Rfc2217PortServer:
    """An RFC 2217 port server (pyserial's ``PortManager``, as a terminal server runs one)
    in front of ``port``, a pyserial port to the instrument: a client's ``rfc2217://``
    link sets ``port``'s baud rate, data bits, parity, stop bits and flow control."""

    def __init__(self, port):
        self.port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"rfc2217://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._client: socket.socket | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def write(self, data: bytes) -> None:  # PortManager's replies to the client
        self._client.sendall(data)

    def _serve(self) -> None:
        self._client, _ = self._listener.accept()
        self._client.settimeout(0.05)
        manager = serial.rfc2217.PortManager(self.port, self)

        def to_client() -> None:
            while not self._stop.is_set():
                try:
                    data = self.port.read(self.port.in_waiting or 1)
                    if data:
                        self.write(b"".join(manager.escape(data)))
                except (OSError, AttributeError, serial.SerialException):
                    return  # closed

        threading.Thread(target=to_client, daemon=True).start()
        while not self._stop.is_set():
            try:
                data = self._client.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            self.port.write(b"".join(manager.filter(data)))

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        if self._client is not None:
            self._client.close()
        self.port.close()


def test_rfc2217_carries_parity_data_bits_stop_bits_baud_and_flow_to_the_port(bench):
    resources, _ = bench
    # The port server's own port: the simulated ADC board's socket endpoint.
    server = Rfc2217PortServer(serial.serial_for_url(resources["adc_socket"], timeout=0.05))
    try:
        adapter = open_adapter(server.url, timeout_s=2.0, name="adc", baud_rate=19200,
                               parity="odd", data_bits=7, stop_bits=2, flow_control="rtscts")
        try:
            board = AdcBoard(adapter, name="adc")
            assert "DIFFADC" in board.ask("*IDN?")
            far = server.port  # what the terminal server set its port to
            assert (far.baudrate, far.parity, far.bytesize, far.stopbits) == (19200, "O", 7, 2)
            assert far.rtscts and not far.xonxoff
            board.check_errors_raise()
        finally:
            adapter.close()
    finally:
        server.close()


def test_a_serial_line_settings_reach_the_tty(bench):
    """A pty: the kernel keeps the speed, stop bits and flow control pyserial set (a pty
    forces 8 data bits without parity, so those are read back from pyserial above)."""
    resources, _ = bench
    adapter = open_adapter(resources["adc"], timeout_s=1.0, baud_rate=9600, stop_bits=2,
                           flow_control="xonxoff", name="adc")
    try:
        board = AdcBoard(adapter, name="adc")
        assert "DIFFADC" in board.ask("*IDN?")
        iflag, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(adapter.connection.fd)
        assert ispeed == ospeed == termios.B9600
        assert cflag & termios.CSTOPB and iflag & termios.IXON and iflag & termios.IXOFF
    finally:
        adapter.close()


@pytest.fixture(scope="module")
def served_serial():
    """`labctl sim serve --smu-serial`: its resources (``smu_a_serial`` an ASRL pty)."""
    proc = subprocess.Popen([sys.executable, "-m", "labctl.cli", "sim", "serve",
                             "--smu-serial"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    resources: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 30
        while (line := lines.get(timeout=max(0.1, deadline - time.monotonic()))).strip() \
                != "ready":
            name, resource = line.split()
            resources[name] = resource
        yield resources
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stdout.close()


def test_visa_asrl_gets_the_line_settings_and_talks_to_the_served_2400(served_serial):
    from pyvisa.constants import ControlFlow, StopBits

    resource = served_serial["smu_a_serial"]
    assert resource.startswith("ASRL/dev/") and resource.endswith("::INSTR")
    adapter = open_adapter(resource, timeout_s=2.0, name="smu_a", baud_rate=19200,
                           stop_bits=2, flow_control="xonxoff", write_termination="\r\n")
    try:
        assert isinstance(adapter, VisaTransport)
        conn = adapter.connection
        assert (conn.baud_rate, conn.stop_bits, conn.flow_control) == (
            19200, StopBits.two, ControlFlow.xon_xoff)
        assert conn.write_termination == "\r\n"
        # The tty under pyvisa-py's session, as the kernel has it.
        port = conn.visalib.sessions[conn.session].interface
        _, _, cflag, _, ispeed, _, _ = termios.tcgetattr(port.fd)
        assert ispeed == termios.B19200 and cflag & termios.CSTOPB
        smu = Keithley2400(adapter, name="smu_a")
        assert "MODEL 2400" in smu.ask("*IDN?")
        smu.check_errors_raise()  # "\r\n" commands understood: no -113 queued
    finally:
        adapter.close()


def test_explicit_py_is_the_default_library_and_manager(served_serial):
    assert resource_manager("@py") is resource_manager() is resource_manager("")
    default = open_adapter(served_serial["smu_a"], timeout_s=2.0)
    explicit = open_adapter(served_serial["smu_b"], timeout_s=2.0, visa_library="@py")
    try:
        assert default.manager is explicit.manager is resource_manager("@py")
        assert explicit.visa_library == "@py"
        assert "MODEL 2400" in explicit.query("*IDN?")
    finally:
        default.close()
        explicit.close()


def test_a_station_with_explicit_py_opens_as_the_default(bench):
    resources, _ = bench
    text = client_text(resources, resources["adc"], smu_b_extra='visa_library = "@py"')
    config = parse_station(text, "py.toml")
    assert config.instruments["smu_b"].visa_library == config.instruments["smu_a"].visa_library
    with open_station(config) as station:
        assert station.instruments["smu_b"].adapter.manager is (
            station.instruments["smu_a"].adapter.manager)


@pytest.mark.parametrize("library, why", [
    ("/opt/vendor/lib/libvisa-nonexistent.so", "cannot open shared object file"),
    ("@nosuchbackend", "pyvisa_nosuchbackend"),
])
def test_a_library_that_cannot_load_names_the_instrument_and_the_key(bench, library, why):
    resources, _ = bench
    text = client_text(resources, resources["adc"], smu_b_extra=f'visa_library = "{library}"')
    with pytest.raises(VisaLibraryError) as err:
        open_station(parse_station(text, "vendor.toml"))
    message = str(err.value)
    assert message.startswith("smu_b ([instruments.smu_b] visa_library): VISA library "
                              f"{library!r} cannot be loaded")
    assert why in message


def test_gpib_without_a_gpib_driver_is_a_clear_connection_error():
    with pytest.raises(InstrumentConnectionError, match=r"k2400 \(GPIB0::24::INSTR\): cannot "
                                                        r"open .*gpib"):
        open_adapter("GPIB0::24::INSTR", timeout_s=0.5, name="k2400")


def test_visa_library_for_a_serial_path_is_refused():
    with pytest.raises(ValueError, match="adc: visa_library '@py' given for 'loop://'"):
        open_adapter("loop://", timeout_s=0.1, name="adc", visa_library="@py")


# -- voltage caps on the dual-channel SMUs ---------------------------------------------------
DUAL = {"keithley2600": ("a", "b"), "keysight_b2902a": ("1", "2")}


def dual_station(driver: str) -> str:
    a, b = DUAL[driver]
    return (BUILTIN_TEXT.replace('[instruments.smu_a]\ndriver = "keithley2400"\n'
                                 '[instruments.smu_b]\ndriver = "keithley2400"\n',
                                 f'[instruments.smu]\ndriver = "{driver}"\n')
            .replace('smu_a = "smu_a"\nsmu_b = "smu_b"\ntrigger_master = "smu_a"',
                     f'smu_a = "smu:{a}"\nsmu_b = "smu:{b}"\ntrigger_master = "smu:{a}"')
            + f'\n[[wiring.pair]]\npair = 2\nsmu_b = "smu:{b}"\nmax_current_a = 60e-6\n'
              'compliance_v = 0.5\n')


@pytest.mark.parametrize("driver", sorted(DUAL))
def test_dual_channel_voltage_sources_are_capped_by_the_station_limits(driver):
    a, b = DUAL[driver]
    config = parse_station(dual_station(driver), f"{driver}.toml")
    with open_station(config) as station:
        inst = station.instruments["smu"]
        ch_a, ch_b = inst.channel(a), inst.channel(b)
        # Both channels bias pair 2, whose limits are the lowest: its limits hold on both.
        for ch in (ch_a, ch_b):
            assert (ch.voltage_cap_v, ch.compliance_cap_a) == (0.5, 60e-6)
            # ramp_step_a x min_resistance_ohm: no step moves a device by more than 20 uA
            assert ch.ramp_step_v == pytest.approx(20e-6 * config.wiring.ratings.min_resistance_ohm)
        # Caps are per channel: narrowing a leaves b as it was.
        ch_a.limit_voltage_source(max_abs_v=0.3, max_compliance_a=30e-6)
        assert (ch_b.voltage_cap_v, ch_b.compliance_cap_a) == (0.5, 60e-6)
        log = station.wire_logs["smu"]
        sent = log.counts["w"]
        refused = [
            lambda: setattr(ch_a, "source_voltage", 0.31),
            lambda: setattr(ch_b, "source_voltage", -0.51),
            lambda: setattr(ch_b, "compliance_current", 61e-6),
            lambda: ch_a.prepare_voltage_source(compliance_a=31e-6),
            lambda: ch_b.ramp_voltage_to(0.6),
            lambda: ch_a.source_voltage_and_measure(0.35),
        ]
        for attempt in refused:
            with pytest.raises(ValueError):
                attempt()
        assert log.counts["w"] == sent  # nothing reached the instrument
        # Within the caps it sources, the source function and level read back.
        ch_b.prepare_voltage_source(compliance_a=60e-6)
        ch_b.ramp_voltage_to(0.4)
        state = ch_b.present_state()
        assert (state.output_on, state.function) == (True, "VOLT")
        assert state.level == pytest.approx(0.4)
        assert ch_b.configuration()["current_compliance_a"] == pytest.approx(60e-6)
        reading = ch_b.measure_once()
        assert len(reading) == 1 and not reading.compliance[0]  # nothing contacted: no load
        report = station.safe_shutdown()
        assert report.confirmed, report.problems
        after = ch_b.present_state()
        assert (after.output_on, after.level) == (False, 0.0)
