"""The simulated Keithley 2602B (TSP on a real Lua): command/reply pairs over a real socket,
the instrument's error codes, the sandbox, binary buffers, the trigger model with a cabled
ADC, and the datasheet time model."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from simulators.adc_board import SimAdcBoard
from simulators.cabling import Cabling, SmuCable, TriggerCable
from simulators.keithley2600 import SimKeithley2600
from simulators.mtj import voltage
from simulators.server import TcpServer
from simulators.world import SimSettings, StationWorld

CABLING = Cabling(
    smus=(SmuCable("k2602", "a", "A"), SmuCable("k2602", "b", "B")),
    triggers=(TriggerCable("k2602", 1, "adc", 1),),
)
NOISE_V = 20e-6  # nominal SMU read noise at 1 NPLC


class Client:
    """A raw TCP client: one line out, the reply (text line or ``n`` bytes) back."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def ask(self, line: str) -> str:
        self.send(line)
        while b"\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        reply, _, self.buf = self.buf.partition(b"\n")
        return reply.decode()

    def ask_bytes(self, line: str, n: int) -> bytes:
        self.send(line)
        while len(self.buf) < n:
            self.buf += self.sock.recv(65536)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def errors(self) -> list[tuple[int, str]]:
        out = []
        for _ in range(int(float(self.ask("print(errorqueue.count)")))):
            code, msg, _sev, _node = self.ask("print(errorqueue.next())").split("\t")
            out.append((int(float(code)), msg))
        return out


@pytest.fixture
def world() -> StationWorld:
    w = StationWorld(SimSettings(seed=7), CABLING)
    w.set_contact(True)
    w.set_closed({"1A01", "1B01"})
    return w


@pytest.fixture
def sim(world):
    return SimKeithley2600(world, {"a": CABLING.smus[0], "b": CABLING.smus[1]})


@pytest.fixture
def client(sim):
    server = TcpServer(sim).start()
    c = Client(server.port)
    yield c
    c.sock.close()
    server.stop()


def model_v(world: StationWorld, dev: int, current) -> np.ndarray:
    params = world.chip.params.take((np.array([0]), np.array([dev])))
    return np.asarray(voltage(params, np.asarray(current, dtype=float)))


def current_source(c: Client, smu: str, amps: float = 0.0, limit: float = 1.0) -> None:
    c.send(f"{smu}.source.func = {smu}.OUTPUT_DCAMPS {smu}.source.limitv = {limit} "
           f"{smu}.source.leveli = {amps} {smu}.source.output = {smu}.OUTPUT_ON")


# -- identity, print, attributes ----------------------------------------------------------
def test_identity_and_localnode(client):
    assert client.ask("*IDN?") == "Keithley Instruments Inc., Model 2602B, 4412345, 4.0.4"
    assert client.ask("print(localnode.model)") == "2602B"
    assert client.ask("print(localnode.linefreq)") == "6.00000e+01"


def test_print_formats_like_the_instrument(client):
    assert client.ask("print(1, 2.5, 'x', true, nil)") == (
        "1.00000e+00\t2.50000e+00\tx\ttrue\tnil")
    client.send("format.asciiprecision = 3")
    assert client.ask("print(-0.000123)") == "-1.23e-04"


def test_reset_defaults_and_round_trip(client):
    assert client.ask("print(smua.source.func, smua.source.output, smua.measure.nplc)") == (
        "1.00000e+00\t0.00000e+00\t1.00000e+00")
    client.send("smub.source.func = smub.OUTPUT_DCAMPS smub.source.limitv = 0.8 "
                "smub.measure.nplc = 0.01 smub.source.rangei = 1e-4")
    assert client.ask("print(smub.source.func, smub.source.limitv, smub.measure.nplc, "
                      "smub.source.rangei, smub.source.autorangei)") == (
        "0.00000e+00\t8.00000e-01\t1.00000e-02\t1.00000e-04\t0.00000e+00")
    client.send("smub.reset()")
    assert client.ask("print(smub.source.func, smub.measure.nplc)") == (
        "1.00000e+00\t1.00000e+00")
    assert client.errors() == []


def test_current_source_biases_the_device(client, world):
    current_source(client, "smua", 20e-6)
    i, v = (float(x) for x in client.ask("print(smua.measure.iv())").split("\t"))
    assert i == pytest.approx(20e-6)
    assert v == pytest.approx(model_v(world, 0, 20e-6)[0], abs=6 * NOISE_V)
    assert client.ask("smua.source.output = smua.OUTPUT_OFF print(smua.source.output)") == (
        "0.00000e+00")
    assert not world.buses["A"].on


def test_compliance_is_reported(client, world):
    world.set_contact(False)  # nothing on the row: the source runs into its limit
    current_source(client, "smua", 10e-6, limit=0.5)
    assert client.ask("print(smua.source.compliance, "
                      "status.measurement.instrument.smua.condition)") == (
        "true\t1.00000e+00")


def test_voltage_source(client, world, sim):
    """Voltage sourcing acts on the world where it can (StationWorld.drive_voltage), and is
    refused with -221 (nothing changes) where it cannot."""
    client.send("smua.source.func = smua.OUTPUT_DCVOLTS smua.source.limiti = 1e-3 "
                "smua.source.levelv = 0.3 smua.source.output = 1")
    i, v = (float(x) for x in client.ask("print(smua.measure.iv())").split("\t"))
    if not sim.voltage_physical:
        assert [e[0] for e in client.errors()] == [-221]
        assert client.ask("print(smua.source.output)") == "0.00000e+00"
        return
    assert v == pytest.approx(0.3, abs=6 * NOISE_V)
    assert model_v(world, 0, i)[0] == pytest.approx(0.3, abs=1e-3)
    client.send("smua.source.limiti = 1e-5")  # below what the device draws at 0.3 V
    assert client.ask("print(smua.source.compliance, "
                      "status.measurement.instrument.smua.condition)") == (
        "true\t2.00000e+00")
    assert client.errors() == []


# -- errors ---------------------------------------------------------------------------------
def test_syntax_and_runtime_errors_are_queued_and_the_server_serves_on(client):
    client.send("x = = 1")
    client.send("smuc.reset()")  # a 2602B has no smuc
    client.send("smua.source.levelv = 'high'")
    errors = client.errors()
    assert [e[0] for e in errors] == [-285, -286, -286]
    assert errors[0][1].startswith("TSP Syntax error at line 1:")
    assert "smuc" in errors[1][1]
    assert client.ask("print(errorqueue.next())") == (
        "0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00")
    assert client.ask("*IDN?").startswith("Keithley")


def test_refused_settings_change_nothing(client):
    current_source(client, "smua", 1e-6)
    before = client.ask("print(smua.source.leveli, smua.source.rangei, smua.measure.nplc)")
    client.send("smua.source.leveli = 4")  # beyond the 3 A range
    client.send("smua.source.autorangei = 0 smua.source.leveli = 2e-6")  # beyond 1 uA range
    client.send("smua.measure.nplc = 30")
    client.send("smua.measure.nplc = 0.0001")
    assert [e[0] for e in client.errors()] == [1101, 1101, 1101, 1102]
    assert client.ask("print(smua.source.leveli, smua.source.rangei, "
                      "smua.measure.nplc)") == before


def test_list_too_long_or_beyond_range_is_refused(client):
    client.send("smua.trigger.source.listi({1e-6, 2e-6})")
    client.send("t = {} for k = 1, 60001 do t[k] = 1e-6 end smua.trigger.source.listi(t)")
    client.send("smua.trigger.source.listi({1e-6, 5})")
    assert [e[0] for e in client.errors()] == [1101, 1101]
    client.send("smua.source.func = 0 smua.trigger.source.action = 1 "
                "smua.trigger.measure.action = 0 smua.trigger.count = 2 "
                "smua.trigger.initiate()")
    assert client.ask("print(smua.source.leveli)") == "0.00000e+00"
    assert client.errors() == []


def test_a_runtime_error_mid_sweep_leaves_no_half_state(client, world):
    current_source(client, "smua")
    client.send("smua.trigger.source.listi({1e-6, 2e-6}) smua.trigger.source.action = 1 "
                "smua.trigger.count = 2 smua.trigger.initiate() error('boom')")
    assert [e[0] for e in client.errors()] == [-286]
    assert client.ask("print(status.operation.sweeping.condition, smua.source.leveli)") == (
        "0.00000e+00\t0.00000e+00")
    assert world.buses["A"].set_current == 0.0


def test_sandbox(client):
    assert client.ask("print(os, io, require, package, debug, dofile, loadfile, python)") == (
        "\t".join(["nil"] * 8))
    assert client.ask("print(string.dump)") == "nil"
    assert client.ask("print(load('return 2')())") == "2.00000e+00"
    client.send("load(string.char(27) .. 'Lua')")  # a binary chunk is refused
    client.send("while true do end")
    errors = client.errors()
    assert errors[-1][0] == -286 and "instruction budget" in errors[-1][1]
    assert client.ask("print(1)") == "1.00000e+00"


# -- scripts ----------------------------------------------------------------------------------
def test_loadscript_and_loadandrunscript(client, sim):
    for line in ("loadscript greet", "x = (x or 0) + 1", "print('hi', x)", "endscript"):
        client.send(line)
    assert client.ask("greet()") == "hi\t1.00000e+00"
    assert client.ask("greet.run()") == "hi\t2.00000e+00"
    for line in ("loadandrunscript", "for k = 1, 2 do", "print(k)", "end", "endscript"):
        client.send(line)
    assert client.ask("") == "1.00000e+00" and client.ask("") == "2.00000e+00"
    for line in ("loadandrunscript", "for k = 1 do", "endscript"):
        client.send(line)
    assert [e[0] for e in client.errors()] == [-285]


# -- buffers and formats ----------------------------------------------------------------------
def test_printbuffer_ascii_and_binary_both_byte_orders(client):
    current_source(client, "smua", 5e-6)
    client.send("smua.nvbuffer1.clear() smua.nvbuffer1.appendmode = 1 "
                "for k = 1, 3 do smua.measure.i(smua.nvbuffer1) end")
    assert client.ask("print(smua.nvbuffer1.n)") == "3.00000e+00"
    assert client.ask("printbuffer(1, 3, smua.nvbuffer1.readings)") == (
        "5.00000e-06, 5.00000e-06, 5.00000e-06")
    little = client.ask_bytes("format.data = format.REAL32 format.byteorder = "
                              "format.LITTLEENDIAN printbuffer(1, 3, smua.nvbuffer1)", 15)
    assert little[:2] == b"#0" and little[-1:] == b"\n"
    assert struct.unpack("<3f", little[2:-1]) == pytest.approx([5e-6] * 3)
    big = client.ask_bytes("format.byteorder = format.BIGENDIAN "
                           "printbuffer(1, 3, smua.nvbuffer1.readings)", 15)
    assert big[2:-1] == struct.pack(">3f", *struct.unpack("<3f", little[2:-1]))
    double = client.ask_bytes("format.data = format.REAL64 printnumber(0.1)", 11)
    assert struct.unpack(">d", double[2:-1]) == (0.1,)


# -- trigger model ----------------------------------------------------------------------------
SWEEP = """
for _, s in ipairs({{smua, smub}}) do
  s.measure.nplc = {nplc} s.measure.delay = {delay}
  s.nvbuffer1.clear() s.nvbuffer2.clear()
  s.trigger.source.action = s.ENABLE s.trigger.measure.action = s.ENABLE
  s.trigger.measure.iv(s.nvbuffer1, s.nvbuffer2) s.trigger.count = {n}
  s.trigger.measure.stimulus = trigger.blender[1].EVENT_ID
end
smua.trigger.source.lineari(1e-6, {top_a}, {n})
smub.trigger.source.lineari(2e-6, {top_b}, {n})
trigger.blender[1].orenable = false
trigger.blender[1].stimulus[1] = smua.trigger.SOURCE_COMPLETE_EVENT_ID
trigger.blender[1].stimulus[2] = smub.trigger.SOURCE_COMPLETE_EVENT_ID
digio.trigger[1].mode = digio.TRIG_RISINGA
digio.trigger[1].stimulus = trigger.blender[1].EVENT_ID
smub.trigger.initiate() smua.trigger.initiate()
print(status.operation.sweeping.condition)
"""


def run_sweep(client, n, nplc=0.01, delay="smua.DELAY_AUTO", top_a=40e-6, top_b=41e-6):
    current_source(client, "smua")
    current_source(client, "smub")
    for line in ("loadandrunscript", *SWEEP.format(n=n, nplc=nplc, delay=delay, top_a=top_a,
                                                    top_b=top_b).splitlines(), "endscript"):
        client.send(line)
    return client.ask("")  # what the script printed (the sweep ran after it)


def test_paired_sweep_in_lockstep_with_the_adc(client, world):
    adc = SimAdcBoard(world)
    adc.handle("ACQ:COUN 20")
    adc.handle("ACQ:ARM")
    assert run_sweep(client, 20) == "6.00000e+00"  # both channels sweeping
    assert client.ask("print(status.operation.sweeping.condition)") == "0.00000e+00"
    assert adc.handle("ACQ:STAT?") == "DONE,20"
    va = np.array([float(x) for x in client.ask(
        "format.data = format.ASCII printbuffer(1, 20, smua.nvbuffer2)").split(", ")])
    vb = np.array([float(x) for x in client.ask(
        "printbuffer(1, 20, smub.nvbuffer2)").split(", ")])
    ia, ib = np.linspace(1e-6, 40e-6, 20), np.linspace(2e-6, 41e-6, 20)
    tol = 6 * NOISE_V / np.sqrt(0.01)
    np.testing.assert_allclose(va, model_v(world, 0, ia), atol=tol)
    np.testing.assert_allclose(vb, model_v(world, 1, ib), atol=tol)
    samples = [s.volts for s in adc.samples]
    np.testing.assert_allclose(samples, model_v(world, 1, ib) - model_v(world, 0, ia),
                               atol=1e-4)
    # After the sweep both sources are back at their fixed level, 0 A.
    assert world.buses["A"].set_current == 0.0 and world.buses["B"].set_current == 0.0


@pytest.mark.parametrize(("nplc", "rate"), [(0.001, 12_000), (0.01, 4_200), (1.0, 59)])
def test_sweep_rate_follows_the_datasheet(client, world, nplc, rate):
    n = 60 if nplc == 1.0 else 600
    t0 = world.clock.now()
    run_sweep(client, n, nplc=nplc, delay=0)
    assert n / (world.clock.now() - t0) == pytest.approx(rate, rel=0.05)


def test_auto_measure_delay_adds_the_settling_time(client, world):
    t0 = world.clock.now()
    run_sweep(client, 100, nplc=0.001, top_a=60e-6, top_b=61e-6)
    per_step = (world.clock.now() - t0) / 100
    assert per_step > 1 / 12_000 + 100e-6  # 100 uA range: < 150 us settling


def test_channel_waiting_on_an_uninitiated_partner_stays_armed(client):
    current_source(client, "smub")
    client.send("smub.trigger.source.stimulus = smua.trigger.SOURCE_COMPLETE_EVENT_ID "
                "smub.trigger.source.action = 1 smub.trigger.count = 3 smub.trigger.initiate()")
    assert client.ask("print(status.operation.sweeping.condition)") == "4.00000e+00"
    client.send("smub.abort()")
    assert client.ask("print(status.operation.sweeping.condition)") == "0.00000e+00"


def test_garbage_never_kills_the_server(client):
    rng = np.random.default_rng(5)
    alphabet = list("smuab.()[]{}=,'\"0123456789 +-*/<>~#;:abcdefghijklmnopqrstuvwxyz\\")
    for _ in range(200):
        client.send("".join(rng.choice(alphabet, size=int(rng.integers(1, 40)))))
    client.send("endscript")  # in case the garbage opened a script
    assert client.ask("*IDN?").startswith("Keithley")
    assert client.ask("print(smua.source.output, smub.source.output)") == (
        "0.00000e+00\t0.00000e+00")


def test_dynamic_buffer_with_source_values_and_timestamps(client):
    current_source(client, "smua", 3e-6)
    client.send("b = smua.makebuffer(2) b.appendmode = 1 b.collectsourcevalues = 1 "
                "smua.measure.count = 3 smua.measure.interval = 0.01 smua.measure.i(b)")
    assert client.ask("print(b.n, b.capacity, b.sourcevalues[1], b.timestamps[1], "
                      "b.readings[3])") == (
        "2.00000e+00\t2.00000e+00\t3.00000e-06\t0.00000e+00\tnil")  # full after two
    t2 = float(client.ask("print(b.timestamps[2])"))
    assert t2 == pytest.approx(0.01 + 1 / 59, rel=0.05)  # interval + one 1-NPLC reading


def test_reset_turns_everything_off(client, world):
    current_source(client, "smua", 10e-6)
    current_source(client, "smub", 10e-6)
    assert client.ask("reset() print(smua.source.output, smub.source.output, "
                      "smua.source.leveli, format.data)") == (
        "0.00000e+00\t0.00000e+00\t0.00000e+00\t1.00000e+00")
    assert not world.buses["A"].on and not world.buses["B"].on


def test_constructor_refuses_bad_cables(world):
    with pytest.raises(ValueError, match="'a' and 'b', not 'c'"):
        SimKeithley2600(world, {"c": CABLING.smus[0]})
    with pytest.raises(ValueError, match="names channel 'a'"):
        SimKeithley2600(world, {"b": CABLING.smus[0]})
    with pytest.raises(ValueError, match="not a cable"):
        SimKeithley2600(world, {"a": SmuCable("other", "a", "A")})
