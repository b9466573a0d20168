"""Replies checked, never trusted; resync; confirmed safe states.

The drivers talk over real loopback sockets (VISA raw socket and pyserial ``socket://``)
and a pseudo-terminal to the simulated instruments, each wrapped in :class:`Faulty`, a
line instrument written here that can duplicate, delay (into the next reply), garble,
truncate or withhold a reply, or drop the link, so the faults of a night behind a
fault-injecting proxy are reproduced one at a time, deterministically.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from instruments import open_adapter
from instruments.adc_board import AdcBoard
from instruments.keithley2400 import Keithley2400, SourceState
from instruments.prober import Prober
from instruments.replay_transport import WireEntry, WireReplayTransport
from instruments.replies import scpi_header
from instruments.switch_matrix import SwitchMatrix
from instruments.transport import (
    GarbledReply,
    InstrumentConnectionError,
    InstrumentError,
    StaleReply,
    UnexpectedReply,
    WireLog,
    interrupts_deferred,
)
from simulators.server import PtyServer, TcpServer
from simulators.station import SimulatedStation
from simulators.world import SimSettings

COMPLIANCE_V = 0.9
FORMAT = (":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS", None)


class Faulty:
    """A line instrument that passes every line to ``inner`` and applies the fault armed
    for the next command containing a given text:

    * ``duplicate``: the reply twice, in one write (as a proxy repeating a segment);
    * ``late``: the reply now, and a copy of it in front of the next reply (or alone with
      the next command if that answers nothing): a duplicate that arrives after the next
      command was written;
    * ``garble``: byte 0xff inserted in the middle of the reply;
    * ``truncate``: only the first ``keep`` comma-separated fields, newline-terminated;
    * ``withhold``: no reply; ``drop``: the server closes the connection.
    """

    def __init__(self, inner):
        self.inner = inner
        self.lines: list[str] = []
        self._faults: list[tuple[str, str, dict]] = []
        self._held = b""
        self._lock = threading.Lock()

    def arm(self, command_part: str, fault: str, **options) -> None:
        with self._lock:
            self._faults.append((command_part, fault, options))

    def handle(self, line: str):
        with self._lock:
            self.lines.append(line)
            fault = next((f for f in self._faults if f[0] in line), None)
            if fault is not None:
                self._faults.remove(fault)
            held, self._held = self._held, b""
        if fault is not None and fault[1] == "drop":
            raise OSError("dropping the link on purpose")
        reply = self.inner.handle(line)
        data = b"" if reply is None else (
            reply if isinstance(reply, bytes) else reply.encode("ascii") + b"\n")
        if fault is not None and data:
            kind, options = fault[1], fault[2]
            if kind == "duplicate":
                data = data + data
            elif kind == "late":
                self._held = data
            elif kind == "garble":
                data = data[: len(data) // 2] + b"\xff" + data[len(data) // 2 :]
            elif kind == "truncate":
                data = b",".join(data.rstrip(b"\n").split(b",")[: options["keep"]]) + b"\n"
            elif kind == "withhold":
                data = b""
        out = held + data
        return out or None


@pytest.fixture
def sim():
    station = SimulatedStation(SimSettings(seed=3, variability="ideal")).start()
    yield station
    station.stop()


@pytest.fixture
def served(sim):
    """The station's SMU A, ADC and switch matrix behind :class:`Faulty` wrappers, served
    here (TCP for the SMU and the switch, a pty and TCP for the ADC). Pair 1 is
    connected (prober in contact), so SMU A's current flows through device 1A."""
    sim.instruments["prober"].handle("move_chuck_contact")
    sim.instruments["switch"].handle('channel.exclusiveclose("1A01,1B01")')
    faulty = {name: Faulty(sim.instruments[name]) for name in ("smu_a", "adc", "switch")}
    servers = {
        "smu_a": TcpServer(faulty["smu_a"]).start(),
        "switch": TcpServer(faulty["switch"]).start(),
        "adc_pty": PtyServer(faulty["adc"]).start(),
        "adc_tcp": TcpServer(faulty["adc"]).start(),
    }
    yield {"faulty": faulty, "servers": servers, "world": sim.world}
    for server in servers.values():
        server.stop()


def smu_resource(served, scheme: str) -> str:
    server = served["servers"]["smu_a"]
    return server.resource if scheme == "visa" else server.url


@pytest.fixture(params=["visa", "socket"])
def smu(request, served, tmp_path):
    """Keithley2400 "smu_a" through VISA or pyserial socket://, a current source at 0 A
    with its output on, and its wire log (``smu.log``)."""
    log = WireLog(tmp_path / "smu_a.jsonl")
    inst = Keithley2400(open_adapter(smu_resource(served, request.param), timeout_s=1.0,
                                     wire_log=log, name="smu_a"), name="smu_a")
    inst.log = log
    inst.faulty = served["faulty"]["smu_a"]
    inst.world = served["world"]
    inst.ask("*IDN?")  # what resync expects back
    inst.prepare_current_source(compliance_v=COMPLIANCE_V, nplc=0.01)
    yield inst
    inst.adapter.close()
    log.close()


@pytest.fixture(params=["pty", "socket"])
def adc(request, served, tmp_path):
    servers = served["servers"]
    url = servers["adc_pty"].path if request.param == "pty" else servers["adc_tcp"].url
    log = WireLog(tmp_path / "adc.jsonl")
    inst = AdcBoard(open_adapter(url, timeout_s=1.0, wire_log=log, name="adc"), name="adc")
    inst.log = log
    inst.faulty = served["faulty"]["adc"]
    inst.ask("*IDN?")
    yield inst
    inst.adapter.close()
    log.close()


def entries(log: WireLog) -> list[dict]:
    log.flush()
    return WireLog.load(log.path)


def source_levels(log: WireLog) -> list[float]:
    return [float(e["w"].split()[1]) for e in entries(log)
            if e.get("w", "").startswith(":SOUR:CURR ")]


# -- (a) unsolicited bytes before a query ------------------------------------------------
def test_duplicated_reply_raises_stale_reply_on_the_next_query(smu):
    smu.faulty.arm(":SYST:ERR?", "duplicate")
    smu.check_errors_raise()  # reads the first copy of 0,"No error"
    sent_before = len(smu.faulty.lines)
    with pytest.raises(StaleReply) as err:
        smu.ask(":SOUR:FUNC?")
    message = str(err.value)
    assert "smu_a" in message and "':SOUR:FUNC?'" in message and "No error" in message
    assert err.value.data == b'0,"No error"\n' and err.value.command == ":SOUR:FUNC?"
    assert len(smu.faulty.lines) == sent_before  # the query was not sent
    discarded = [e for e in entries(smu.log) if "x" in e]
    assert [base64.b64decode(e["x"]) for e in discarded] == [b'0,"No error"\n']
    assert entries(smu.log)[-1] == discarded[-1]  # no write logged after it
    assert smu.ask(":SOUR:FUNC?") == "CURR"  # in step again: the stale copy is gone


def test_host_paced_readings_never_shift_by_one(smu):
    levels = np.linspace(-30e-6, 30e-6, 13)
    got = []
    for k, level in enumerate(levels):
        if k == 5:
            smu.faulty.arm(":READ?", "duplicate")
        try:
            got.append((level, smu.source_and_measure(float(level)).current[0]))
        except StaleReply as exc:
            assert k == 6 and ":SOUR:CURR" in exc.command
            assert smu.resync()
            got.append((level, smu.source_and_measure(float(level)).current[0]))
    assert len(got) == len(levels)
    for level, current in got:  # every reading answers its own level
        assert current == pytest.approx(level, abs=1e-12)


def test_a_late_duplicate_read_as_the_next_answer_is_refused_then_resync_realigns(smu):
    """The night's failure: a stale :SYST:ERR? reply taken for :SOUR:FUNC?'s answer."""
    smu.source_current = 25e-6
    smu.faulty.arm(":SYST:ERR?", "late")
    smu.check_errors_raise()
    with pytest.raises(UnexpectedReply) as err:
        smu.ask(":SOUR:FUNC?")  # reads the late copy of 0,"No error"
    assert "smu_a" in str(err.value) and "':SOUR:FUNC?'" in str(err.value)
    assert err.value.raw == '0,"No error"' and "CURR, VOLT" in str(err.value)
    assert smu.link_suspect  # and "CURR" is still on its way
    assert smu.resync() is True and smu.link_suspect is None
    assert smu.present_state() == SourceState(True, "CURR", pytest.approx(25e-6))
    assert smu.present_state().output_on is True


def test_resync_on_the_adc_drains_a_late_reply(adc):
    adc.gain = 100
    adc.faulty.arm("GAIN?", "late")
    assert adc.gain == 100
    with pytest.raises(UnexpectedReply, match="adc.*'CHAN\\?'.*'100'"):
        adc.channel  # noqa: B018 - a query: its reply is the late GAIN? copy
    assert adc.resync()
    assert adc.gain == 100 and adc.channel in (1, 2)


# -- (b) bytes that are not ASCII --------------------------------------------------------
def test_non_ascii_reply_raises_garbled_reply_naming_instrument_and_command(smu):
    smu.faulty.arm(":SOUR:CURR?", "garble")
    with pytest.raises(GarbledReply) as err:
        smu.ask(":SOUR:CURR?")
    message = str(err.value)
    assert "smu_a" in message and "':SOUR:CURR?'" in message and "0xff" in message
    assert isinstance(err.value.raw, bytes) and b"\xff" in err.value.raw
    assert any("rb" in e and b"\xff" in base64.b64decode(e["rb"]) for e in entries(smu.log))
    assert float(smu.ask(":SOUR:CURR?")) == 0.0  # the link stayed in step


def test_non_ascii_reply_on_the_adc_port(adc):
    adc.faulty.arm("MEAS?", "garble")
    with pytest.raises(GarbledReply, match="adc.*'MEAS\\?'.*0xff"):
        adc.measure()
    volts, over = adc.measure()
    assert abs(volts) < 1.0 and not over


# -- (c) per-command checks --------------------------------------------------------------
def test_truncated_host_paced_read_raises(smu):
    smu.faulty.arm(":READ?", "truncate", keep=3)
    with pytest.raises(UnexpectedReply, match=r"smu_a.*':READ\?'.*expected 5 comma-sep"):
        smu.source_and_measure(10e-6)
    assert len(smu.source_and_measure(10e-6)) == 1


def test_truncated_list_sweep_raises_and_is_never_accepted_short(smu):
    smu.configure_list_master(np.linspace(0, 20e-6, 10))
    smu.faulty.arm(":READ?", "truncate", keep=35)  # 7 whole readings of 10
    with pytest.raises(UnexpectedReply, match=r"expected 50 comma-separated numbers"):
        smu.run_list_sweep()
    assert len(smu.run_list_sweep()) == 10


def test_a_withheld_reply_times_out_and_the_next_query_is_in_step(smu):
    smu.faulty.arm(":SOUR:FUNC?", "withhold")
    with pytest.raises(InstrumentError, match="timed out"):
        smu.ask(":SOUR:FUNC?")
    assert smu.link_suspect
    assert smu.ask(":OUTP?") == "1"


@pytest.mark.parametrize(("command", "reply"), [
    (":SOUR:FUNC?", '0,"No error"'), (":SOUR:FUNC?", "MEM"), (":OUTP?", "2"),
    (":OUTP?", "ON"), (":SOUR:CURR?", "abc"), (":SOUR:CURR?", "5"),
    (":SENS:VOLT:NPLC?", "1,2"), (":SYST:ERR?", "CURR"), (":TRIG:COUN?", "1.5"),
    (":READ?", "1,2,3,4"), (":READ?", "1,2,3,4,x"), ("*IDN?", ""),
])
def test_smu_replies_that_the_command_cannot_answer(command, reply):
    with expected_protocol(Keithley2400, [FORMAT, (command, reply)], name="smu_b") as smu:
        with pytest.raises(UnexpectedReply) as err:
            smu.ask(command)
    assert err.value.command == command and "smu_b" in str(err.value)
    assert repr(reply)[1:-1] in str(err.value)


def test_pymeasure_properties_are_checked_too():
    """pymeasure's ``values`` keeps an uncastable reply as a string; here it raises."""
    with expected_protocol(Keithley2400, [FORMAT, (":SOUR:CURR?", "KEITHLEY")]) as smu:
        with pytest.raises(UnexpectedReply, match="KEITHLEY"):
            smu.source_current  # noqa: B018


def test_reading_count_follows_the_configured_elements_and_points():
    two = ",".join(["1.0"] * 10)
    pairs = [FORMAT, (":TRIG:COUN 2", None), (":READ?", two), (":FORM:ELEM VOLT,CURR", None),
             (":READ?", ",".join(["1.0"] * 4)), ("*RST", None), (":READ?", two)]
    with expected_protocol(Keithley2400, pairs) as smu:
        smu.write(":TRIG:COUN 2")
        assert len(smu.ask(":READ?").split(",")) == 10
        smu.write(":FORM:ELEM VOLT,CURR")
        smu.ask(":READ?")
        smu.write("*RST")
        with pytest.raises(UnexpectedReply, match=r"expected 5 .*\(1 readings of 5"):
            smu.ask(":READ?")


@pytest.mark.parametrize(("command", "reply"), [
    ("GAIN?", "7"), ("RATE?", "5"), ("AVER?", "0"), ("CHAN?", "3"), ("ACQ:COUN?", "x"),
    ("MEAS?", "1.0"), ("MEAS?", "1.0,a"), ("ACQ:STAT?", "BUSY,1"), ("ACQ:STAT?", "DONE"),
    ("SYST:ERR?", "0"), ("PROG:COUN?", "-1"), ("*IDN?", "LABCTL"),
])
def test_adc_replies_per_the_wire_protocol(command, reply):
    with expected_protocol(AdcBoard, [(command, reply)], name="adc") as adc:
        with pytest.raises(UnexpectedReply, match=re.escape(f"adc: unexpected reply to "
                                                             f"'{command}'")):
            adc.ask(command)


def test_switch_and_prober_replies_are_checked():
    pairs = [("print(errorqueue.next())", "-1116 Forbidden"),
             ('print(channel.getclose("allslots"))', "1A01,1B01")]
    with expected_protocol(SwitchMatrix, pairs, name="switch") as sw:
        with pytest.raises(UnexpectedReply, match="errorqueue.next"):
            sw.ask("print(errorqueue.next())")
        with pytest.raises(UnexpectedReply, match="1A01,1B01"):
            sw.closed()
    pairs = [("get_chuck_xy", "0,0,5000.0"), ("map:step_die 2,1", "0,0,2;1"),
             ("move_chuck_contact", "0,0,done"), ("get_chuck_z_state", "2,0,unknown command")]
    with expected_protocol(Prober, pairs, name="prober") as prober:
        with pytest.raises(UnexpectedReply, match="get_chuck_xy"):
            prober.position_um()
        with pytest.raises(UnexpectedReply, match="step_die"):
            prober.move_to_die(2, 1)
        with pytest.raises(UnexpectedReply, match="move_chuck_contact"):
            prober.contact()
        with pytest.raises(InstrumentError, match="unknown command"):  # the prober's words
            prober.in_contact()


def test_scpi_headers_are_compared_in_canonical_form():
    assert scpi_header(":SOURCE:CURRENT:LEVEL?") == scpi_header("sour:curr?") == "SOUR:CURR?"
    assert scpi_header("OUTPUT?") == scpi_header(":OUTP:STAT?") == "OUTP?"
    assert scpi_header(":SENSE:VOLTAGE:NPLCYCLES?") == "SENS:VOLT:NPLC?"
    assert scpi_header(":SYSTEM:ERROR?") == "SYST:ERR?" and scpi_header("*IDN?") == "*IDN?"
    assert scpi_header(":FORMAT:ELEMENTS VOLTAGE, CURRENT") == "FORM:ELEM"


# -- links that die ------------------------------------------------------------------------
def test_killing_the_server_gives_connection_errors_naming_the_instrument(smu, served):
    smu.source_current = 30e-6
    assert smu.present_state().level == pytest.approx(30e-6)
    served["servers"]["smu_a"].stop()
    time.sleep(0.05)
    with pytest.raises(InstrumentConnectionError, match="smu_a") as err:
        smu.ask(":SOUR:CURR?")
    assert "InvalidSession" not in type(err.value).__name__
    for _ in range(2):  # and again, on the link that could not be reopened
        with pytest.raises(InstrumentConnectionError, match="smu_a"):
            with smu.adapter.timeout_scope(0.3):
                smu.measure_once()
    settings = smu.configuration()
    assert all(str(v).startswith("unreadable: ") and "smu_a" in str(v)
               for v in settings.values()), settings
    report = smu.shutdown(ramp_step_a=10e-6, ramp_delay_s=0)
    assert not report.confirmed and report.problems
    assert all("smu_a" in p for p in report.problems), report.problems


def test_server_killed_mid_run(smu, served):
    killer = threading.Timer(0.2, served["servers"]["smu_a"].stop)
    killer.start()
    try:
        with pytest.raises(InstrumentConnectionError, match="smu_a"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                smu.source_and_measure(5e-6)
    finally:
        killer.cancel()


def test_link_dropped_mid_reply_is_a_connection_error_and_the_next_query_works(smu):
    smu.faulty.arm(":SOUR:FUNC?", "drop")
    with pytest.raises(InstrumentConnectionError, match="smu_a.*dropped"):
        smu.ask(":SOUR:FUNC?")
    assert smu.ask(":SOUR:FUNC?") == "CURR"


# -- confirmed safe states -----------------------------------------------------------------
@pytest.mark.parametrize("start", [45e-6, -41e-6])
def test_shutdown_ramps_in_bounded_steps_and_confirms_off_at_zero(smu, start):
    smu.source_current = start
    assert smu.present_state() == SourceState(True, "CURR", pytest.approx(start))
    first = len(entries(smu.log))
    report = smu.shutdown(ramp_step_a=10e-6, ramp_delay_s=0)
    assert report.confirmed and report.problems == [] and report.last_level == 0.0
    assert report.state["after"] == {":OUTP?": "0", ":SOUR:CURR?": 0.0}
    log = entries(smu.log)[first:]
    levels = [float(e["w"].split()[1]) for e in log if e.get("w", "").startswith(":SOUR:CURR ")]
    assert levels[-1] == 0.0 and len(levels) == 5
    assert np.all(np.abs(np.diff([start, *levels])) <= 10e-6 + 1e-15)
    tail = [(k, v) for e in log[-4:] for k, v in e.items() if k != "t"]
    assert tail[0] == ("w", ":OUTP?") and tail[1] == ("r", "0")
    assert tail[2] == ("w", ":SOUR:CURR?") and float(tail[3][1]) == 0.0
    bus = smu.world.buses["A"]
    assert not bus.on and bus.set_current == 0.0


def test_shutdown_after_a_failed_exchange_resyncs_first(smu):
    smu.source_current = 20e-6
    smu.faulty.arm(":SYST:ERR?", "late")
    smu.check_errors_raise()
    with pytest.raises(UnexpectedReply):
        smu.ask(":OUTP?")  # reads the late copy
    first = len(entries(smu.log))
    report = smu.shutdown(ramp_step_a=10e-6, ramp_delay_s=0)
    assert report.confirmed and report.notes and "resync" in report.notes[0]
    written = [e["w"] for e in entries(smu.log)[first:] if "w" in e]
    assert written.index("*IDN?") < written.index(":ABOR")
    assert not smu.world.buses["A"].on


def test_shutdown_retries_the_confirmation_after_a_resync(smu):
    smu.source_current = 10e-6
    smu.faulty.arm(":OUTP?", "garble")  # the first confirming :OUTP?
    report = smu.shutdown(ramp_step_a=20e-6, ramp_delay_s=0)
    assert report.confirmed, report
    assert any("0xff" in p for p in report.problems) and report.notes


class InterruptingLog(WireLog):
    """A wire log whose hook interrupts once, at the ``at``-th ramp step written."""

    def __init__(self, path, at: int, how: str):
        super().__init__(path)
        self.at, self.how, self.steps = at, how, 0

    def written(self, text: str) -> None:
        super().written(text)
        if text.startswith(":SOUR:CURR ") and not text.startswith(":SOUR:CURR 0"):
            self.steps += 1
            if self.steps == self.at:
                if self.how == "raise":
                    raise KeyboardInterrupt("from a wire-log hook")
                os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("how", ["raise", "signal"])
def test_keyboard_interrupt_during_the_ramp_does_not_stop_it(served, tmp_path, how):
    log = InterruptingLog(tmp_path / "smu.jsonl", at=2, how=how)
    smu = Keithley2400(open_adapter(smu_resource(served, "visa"), timeout_s=1.0,
                                    wire_log=log, name="smu_a"), name="smu_a")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        smu.prepare_current_source(compliance_v=COMPLIANCE_V, nplc=0.01)
        smu.source_current = 50e-6
        with pytest.raises(KeyboardInterrupt):
            smu.shutdown(ramp_step_a=10e-6, ramp_delay_s=0.002)
        # Nothing after the shutdown raised: the interrupt came out of it, at its end.
    finally:
        signal.signal(signal.SIGINT, previous)
        smu.adapter.close()
        log.close()
    assert log.steps >= 2
    world = served["world"]
    assert not world.buses["A"].on and world.buses["A"].set_current == 0.0
    report = smu.last_shutdown
    assert report.confirmed and report.last_level == 0.0, report
    written = [e["w"] for e in WireLog.load(log.path) if "w" in e]
    levels = [float(w.split()[1]) for w in written if w.startswith(":SOUR:CURR ")][1:]
    assert levels[-1] == 0.0 and max(np.abs(np.diff([50e-6, *levels]))) <= 10e-6 + 1e-15
    assert written[-3:] == [":OUTP OFF", ":OUTP?", ":SOUR:CURR?"]


def test_sigterm_handler_runs_after_the_shutdown(served, tmp_path):
    """labctl's SIGTERM handler (raise KeyboardInterrupt("SIGTERM")) is called at the end."""
    smu = Keithley2400(open_adapter(smu_resource(served, "visa"), timeout_s=1.0,
                                    name="smu_a"), name="smu_a")
    calls = []

    def on_sigterm(signum, frame):
        calls.append(served["world"].buses["A"].on)
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        smu.prepare_current_source(compliance_v=COMPLIANCE_V, nplc=0.01)
        smu.source_current = 100e-6
        timer.start()
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            smu.shutdown(ramp_step_a=1e-6, ramp_delay_s=0.002)  # 100 steps, >= 0.2 s
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
        smu.adapter.close()
    assert calls == [False]  # the handler ran once, with the output already off
    assert smu.last_shutdown.confirmed


def test_held_signals_survive_an_error_and_nested_blocks_deliver_at_the_outermost():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    order = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)
                raise ValueError("a bug in the block")
        with pytest.raises(KeyboardInterrupt):  # the held SIGINT, delivered first
            with interrupts_deferred():
                with interrupts_deferred() as pending:
                    pending.append(KeyboardInterrupt("from a hook"))
                order.append("inner done")
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)
                order.append("outer done")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert order == ["inner done", "outer done"]


def test_ramp_to_moves_from_the_present_level_in_bounded_steps(smu):
    smu.source_current = 5e-6
    first = len(entries(smu.log))
    assert smu.ramp_to(-25e-6, step_a=7e-6, delay_s=0) == -25e-6
    levels = [float(e["w"].split()[1]) for e in entries(smu.log)[first:]
              if e.get("w", "").startswith(":SOUR:CURR ")]
    assert levels[-1] == pytest.approx(-25e-6) and len(levels) == 5
    assert np.all(np.abs(np.diff([5e-6, *levels])) <= 7e-6 + 1e-15)
    assert smu.present_state().level == pytest.approx(-25e-6)
    with pytest.raises(ValueError):
        smu.ramp_to(2.0)


def test_a_source_left_on_by_a_dead_host_is_ramped_down_not_stepped(served, tmp_path):
    """kill -9 of the host left SMU A at -41 uA: the next run's driver ramps from there."""
    resource = smu_resource(served, "visa")
    dead = Keithley2400(open_adapter(resource, timeout_s=1.0), name="smu_a")
    dead.prepare_current_source(compliance_v=COMPLIANCE_V, nplc=0.01)
    dead.source_current = -41e-6
    dead.ask(":OUTP?")
    dead.adapter.close()  # no shutdown: the process died
    log = WireLog(tmp_path / "next.jsonl")
    smu = Keithley2400(open_adapter(resource, timeout_s=1.0, wire_log=log, name="smu_a"),
                       name="smu_a")
    try:
        assert smu.present_state() == SourceState(True, "CURR", pytest.approx(-41e-6))
        smu.ramp_to(0.0, step_a=20e-6, delay_s=0)
        smu.prepare_current_source(compliance_v=COMPLIANCE_V, nplc=0.01)
        levels = [-41e-6, *(float(w.split()[1]) for w in
                            (e["w"] for e in entries(log) if "w" in e)
                            if w.startswith(":SOUR:CURR ") or w.startswith(":SOUR:CURR:LEV"))]
        assert levels[-1] == 0.0 and len(levels) >= 4
        assert np.all(np.abs(np.diff(levels)) <= 20e-6 + 1e-15)
        assert served["world"].buses["A"].on
    finally:
        smu.adapter.close()
        log.close()


def test_ramp_to_zero_on_a_voltage_source(smu):
    smu.write("*RST")  # a voltage source at 0 V, output off: no current to ramp
    first = len(entries(smu.log))
    assert smu.ramp_to(0.0) == 0.0
    assert [e["w"] for e in entries(smu.log)[first:] if "w" in e] == [
        ":OUTP?", ":SOUR:FUNC?", ":SOUR:VOLT?"]
    with pytest.raises(InstrumentError, match="smu_a: ramp_to.*function is VOLT"):
        smu.ramp_to(1e-6)


def test_adc_disarm_and_safe_state(adc):
    adc.arm(5)
    assert adc.status() == ("ARMED", 0)
    assert adc.disarm() == ("IDLE", 0)
    adc.arm(5)
    report = adc.safe_state()
    assert report.confirmed and report.state == {"acquisition": "IDLE", "samples": 0}
    assert adc.status()[0] == "IDLE"


def test_adc_safe_state_resyncs_after_a_bad_reply(adc):
    adc.arm(3)
    adc.faulty.arm("ACQ:STAT?", "garble")
    report = adc.safe_state()
    assert report.confirmed and any("0xff" in p for p in report.problems) and report.notes


def test_switch_open_all_confirms_nothing_is_closed(served):
    sw = SwitchMatrix(open_adapter(served["servers"]["switch"].resource, timeout_s=1.0,
                                   name="switch"), name="switch")
    try:
        sw.ask("*IDN?")
        sw.exclusive_close(["1A01", "1B01"])
        assert sw.configuration()["closed"] == ["1A01", "1B01"]
        served["faulty"]["switch"].arm("getclose", "garble")
        report = sw.open_all()
        assert report.confirmed and report.state == {"closed": []}, report
        assert report.problems and report.notes  # the garbled reply, then a resync
        assert served["world"].closed == set()
    finally:
        sw.adapter.close()


# -- configuration -------------------------------------------------------------------------
def test_every_driver_reads_its_configuration(sim):
    res = sim.resources()
    smu = Keithley2400(open_adapter(res["smu_a"], timeout_s=1.0), name="smu_a")
    adc = AdcBoard(open_adapter(res["adc"], timeout_s=1.0), name="adc")
    sw = SwitchMatrix(open_adapter(res["switch"], timeout_s=1.0), name="switch")
    prober = Prober(open_adapter(res["prober"], timeout_s=1.0), name="prober")
    try:
        smu.prepare_current_source(compliance_v=0.7, nplc=2)
        adc.gain, adc.rate, adc.averaging = 100, 5000, 8
        sw.exclusive_close(["1A02", "1B02"])
        prober.move_to_die(1, 2)
        prober.contact()
        assert smu.configuration() == {"source_function": "CURR", "voltage_compliance_v": 0.7,
                                       "nplc": 2.0, "output": True, "source_level": 0.0}
        config = adc.configuration()
        assert (config["gain"], config["rate_sps"], config["averaging"]) == (100, 5000.0, 8)
        assert sw.configuration() == {"closed": ["1A02", "1B02"], "forbidden": []}
        assert prober.configuration() == {"chuck": "contact", "die": [1, 2],
                                          "position_um": [0.0, 5000.0]}
    finally:
        for inst in (smu, adc, sw, prober):
            inst.adapter.close()


def test_configuration_marks_what_it_cannot_read(smu):
    smu.faulty.arm(":SENS:VOLT:NPLC?", "garble")
    config = smu.configuration()
    assert str(config["nplc"]).startswith("unreadable: ") and "0xff" in config["nplc"]
    assert config["source_function"] == "CURR" and config["output"] is True
    assert config["voltage_compliance_v"] == COMPLIANCE_V


# -- wire replay ---------------------------------------------------------------------------
def test_a_replay_finds_the_recorded_stale_bytes_again():
    recorded = [WireEntry("w", ":SYST:ERR?"), WireEntry("r", '0,"No error"'),
                WireEntry("x", b'0,"No error"\n'), WireEntry("w", ":SOUR:FUNC?"),
                WireEntry("r", "CURR")]
    transport = WireReplayTransport(entries=recorded, name="smu_a")
    assert transport.query(":SYST:ERR?") == '0,"No error"'
    with pytest.raises(StaleReply, match="smu_a"):
        transport.query(":SOUR:FUNC?")
    assert transport.query(":SOUR:FUNC?") == "CURR" and transport.remaining == 0
