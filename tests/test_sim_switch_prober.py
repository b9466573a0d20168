"""The simulated switch matrix (TSP subset) and prober (SENTIO subset), on handle() and over
a loopback socket."""

from __future__ import annotations

import socket

import pytest

from simulators.prober import SimProber
from simulators.server import TcpServer
from simulators.switch_matrix import SimSwitchMatrix
from simulators.world import SimSettings, StationWorld

GETCLOSE = 'print(channel.getclose("allslots"))'
GETFORBIDDEN = 'print(channel.getforbidden("allslots"))'


@pytest.fixture
def world() -> StationWorld:
    return StationWorld(SimSettings(seed=3, die_grid=(3, 2)))


@pytest.fixture
def switch(world: StationWorld) -> SimSwitchMatrix:
    return SimSwitchMatrix(world, serial="04999999")


@pytest.fixture
def prober(world: StationWorld) -> SimProber:
    return SimProber(world, serial="SN4242")


def errors(switch: SimSwitchMatrix) -> list[int]:
    """Drain the error queue; the codes in order."""
    count = int(switch.handle("print(errorqueue.count)"))
    codes = [int(switch.handle("print(errorqueue.next())").split("\t")[0]) for _ in range(count)]
    assert switch.handle("print(errorqueue.next())") == "0\tQueue Is Empty\t0\t0"
    return codes


# -- switch matrix ---------------------------------------------------------------------
def test_switch_identity(switch: SimSwitchMatrix):
    assert switch.handle("*IDN?") == "Keithley Instruments Inc., Model 707B, 04999999, 1.0.0"


def test_close_open_and_getclose(world, switch):
    assert switch.handle(GETCLOSE) == "nil"
    assert switch.handle('channel.close("1B02,1A01")') is None
    assert switch.handle("channel.close('1a10')") is None  # names and quotes are lenient
    assert switch.handle(GETCLOSE) == "1A01;1A10;1B02"
    assert world.closed == {"1A01", "1A10", "1B02"}
    assert switch.handle('print(channel.getclose("1A01,1A02"))') == "1A01"
    switch.handle('channel.open("1A01")')
    assert switch.handle(GETCLOSE) == "1A10;1B02"
    switch.handle('channel.open("allslots")')
    assert switch.handle(GETCLOSE) == "nil" and world.closed == set()
    assert errors(switch) == []


def test_exclusiveclose_breaks_before_make(world, switch, monkeypatch):
    switch.handle('channel.close("1A01,1B01")')
    world.set_contact(True)
    world.drive("A", 30e-6, 2.0)
    calls: list[set[str]] = []
    original = world.set_closed

    def recording(channels: set[str]) -> None:
        calls.append(set(channels))
        original(channels)

    monkeypatch.setattr(world, "set_closed", recording)
    switch.handle('channel.exclusiveclose("1A02,1B01")')
    assert calls == [set(), {"1A02", "1B01"}]
    assert world.closed == {"1A02", "1B01"}
    assert world.connected("A") == [(1, 0)]  # only the new device carries bus A's current
    assert switch.handle(GETCLOSE) == "1A02;1B01"


def test_reset_opens_everything_and_clears_forbidden(world, switch):
    switch.handle('channel.close("1A01")')
    switch.handle('channel.setforbidden("1A16")')
    for reset in ("reset()", "*RST"):
        switch.handle(reset)
        assert world.closed == set()
        assert switch.handle(GETFORBIDDEN) == "nil"


def test_forbidden_channels(world, switch):
    switch.handle('channel.close("1A01")')
    switch.handle('channel.setforbidden("1A16,1B16")')
    assert switch.handle(GETFORBIDDEN) == "1A16;1B16"
    for command in ('channel.close("1A16")', 'channel.close("1A02,1B16")',
                    'channel.exclusiveclose("1A16")', 'channel.exclusiveclose("1A03,1B16")'):
        switch.handle(command)
        # Refused whole: the exclusive close did not even open the old channel.
        assert world.closed == {"1A01"}
    assert errors(switch) == [-1116] * 4
    switch.handle('channel.clearforbidden("1A16")')
    assert switch.handle(GETFORBIDDEN) == "1B16"
    switch.handle('channel.close("1A16")')
    assert world.closed == {"1A01", "1A16"}
    switch.handle('channel.clearforbidden("allslots")')
    assert switch.handle(GETFORBIDDEN) == "nil"
    assert errors(switch) == []


def test_setforbidden_leaves_a_closed_channel_closed(world, switch):
    switch.handle('channel.close("1A03")')
    switch.handle('channel.setforbidden("1A03")')
    assert world.closed == {"1A03"}
    switch.handle('channel.open("1A03")')  # opening a forbidden channel is always allowed
    assert world.closed == set() and errors(switch) == []


@pytest.mark.parametrize(
    "command, code",
    [
        ('channel.close("1A17")', -1115),  # beyond the 16 pairs
        ('channel.close("1C01")', -1115),
        ('channel.close("1A02,1A99")', -1115),
        ('channel.close("")', -1115),
        ('channel.close("allslots")', -1115),  # closing everything is not a thing
        ('channel.open("2A01")', -1115),
        ('channel.exclusiveclose("1A02,bogus")', -1115),
        ('channel.setforbidden("1A00")', -1115),
        ("channel.close(1A01)", -285),
        ("channel.close()", -285),
        ('channel.frobnicate("1A01")', -285),
        ("print(channel.getclose())", -285),
        ("print(x)", -285),
        ("hello", -285),
    ],
)
def test_errors_change_no_channel(world, switch, command, code):
    switch.handle('channel.close("1A01,1B01")')
    switch.handle('channel.setforbidden("1A16")')
    assert switch.handle(command) is None
    assert world.closed == {"1A01", "1B01"}
    assert switch.handle(GETFORBIDDEN) == "1A16"
    assert errors(switch) == [code]


def test_error_queue_format_and_clear(switch):
    switch.handle('channel.close("1C01")')
    code, message, severity, node = switch.handle("print(errorqueue.next())").split("\t")
    assert code == "-1115" and "1C01" in message and severity.isdigit() and node.isdigit()
    switch.handle("hello")
    switch.handle("hello")
    assert switch.handle("print(errorqueue.count)") == "2"
    switch.handle("errorqueue.clear()")
    assert switch.handle("print(errorqueue.count)") == "0"


def test_switch_over_a_socket(world, switch):
    server = TcpServer(switch).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            stream = sock.makefile("rwb")
            stream.write(b'channel.exclusiveclose("1A04,1B04")\r\n' + GETCLOSE.encode() + b"\n")
            stream.flush()
            assert stream.readline() == b"1A04;1B04\n"
        assert world.closed == {"1A04", "1B04"}
    finally:
        server.stop()


# -- prober ----------------------------------------------------------------------------
def test_prober_identity_and_initial_state(prober: SimProber):
    assert prober.handle("*IDN?") == "MPI Corporation,SENTIO (labctl sim),SN4242,24.0"
    assert prober.handle("get_chuck_z_state") == "0,0,separation"
    assert prober.handle("map:die:get_current_index") == "0,0,1,1"
    assert prober.handle("get_chuck_xy") == "0,0,0.0,0.0"


def test_contact_and_separation_spend_time_and_connect_devices(world, prober):
    world.set_closed({"1A01"})
    t0 = world.clock.now()
    assert prober.handle("move_chuck_contact") == "0,0,"
    assert world.clock.now() - t0 == pytest.approx(0.2)
    assert prober.handle("get_chuck_z_state") == "0,0,contact"
    assert world.in_contact and world.connected("A") == [(0, 0)]
    assert prober.handle("move_chuck_contact") == "0,0,"  # already there: no move, no time
    assert world.clock.now() - t0 == pytest.approx(0.2)
    assert prober.handle("move_chuck_separation") == "0,0,"
    assert world.clock.now() - t0 == pytest.approx(0.4)
    assert not world.in_contact and world.connected("A") == []


def test_prober_refuses_to_move_in_contact(world, prober):
    prober.handle("move_chuck_contact")
    assert prober.handle("map:step_die 2,1") == "5,0,chuck is in contact; separate first"
    assert prober.handle("map:step_next_die") == "5,0,chuck is in contact; separate first"
    assert world.die == (1, 1) and world.in_contact
    assert prober.handle("map:die:get_current_index") == "0,0,1,1"
    prober.handle("move_chuck_separation")
    assert prober.handle("map:step_die 2,1") == "0,0,2,1"
    assert world.die == (2, 1)


def test_step_next_die_walks_row_major(world, prober):
    visited = [prober.handle("map:die:get_current_index").split(",", 2)[2]]
    while (reply := prober.handle("map:step_next_die")).startswith("0,"):
        visited.append(reply.split(",", 2)[2])
    assert visited == ["1,1", "2,1", "3,1", "1,2", "2,2", "3,2"]
    assert reply.startswith("2,0,")
    assert world.die == (3, 2)
    assert prober.handle("get_chuck_xy") == "0,0,10000.0,5000.0"


@pytest.mark.parametrize("arg", ["4,1", "0,1", "1,3", "x", "1", "1,2,3", ""])
def test_unknown_die(world, prober, arg):
    assert prober.handle(f"map:step_die {arg}").startswith("3,0,")
    assert world.die == (1, 1)


@pytest.mark.parametrize("command", ["move_chuck_up", "MAP:STEP", "get_chuck_z_state now"])
def test_unknown_command(world, prober, command):
    assert prober.handle(command).startswith("2,0,")
    assert not world.in_contact and world.die == (1, 1)


def test_prober_over_a_socket(world, prober):
    server = TcpServer(prober).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            stream = sock.makefile("rwb")
            stream.write(b"map:step_die 3,2\nmove_chuck_contact\nmap:step_die 1,1\n")
            stream.flush()
            assert [stream.readline() for _ in range(3)] == [
                b"0,0,3,2\n", b"0,0,\n", b"5,0,chuck is in contact; separate first\n"]
        assert world.die == (3, 2) and world.in_contact
    finally:
        server.stop()
