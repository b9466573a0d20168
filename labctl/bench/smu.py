"""Benchmark: queries per second a raw-socket client gets from the simulated SMU.

One client (plain ``socket``, TCP_NODELAY) sends one query at a time and waits for its
reply line, against :class:`~simulators.keithley2400.SimKeithley2400` served by
:class:`~simulators.server.TcpServer` in this process, at time scale 0 (instrument time
costs no wall time). Run it with ``python -m labctl.bench.smu [seconds]``.
"""

from __future__ import annotations

import socket
import sys
import time

from simulators.keithley2400 import SimKeithley2400
from simulators.server import TcpServer
from simulators.world import SimSettings, StationWorld

#: (name, query) pairs measured, each for an equal share of the run time.
QUERIES = (
    ("sour_curr", b":SOUR:CURR?\n"),
    ("idn", b"*IDN?\n"),
    ("read", b":READ?\n"),
    ("read_on_device", b":READ?\n"),
)


def _ask(sock: socket.socket, query: bytes, buffer: bytearray) -> bytes:
    sock.sendall(query)
    while (end := buffer.find(b"\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the simulated SMU closed the connection")
        buffer += chunk
    line = bytes(buffer[:end])
    del buffer[: end + 1]
    return line


def _rate(sock: socket.socket, query: bytes, seconds: float) -> float:
    """Queries per second over ``seconds`` of wall time (s)."""
    buffer = bytearray()
    for _ in range(50):  # warm the header cache and the socket path
        _ask(sock, query, buffer)
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            _ask(sock, query, buffer)
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def run(seconds: float = 2.0) -> dict:
    """Measure every query of :data:`QUERIES` for ``seconds`` (s) in all.

    Returns ``{name: queries per second}`` plus ``"seconds"``. ``read`` reads with no
    device on the bus (the source runs into compliance); ``read_on_device`` with the
    prober in contact and one MTJ on the bus.
    """
    world = StationWorld(SimSettings(time_scale=0.0))
    server = TcpServer(SimKeithley2400(world, "A")).start()
    results: dict[str, float] = {"seconds": seconds}
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            setup = b":SOUR:FUNC CURR;:SOUR:CURR 40e-6;:SENS:VOLT:PROT 2;:OUTP ON;*OPC?\n"
            _ask(sock, setup, bytearray())
            for name, query in QUERIES:
                if name == "read_on_device":
                    world.set_contact(True)
                    world.set_closed({"1A01"})
                results[name] = _rate(sock, query, seconds / len(QUERIES))
            errors = _ask(sock, b":SYST:ERR?\n", bytearray())
            if not errors.startswith(b"0,"):
                raise RuntimeError(f"the benchmark left an SCPI error: {errors!r}")
    finally:
        server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    results = run(float(args[0]) if args else 2.0)
    for name, value in results.items():
        unit = "s" if name == "seconds" else "queries/s"
        print(f"{name:16s} {value:10.0f} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
