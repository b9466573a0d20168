"""The simulated Keysight B2902A over a real loopback socket: command/reply pairs, refused
input (with no state change), voltage sourcing against the device model, the lockstep list
sweep of both channels with trigger pulses per step, binary formats and the time model."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from simulators.cabling import Cabling, SmuCable, TriggerCable
from simulators.keysight_b2900 import (
    ACQUIRE_OVERHEAD_S,
    INITIATE_OVERHEAD_S,
    MIN_TRIGGER_INTERVAL_S,
    SimB2902A,
)
from simulators.server import TcpServer
from simulators.world import SimSettings, StationWorld

NAN = 9.91e37
NOISE_V = 20e-6  # nominal SMU read noise at 1 NPLC
#: One B2902A: channel 1 on row A, channel 2 on row B; its EXT1 reaches the ADC's trigger.
CABLING = Cabling(
    smus=(SmuCable("smu", "1", "A"), SmuCable("smu", "2", "B")),
    triggers=(TriggerCable("smu", 1, "adc", 1),),
)


class Client:
    """A raw socket client: one line out, one text line (or one binary block) back."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        self.buffer = b""

    def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("ascii") + b"\n")

    def ask(self, line: str) -> str:
        self.send(line)
        while b"\n" not in self.buffer:
            self._fill(len(self.buffer) + 1)
        text, _, self.buffer = self.buffer.partition(b"\n")
        return text.decode("ascii")

    def ask_block(self, line: str) -> bytes:
        """The payload of a ``#<d><length>...`` reply (its newline checked)."""
        self.send(line)
        self._fill(2)
        assert self.buffer[:1] == b"#"
        digits = int(self.buffer[1:2])
        self._fill(2 + digits)
        length = int(self.buffer[2 : 2 + digits])
        end = 2 + digits + length
        self._fill(end + 1)
        payload, newline = self.buffer[2 + digits : end], self.buffer[end : end + 1]
        self.buffer = self.buffer[end + 1 :]
        assert newline == b"\n"
        return payload

    def errors(self) -> list[int]:
        codes = []
        for _ in range(20):
            code = int(self.ask(":SYST:ERR?").split(",")[0])
            if code == 0:
                return codes
            codes.append(code)
        raise AssertionError("error queue does not empty")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def world() -> StationWorld:
    w = StationWorld(SimSettings(seed=7), CABLING)
    w.set_contact(True)
    w.set_closed({"1A01", "1B01"})
    return w


@pytest.fixture
def sim(world: StationWorld) -> SimB2902A:
    return SimB2902A(world, {"1": CABLING.smus[0], "2": CABLING.smus[1]})


@pytest.fixture
def client(sim: SimB2902A):
    server = TcpServer(sim).start()
    c = Client(server.port)
    yield c
    c.close()
    server.stop()


def device_v(world: StationWorld, dev: int, current) -> np.ndarray:
    """Model voltage (V) of device ``dev`` (0 = A on row A, 1 = B on row B) of pair 1."""
    return np.array([world.chip.ideal_voltage_one(0, dev, float(i))
                     for i in np.atleast_1d(current)])


def current_sources(c: Client, compliance_v: float = 0.9, nplc: float = 1.0) -> None:
    for ch in ("1", "2"):
        c.send(f":SOUR{ch}:FUNC:MODE CURR;:SENS{ch}:VOLT:PROT {compliance_v};"
               f":SENS{ch}:VOLT:NPLC {nplc};:OUTP{ch} ON")


# -- identity, forms, defaults -----------------------------------------------------------
def test_idn_and_constructor_checks(client: Client, world: StationWorld):
    assert client.ask("*IDN?") == "Keysight Technologies,B2902A,MY51140001,3.4.2011.5100"
    with pytest.raises(ValueError, match="channels '1' and '2'"):
        SimB2902A(world, {"1": CABLING.smus[0]})
    with pytest.raises(ValueError, match="cable of channel '2'"):
        SimB2902A(world, {"1": CABLING.smus[1], "2": CABLING.smus[0]})


REPLIES = [
    (":SOUR:FUNC:MODE?", "VOLT"),
    (":SOUR2:FUNC:MODE?", "VOLT"),
    (":OUTP?;:OUTP2?", "0;0"),
    (":OUTP:OFF:MODE?", "ZERO"),
    (":SENS2:CURR:PROT?", "+1.000000E-04"),
    (":SENS:VOLT:PROT?", "+2.000000E+00"),
    (":SENS:CURR:NPLC?", "+1.000000E-01"),
    (":OUTP:ON:AUTO?;:OUTP2:ON:AUTO?", "1;1"),
    (":TRIG:ACQ:COUN?;:TRIG2:TRAN:SOUR?", "1;AINT"),
    (":FORM?;:FORM:BORD?", "ASC;NORM"),
    (":FORM:ELEM:SENS?", "VOLT,CURR,RES,TIME,STAT,SOUR"),
    (":SYST:ERR?", '+0,"No error"'),
]


@pytest.mark.parametrize(("query", "reply"), REPLIES)
def test_reset_state(client: Client, query: str, reply: str):
    client.send(":SOUR2:CURR 1e-6;:SENS:VOLT:PROT 5;*RST")
    assert client.ask(query) == reply


def test_short_and_long_forms_address_the_right_channel(client: Client):
    client.send(":SOURCE2:CURRENT:LEVEL:IMMEDIATE:AMPLITUDE 2.5e-6")
    client.send(":CURR 1e-6")  # no [:SOURce] node, no suffix: channel 1
    assert client.ask(":SOUR2:CURR?;:SOUR1:CURR?;:SOURCE:CURRENT?") == (
        "+2.500000E-06;+1.000000E-06;+1.000000E-06")
    client.send(":trig2:tran:coun 7;:TRIGGER2:ALL:TIMER 1e-3")
    assert client.ask(":TRIG2:TRAN:COUN?;:TRIG2:ACQ:TIM?;:TRIG:TRAN:COUN?") == (
        "7;+1.000000E-03;1")
    assert client.errors() == []


# -- refused input ---------------------------------------------------------------------
REFUSED = [
    (":SOUR3:CURR 1e-6", -114, ":SOUR:CURR?;:SOUR2:CURR?", "+0.000000E+00;+0.000000E+00"),
    (":OUTP3 ON", -114, ":OUTP?;:OUTP2?", "0;0"),
    (":INIT (@3)", -224, ":FETC:ARR:CURR? (@1)", "+9.910000E+37"),
    (":MEAS? (@1,3)", -224, ":FETC:ARR:CURR? (@1)", "+9.910000E+37"),
    (":INIT (1,2)", -104, ":FETC:ARR:CURR? (@2)", "+9.910000E+37"),
    (":LIST:CURR " + ",".join(["1e-6"] * 2501), -223, ":LIST:CURR:POIN?", "3"),
    (":LIST:CURR:APP " + ",".join(["1e-6"] * 2498), -223, ":LIST:CURR:POIN?", "3"),
    (":CURR 3.1", -222, ":SOUR:CURR?", "+0.000000E+00"),
    (":VOLT 211", -222, ":SOUR:VOLT?", "+0.000000E+00"),
    (":CURR:RANG 1e-6;:CURR 2e-6", -222, ":SOUR:CURR?;:SOUR:CURR:RANG:AUTO?",
     "+0.000000E+00;0"),
    (":CURR 5e-5;:CURR:RANG 1e-6", -221, ":SOUR:CURR:RANG?", "+1.000000E-04"),
    (":LIST:CURR 0,4,1", -222, ":LIST:CURR:POIN?", "3"),
    (":TRIG:COUN 0", -222, ":TRIG:ACQ:COUN?", "1"),
    (":TRIG:COUN 100001", -222, ":TRIG:TRAN:COUN?", "1"),
    (":TRIG:TIM 1e-5", -222, ":TRIG:TRAN:TIM?", "+2.000000E-05"),
    (":FORM REAL,16", -224, ":FORM?", "ASC"),
    (":FORM:BORD BACKWARDS", -224, ":FORM:BORD?", "NORM"),
    (":TRIG:TRAN:TOUT:SIGN EXT15", -224, ":TRIG:TRAN:TOUT:SIGN?", "EXT1"),
    (":SOUR:FUNC:MODE MEM", -224, ":SOUR:FUNC:MODE?", "VOLT"),
    (":TRIG:SOUR BUS;:INIT", -221, ":FETC:ARR:CURR?", "+9.910000E+37"),
]


@pytest.mark.parametrize(("command", "code", "query", "unchanged"), REFUSED,
                         ids=[r[0][:30] for r in REFUSED])
def test_refused_input_queues_the_error_and_changes_nothing(client: Client, command: str,
                                                            code: int, query: str,
                                                            unchanged: str):
    client.send(":LIST:CURR 1e-6,2e-6,3e-6")
    client.send(command)
    assert client.errors() == [code]
    assert client.ask(query) == unchanged


@pytest.mark.parametrize(("command", "nplc"), [
    (":SENS:CURR:NPLC 1e-5", "+4.800000E-04"),  # MIN at 60 Hz: an 8 us aperture
    (":SENS:VOLT:NPLC 500", "+1.200000E+02"),  # MAX: 2 s
    (":SENS:CURR:APER 1e-6", "+4.800000E-04"),
    (":SYST:LFR 50;:SENS:CURR:NPLC 1e-5", "+4.000000E-04"),
])
def test_nplc_beyond_its_range_is_set_to_min_or_max(client: Client, command: str, nplc: str):
    client.send(command)
    assert client.ask(":SENS:CURR:NPLC?") == nplc
    assert client.errors() == []


def test_init_turns_the_outputs_on_unless_auto_on_is_off(client: Client,
                                                          world: StationWorld):
    client.send(":SOUR:FUNC:MODE CURR;:CURR 1e-5;:OUTP2:ON:AUTO OFF;:INIT (@1,2)")
    assert client.ask(":OUTP?;:OUTP2?") == "1;0"
    assert world.buses["A"].current == 1e-5 and not world.buses["B"].on


def test_error_texts_are_the_scpi_ones(client: Client):
    client.send(":SOUR3:CURR 1;:MEAS? (@3);:CURR 9")
    assert client.ask(":SYST:ERR:ALL?") == (
        '-114,"Header suffix out of range",-224,"Illegal parameter value",'
        '-222,"Data out of range"')


# -- physics -----------------------------------------------------------------------------
def test_current_source_reads_the_device_model(client: Client, world: StationWorld):
    current_sources(client)
    client.send(":SOUR1:CURR 20e-6;:SOUR2:CURR 35e-6;:FORM:ELEM:SENS VOLT,CURR,STAT")
    v1, i1, s1, v2, i2, s2 = map(float, client.ask(":MEAS? (@1,2)").split(","))
    assert (i1, i2) == (20e-6, 35e-6)
    assert abs(v1 - device_v(world, 0, 20e-6)[0]) < 5 * NOISE_V
    assert abs(v2 - device_v(world, 1, 35e-6)[0]) < 5 * NOISE_V
    assert s1 == s2 == 1  # bit 0: current source; no compliance


def test_voltage_source_solves_the_device_current(client: Client, world: StationWorld):
    client.send(":SOUR:FUNC:MODE VOLT;:SENS:CURR:PROT 1e-3;:VOLT 0.3;:OUTP ON")
    client.send(":FORM:ELEM:SENS VOLT,CURR,STAT,SOUR")
    v, i, status, source = map(float, client.ask(":MEAS? (@1)").split(","))
    assert source == 0.3 and status == 0  # voltage source, regulating
    assert abs(v - 0.3) < 5 * NOISE_V
    assert 1e-6 < i < 1e-3
    # The device carries exactly the current the model needs for 0.3 V.
    assert device_v(world, 0, i)[0] == pytest.approx(0.3, abs=1e-6)
    assert client.ask(":SENS:CURR:PROT:TRIP?") == "0"


def test_voltage_source_current_compliance(client: Client, world: StationWorld):
    client.send(":SOUR:FUNC:MODE VOLT;:SENS:CURR:PROT 2e-6;:VOLT 0.3;:OUTP ON")
    client.send(":FORM:ELEM:SENS VOLT,CURR,STAT")
    v, i, status = map(float, client.ask(":MEAS? (@1)").split(","))
    assert i == pytest.approx(2e-6, rel=1e-6)
    assert int(status) & 6  # bits 1-2: compliance
    assert abs(v - device_v(world, 0, 2e-6)[0]) < 5 * NOISE_V and v < 0.3
    assert client.ask(":SENS:CURR:PROT:TRIP?;:SENS:VOLT:PROT:TRIP?") == "1;0"


def test_current_source_voltage_compliance_with_the_prober_up(client: Client,
                                                             world: StationWorld):
    world.set_contact(False)
    current_sources(client, compliance_v=0.5)
    client.send(":SOUR:CURR 1e-5;:FORM:ELEM:SENS VOLT,CURR,STAT")
    v, i, status = map(float, client.ask(":MEAS? (@1)").split(","))
    assert abs(v - 0.5) < 5 * NOISE_V and i == 0.0 and int(status) == 1 | 2
    assert client.ask(":SENS:VOLT:PROT:TRIP?") == "1"


def test_output_off_releases_the_row(client: Client, world: StationWorld):
    current_sources(client)
    assert client.ask(":SOUR2:CURR 30e-6;*OPC?") == "1"  # a round trip: the line was run
    assert world.buses["B"].on and world.buses["B"].current == 30e-6
    assert client.ask(":OUTP2 OFF;*OPC?") == "1"
    assert not world.buses["B"].on and world.buses["B"].voltage == 0.0
    assert world.buses["A"].on


# -- lockstep list sweep -----------------------------------------------------------------
def test_lockstep_list_sweep_pulses_each_step_with_both_levels_set(client: Client,
                                                                    sim: SimB2902A,
                                                                    world: StationWorld):
    n = 50
    a = np.linspace(0.0, 40e-6, n)
    b = np.linspace(0.0, -30e-6, n)
    seen: list[tuple[int, float, float]] = []
    world.subscribe_trigger(
        "adc", 1, lambda step: seen.append((step, world.buses["A"].set_current,
                                            world.buses["B"].set_current)), order=10)
    current_sources(client)
    for ch, values in (("1", a), ("2", b)):
        client.send(f":SOUR{ch}:CURR:MODE LIST;:SOUR{ch}:LIST:CURR "
                    + ",".join(f"{v:.9g}" for v in values) + f";:TRIG{ch}:COUN {n}")
    client.send(":TRIG1:TRAN:TOUT ON;:TRIG1:TRAN:TOUT:SIGN EXT1;:FORM:ELEM:SENS VOLT,CURR,STAT")
    client.send(":INIT (@1,2)")
    reply = np.array([float(x) for x in client.ask(":FETC:ARR? (@1,2)").split(",")])
    assert sim.counts == {"INIT": 1, "FETC": 1}
    table = reply.reshape(n, 2, 3)  # step, channel, element
    np.testing.assert_allclose(table[:, 0, 1], a, rtol=1e-6)  # ASCII has seven digits
    np.testing.assert_allclose(table[:, 1, 1], b, rtol=1e-6)
    assert np.max(np.abs(table[:, 0, 0] - device_v(world, 0, a))) < 5 * NOISE_V
    assert np.max(np.abs(table[:, 1, 0] - device_v(world, 1, b))) < 5 * NOISE_V
    # One pulse per step, each when both channels already carry that step's level.
    assert [s for s, _, _ in seen] == list(range(n))
    np.testing.assert_allclose([x for _, x, _ in seen], a)
    np.testing.assert_allclose([y for _, _, y in seen], b)
    # After the sweep each channel is back at its fixed level (0 A).
    assert world.buses["A"].set_current == 0.0 and world.buses["B"].set_current == 0.0
    volts = client.ask(":FETC:ARR:VOLT? (@1,2)").split(",")
    np.testing.assert_allclose([float(v) for v in volts], table[:, :, 0].ravel())
    assert client.errors() == []


def test_a_pulse_on_an_uncabled_line_reaches_nobody(client: Client, world: StationWorld):
    seen = []
    world.subscribe_trigger("adc", 1, seen.append, order=10)
    current_sources(client)
    client.send(":TRIG:COUN 5;:TRIG:TRAN:TOUT ON;:TRIG:TRAN:TOUT:SIGN EXT2;:INIT (@1)")
    client.send(":TRIG:TRAN:TOUT:SIGN EXT1;:TRIG2:COUN 3;:INIT (@1,2)")
    assert client.ask("*OPC?") == "1"
    assert seen == list(range(5))  # only the second sweep's five steps


def test_unequal_counts_fill_the_shorter_channel_with_nan(client: Client):
    current_sources(client)
    client.send(":TRIG:COUN 3;:TRIG2:COUN 2;:FORM:ELEM:SENS CURR;:INIT (@2,1)")
    assert client.ask(":FETC:ARR? (@1:2)") == (
        "+0.000000E+00,+0.000000E+00,+0.000000E+00,+0.000000E+00,+0.000000E+00,+9.910000E+37")
    assert client.ask(":FETC? (@1,2)") == "+0.000000E+00,+0.000000E+00"


@pytest.mark.parametrize(("form", "code"), [("REAL,32", "f"), ("REAL,64", "d")])
@pytest.mark.parametrize(("bord", "order"), [("NORM", ">"), ("SWAP", "<")])
def test_binary_blocks_carry_the_ascii_values(client: Client, form: str, code: str,
                                              bord: str, order: str):
    current_sources(client)
    client.send(":CURR:MODE LIST;:LIST:CURR 1e-5,2e-5,3e-5;:TRIG:COUN 3;:TRIG2:COUN 3")
    client.send(":FORM:ELEM:SENS VOLT,CURR,RES,STAT;:INIT (@1,2)")
    text = np.array([float(x) for x in client.ask(":FETC:ARR? (@1,2)").split(",")])
    client.send(f":FORM {form};:FORM:BORD {bord}")
    payload = client.ask_block(":FETC:ARR? (@1,2)")
    size = struct.calcsize(code)
    assert len(payload) == len(text) * size
    values = np.array(struct.unpack(f"{order}{len(text)}{code}", payload))
    measured = text != NAN
    assert np.all(np.isnan(values[~measured]))  # RES not measured: NaN in binary
    np.testing.assert_allclose(values[measured], text[measured],
                               rtol=1e-6)  # ASCII has seven digits
    assert client.ask(":FORM?") == form
    client.send(":FORM ASC")
    assert client.errors() == []


def test_binary_block_after_a_text_reply_in_one_message(client: Client):
    client.send(":FORM REAL,64")
    client.send("*OPC?;:FETC:ARR:CURR? (@1)")
    client._fill(14)  # "1;" + "#18" + one 8-byte value + "\n"
    raw = client.buffer
    assert raw[:5] == b"1;#18" and raw[13:] == b"\n"
    assert np.isnan(struct.unpack(">d", raw[5:13])[0])  # no reading yet: NaN


# -- time ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("setup", "step_s"), [
    (":SENS:CURR:APER 8e-6;:SENS2:CURR:APER 8e-6", 8e-6 + ACQUIRE_OVERHEAD_S),
    (":SENS:CURR:APER 1e-3;:SENS2:CURR:NPLC 0.12", 2e-3 + ACQUIRE_OVERHEAD_S),
    (":SENS:CURR:APER 8e-6;:SENS2:CURR:APER 8e-6;:TRIG2:SOUR TIM;:TRIG2:TIM 5e-3", 5e-3),
])
def test_sweep_time_model(client: Client, world: StationWorld, setup: str, step_s: float):
    current_sources(client)
    client.send(f"{setup};:TRIG:COUN 100;:TRIG2:COUN 100")
    assert client.errors() == []
    t0 = world.clock.now()
    client.send(":INIT (@1,2)")
    assert client.ask("*OPC?") == "1"
    assert world.clock.now() - t0 == pytest.approx(INITIATE_OVERHEAD_S + 100 * step_s)
    assert step_s >= MIN_TRIGGER_INTERVAL_S


def test_cls_clears_the_error_queue_and_rst_keeps_it(client: Client):
    client.send(":SOUR3:CURR 1;*RST")
    assert client.ask(":SYST:ERR:COUN?") == "1"
    client.send("*CLS")
    assert client.ask(":SYST:ERR:COUN?;*ESR?") == "0;0"
    client.send(":CURR 9")
    assert client.ask("*ESR?;*ESR?") == "16;0"  # execution error bit, cleared by reading
