"""The whole simulated station: its served resources, ``labctl sim serve`` as a real process,
and the physics seen through the instruments (I-V curves, chip-to-chip spread, breakdown)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from simulators import mtj
from simulators.adc_board import SimAdcBoard, decode_block
from simulators.prober import SimProber
from simulators.station import NAMES, SimulatedStation
from simulators.switch_matrix import SimSwitchMatrix
from simulators.world import SimSettings, StationWorld

REPO = Path(__file__).resolve().parents[1]
VISA_SOCKET = re.compile(r"^TCPIP::127\.0\.0\.1::(\d+)::SOCKET$")


def needs_smu() -> None:
    pytest.importorskip("simulators.keithley2400", reason="the SMU simulator is not there yet")


def tcp_query(resource: str, *commands: str, timeout: float = 2.0) -> str:
    """Send ``commands`` over a raw socket named by a VISA SOCKET resource string; the one
    reply line (so exactly one of the commands must reply)."""
    port = int(VISA_SOCKET.match(resource).group(1))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        stream = sock.makefile("rwb")
        stream.write("".join(c + "\n" for c in commands).encode())
        stream.flush()
        return stream.readline().decode().rstrip("\n")


def serial_query(url: str, command: str) -> str:
    port = serial.serial_for_url(url, baudrate=115200, timeout=2)
    try:
        port.reset_input_buffer()
        port.write(command.encode() + b"\n")
        return port.readline().decode().rstrip("\n")
    finally:
        port.close()


# -- the served station ----------------------------------------------------------------
@pytest.fixture(scope="module")
def station():
    needs_smu()
    with SimulatedStation(SimSettings(seed=5)) as running:
        yield running


def test_resources(station: SimulatedStation):
    res = station.resources()
    assert tuple(res) == NAMES
    for name in ("smu_a", "smu_b", "switch", "prober"):
        assert VISA_SOCKET.match(res[name]), res[name]
    assert re.match(r"^socket://127\.0\.0\.1:\d+$", res["adc_socket"])
    assert res["adc"].startswith("/dev/") and os.path.exists(res["adc"])
    ports = {VISA_SOCKET.match(res[n]).group(1) for n in ("smu_a", "smu_b", "switch", "prober")}
    assert len(ports) == 4


def test_every_instrument_answers_its_identity(station: SimulatedStation):
    res = station.resources()
    assert "MODEL 2400,4000001" in tcp_query(res["smu_a"], "*IDN?")
    assert "MODEL 2400,4000002" in tcp_query(res["smu_b"], "*IDN?")
    assert serial_query(res["adc"], "*IDN?") == "LABCTL,DIFFADC-24,ADC0001,1.0"
    assert serial_query(res["adc_socket"], "*IDN?") == "LABCTL,DIFFADC-24,ADC0001,1.0"
    assert tcp_query(res["switch"], "*IDN?").startswith("Keithley Instruments Inc., Model 707B")
    assert tcp_query(res["prober"], "*IDN?").startswith("MPI Corporation,SENTIO")


def test_visa_resources_open_with_pyvisa(station: SimulatedStation):
    pyvisa = pytest.importorskip("pyvisa")
    rm = pyvisa.ResourceManager("@py")
    try:
        inst = rm.open_resource(station.resources()["switch"], read_termination="\n",
                                write_termination="\n", timeout=2000)
        assert inst.query("*IDN?").startswith("Keithley Instruments Inc.")
        inst.close()
    finally:
        rm.close()


def test_smu_a_drives_bus_a_seen_by_the_adc(station: SimulatedStation):
    res, world = station.resources(), station.world
    tcp_query(res["switch"], 'channel.exclusiveclose("1A02")', "print(errorqueue.count)")
    tcp_query(res["prober"], "move_chuck_contact")
    try:
        port = int(VISA_SOCKET.match(res["smu_a"]).group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            stream = sock.makefile("rwb")
            stream.write(b"*RST\n:SOUR:FUNC CURR\n:SOUR:CURR 2e-05\n:SENS:VOLT:PROT 2\n"
                         b":OUTP ON\n*OPC?\n")
            stream.flush()
            assert stream.readline().strip() == b"1"
            expected = -float(mtj.voltage(world.chip.params.take((1, 0)), 2e-5))
            volts = float(serial_query(res["adc_socket"], "MEAS?").split(",")[0])
            assert volts == pytest.approx(expected, abs=2e-5)
            stream.write(b":OUTP OFF\n*OPC?\n")
            stream.flush()
            stream.readline()
    finally:
        tcp_query(res["prober"], "move_chuck_separation")
        tcp_query(res["switch"], 'channel.open("allslots")', "print(errorqueue.count)")


def test_stop_closes_every_endpoint():
    needs_smu()
    station = SimulatedStation().start()
    res = station.resources()
    station.stop()
    station.stop()  # idempotent
    for name in ("smu_a", "smu_b", "switch", "prober"):
        port = int(VISA_SOCKET.match(res[name]).group(1))
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_port_base_assigns_consecutive_ports():
    needs_smu()
    for _ in range(5):
        with socket.create_server(("127.0.0.1", 0)) as probe:
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        try:
            station = SimulatedStation(port_base=base).start()
        except OSError:
            continue  # someone took one of the five ports meanwhile
        try:
            res = station.resources()
            assert res["smu_a"] == f"TCPIP::127.0.0.1::{base}::SOCKET"
            assert res["smu_b"] == f"TCPIP::127.0.0.1::{base + 1}::SOCKET"
            assert res["adc_socket"] == f"socket://127.0.0.1:{base + 2}"
            assert res["switch"] == f"TCPIP::127.0.0.1::{base + 3}::SOCKET"
            assert res["prober"] == f"TCPIP::127.0.0.1::{base + 4}::SOCKET"
        finally:
            station.stop()
        # Stopping released the ports: the same base serves again at once.
        with SimulatedStation(port_base=base) as again:
            assert tcp_query(again.resources()["prober"], "get_chuck_z_state") == "0,0,separation"
        return
    pytest.skip("no free run of five ports found")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_sim_serve_as_a_process(stop_signal: signal.Signals):
    needs_smu()
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.serve", "--seed", "3", "--pairs", "8",
         "--variability", "pronounced"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        resources = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"serve ended early: {proc.stderr.read()}"
            if line.strip() == "ready":
                break
            name, resource = line.split()
            resources[name] = resource
        assert set(resources) == set(NAMES)
        switch = resources["switch"]
        assert tcp_query(switch, "*IDN?").startswith("Keithley Instruments Inc., Model 707B")
        getclose = 'print(channel.getclose("allslots"))'
        assert tcp_query(switch, 'channel.close("1A08,1B01")', getclose) == "1A08;1B01"
        # Only 8 pairs: 1A09 is no channel.
        assert tcp_query(switch, 'channel.close("1A09")', "print(errorqueue.count)") == "1"
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_sim_serve_rejects_bad_options():
    proc = subprocess.run([sys.executable, "-m", "simulators.serve", "--variability", "wild"],
                          cwd=REPO, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2 and "variability" in proc.stderr


# -- physics through the instruments ---------------------------------------------------
class Rig:
    """World, switch, prober and ADC of a station driven through their protocols; the SMUs
    are stood in for by ``world.drive`` so this needs no SMU simulator."""

    def __init__(self, settings: SimSettings):
        self.world = StationWorld(settings)
        self.switch = SimSwitchMatrix(self.world)
        self.prober = SimProber(self.world)
        self.adc = SimAdcBoard(self.world)
        for command in ("GAIN 1", "AVER 100"):
            self.adc.handle(command)

    def goto(self, die: tuple[int, int]) -> None:
        assert self.prober.handle("move_chuck_separation") == "0,0,"
        assert self.prober.handle(f"map:step_die {die[0]},{die[1]}").startswith("0,")
        assert self.prober.handle("move_chuck_contact") == "0,0,"

    def connect(self, *channels: str) -> None:
        assert self.switch.handle(f'channel.exclusiveclose("{",".join(channels)}")') is None

    def differential(self) -> float:
        volts, status = self.adc.handle("MEAS?").split(",")
        assert status == "0"
        return float(volts)


def test_iv_sweep_reproduces_the_device_model():
    rig = Rig(SimSettings(seed=11))
    rig.goto((2, 1))
    rig.connect("1A03", "1B07")
    params = rig.world.chip.params
    currents = np.linspace(-60e-6, 60e-6, 25)
    measured_a, measured_b, seen = [], [], []
    for i in currents:
        rig.world.drive("A", i, 2.0)
        rig.world.drive("B", -i / 2, 2.0)
        measured_a.append(rig.world.bus_voltage("A"))
        measured_b.append(rig.world.bus_voltage("B"))
        seen.append(rig.differential())
    expected_a = mtj.voltage(params.take((2, 0)), currents)
    expected_b = mtj.voltage(params.take((6, 1)), -currents / 2)
    np.testing.assert_allclose(measured_a, expected_a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(measured_b, expected_b, rtol=1e-9, atol=1e-12)
    # The ADC sees V_B - V_A to within its noise (0.5 uV at AVER 100).
    np.testing.assert_allclose(seen, expected_b - expected_a, atol=5e-6)
    # Nonlinear (the TMR switches): a straight line through the end points misses it.
    line = np.interp(currents, currents[[0, -1]], expected_a[[0, -1]])
    assert np.max(np.abs(expected_a - line)) > 0.05
    assert not rig.world.dies[(2, 1)].destroyed.any()


def chip_rp(settings: SimSettings) -> np.ndarray:
    """R_P (Ohm) of every device of every die, measured through switch, prober and ADC."""
    rig = Rig(settings)
    current = 150e-6  # deep in the parallel state: m(I) = tanh(110/25) ~ 1
    out = []
    for die in rig.prober.die_order:
        rig.goto(die)
        for pair in range(1, settings.n_pairs + 1):
            for bus, sign in (("A", -1.0), ("B", 1.0)):
                rig.connect(f"1{bus}{pair:02d}")
                rig.world.drive(bus, current, 2.0)
                out.append(sign * rig.differential() / current)
                rig.world.release(bus)
    rig.switch.handle('channel.open("allslots")')
    assert not any(bank.destroyed.any() for bank in rig.world.dies.values())
    return np.array(out)


@pytest.mark.parametrize("preset", ["nominal", "pronounced"])
def test_chip_spread_matches_the_configured_variability(preset: str):
    settings = SimSettings(seed=21, variability=preset, n_pairs=16, die_grid=(2, 2))
    r_p = chip_rp(settings)
    assert r_p.shape == (4 * 16 * 2,)
    model = mtj.PRESETS[preset]
    expected = np.hypot(model.spread, model.mismatch)  # sigma of log R_P per device
    # 64 independent pairs: the sigma estimate is good to ~9 % (1 sigma); allow 3.
    assert np.std(np.log(r_p)) == pytest.approx(expected, rel=0.27)
    assert np.median(r_p) == pytest.approx(mtj.NOMINAL.r_p, rel=3 * expected / 8)


def test_overdrive_destroys_a_device_and_it_then_reads_as_a_short():
    rig = Rig(SimSettings(seed=4))
    rig.goto((1, 1))
    rig.connect("1A05")
    v_breakdown = float(np.asarray(rig.world.chip.params.v_breakdown)[4, 0])
    # Within a sensible compliance the source limits and the device survives.
    rig.world.drive("A", 1e-3, 0.8)
    assert rig.world.buses["A"].in_compliance
    record = rig.world.max_bias_record()["1,1"]
    assert record["max_abs_v"][4, 0] <= 0.8 + 1e-9 and not record["destroyed"].any()
    # A high compliance lets 1 mA through: several V across the barrier.
    rig.world.drive("A", 1e-3, 21.0)
    record = rig.world.max_bias_record()["1,1"]
    assert record["max_abs_v"][4, 0] > max(v_breakdown, 2.0)
    assert record["destroyed"][4, 0] and record["destroyed"].sum() == 1
    assert not rig.world.max_bias_record()["2,1"]["destroyed"].any()
    rig.world.drive("A", 10e-6, 2.0)
    assert -rig.differential() / 10e-6 == pytest.approx(mtj.SHORT_RESISTANCE, rel=0.02)


def test_list_sweep_on_the_trigger_link_is_sampled_by_the_adc(station: SimulatedStation):
    """SMU A as master steps a list and pulses line 1; SMU B steps on those pulses and the
    ADC takes one sample per pulse: the block holds V_B - V_A of every step."""
    res, world = station.resources(), station.world
    n = 12
    i_a = np.linspace(-40e-6, 40e-6, n)
    i_b = np.linspace(30e-6, -30e-6, n)
    tcp_query(res["switch"], 'channel.exclusiveclose("1A04,1B04")', "print(errorqueue.count)")
    tcp_query(res["prober"], "move_chuck_contact")
    smu, sockets = {}, []
    try:
        for name in ("smu_a", "smu_b"):
            port = int(VISA_SOCKET.match(res[name]).group(1))
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            smu[name] = sockets[-1].makefile("rwb")

        def send(name: str, *commands: str) -> None:
            smu[name].write("".join(c + "\n" for c in commands).encode())
            smu[name].flush()

        def sweep_setup(levels: np.ndarray) -> list[str]:
            return ["*RST", ":SOUR:FUNC CURR", ":SENS:VOLT:PROT 2", ":SOUR:CURR:MODE LIST",
                    ":SOUR:LIST:CURR " + ",".join(f"{x:.6e}" for x in levels),
                    f":TRIG:COUN {n}", ":OUTP ON"]

        adc = serial.serial_for_url(res["adc"], baudrate=115200, timeout=5)
        try:
            adc.reset_input_buffer()
            adc.write(f"*RST\nAVER 10\nACQ:COUN {n}\nACQ:ARM\nACQ:STAT?\n".encode())
            assert adc.readline() == b"ARMED,0\n"
            send("smu_b", *sweep_setup(i_b), ":TRIG:SOUR TLIN", ":TRIG:ILIN 1", ":INIT",
                 "*OPC?")
            assert smu["smu_b"].readline().strip() == b"1"
            send("smu_a", *sweep_setup(i_a), ":TRIG:OUTP SOUR", ":TRIG:OLIN 1", ":INIT",
                 "*OPC?")
            assert smu["smu_a"].readline().strip() == b"1"
            adc.write(b"ACQ:DATA?\n")
            head = adc.read(10)
            raw = head + adc.read(int(head[2:10]) + 5)
        finally:
            adc.close()
        records = [tuple(r) for r in decode_block(raw)]
        chip = world.chip.params
        expected = mtj.voltage(chip.take((3, 1)), i_b) - mtj.voltage(chip.take((3, 0)), i_a)
        assert len(records) == n
        np.testing.assert_allclose([r[1] for r in records], expected, atol=1e-5)
        stamps = np.array([r[0] for r in records])
        assert np.all(np.diff(stamps) > 0)  # the master spends time per step
        for name in smu:
            send(name, ":OUTP OFF", "*OPC?")
            smu[name].readline()
    finally:
        for stream in smu.values():
            stream.close()
        for sock in sockets:
            sock.close()
        tcp_query(res["prober"], "move_chuck_separation")
        tcp_query(res["switch"], 'channel.open("allslots")', "print(errorqueue.count)")
