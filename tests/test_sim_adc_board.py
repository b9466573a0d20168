"""The simulated ADC board: its command set, readings, armed acquisition and binary block,
on handle() directly and end to end over a real pty and a socket:// connection."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest
import serial

from simulators.adc_board import SimAdcBoard, decode_block
from simulators.server import PtyServer, TcpServer
from simulators.world import SimSettings, StationWorld

SETTINGS_QUERIES = ("GAIN?", "RATE?", "AVER?", "CHAN?", "ACQ:COUN?", "ACQ:STAT?")


@pytest.fixture
def world() -> StationWorld:
    return StationWorld(SimSettings(seed=7))


@pytest.fixture
def board(world: StationWorld) -> SimAdcBoard:
    return SimAdcBoard(world, serial="ADC0042")


def snapshot(board: SimAdcBoard) -> dict[str, str | bytes | None]:
    state = {q: board.handle(q) for q in SETTINGS_QUERIES}
    state["ACQ:DATA?"] = board.handle("ACQ:DATA?")
    return state


def next_error(board: SimAdcBoard) -> int:
    return int(board.handle("SYST:ERR?").split(",")[0])


def set_bus_a(world: StationWorld, volts: float) -> None:
    """Hold bus A at ``volts``: a source with no device attached sits at its compliance."""
    assert not world.in_contact
    world.drive("A", 1e-6 if volts >= 0 else -1e-6, abs(volts))


def parse_block(raw: bytes) -> list[tuple[int, float, int]]:
    """Independent parser of the #8 block (not the module's): checks framing and CRC."""
    assert raw[:2] == b"#8"
    length = int(raw[2:10])
    payload, crc, tail = raw[10 : 10 + length], raw[10 + length : 14 + length], raw[14 + length :]
    assert tail == b"\n"
    assert struct.unpack("<I", crc)[0] == zlib.crc32(payload)
    assert length % 17 == 0
    return [struct.unpack_from("<Qdb", payload, k) for k in range(0, length, 17)]


def read_block(port) -> bytes:
    """Read one #8 block from a pyserial port."""
    head = port.read(10)
    assert head[:2] == b"#8", head
    rest = port.read(int(head[2:10]) + 5)
    return head + rest


# -- command set -----------------------------------------------------------------------
def test_identity_and_reset_defaults(board: SimAdcBoard):
    assert board.handle("*IDN?") == "LABCTL,DIFFADC-24,ADC0042,1.0"
    for command in ("GAIN 100", "RATE 50000", "AVER 16", "CHAN 2", "ACQ:COUN 7"):
        assert board.handle(command) is None
    assert board.handle("*RST") is None
    assert [board.handle(q) for q in SETTINGS_QUERIES] == ["10", "1000", "1", "1", "1", "IDLE,0"]
    assert board.handle("SYST:ERR?") == '0,"No error"'


@pytest.mark.parametrize(
    "command, query, reply",
    [
        ("GAIN 1", "GAIN?", "1"),
        ("GAIN 1000", "GAIN?", "1000"),
        ("GAIN 1e2", "GAIN?", "100"),
        ("RATE 10", "RATE?", "10"),
        ("RATE 100000", "RATE?", "100000"),
        ("RATE 2500.5", "RATE?", "2500.5"),
        ("AVER 1024", "AVER?", "1024"),
        ("CHAN 2", "CHAN?", "2"),
        ("ACQ:COUN 10000", "ACQ:COUN?", "10000"),
        ("gain 100", "gain?", "100"),  # headers are case-insensitive
    ],
)
def test_settings_round_trip(board: SimAdcBoard, command: str, query: str, reply: str):
    assert board.handle(command) is None
    assert board.handle(query) == reply
    assert next_error(board) == 0


@pytest.mark.parametrize(
    "command, code",
    [
        ("BOGUS", -113),
        ("GAIN:FOO 1", -113),
        ("MEAS", -113),
        ("GAIN abc", -104),
        ("GAIN", -104),
        ("GAIN nan", -104),
        ("AVER 2.5", -104),
        ("*IDN? 1", -104),
        ("ACQ:DATA? 1", -104),
        ("GAIN 3", -222),
        ("GAIN 0", -222),
        ("RATE 9.9", -222),
        ("RATE 100001", -222),
        ("AVER 0", -222),
        ("AVER 1025", -222),
        ("CHAN 3", -222),
        ("ACQ:COUN 0", -222),
        ("ACQ:COUN 10001", -222),
    ],
)
def test_bad_commands_queue_errors_and_change_nothing(board: SimAdcBoard, command: str, code):
    board.handle("GAIN 100")
    before = snapshot(board)
    assert board.handle(command) is None
    assert snapshot(board) == before
    assert next_error(board) == code
    assert next_error(board) == 0


def test_error_queue_is_fifo_and_cleared_by_cls(board: SimAdcBoard):
    for command in ("BOGUS", "GAIN 3", "GAIN x"):
        board.handle(command)
    assert board.handle("SYST:ERR?") == '-113,"Undefined header"'
    assert board.handle("SYST:ERR?") == '-222,"Data out of range"'
    board.handle("*CLS")
    assert board.handle("SYST:ERR?") == '0,"No error"'


def test_error_queue_overflow_keeps_oldest(board: SimAdcBoard):
    for _ in range(15):
        board.handle("BOGUS")
    codes = [next_error(board) for _ in range(11)]
    assert codes == [-113] * 9 + [-350, 0]


def test_rst_keeps_the_error_queue(board: SimAdcBoard):
    board.handle("BOGUS")
    board.handle("*RST")
    assert next_error(board) == -113


# -- readings --------------------------------------------------------------------------
def test_reading_is_input_referred_and_spends_integration_time(world, board):
    set_bus_a(world, 0.05)  # differential V(B) - V(A) = -50 mV
    board.handle("AVER 100")  # 0.1 s: noise 5 uV / sqrt(100) = 0.5 uV
    t0 = world.clock.now()
    volts, status = board.handle("MEAS?").split(",")
    assert world.clock.now() - t0 == pytest.approx(0.1)
    assert float(volts) == pytest.approx(-0.05, abs=5e-6)
    assert status == "0"
    board.handle("CHAN 2")  # the open input
    assert abs(float(board.handle("MEAS?").split(",")[0])) < 5e-6


def test_reading_format(board: SimAdcBoard):
    reply = board.handle("MEAS?")
    volts, status = reply.split(",")
    mantissa, exponent = volts.lstrip("-").split("e")
    assert len(mantissa) == 11 and exponent[0] in "+-"
    assert status == "0"


def test_noise_falls_with_integration_time(world, board):
    def spread(aver: int) -> float:
        board.handle(f"AVER {aver}")
        return float(np.std([float(board.handle("MEAS?").split(",")[0]) for _ in range(400)]))

    sigma_1ms = world.variability.adc_noise_v
    assert spread(1) == pytest.approx(sigma_1ms, rel=0.15)
    assert spread(100) == pytest.approx(sigma_1ms / 10, rel=0.15)


@pytest.mark.parametrize("volts", [0.02, -0.02])
def test_overrange_clips_at_full_scale(world, board, volts):
    set_bus_a(world, volts)  # amplified by 1000: 20 V, beyond the ADC's 10 V
    board.handle("GAIN 1000")
    value, status = board.handle("MEAS?").split(",")
    assert float(value) == pytest.approx(-np.sign(volts) * 10.0 / 1000)
    assert status == "1"
    board.handle("GAIN 100")  # 2 V amplified: in range again
    value, status = board.handle("MEAS?").split(",")
    assert float(value) == pytest.approx(-volts, abs=1e-5) and status == "0"


# -- armed acquisition -----------------------------------------------------------------
def source_stepping_bus_a(world: StationWorld, levels: list[float], step_s: float) -> int:
    """A stand-in source on the trigger link (at SMU B's input, which SMU A's pulses reach
    on the default cabling): steps bus A, spends time, as order 0."""

    def on_pulse(step: int) -> None:
        world.clock.spend(step_s)
        set_bus_a(world, levels[step])

    return world.subscribe_trigger("smu_b", 1, on_pulse, order=0)


def test_armed_acquisition_takes_one_sample_per_pulse(world, board):
    board.handle("*RST")
    world.clock.spend(0.5)
    board.handle("ACQ:COUN 4")
    board.handle("ACQ:ARM")  # armed before the source subscribes: order must still win
    levels = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    source_stepping_bus_a(world, levels, step_s=1e-3)
    assert board.handle("ACQ:STAT?") == "ARMED,0"
    for step in range(2):
        world.pulse("smu_a", 1, step)
    assert board.handle("ACQ:STAT?") == "ARMED,2"
    for step in range(2, 6):  # two pulses beyond the count are ignored
        world.pulse("smu_a", 1, step)
    assert board.handle("ACQ:STAT?") == "DONE,4"
    records = parse_block(board.handle("ACQ:DATA?"))
    assert [r[0] for r in records] == [501_000, 502_000, 503_000, 504_000]
    assert [r[1] for r in records] == pytest.approx([-v for v in levels[:4]], abs=3e-5)
    assert [r[2] for r in records] == [0, 0, 0, 0]
    # Reading the data does not consume it.
    assert parse_block(board.handle("ACQ:DATA?")) == records
    assert decode_block(board.handle("ACQ:DATA?")) == records


def test_arm_while_armed_is_a_conflict_and_changes_nothing(world, board):
    board.handle("ACQ:COUN 3")
    board.handle("ACQ:ARM")
    world.pulse("smu_a", 1, 0)
    before = snapshot_without_data(board)
    board.handle("ACQ:ARM")
    board.handle("ACQ:COUN 5")
    assert snapshot_without_data(board) == before == {**before, "ACQ:STAT?": "ARMED,1"}
    assert [next_error(board), next_error(board), next_error(board)] == [-221, -221, 0]
    world.pulse("smu_a", 1, 1)
    world.pulse("smu_a", 1, 2)
    assert len(parse_block(board.handle("ACQ:DATA?"))) == 3


def snapshot_without_data(board: SimAdcBoard) -> dict[str, str | None]:
    return {q: board.handle(q) for q in SETTINGS_QUERIES}


def test_abort_keeps_samples_and_stops_listening(world, board):
    board.handle("ACQ:COUN 10")
    board.handle("ACQ:ARM")
    world.pulse("smu_a", 1, 0)
    world.pulse("smu_a", 1, 1)
    board.handle("ACQ:ABOR")
    world.pulse("smu_a", 1, 2)
    assert board.handle("ACQ:STAT?") == "IDLE,2"
    assert len(parse_block(board.handle("ACQ:DATA?"))) == 2
    board.handle("ACQ:ARM")  # re-arming starts a fresh acquisition
    assert board.handle("ACQ:STAT?") == "ARMED,0"


def test_reset_disarms_clears_samples_and_restarts_the_timestamps(world, board):
    board.handle("ACQ:COUN 2")
    board.handle("ACQ:ARM")
    world.pulse("smu_a", 1, 0)
    world.clock.spend(2.0)
    board.handle("*RST")
    assert board.handle("ACQ:STAT?") == "IDLE,0"
    world.pulse("smu_a", 1, 1)
    assert board.handle("ACQ:STAT?") == "IDLE,0"
    world.clock.spend(0.25)
    board.handle("ACQ:ARM")
    world.pulse("smu_a", 1, 0)
    (stamp, _, _), = parse_block(board.handle("ACQ:DATA?"))
    assert stamp == 250_000


def test_empty_block(board: SimAdcBoard):
    assert board.handle("ACQ:DATA?") == b"#800000000" + b"\x00\x00\x00\x00" + b"\n"


def test_data_while_armed_waits_for_the_acquisition(world, board):
    board.handle("ACQ:COUN 3")
    board.handle("ACQ:ARM")
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(board.handle("ACQ:DATA?")))
    reader.start()
    time.sleep(0.1)
    assert not result  # still waiting: nothing acquired yet
    for step in range(3):
        world.pulse("smu_a", 1, step)
    reader.join(timeout=2)
    assert len(parse_block(result[0])) == 3


def test_abort_releases_a_waiting_data_query(world, board):
    board.handle("ACQ:COUN 3")
    board.handle("ACQ:ARM")
    world.pulse("smu_a", 1, 0)
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(board.handle("ACQ:DATA?")))
    reader.start()
    time.sleep(0.05)
    board.handle("ACQ:ABOR")
    reader.join(timeout=2)
    assert len(parse_block(result[0])) == 1


def test_overrange_status_in_the_block(world, board):
    board.handle("GAIN 1000")
    board.handle("ACQ:COUN 2")
    board.handle("ACQ:ARM")
    source_stepping_bus_a(world, [0.001, 0.5], step_s=1e-3)
    world.pulse("smu_a", 1, 0)
    world.pulse("smu_a", 1, 1)
    (_, v0, s0), (_, v1, s1) = parse_block(board.handle("ACQ:DATA?"))
    assert (s0, s1) == (0, 1)
    assert v0 == pytest.approx(-0.001, abs=1e-6) and v1 == pytest.approx(-0.01)


# -- end to end over the transports ----------------------------------------------------
@pytest.fixture
def pty_port(board: SimAdcBoard):
    server = PtyServer(board).start()
    port = serial.serial_for_url(server.path, baudrate=115200, timeout=2)
    yield server, port
    port.close()
    server.stop()


@pytest.fixture
def tcp_server(board: SimAdcBoard):
    server = TcpServer(board).start()
    yield server
    server.stop()


def query(port, command: str) -> str:
    port.write(command.encode() + b"\n")
    line = port.readline()
    assert line.endswith(b"\n"), f"no reply to {command!r}: {line!r}"
    return line.decode().strip()


def test_pty_identity_and_differential_reading(world, pty_port):
    _, port = pty_port
    assert query(port, "*IDN?") == "LABCTL,DIFFADC-24,ADC0042,1.0"
    world.set_contact(True)
    world.set_closed({"1A01", "1B01"})
    world.drive("A", 20e-6, 2.0)
    world.drive("B", -10e-6, 2.0)
    expected = world.bus_voltage("B") - world.bus_voltage("A")
    assert abs(expected) > 0.01
    port.write(b"AVER 100\n")
    volts, status = query(port, "MEAS?").split(",")
    assert float(volts) == pytest.approx(expected, abs=5e-6)
    assert status == "0"


def test_pty_acquisition_block(world, pty_port):
    _, port = pty_port
    port.write(b"ACQ:COUN 50\nACQ:ARM\n")
    assert query(port, "ACQ:STAT?") == "ARMED,0"
    source_stepping_bus_a(world, list(np.linspace(-0.1, 0.1, 50)), step_s=1e-3)
    for step in range(50):
        world.pulse("smu_a", 1, step)
    port.write(b"ACQ:DATA?\n")
    records = parse_block(read_block(port))
    assert len(records) == 50
    assert [r[1] for r in records] == pytest.approx(list(np.linspace(0.1, -0.1, 50)), abs=3e-5)
    assert query(port, "*IDN?").startswith("LABCTL")  # the stream is in step after the block


def test_pty_new_client_after_one_left_without_reading(world, pty_port):
    server, port = pty_port
    port.write(b"MEAS?\nACQ:DATA?\n")
    port.close()  # gone before reading the replies
    time.sleep(0.2)
    second = serial.serial_for_url(server.path, baudrate=115200, timeout=2)
    try:
        second.reset_input_buffer()  # what a driver does on open: drop stale replies
        assert query(second, "*IDN?") == "LABCTL,DIFFADC-24,ADC0042,1.0"
    finally:
        second.close()


def test_socket_identity_reading_and_block(world, tcp_server):
    port = serial.serial_for_url(tcp_server.url, timeout=2)
    try:
        assert query(port, "*IDN?") == "LABCTL,DIFFADC-24,ADC0042,1.0"
        set_bus_a(world, 0.3)
        port.write(b"GAIN 1\n")
        assert float(query(port, "MEAS?").split(",")[0]) == pytest.approx(-0.3, abs=5e-5)
        port.write(b"ACQ:COUN 3\nACQ:ARM\n")
        query(port, "*IDN?")  # a round trip: the arm has been executed
        for step in range(3):
            world.pulse("smu_a", 1, step)
        port.write(b"ACQ:DATA?\n")
        assert len(parse_block(read_block(port))) == 3
    finally:
        port.close()


def test_socket_client_vanishing_mid_command_then_new_client(tcp_server):
    with socket.create_connection(("127.0.0.1", tcp_server.port)) as first:
        first.sendall(b"GAIN 1")  # no terminator: the command never completes
    with socket.create_connection(("127.0.0.1", tcp_server.port)) as first:
        first.sendall(b"ACQ:DATA?\nMEAS?\n")  # leaves with replies in flight
    port = serial.serial_for_url(tcp_server.url, timeout=2)
    try:
        assert query(port, "GAIN?") == "10"
        assert query(port, "SYST:ERR?") == '0,"No error"'
    finally:
        port.close()


def test_pty_and_socket_share_one_board(board, pty_port, tcp_server):
    _, port = pty_port
    port.write(b"GAIN 1000\n")
    assert query(port, "GAIN?") == "1000"  # executed before the other connection asks
    sock = serial.serial_for_url(tcp_server.url, timeout=2)
    try:
        assert query(sock, "GAIN?") == "1000"
    finally:
        sock.close()
