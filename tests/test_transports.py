"""Transports over real loopback sockets and pseudo-terminals."""

from __future__ import annotations

import base64
import contextlib
import socket
import statistics
import struct
import threading
import time
import zlib

import pytest

from instruments import open_adapter
from instruments.serial_transport import SerialTransport
from instruments.transport import (
    InstrumentConnectionError,
    InstrumentTimeout,
    WireLog,
)
from instruments.visa_transport import VisaTransport
from simulators.keithley2400 import SimKeithley2400
from simulators.server import PtyServer, TcpServer
from simulators.world import StationWorld


class Echo:
    """A line instrument for transport tests.

    ``ECHO? x`` -> ``x``; ``BLOCK? n`` -> a #8 block of n bytes + CRC; ``SILENT?`` -> no
    reply; ``DROP?`` and ``BYE`` -> the server closes the connection (TcpServer closes a
    client whose handler raises OSError); anything else -> no reply.
    """

    def __init__(self):
        self.lines: list[str] = []

    def handle(self, line: str):
        self.lines.append(line)
        if line.startswith("ECHO? "):
            return line[6:]
        if line.startswith("BLOCK? "):
            payload = bytes(range(256)) * (int(line[7:]) // 256 + 1)
            payload = payload[: int(line[7:])]
            crc = struct.pack("<I", zlib.crc32(payload))
            return b"#8" + f"{len(payload):08d}".encode() + payload + crc + b"\n"
        if line in ("DROP?", "BYE"):
            raise OSError("dropping the link on purpose")
        return None


@pytest.fixture
def echo_server():
    server = TcpServer(Echo()).start()
    yield server
    server.stop()


@pytest.fixture
def smu_server():
    """The simulated SMU alone on a loopback socket, and a cheap query it answers."""
    server = TcpServer(SimKeithley2400(StationWorld(), "A")).start()
    yield server, ":SOUR:CURR?"
    server.stop()


@pytest.fixture
def silent_listener():
    """A port that accepts connections (kernel backlog) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener.getsockname()[1]
    listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pair_cost(adapter, query: str, n: int) -> float:
    """Median seconds of a write followed by a query (the host-paced pattern)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        adapter.write(":SOUR:CURR 1e-6" if query.startswith(":") else "SET 1")
        adapter.query(query)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- NODELAY -------------------------------------------------------------------------------
def test_visa_nodelay_is_in_effect_and_a_write_query_pair_is_fast(smu_server):
    server, query = smu_server
    adapter = VisaTransport(server.resource, timeout_s=2.0)
    try:
        assert adapter.nodelay is True
        sock = adapter._find_socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        pair_cost(adapter, query, 20)  # warm up
        assert pair_cost(adapter, query, 200) < 1e-3
    finally:
        adapter.close()


def test_nagle_left_on_costs_the_delayed_ack(smu_server):
    """The reason for the fix, measured side by side (Linux delayed ACK ~40 ms)."""
    server, query = smu_server
    fast = VisaTransport(server.resource, timeout_s=2.0)
    slow = VisaTransport(server.resource, timeout_s=2.0, nodelay=False)
    try:
        assert slow.nodelay is False
        with_nodelay = pair_cost(fast, query, 50)
        with_nagle = pair_cost(slow, query, 5)
    finally:
        fast.close()
        slow.close()
    assert with_nagle > 5 * with_nodelay


def test_nodelay_falls_back_with_a_warning_when_the_socket_is_not_found(echo_server,
                                                                        monkeypatch):
    monkeypatch.setattr(VisaTransport, "_find_socket", lambda self: None)
    with pytest.warns(RuntimeWarning, match="Nagle"):
        adapter = VisaTransport(echo_server.resource, timeout_s=1.0)
    try:
        assert adapter.nodelay is False
        assert adapter.query("ECHO? still works") == "still works"
    finally:
        adapter.close()


def test_socket_url_serial_transport_turns_nagle_off_too(echo_server):
    adapter = SerialTransport(echo_server.url, timeout_s=1.0)
    try:
        assert adapter.nodelay is True
        pair_cost(adapter, "ECHO? x", 10)
        assert pair_cost(adapter, "ECHO? x", 100) < 1e-3
    finally:
        adapter.close()


# -- timeouts and unreachable resources ---------------------------------------------------
@pytest.mark.parametrize("scheme", ["visa", "socket"])
def test_unanswering_resource_times_out_naming_it(silent_listener, scheme):
    resource = (f"TCPIP::127.0.0.1::{silent_listener}::SOCKET" if scheme == "visa"
                else f"socket://127.0.0.1:{silent_listener}")
    adapter = open_adapter(resource, timeout_s=0.2)
    try:
        t0 = time.perf_counter()
        with pytest.raises(InstrumentTimeout) as err:
            adapter.query("*IDN?")
        elapsed = time.perf_counter() - t0
    finally:
        adapter.close()
    assert 0.15 < elapsed < 1.0
    assert resource in str(err.value) and "0.2 s" in str(err.value)


@pytest.mark.parametrize("scheme", ["visa", "socket"])
def test_nothing_listening_fails_at_once_naming_the_resource(scheme):
    port = free_port()
    resource = (f"TCPIP::127.0.0.1::{port}::SOCKET" if scheme == "visa"
                else f"socket://127.0.0.1:{port}")
    t0 = time.perf_counter()
    with pytest.raises(InstrumentConnectionError) as err:
        open_adapter(resource, timeout_s=0.5)
    assert time.perf_counter() - t0 < 1.0
    assert resource in str(err.value) or f"127.0.0.1:{port}" in str(err.value)


def test_a_late_reply_is_not_taken_for_the_next_one(echo_server):
    adapter = VisaTransport(echo_server.resource, timeout_s=0.2)
    try:
        with pytest.raises(InstrumentTimeout):
            adapter.query("SILENT?")
        assert adapter.query("ECHO? next") == "next"
    finally:
        adapter.close()


# -- reconnection --------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["visa", "socket"])
def test_reconnects_after_the_server_dropped_the_link(echo_server, scheme):
    resource = echo_server.resource if scheme == "visa" else echo_server.url
    adapter = open_adapter(resource, timeout_s=1.0)
    try:
        assert adapter.query("ECHO? before") == "before"
        adapter.write("BYE")  # the server drops this connection
        time.sleep(0.05)
        assert adapter.query("ECHO? after") == "after"
        assert adapter.reconnects == 1
    finally:
        adapter.close()


@pytest.mark.parametrize("scheme", ["visa", "socket"])
def test_link_lost_and_server_gone_fails_clearly(scheme):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    resource = (f"TCPIP::127.0.0.1::{port}::SOCKET" if scheme == "visa"
                else f"socket://127.0.0.1:{port}")
    adapter = open_adapter(resource, timeout_s=0.5)
    try:
        conn, _ = listener.accept()
        conn.close()
        listener.close()  # the instrument is gone for good
        time.sleep(0.05)
        t0 = time.perf_counter()
        with pytest.raises(InstrumentConnectionError, match="cannot reopen") as err:
            adapter.query("ECHO? y")
        assert time.perf_counter() - t0 < 1.5
        assert f"127.0.0.1:{port}" in str(err.value) or resource in str(err.value)
    finally:
        adapter.close()


@pytest.mark.parametrize("scheme", ["visa", "socket"])
def test_link_dropped_while_waiting_for_a_reply(echo_server, scheme):
    resource = echo_server.resource if scheme == "visa" else echo_server.url
    adapter = open_adapter(resource, timeout_s=0.5)
    try:
        with pytest.raises(InstrumentConnectionError, match="dropped while waiting"):
            adapter.query("DROP?")
        assert adapter.query("ECHO? again") == "again"
    finally:
        adapter.close()


# -- wire log ----------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".wlog", ".jsonl"])  # the compact format, and the older
def test_wire_log_records_writes_reads_and_binary_reads(echo_server, tmp_path, suffix):
    path = tmp_path / f"echo{suffix}"
    with WireLog(path) as log:
        adapter = VisaTransport(echo_server.resource, timeout_s=1.0, wire_log=log)
        try:
            adapter.write("SET 1")
            assert adapter.query("ECHO? hello") == "hello"
            adapter.write("BLOCK? 40")
            head = adapter.read_bytes(10)
            body = adapter.read_bytes(45)
        finally:
            adapter.close()
        assert log.counts == {"w": 3, "r": 1, "rb": 2}
    entries = WireLog.load(path)
    kinds = [next(k for k in e if k != "t") for e in entries]
    assert kinds == ["w", "w", "r", "w", "rb", "rb"]
    assert [e.get("w") for e in entries[:2]] == ["SET 1", "ECHO? hello"]
    assert entries[2]["r"] == "hello"
    assert base64.b64decode(entries[4]["rb"]) == head == b"#800000040"
    assert base64.b64decode(entries[5]["rb"]) == body
    times = [e["t"] for e in entries]
    assert times == sorted(times) and times[0] >= 0
    assert path.read_bytes().startswith(b"\x89LWL") == (suffix == ".wlog")


# -- threads -------------------------------------------------------------------------------
def test_threads_sharing_one_instrument_get_their_own_replies(echo_server):
    from pymeasure.instruments import Instrument

    from instruments.transport import LockedInstrumentMixin

    class EchoInstrument(LockedInstrumentMixin, Instrument):
        def __init__(self, adapter):
            super().__init__(adapter, "echo", includeSCPI=False)

    inst = EchoInstrument(VisaTransport(echo_server.resource, timeout_s=2.0))
    wrong: list[tuple[str, str]] = []

    def worker(tid: int) -> None:
        for k in range(200):
            question = f"{tid}-{k}"
            answer = inst.ask(f"ECHO? {question}")
            if answer != question:
                wrong.append((question, answer))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        inst.adapter.close()
    assert not wrong
    assert not any(t.is_alive() for t in threads)


# -- serial ---------------------------------------------------------------------------------
@pytest.fixture
def pty_server():
    server = PtyServer(Echo()).start()
    yield server
    server.stop()


@pytest.mark.parametrize("kind", ["pty", "socket"])
def test_serial_query_binary_block_and_timeout(kind, pty_server, echo_server, tmp_path):
    url = pty_server.path if kind == "pty" else echo_server.url
    log = WireLog(tmp_path / "serial.wlog")
    adapter = open_adapter(url, timeout_s=0.3, wire_log=log)
    assert isinstance(adapter, SerialTransport)
    try:
        assert adapter.query("ECHO? over serial") == "over serial"
        adapter.write("BLOCK? 1000")
        head = adapter.read_bytes(10)
        body = adapter.read_bytes(1005)
        assert head == b"#800001000" and len(body) == 1005 and body.endswith(b"\n")
        payload, crc = body[:1000], body[1000:1004]
        assert struct.unpack("<I", crc)[0] == zlib.crc32(payload)
        t0 = time.perf_counter()
        with pytest.raises(InstrumentTimeout) as err:
            adapter.query("SILENT?")
        assert time.perf_counter() - t0 < 1.0
        assert url in str(err.value) and "0.3 s" in str(err.value)
        adapter.write("BLOCK? 100")
        adapter.read_bytes(10)
        with pytest.raises(InstrumentTimeout) as err:
            adapter.read_bytes(200)  # 105 bytes come, 200 never do
        assert len(err.value.partial) == 105
        assert adapter.query("ECHO? fine") == "fine"
    finally:
        adapter.close()
        log.close()
    assert log.counts["rb"] == 3


def test_serial_loop_url():
    adapter = open_adapter("loop://", timeout_s=0.1)
    try:
        adapter.write("looped")
        assert adapter.read() == "looped"
    finally:
        adapter.close()


def test_serial_missing_device_fails_clearly():
    with pytest.raises(InstrumentConnectionError, match="/dev/does-not-exist"):
        open_adapter("/dev/does-not-exist", timeout_s=0.1)


def test_open_adapter_picks_the_transport(echo_server):
    visa = open_adapter(echo_server.resource, timeout_s=1.0, baud_rate=9600)
    serial_ = open_adapter(echo_server.url, timeout_s=1.0)
    try:
        assert isinstance(visa, VisaTransport) and isinstance(serial_, SerialTransport)
    finally:
        visa.close()
        serial_.close()


def test_timeout_scope_restores_the_timeout(echo_server):
    adapter = VisaTransport(echo_server.resource, timeout_s=0.5)
    try:
        with adapter.timeout_scope(0.1):
            assert adapter.connection.timeout == 100
            t0 = time.perf_counter()
            with contextlib.suppress(InstrumentTimeout):
                adapter.query("SILENT?")
            assert time.perf_counter() - t0 < 0.4
        assert adapter.timeout_s == 0.5 and adapter.connection.timeout == 500
    finally:
        adapter.close()
