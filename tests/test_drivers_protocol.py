"""Command/reply tests of every driver with pymeasure's ``expected_protocol`` (no simulator)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from instruments.adc_board import SAMPLE_DTYPE, AdcBoard, parse_block
from instruments.keithley2400 import Keithley2400, Readings
from instruments.prober import Prober
from instruments.ramps import ramp_levels
from instruments.switch_matrix import SwitchMatrix
from instruments.transport import (
    GarbledReply,
    IdentityMismatch,
    InstrumentError,
    InstrumentReportedError,
    verify_identity,
)

FORMAT = (":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS", None)
NO_ERROR = (":SYST:ERR?", '0,"No error"')


def reading(v: float, i: float, status: int, t: float = 0.0) -> str:
    return f"{v:+.6E},{i:+.6E},+9.910000E+37,{t:+.6E},{status:+.6E}"


def list_commands(values, head_pairs=()):
    chunks = [values[k : k + 100] for k in range(0, len(values), 100)]
    pairs = [(":SOUR:FUNC CURR", None), (":SOUR:CURR:MODE LIST", None)]
    for n, chunk in enumerate(chunks):
        head = ":SOUR:LIST:CURR" if n == 0 else ":SOUR:LIST:CURR:APP"
        pairs.append((f"{head} " + ",".join(f"{v:.9g}" for v in chunk), None))
    pairs.append((f":TRIG:COUN {len(values)}", None))
    return pairs


# -- Keithley 2400 ------------------------------------------------------------------------
def test_init_writes_only_pymeasures_format():
    with expected_protocol(Keithley2400, [FORMAT]) as smu:
        assert smu.capabilities["list_sweep"] and smu.capabilities["trigger_link"]


def test_master_list_of_250_points_takes_three_list_commands():
    values = list(np.linspace(-100e-6, 100e-6, 250))
    pairs = [FORMAT, *list_commands(values), (":TRIG:SOUR IMM", None),
             (":TRIG:OUTP SOUR", None), (":TRIG:OLIN 1", None), NO_ERROR]
    list_cmds = [p[0] for p in pairs if p[0].startswith(":SOUR:LIST")]
    assert len(list_cmds) == 3
    assert [len(c.split(" ", 1)[1].split(",")) for c in list_cmds] == [100, 100, 50]
    assert list_cmds[0].startswith(":SOUR:LIST:CURR ")
    assert all(c.startswith(":SOUR:LIST:CURR:APP ") for c in list_cmds[1:])
    reply = ",".join(reading(0.1 * k, values[k], 0) for k in range(250))
    pairs.append((":READ?", reply))
    with expected_protocol(Keithley2400, pairs) as smu:
        smu.configure_list_master(values)
        readings = smu.run_list_sweep()
    assert len(readings) == 250
    np.testing.assert_allclose(readings.current, values, rtol=1e-6)
    assert not readings.compliance.any()


def test_slave_list_is_armed_and_fetched():
    values = [1e-6, 2e-6, 3e-6]
    pairs = [FORMAT, *list_commands(values), (":TRIG:SOUR TLIN", None),
             (":TRIG:ILIN 1", None), (":INIT", None), NO_ERROR,
             (":FETC?", ",".join(reading(0.2, v, 0) for v in values))]
    with expected_protocol(Keithley2400, pairs) as smu:
        smu.configure_list_slave(values)
        assert len(smu.run_list_sweep()) == 3


def test_list_sweep_reports_configuration_errors_in_the_instruments_words():
    pairs = [FORMAT, *list_commands([1e-6]), (":TRIG:SOUR IMM", None),
             (":TRIG:OUTP SOUR", None), (":TRIG:OLIN 1", None),
             (":SYST:ERR?", '-222,"Data out of range"'), NO_ERROR]
    with expected_protocol(Keithley2400, pairs) as smu:
        with pytest.raises(InstrumentReportedError, match="Data out of range"):
            smu.configure_list_master([1e-6])


def test_list_sweep_with_missing_readings_is_an_error():
    pairs = [FORMAT, *list_commands([1e-6, 2e-6]), (":TRIG:SOUR IMM", None),
             (":TRIG:OUTP SOUR", None), (":TRIG:OLIN 1", None), NO_ERROR,
             (":READ?", reading(0.1, 1e-6, 0))]
    with expected_protocol(Keithley2400, pairs) as smu:
        smu.configure_list_master([1e-6, 2e-6])
        with pytest.raises(InstrumentError, match=r"10 comma-separated numbers \(2 readings"):
            smu.run_list_sweep()


def test_list_sweep_validates_before_sending():
    with expected_protocol(Keithley2400, [FORMAT]) as smu:
        with pytest.raises(ValueError):
            smu.configure_list_master([])
        with pytest.raises(ValueError):
            smu.configure_list_master([0.0] * 2501)
        with pytest.raises(ValueError):
            smu.configure_list_master([2.0])
        with pytest.raises(ValueError):
            smu.configure_list_master([float("nan")])


def test_every_reading_carries_the_compliance_flag():
    reply = ",".join([reading(0.5, 1e-5, 0), reading(0.8, 2e-6, 8),
                      reading(0.8, 1e-6, 8 | 1024), reading(0.3, 3e-6, 1024)])
    readings = Readings.parse("smu", reply)
    assert readings.compliance.tolist() == [False, True, True, False]
    assert readings.status.tolist() == [0, 8, 1032, 1024]
    np.testing.assert_allclose(readings.voltage, [0.5, 0.8, 0.8, 0.3])


@pytest.mark.parametrize("raw", ["", "1,2,3", "1,2,3,4,x", "1,2,3,4,2.5", "+1.0E+00,#"])
def test_garbled_readings_quote_the_reply(raw):
    with pytest.raises(GarbledReply) as err:
        Readings.parse("smu_a", raw)
    assert "smu_a" in str(err.value) and repr(raw)[1:-1] in str(err.value)


def test_measure_once_is_one_read_with_the_same_parse():
    with expected_protocol(Keithley2400, [FORMAT, (":READ?", reading(0.9, 0.0, 8))]) as smu:
        r = smu.measure_once()
    assert len(r) == 1 and r.compliance[0] and r.voltage[0] == pytest.approx(0.9)


def test_measure_once_garbled():
    with expected_protocol(Keithley2400, [FORMAT, (":READ?", "KEITHLEY")],
                           name="smu_b") as smu:
        with pytest.raises(GarbledReply, match="smu_b.*KEITHLEY"):
            smu.measure_once()


def test_source_and_measure_is_a_write_and_a_query():
    pairs = [FORMAT, (":SOUR:CURR 1.5e-05", None), (":READ?", reading(0.1, 1.5e-5, 0))]
    with expected_protocol(Keithley2400, pairs) as smu:
        assert smu.source_and_measure(15e-6).current[0] == pytest.approx(1.5e-5)


def test_prepare_current_source():
    pairs = [FORMAT, (":SOUR:FUNC CURR", None), (":SOUR:CURR:MODE FIX", None),
             (":TRIG:SOUR IMM", None), (":TRIG:COUN 1", None), (":TRIG:OUTP NONE", None),
             (":SOUR:CURR 0", None), (':SENS:FUNC "VOLT"', None),
             (":SENS:VOLT:PROT 0.8", None), (":SENS:VOLT:NPLC 1", None), (":OUTP ON", None),
             NO_ERROR]
    with expected_protocol(Keithley2400, pairs) as smu:
        smu.prepare_current_source(compliance_v=0.8, nplc=1)


CONFIRM_OFF = [(":OUTP?", "0"), (":SOUR:CURR?", "+0.000000E+00")]


def test_safe_shutdown_aborts_then_ramps_in_bounded_steps_then_turns_off():
    pairs = [FORMAT, (":ABOR", None), (":SOUR:FUNC?", "CURR"), (":SOUR:CURR:MODE FIX", None),
             (":SOUR:CURR?", "+1.000000E-04"),
             (":SOUR:CURR 7.5e-05", None), (":SOUR:CURR 5e-05", None),
             (":SOUR:CURR 2.5e-05", None), (":SOUR:CURR 0", None), (":OUTP OFF", None),
             *CONFIRM_OFF]
    with expected_protocol(Keithley2400, pairs) as smu:
        assert smu.shutdown(ramp_step_a=30e-6, ramp_delay_s=0).confirmed
        assert smu.isShutdown


def test_safe_off_at_zero_turns_off_without_steps():
    pairs = [FORMAT, (":ABOR", None), (":SOUR:FUNC?", "CURR"), (":SOUR:CURR:MODE FIX", None),
             (":SOUR:CURR?", "+0.000000E+00"), (":OUTP OFF", None), *CONFIRM_OFF]
    with expected_protocol(Keithley2400, pairs) as smu:
        assert smu.safe_off().confirmed


def test_shutdown_reports_if_the_output_stays_on():
    pairs = [FORMAT, (":ABOR", None), (":SOUR:FUNC?", "CURR"), (":SOUR:CURR:MODE FIX", None),
             (":SOUR:CURR?", "+0.000000E+00"), (":OUTP OFF", None), (":OUTP?", "1"),
             (":SOUR:CURR?", "+0.000000E+00")]
    with expected_protocol(Keithley2400, pairs, name="smu_a") as smu:
        report = smu.safe_off()  # this adapter cannot resync: no second try
    assert not report.confirmed and any(":OUTP? 1" in p for p in report.problems)


def test_measure_once_after_a_list_sweep_leaves_list_mode_first():
    pairs = [FORMAT, *list_commands([1e-6]), (":TRIG:SOUR IMM", None),
             (":TRIG:OUTP SOUR", None), (":TRIG:OLIN 1", None), NO_ERROR,
             (":SOUR:CURR:MODE FIX", None), (":TRIG:SOUR IMM", None), (":TRIG:COUN 1", None),
             (":TRIG:OUTP NONE", None), (":READ?", reading(0.1, 1e-6, 0)),
             (":READ?", reading(0.1, 1e-6, 0))]
    with expected_protocol(Keithley2400, pairs) as smu:
        smu.configure_list_master([1e-6])
        smu.measure_once()
        smu.measure_once()


def test_shutdown_turns_output_off_even_if_the_level_reply_is_garbled():
    pairs = [FORMAT, (":ABOR", None), (":SOUR:FUNC?", "CURR"), (":SOUR:CURR:MODE FIX", None),
             (":SOUR:CURR?", "oops"), (":OUTP OFF", None), *CONFIRM_OFF]
    with expected_protocol(Keithley2400, pairs) as smu:
        report = smu.shutdown(ramp_step_a=1e-5, ramp_delay_s=0)
    assert report.confirmed and any("oops" in p for p in report.problems)


def test_ramp_levels_never_step_more_than_asked():
    for start in (1e-4, -1e-4, 3.3e-5, 1e-9):
        levels = ramp_levels(start, 2e-5)
        steps = np.abs(np.diff([start, *levels]))
        assert levels[-1] == 0.0 and str(levels[-1]) == "0.0"
        assert np.all(steps <= 2e-5 * (1 + 1e-9))
    assert ramp_levels(0.0, 1e-5) == []


def test_check_errors_raise_quotes_every_error():
    pairs = [FORMAT, (":SYST:ERR?", '-113,"Undefined header"'),
             (":SYST:ERR?", '-104,"Data type error"'), NO_ERROR]
    with expected_protocol(Keithley2400, pairs, name="smu_a") as smu:
        with pytest.raises(InstrumentReportedError) as err:
            smu.check_errors_raise()
    assert "smu_a" in str(err.value) and "Undefined header" in str(err.value)
    assert err.value.errors == [(-113, "Undefined header"), (-104, "Data type error")]


def test_identity():
    idn = "KEITHLEY INSTRUMENTS INC.,MODEL 2400,4000001,C30   Mar 17 2006 09:29:29/A02  /K/J"
    with expected_protocol(Keithley2400, [FORMAT, ("*IDN?", idn), ("*IDN?", idn)],
                           name="smu_a") as smu:
        assert verify_identity(smu, "MODEL 2400") == idn
        with pytest.raises(IdentityMismatch) as err:
            verify_identity(smu, "MODEL 2450")
    assert err.value.instrument == "smu_a" and err.value.expected == "MODEL 2450"
    assert err.value.received == idn


# -- ADC board ------------------------------------------------------------------------------
def block(records, *, crc_delta=0, cut=0) -> bytes:
    payload = b"".join(struct.pack("<Qdb", *r) for r in records)
    crc = (zlib.crc32(payload) + crc_delta) & 0xFFFFFFFF
    out = b"#8" + f"{len(payload):08d}".encode() + payload + struct.pack("<I", crc) + b"\n"
    return out[: len(out) - cut] if cut else out


RECORDS = [(100, 0.0125, 0), (200, -0.5, 1), (300, 1e-6, 0)]


def test_adc_settings_are_validated_controls():
    ok = ("SYST:ERR?", '0,"No error"')  # every setting is followed by an error check
    pairs = [("GAIN 100", None), ok, ("GAIN?", "100"), ("RATE 5000", None), ok,
             ("AVER 16", None), ok, ("CHAN 2", None), ok, ("CHAN?", "2")]
    with expected_protocol(AdcBoard, pairs) as adc:
        adc.gain = 100
        assert adc.gain == 100
        adc.rate = 5000
        adc.averaging = 16
        adc.channel = 2
        assert adc.channel == 2
        for name, bad in (("gain", 20), ("rate", 5), ("rate", 2e5), ("averaging", 0),
                          ("averaging", 2048), ("channel", 3)):
            with pytest.raises(ValueError):
                setattr(adc, name, bad)


def test_a_refused_adc_setting_raises_with_the_boards_text():
    pairs = [("GAIN 10", None), ("SYST:ERR?", '-221,"Settings conflict; acquisition armed"'),
             ("SYST:ERR?", '0,"No error"')]
    with expected_protocol(AdcBoard, pairs) as adc:
        with pytest.raises(InstrumentReportedError, match="Settings conflict"):
            adc.gain = 10


def test_adc_measure_and_status():
    pairs = [("MEAS?", "1.250000000e-03,0"), ("MEAS?", "-1.000000000e-02,1"),
             ("ACQ:STAT?", "ARMED,3"), ("ACQ:STAT?", "BUSY")]
    with expected_protocol(AdcBoard, pairs) as adc:
        assert adc.measure() == (pytest.approx(1.25e-3), False)
        assert adc.measure() == (pytest.approx(-0.01), True)
        assert adc.status() == ("ARMED", 3)
        with pytest.raises(GarbledReply, match="BUSY"):
            adc.status()


def test_adc_arm_checks_the_error_queue():
    pairs = [("ACQ:COUN 250", None), ("ACQ:ARM", None), ("SYST:ERR?", '0,"No error"'),
             ("ACQ:COUN 5", None), ("ACQ:ARM", None), ("SYST:ERR?", '-221,"Settings conflict"'),
             ("SYST:ERR?", '0,"No error"')]
    with expected_protocol(AdcBoard, pairs, name="adc") as adc:
        adc.arm(250)
        with pytest.raises(InstrumentReportedError, match="adc.*-221, Settings conflict"):
            adc.arm(5)
        with pytest.raises(ValueError):
            adc.arm(0)


def test_adc_block_parse():
    with expected_protocol(AdcBoard, [("ACQ:DATA?", block(RECORDS))]) as adc:
        samples = adc.read_samples()
    assert samples.dtype == SAMPLE_DTYPE and len(samples) == 3
    assert samples["t_us"].tolist() == [100, 200, 300]
    assert samples["v"].tolist() == [0.0125, -0.5, 1e-6]
    assert samples["status"].tolist() == [0, 1, 0]


def test_adc_empty_block():
    with expected_protocol(AdcBoard, [("ACQ:DATA?", block([]))]) as adc:
        assert len(adc.read_samples()) == 0


def test_adc_bad_crc_is_garbled():
    with expected_protocol(AdcBoard, [("ACQ:DATA?", block(RECORDS, crc_delta=1))],
                           name="adc") as adc:
        with pytest.raises(GarbledReply, match="adc.*CRC-32 mismatch"):
            adc.read_samples()


def test_adc_short_block_is_garbled():
    with expected_protocol(AdcBoard, [("ACQ:DATA?", block(RECORDS, cut=9))],
                           name="adc") as adc:
        with pytest.raises(GarbledReply, match="adc.*short block"):
            adc.read_samples()


def test_adc_bad_header_is_garbled():
    with expected_protocol(AdcBoard, [("ACQ:DATA?", b"#900000000")], name="adc") as adc:
        with pytest.raises(GarbledReply, match="#8 block header"):
            adc.read_samples()


def test_parse_block_rejects_partial_records_and_missing_newline():
    with pytest.raises(GarbledReply, match="whole 17-byte records"):
        parse_block("adc", b"#800000005" + b"12345" + b"\0\0\0\0\n")
    with pytest.raises(GarbledReply, match="newline"):
        parse_block("adc", block(RECORDS)[:-1] + b"X")


def test_adc_check_errors_raise():
    pairs = [("SYST:ERR?", '-113,"Undefined header"'), ("SYST:ERR?", '0,"No error"')]
    with expected_protocol(AdcBoard, pairs, name="adc") as adc:
        with pytest.raises(InstrumentReportedError, match="Undefined header"):
            adc.check_errors_raise()


# -- switch matrix ----------------------------------------------------------------------------
def test_switch_commands_each_followed_by_an_error_check():
    pairs = [('channel.exclusiveclose("1A01,1B01")', None), ("print(errorqueue.count)", "0"),
             ('channel.close("1A02")', None), ("print(errorqueue.count)", "0"),
             ('print(channel.getclose("allslots"))', "1A01;1A02;1B01"),
             ('channel.open("allslots")', None), ("print(errorqueue.count)", "0"),
             ('print(channel.getclose("allslots"))', "nil"),
             ('channel.setforbidden("1A16")', None), ("print(errorqueue.count)", "0"),
             ('print(channel.getforbidden("allslots"))', "1A16")]
    with expected_protocol(SwitchMatrix, pairs) as sw:
        sw.exclusive_close(["1A01", "1b01"])
        sw.close("1A02")
        assert sw.closed() == ["1A01", "1A02", "1B01"]
        sw.open()
        assert sw.closed() == []
        sw.set_forbidden("1A16")
        assert sw.forbidden() == ["1A16"]


def test_switch_refusal_raises_with_the_matrix_text():
    pairs = [('channel.close("1A16")', None), ("print(errorqueue.count)", "1"),
             ("print(errorqueue.next())", "-1116\tForbidden channel 1A16\t20\t1")]
    with expected_protocol(SwitchMatrix, pairs, name="switch") as sw:
        with pytest.raises(InstrumentReportedError) as err:
            sw.close(["1A16"])
    assert err.value.errors == [(-1116, "Forbidden channel 1A16")]
    assert "switch" in str(err.value)


def test_switch_rejects_malformed_channel_names_before_sending():
    with expected_protocol(SwitchMatrix, []) as sw:
        for bad in ('1A01")', "", [], ["A1"], "allslots"):
            with pytest.raises(ValueError):
                sw.close(bad)


def test_switch_garbled_replies():
    pairs = [("print(errorqueue.count)", "x"),
             ('print(channel.getclose("allslots"))', "1A01;bogus")]
    with expected_protocol(SwitchMatrix, pairs) as sw:
        with pytest.raises(GarbledReply):
            sw.check_errors_raise()
        with pytest.raises(GarbledReply, match="bogus"):
            sw.closed()


# -- prober -------------------------------------------------------------------------------
def test_prober_commands():
    pairs = [("move_chuck_separation", "0,0,"), ("map:step_die 2,1", "0,0,2,1"),
             ("map:die:get_current_index", "0,0,2,1"), ("get_chuck_xy", "0,0,5000.0,0.0"),
             ("move_chuck_contact", "0,0,"), ("get_chuck_z_state", "0,0,contact"),
             ("map:step_next_die", "0,0,1,2")]
    with expected_protocol(Prober, pairs) as prober:
        prober.separate()
        assert prober.move_to_die(2, 1) == (2, 1)
        assert prober.die() == (2, 1)
        assert prober.position_um() == (5000.0, 0.0)
        prober.contact()
        assert prober.in_contact()
        assert prober.next_die() == (1, 2)


def test_prober_error_code_raises_with_its_text():
    pairs = [("map:step_die 1,2", "5,0,chuck is in contact; separate first"),
             ("map:step_next_die", "2,0,end of wafer map: no next die")]
    with expected_protocol(Prober, pairs, name="prober") as prober:
        with pytest.raises(InstrumentReportedError, match="chuck is in contact") as err:
            prober.move_to_die(1, 2)
        assert err.value.errors == [(5, "chuck is in contact; separate first")]
        with pytest.raises(InstrumentReportedError, match="end of wafer map"):
            prober.next_die()


def test_prober_garbled():
    pairs = [("get_chuck_z_state", "hello"), ("get_chuck_z_state", "0,0,floating")]
    with expected_protocol(Prober, pairs) as prober:
        with pytest.raises(GarbledReply, match="hello"):
            prober.in_contact()
        with pytest.raises(GarbledReply, match="floating"):
            prober.in_contact()
