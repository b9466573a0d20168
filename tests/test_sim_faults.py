"""Fault injection in the simulators (simulators/faults.py) over a real loopback socket and a
real pty, and the SMU parser's refusal of hostile numbers."""

from __future__ import annotations

import re
import socket
import time

import pytest
import serial

from simulators import scpi
from simulators.faults import DropLink, FaultSpec, FaultyInstrument, wrap
from simulators.keithley2400 import SimKeithley2400
from simulators.server import PtyServer, TcpServer
from simulators.world import SimSettings, StationWorld

TIMEOUT_S = 1.0
IDN_END = b"/K/J\n"  # the end of the 2400's *IDN? reply: the marker every exchange waits for
KINDS = ("tcp", "pty")


@pytest.fixture
def world() -> StationWorld:
    w = StationWorld(SimSettings(seed=3))
    w.set_contact(True)
    w.set_closed({"1A01", "1B01"})
    return w


@pytest.fixture
def smu(world: StationWorld) -> SimKeithley2400:
    return SimKeithley2400(world, "A")


class Link:
    """A raw client: a socket to a TcpServer, or the pty of a PtyServer opened by pyserial."""

    def __init__(self, server: TcpServer | PtyServer, timeout: float = TIMEOUT_S):
        self.server = server
        self.timeout = timeout
        self._rest = b""
        if isinstance(server, TcpServer):
            self.sock: socket.socket | None = socket.create_connection(
                ("127.0.0.1", server.port), timeout=timeout
            )
            self.port = None
        else:
            self.sock = None
            self.port = serial.serial_for_url(server.path, baudrate=115200, timeout=timeout)

    def send(self, *lines: str) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        if self.sock is not None:
            self.sock.sendall(data)
        else:
            self.port.write(data)
            self.port.flush()

    def read_until(self, marker: bytes = IDN_END) -> bytes:
        """Everything up to and including ``marker``; fails on timeout or end of stream."""
        if self.port is not None:
            got = self.port.read_until(marker)
            assert got.endswith(marker), f"timed out waiting for {marker!r}, got {got!r}"
            return got
        buf = self._rest
        deadline = time.monotonic() + self.timeout
        while marker not in buf:
            assert time.monotonic() < deadline, f"timed out waiting for {marker!r}, got {buf!r}"
            chunk = self.sock.recv(65536)
            assert chunk, f"link closed waiting for {marker!r}, got {buf!r}"
            buf += chunk
        end = buf.index(marker) + len(marker)
        self._rest = buf[end:]
        return buf[:end]

    def query(self, line: str) -> str:
        self.send(line)
        return self.read_until(b"\n")[:-1].decode()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        else:
            self.port.close()


@pytest.fixture
def serve():
    """``serve(kind, instrument, spec)``: a started server, stopped at the end."""
    servers = []

    def start(kind: str, instrument, spec: FaultSpec | None = None):
        cls = TcpServer if kind == "tcp" else PtyServer
        server = cls(instrument, faults=spec).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def reply_of(link: Link, line: str) -> bytes:
    """The raw bytes ``line`` gets back: what arrives before the reply to a following *IDN?."""
    link.send(line, "*IDN?")
    got = link.read_until()
    idn = b"KEITHLEY INSTRUMENTS INC.,MODEL 2400,"
    assert got.count(idn) >= 1
    return got[: got.rindex(idn)]


# -- the spec --------------------------------------------------------------------------
def test_spec_defaults_are_off_and_options_parse():
    assert not FaultSpec().active
    assert FaultSpec.from_option("") == FaultSpec()
    assert FaultSpec.from_option("drop_after=40") == FaultSpec(drop_after=40)
    spec = FaultSpec.from_option("garble_after=10, every=5,seed=7")
    assert spec == FaultSpec(garble_after=10, every=5, seed=7) and spec.active
    spec = FaultSpec.from_option("break_device_after=3,break_device=2B,delay_s=0.25")
    assert spec.break_device == (2, "B") and spec.break_device_after == 3
    assert spec.delay_s == 0.25
    assert FaultSpec.from_dict({"break_device": [4, "A"], "break_device_after": 1}).break_device \
        == (4, "A")
    assert FaultSpec.from_option("truncate_after=2,truncate_mode=unterminated").truncate_mode \
        == "unterminated"
    assert "delay_s" in FaultSpec.__doc__ and "stick_compliance_after" in FaultSpec.__doc__


@pytest.mark.parametrize(
    "text, key",
    [
        ("drop_afer=3", "drop_afer"),
        ("bogus=1,drop_after=2", "bogus"),
        ("drop_after=0", "drop_after"),
        ("drop_after=x", "drop_after"),
        ("stall_after=-2", "stall_after"),
        ("delay_s=-1", "delay_s"),
        ("delay_s=nan", "delay_s"),
        ("delay_s=1e309", "delay_s"),
        ("every=5", "every"),
        ("garble_after=2,every=0", "every"),
        ("truncate_mode=quarter", "truncate_mode"),
        ("break_device_after=3", "break_device"),
        ("break_device=2A", "break_device_after"),
        ("break_device_after=3,break_device=2C", "break_device"),
        ("break_device_after=3,break_device=0A", "break_device"),
        ("seed=-1", "seed"),
        ("drop_after", "drop_after"),
        ("drop_after=1,drop_after=2", "drop_after"),
    ],
)
def test_spec_refuses_bad_options_naming_the_key(text, key):
    with pytest.raises(ValueError, match=re.escape(key)):
        FaultSpec.from_option(text)


def test_from_dict_names_every_unknown_key_and_checks_types():
    with pytest.raises(ValueError, match="drop_afer") as err:
        FaultSpec.from_dict({"drop_afer": 3, "garbel_after": 2, "every": 1})
    assert "garbel_after" in str(err.value)
    for bad in ({"drop_after": True}, {"drop_after": 2.5}, {"delay_s": "soon"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FaultSpec.from_dict(bad)
    with pytest.raises(ValueError, match="delay_s"):
        FaultSpec(delay_s=61)


def test_wrapper_refuses_faults_the_instrument_cannot_have(world, smu):
    class Plain:
        def handle(self, line):
            return line

    assert wrap(smu, None) is smu and wrap(smu, FaultSpec()) is smu
    with pytest.raises(ValueError, match="stick_compliance_after"):
        FaultyInstrument(Plain(), FaultSpec(stick_compliance_after=1))
    with pytest.raises(ValueError, match="break_device"):
        FaultyInstrument(Plain(), FaultSpec(break_device_after=1, break_device=(1, "A")))
    with pytest.raises(ValueError, match="pair 17"):
        FaultyInstrument(smu, FaultSpec(break_device_after=1, break_device=(17, "A")))


def test_garble_is_deterministic_for_a_seed(smu):
    def garbled(seed: int) -> bytes:
        faulty = FaultyInstrument(smu, FaultSpec(garble_after=1, seed=seed))
        return faulty.handle("*IDN?")

    clean = (smu.handle("*IDN?") + "\n").encode()
    assert garbled(1) == garbled(1) != clean
    assert garbled(1) != garbled(2)
    assert len(garbled(1)) == len(clean) and garbled(1).endswith(b"\n")


# -- link faults -----------------------------------------------------------------------
def test_tcp_drop_after_exactly_n_messages_and_reconnect_keeps_state(serve, smu):
    server = serve("tcp", smu, FaultSpec(drop_after=3))
    link = Link(server)
    link.send(":SOUR:FUNC CURR;:SOUR:CURR 3e-6")  # 1: no reply
    assert link.query(":SOUR:CURR?") == "3.000000E-06"  # 2
    assert link.query("*IDN?").startswith("KEITHLEY")  # 3: answered, then the link drops
    assert link.sock.recv(100) == b""
    link.close()
    assert server.instrument.messages == 3
    again = Link(server)
    try:
        assert again.query(":SOUR:CURR?") == "3.000000E-06"  # the state survived
        for _ in range(5):  # once only: no second drop
            assert again.query("*IDN?").startswith("KEITHLEY")
        assert server.instrument.messages == 9
    finally:
        again.close()


def test_tcp_drop_discards_pipelined_lines_uncounted(serve, smu):
    server = serve("tcp", smu, FaultSpec(drop_after=2))
    link = Link(server)
    link.send("*IDN?", "*IDN?", ":SOUR:CURR 7e-6", "*IDN?", "*IDN?")
    got = b""
    while chunk := link.sock.recv(65536):
        got += chunk
    link.close()
    assert got.count(IDN_END) == 2
    assert server.instrument.messages == 2  # the lines after the drop were not received
    again = Link(server)
    try:
        assert again.query(":SOUR:CURR?") == "0.000000E+00"  # never executed
    finally:
        again.close()


def test_pty_drop_ignores_input_until_the_device_is_reopened(serve, smu):
    server = serve("pty", smu, FaultSpec(drop_after=2))
    link = Link(server, timeout=0.2)
    link.send(":SOUR:FUNC CURR;:SOUR:CURR 3e-6")  # 1
    assert link.query("*IDN?").startswith("KEITHLEY")  # 2: answered, then the link drops
    link.send(":SOUR:CURR 5e-6")  # discarded
    link.send("*IDN?")
    assert link.port.read(100) == b""  # no answer while dropped
    link.close()
    time.sleep(0.1)  # stay closed longer than the server's poll
    again = Link(server)
    try:
        assert again.query(":SOUR:CURR?") == "3.000000E-06"  # state intact, 5e-6 discarded
        assert again.query("*IDN?").startswith("KEITHLEY")
        assert server.instrument.messages == 4
    finally:
        again.close()


@pytest.mark.parametrize("kind", KINDS)
def test_delay_holds_every_reply(kind, serve, smu):
    link = Link(serve(kind, smu, FaultSpec(delay_s=0.15)))
    try:
        for _ in range(2):
            t0 = time.monotonic()
            assert link.query("*IDN?").startswith("KEITHLEY")
            assert time.monotonic() - t0 >= 0.15
    finally:
        link.close()


@pytest.mark.parametrize("kind", KINDS)
def test_stalled_reply_never_comes_but_the_command_runs(kind, serve, smu):
    server = serve(kind, smu, FaultSpec(stall_after=2))
    link = Link(server)
    try:
        link.send(":SOUR:FUNC CURR")  # 1
        # 2: stalled; its reply would have come before the *IDN? reply (3).
        assert reply_of(link, ":SOUR:CURR 2e-6;:SOUR:CURR?") == b""
        assert link.query(":SOUR:CURR?") == "2.000000E-06"  # it ran; 4 is answered
    finally:
        link.close()


@pytest.mark.parametrize("kind", KINDS)
def test_duplicated_reply_arrives_twice(kind, serve, smu):
    link = Link(serve(kind, smu, FaultSpec(duplicate_after=1)))
    try:
        assert reply_of(link, ":SOUR:CURR?") == b"0.000000E+00\n" * 2
        assert reply_of(link, ":SOUR:CURR?") == b"0.000000E+00\n"  # once only
    finally:
        link.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "mode, expected", [("half", b"0.0000\n"), ("unterminated", b"0.000000E+00")]
)
def test_truncated_reply_lacks_terminator_or_payload(kind, mode, expected, serve, smu):
    link = Link(serve(kind, smu, FaultSpec(truncate_after=1, truncate_mode=mode)))
    try:
        assert reply_of(link, ":SOUR:CURR?") == expected
    finally:
        link.close()


@pytest.mark.parametrize("kind", KINDS)
def test_non_ascii_byte_arrives(kind, serve, smu):
    link = Link(serve(kind, smu, FaultSpec(non_ascii_after=1)))
    try:
        got = reply_of(link, ":SOUR:CURR?")
        assert b"\xff" in got and got.replace(b"\xff", b"") == b"0.000000E+00\n"
    finally:
        link.close()


@pytest.mark.parametrize("kind", KINDS)
def test_garble_repeats_every_n_messages(kind, serve, smu):
    link = Link(serve(kind, smu, FaultSpec(garble_after=2, every=3)))
    clean = (smu.handle("*IDN?") + "\n").encode()
    try:
        link.send(*["*IDN?"] * 9)
        replies = [link.read_until(b"\n") for _ in range(9)]
    finally:
        link.close()
    bad = [n for n, r in enumerate(replies, 1) if r != clean]
    assert bad == [2, 5, 8]
    assert all(len(replies[n - 1]) == len(clean) for n in bad)  # printable bytes changed


# -- instrument faults -----------------------------------------------------------------
def status_of(reading: str) -> int:
    return int(float(reading.split(",")[4]))


@pytest.mark.parametrize("kind", KINDS)
def test_stick_compliance_sets_the_status_bit(kind, serve, smu):
    link = Link(serve(kind, smu, FaultSpec(stick_compliance_after=3)))
    try:
        link.send(":SOUR:FUNC CURR;:SOUR:CURR 10e-6;:SENS:VOLT:PROT 2;:OUTP ON")  # 1
        assert status_of(link.query(":READ?")) & 8 == 0  # 2: a device well in range
        assert status_of(link.query(":READ?")) & 8 == 0  # 3: the fault comes after it
        for _ in range(3):
            assert status_of(link.query(":READ?")) & 8  # from then on, every reading
        assert smu.world.buses[smu.bus].in_compliance is False  # the physics is fine
    finally:
        link.close()


@pytest.mark.parametrize("kind", KINDS)
def test_break_device_destroys_exactly_that_device(kind, serve, smu, world):
    link = Link(serve(kind, smu, FaultSpec(break_device_after=2, break_device=(3, "B"))))
    try:
        assert link.query("*IDN?").startswith("KEITHLEY")  # 1
        assert not world.chip.destroyed.any()
        assert link.query("*IDN?").startswith("KEITHLEY")  # 2: destroyed after it
        destroyed = world.chip.destroyed
        assert destroyed[2, 1] and destroyed.sum() == 1
        assert world.max_bias_record()["1,1"]["destroyed"].sum() == 1
    finally:
        link.close()


def test_broken_device_reads_as_a_short(world):
    smu_b = SimKeithley2400(world, "B")
    faulty = FaultyInstrument(smu_b, FaultSpec(break_device_after=1, break_device=(1, "B")))
    setup = ":SOUR:FUNC CURR;:SOUR:CURR 10e-6;:SENS:VOLT:PROT 2;:SENS:FUNC 'VOLT';:OUTP ON"
    smu_b.handle(setup)
    assert float(smu_b.handle(":READ?").split(",")[0]) > 0.01  # an MTJ: kilo-ohms
    faulty.handle("*IDN?")  # 1: the device breaks after it
    volts = float(smu_b.handle(":READ?").split(",")[0])
    assert abs(volts - 10e-6 * 50) < 1e-3  # ~50 ohm


# -- servers survive -------------------------------------------------------------------
class Fragile:
    """Raises on ``BOOM``; echoes anything else."""

    def handle(self, line: str) -> str:
        if line == "BOOM":
            raise RuntimeError("simulator bug")
        return f"echo {line}"


@pytest.mark.parametrize("kind", KINDS)
def test_server_survives_an_instrument_exception(kind, serve, caplog):
    link = Link(serve(kind, Fragile()))
    try:
        link.send("BOOM", "after")
        assert link.read_until(b"\n") == b"echo after\n"
    finally:
        link.close()
    assert "simulator bug" in caplog.text


def test_scpi_handler_bug_gives_no_python_text(smu):
    smu._parser.tree.add(":TEST:BOOM", set=lambda args: 1 / 0)
    assert smu.handle(":TEST:BOOM;:SYST:ERR?") == '-300,"Device-specific error"'


# -- hostile numbers -------------------------------------------------------------------
STATE_QUERY = (
    ":TRIG:COUN?;:ARM:COUN?;:SOUR:CURR?;:OUTP?;*ESE?;:SENS:CURR:NPLC?;:SOUR:LIST:CURR?;"
    ":SYST:AZER?;:TRAC:POIN?;:SOUR:DEL?;:SENS:VOLT:PROT?"
)


@pytest.mark.parametrize(
    "command, code",
    [
        (":TRIG:COUN 1e309", -222),
        (":TRIG:COUN -1e309", -222),
        (":TRIG:COUN 1" + "0" * 400, -222),
        (":TRIG:COUN 1e99999999", -222),
        (":TRIG:COUN nan", -104),
        (":TRIG:COUN inf", -104),
        (":TRIG:COUN 0x10", -104),
        (":TRIG:COUN 1e-400", -222),
        (":ARM:COUN 1e309", -222),
        (":SOUR:CURR 1e309", -222),
        (":SOUR:CURR -1e309", -222),
        (":OUTP 1e309", -222),
        (":SYST:AZER -1e309", -222),
        ("*ESE 1e309", -222),
        (":SENS:CURR:NPLC 1e309", -222),
        (":SOUR:DEL 1e309", -222),
        (":SENS:VOLT:PROT -1e309", -222),
        (":TRAC:POIN 1e309", -222),
        (":SOUR:LIST:CURR 1e-6,1e309", -222),
        (":SYST:BEEP 1e309,1", -222),
    ],
)
def test_hostile_numbers_queue_an_error_and_change_nothing(serve, smu, command, code):
    link = Link(serve("tcp", smu))
    try:
        link.send(":SOUR:FUNC CURR;:SOUR:CURR 1e-6;:TRIG:COUN 7;:SOUR:LIST:CURR 1e-6,2e-6")
        before = link.query(STATE_QUERY)
        link.send(command)
        reply = link.query(":SYST:ERR?")
        assert re.fullmatch(r'-?\d+,"[A-Za-z ]+"', reply), reply
        assert int(reply.split(",")[0]) == code
        assert reply.split(",", 1)[1].strip('"') == scpi.ERROR_TEXTS[code]
        assert link.query(":SYST:ERR?") == '0,"No error"'
        assert link.query(STATE_QUERY) == before
    finally:
        link.close()


def test_drop_link_carries_the_last_reply(smu):
    faulty = FaultyInstrument(smu, FaultSpec(drop_after=1))
    with pytest.raises(DropLink) as drop:
        faulty.handle(":SOUR:CURR?")
    assert drop.value.reply == b"0.000000E+00\n"
    assert faulty.handle(":SOUR:CURR?") == b"0.000000E+00\n"  # once
