"""Station files: the built-in station, a hardware file, and errors naming file and key."""

import pytest

from labctl.station.file import BUILTIN_TEXT, StationFileError, load_station, parse_station

HARDWARE = """
[station]
name = "bench 3"
[instruments.k1]
driver = "keithley2400"
resource = "GPIB0::24::INSTR"
[instruments.k2]
driver = "keithley2400"
resource = "GPIB0::25::INSTR"
timeout_s = 2.5
[instruments.amp]
driver = "adc_board"
resource = "/dev/ttyUSB0"
baud_rate = 57600
[instruments.sw]
driver = "switch_matrix"
resource = "TCPIP::10.0.0.7::5025::SOCKET"
[wiring]
smu_a = "k1"
smu_b = "k2"
adc = "amp"
switch = "sw"
[[wiring.pair]]
pair = 1
[[wiring.pair]]
pair = 7
channel_a = "1A12"
channel_b = "1B12"
adc_input = 2
max_current_a = 50e-6
[limits]
max_current_a = 80e-6
compliance_v = 0.6
"""


def test_builtin_station_is_simulated_with_16_pairs():
    cfg = load_station(None)
    assert cfg.simulation is not None and cfg.simulation.n_pairs == 16
    assert sorted(cfg.pairs) == list(range(1, 17))
    assert cfg.pair(3).switch_channels == ("1A03", "1B03")
    assert cfg.text == BUILTIN_TEXT


def test_hardware_file(tmp_path):
    f = tmp_path / "bench3.toml"
    f.write_text(HARDWARE)
    cfg = load_station(f)
    assert cfg.simulation is None and cfg.name == "bench 3"
    assert cfg.instruments["k2"].timeout_s == 2.5
    assert cfg.instruments["amp"].baud_rate == 57600
    assert cfg.pair(1).limits.max_current_a == 80e-6
    p7 = cfg.pair(7)
    assert (p7.a.switch_channel, p7.adc_input, p7.limits.max_current_a) == ("1A12", 2, 50e-6)
    assert p7.limits.compliance_v == 0.6  # inherited from [limits]
    with pytest.raises(StationFileError, match="no pair 2"):
        cfg.pair(2)


def test_simulation_overrides_refused_for_hardware(tmp_path):
    f = tmp_path / "hw.toml"
    f.write_text(HARDWARE)
    with pytest.raises(StationFileError, match="has no \\[simulation\\]"):
        load_station(f, seed=3)
    assert load_station(None, seed=3, time_scale=1.0).simulation.seed == 3


@pytest.mark.parametrize(
    "edit, message",
    [
        (("compliance_v = 0.6", "compliance_v = -1"), r"\[limits\] compliance_v: must be positive"),
        (("compliance_v = 0.6", 'compliance_v = "high"'), r"compliance_v: must be a number"),
        (
            ('driver = "adc_board"', 'driver = "adc9000"'),
            r"\[instruments.amp\] driver: unknown driver 'adc9000'",
        ),
        (
            ('adc = "amp"', 'adc = "k1"'),
            r"\[wiring\] adc: 'k1' has driver 'keithley2400', needs 'adc_board'",
        ),
        (
            ('smu_b = "k2"', 'smu_b = "k9"'),
            r"\[wiring\] smu_b: names 'k9', which is not in \[instruments\]",
        ),
        (('resource = "/dev/ttyUSB0"', ""), r"\[instruments.amp\] resource: missing"),
        (
            ("max_current_a = 80e-6", "max_current_a = 80e-6\nmax_volts = 2"),
            r"\[limits\] max_volts: unknown key",
        ),
        (("[station]", "[station\n"), r"not valid TOML"),
        (("pair = 7", "pair = 0"), r"\[\[wiring.pair\]\] #2 pair: must be at least 1"),
        (
                ("max_current_a = 80e-6", "max_current_a = 5.0"),
                r"\[limits\]: max_current_a = 5 exceeds the devices' absolute maximum rating",
            ),
    ],
)
def test_errors_name_file_and_key(tmp_path, edit, message):
    f = tmp_path / "bad.toml"
    f.write_text(HARDWARE.replace(*edit, 1))
    with pytest.raises(StationFileError, match=message) as info:
        load_station(f)
    assert str(info.value).startswith(str(f))


def test_missing_file_named(tmp_path):
    with pytest.raises(StationFileError, match="nope.toml: cannot read station file"):
        load_station(tmp_path / "nope.toml")


def test_simulation_table_errors():
    text = BUILTIN_TEXT.replace('variability = "nominal"', 'variability = "wild"')
    with pytest.raises(
        StationFileError, match=r"\[simulation\] variability: unknown preset 'wild'"
    ):
        parse_station(text, "s.toml")
    text = BUILTIN_TEXT.replace("n_pairs = 16\ntime_scale", "n_pairs = 8\ntime_scale")
    with pytest.raises(StationFileError, match="pair 16 is beyond the simulated chip's 8 pairs"):
        parse_station(text, "s.toml")


# -- limits that protect devices: every attack of the night is refused, naming the key --
@pytest.mark.parametrize(
    "edit, message",
    [
        (("compliance_v = 0.8", "compliance_v = 5"),
         r"\[limits\]: compliance_v = 5 exceeds the devices' absolute maximum rating "
         r"breakdown_v = 1"),
        (("max_current_a = 100e-6", "max_current_a = 1e-3"),
         r"\[limits\]: max_current_a = 0.001 exceeds .* max_current_a = 0.0004"),
        (("ramp_step_a = 20e-6", "ramp_step_a = 1"),
         r"\[limits\]: ramp_step_a = 1 exceeds .* max_step_a = 2.5e-05"),
        (("n_pairs = 16\n\n[limits]", "n_pairs = 16\n[[wiring.pair]]\npair = 2\n"
          'channel_a = "1A01"\nchannel_b = "1B01"\n\n[limits]'),
         r"pair 2: switch channel 1A01 is already pair 1's"),
        (("n_pairs = 16\n\n[limits]", "n_pairs = 16\n[[wiring.pair]]\npair = 3\n"
          "max_current_a = 150e-6\n\n[limits]"),
         r"pair 3: max_current_a = 0.00015 is above the station's \[limits\] max_current_a"),
        (("n_pairs = 16\n\n[limits]", "n_pairs = 16\n[[wiring.pair]]\npair = 3\n"
          "[[wiring.pair]]\npair = 3\n\n[limits]"),
         r"\[\[wiring.pair\]\] #2 pair: pair 3 has a \[\[wiring.pair\]\] entry already"),
        (("[station]", "colour = \"red\"\n[station]"), r": colour: unknown key"),
        (('name = "built-in simulated station"', 'name = "x"\nowner = "me"'),
         r"\[station\] owner: unknown key"),
        (("n_pairs = 16\n\n[limits]", "n_pairs = 16\n[[wiring.pair]]\npair = 1000\n\n[limits]"),
         r"pair: must be at most 99"),
        (("n_pairs = 16\n\n[limits]", "n_pairs = 16\n[[wiring.pair]]\npair = 17\n\n[limits]"),
         r"pair 17 is beyond the simulated chip's 16 pairs"),
        (('[instruments.smu_a]\ndriver = "keithley2400"',
          '[instruments.smu_a]\ndriver = "keithley2400"\ntimeout_s = 1e300'),
         r"\[instruments.smu_a\] timeout_s: must be at most 600"),
        (("seed = 1", "seed = 1\ndie_grid = [100000, 100000]"),
         r"\[simulation\] die_grid: must be \[columns, rows\], each an integer 1..20"),
        (("time_scale = 0.0", "time_scale = 1e300"), r"\[simulation\] time_scale: must be at most"),
        (("seed = 1", "seed = 1\nline_frequency = 0.5"),
         r"\[simulation\] line_frequency: must be 50 or 60"),
        (('smu_b = "smu_b"', 'smu_b = "smu_a"'), r"devices A and B are both on SMU channel smu_a"),
        (('smu_b = "smu_b"', 'smu_b = "smu_b:2"'),
         r"keithley2400 'smu_b' has no channel '2' \(channels: 1\)"),
        (('trigger_master = "smu_a"', 'trigger_master = "adc"'),
         r"trigger_master: 'adc' has driver 'adc_board', which is not a source-meter"),
        (("adc_polarity = 1", "adc_polarity = 0"), r"adc_polarity: must be 1 or -1, got 0"),
        (("time_scale = 0.0", "time_scale = 0.0\n[simulation.faults.smu_a]\ndrop_afterwards = 3"),
         r"\[simulation.faults.smu_a\]: .*drop_afterwards"),
        (("time_scale = 0.0", "time_scale = 0.0\n[simulation.faults.smu_c]\ndrop_after = 3"),
         r"\[simulation.faults.smu_c\]: names no instrument"),
    ],
)
def test_limit_and_wiring_attacks_are_refused(edit, message):
    old, new = edit
    assert old in BUILTIN_TEXT, old
    with pytest.raises(StationFileError, match=message):
        parse_station(BUILTIN_TEXT.replace(old, new, 1), "attack.toml")


def test_pulse_limits_within_the_ratings():
    text = BUILTIN_TEXT.replace("ramp_step_a = 20e-6", "ramp_step_a = 20e-6\npulse_max_v = 1.2")
    with pytest.raises(StationFileError, match=r"pulse_max_v = 1.2 exceeds .* breakdown_v"):
        parse_station(text, "p.toml")
    text = BUILTIN_TEXT.replace("ramp_step_a = 20e-6",
                                "ramp_step_a = 20e-6\npulse_max_current_a = 1e-3")
    with pytest.raises(StationFileError, match=r"pulse_max_current_a = 0.001 exceeds"):
        parse_station(text, "p.toml")


# -- real benches: VISA library, GPIB, serial line settings, terminations ------------------
BENCH = r"""
[instruments.k1]
driver = "keithley2400"
resource = "GPIB0::24::INSTR"
visa_library = "/usr/lib/x86_64-linux-gnu/libvisa.so"
[instruments.k2]
driver = "keithley2400"
resource = "ASRL/dev/ttyS1::INSTR"
baud_rate = 9600
parity = "even"
stop_bits = 2
data_bits = 7
flow_control = "xonxoff"
read_termination = "\r\n"
write_termination = "\r"
[instruments.amp]
driver = "adc_board"
resource = "/dev/ttyUSB0"
baud_rate = 57600
parity = "odd"
stop_bits = 1.5
flow_control = "rtscts"
[instruments.sw]
driver = "switch_matrix"
resource = "TCPIP::10.0.0.7::5025::SOCKET"
visa_library = "@ivi"
write_termination = "\n"
[wiring]
smu_a = "k1"
smu_b = "k2"
adc = "amp"
switch = "sw"
n_pairs = 2
"""


def test_a_bench_file_selects_each_link():
    cfg = parse_station(BENCH, "bench.toml")
    k1, k2, amp, sw = (cfg.instruments[n] for n in ("k1", "k2", "amp", "sw"))
    assert k1.visa_library == "/usr/lib/x86_64-linux-gnu/libvisa.so"
    assert (k1.read_termination, k1.write_termination) == (None, None)  # the driver's
    assert (k2.baud_rate, k2.parity, k2.stop_bits, k2.data_bits, k2.flow_control) == (
        9600, "even", 2, 7, "xonxoff")
    assert (k2.read_termination, k2.write_termination) == ("\r\n", "\r")
    assert k2.visa_library == "@py"  # an ASRL resource is VISA: the default library
    assert (amp.parity, amp.stop_bits, amp.flow_control, amp.data_bits) == (
        "odd", 1.5, "rtscts", 8)
    assert (sw.visa_library, sw.write_termination) == ("@ivi", "\n")
    # What open_adapter gets: a serial path has no VISA library.
    assert "visa_library" not in amp.link_settings()
    assert k2.link_settings() == {
        "baud_rate": 9600, "parity": "even", "stop_bits": 2, "data_bits": 7,
        "flow_control": "xonxoff", "read_termination": "\r\n", "write_termination": "\r",
        "visa_library": "@py"}


def test_defaults_are_pyvisa_py_8n1_and_the_drivers_terminations():
    cfg = parse_station(HARDWARE, "hw.toml")
    for inst in cfg.instruments.values():
        assert (inst.parity, inst.stop_bits, inst.data_bits, inst.flow_control) == (
            "none", 1, 8, "none")
        assert (inst.read_termination, inst.write_termination) == (None, None)
        assert inst.visa_library == "@py"


@pytest.mark.parametrize("edit, message", [
    (('parity = "even"', 'parity = "evn"'),
     r"\[instruments.k2\] parity: must be one of 'none', 'even', 'odd', 'mark', 'space', "
     r"got 'evn'"),
    (("stop_bits = 2", "stop_bits = 3"), r"\[instruments.k2\] stop_bits: must be one of "
                                          r"1, 1.5, 2, got 3"),
    (("stop_bits = 2", 'stop_bits = "2"'), r"\[instruments.k2\] stop_bits: must be one of"),
    (("data_bits = 7", "data_bits = 9"), r"\[instruments.k2\] data_bits: must be one of "
                                          r"5, 6, 7, 8, got 9"),
    (("data_bits = 7", "data_bits = true"), r"\[instruments.k2\] data_bits: must be one of"),
    (('flow_control = "xonxoff"', 'flow_control = "hardware"'),
     r"\[instruments.k2\] flow_control: must be one of 'none', 'xonxoff', 'rtscts'"),
    (('read_termination = "\\r\\n"', 'read_termination = ";"'),
     r"\[instruments.k2\] read_termination: must be one of .*got ';'"),
    (('write_termination = "\\r"', 'write_termination = ""'),
     r"\[instruments.k2\] write_termination: must be one of"),
    (("baud_rate = 9600", "baud_rate = 9601"),
     r"\[instruments.k2\] baud_rate: 9601 is not a standard rate"),
    (('visa_library = "@ivi"', 'visa_library = "@"'),
     r"\[instruments.sw\] visa_library: '@': '@' is not a pyvisa backend name"),
    (('visa_library = "@ivi"', 'visa_library = "/opt/visa.so@Not A Backend"'),
     r"\[instruments.sw\] visa_library: .*is not a pyvisa backend name"),
    (('visa_library = "@ivi"', "visa_library = 5"),
     r"\[instruments.sw\] visa_library: must be a non-empty string"),
    (('visa_library = "@ivi"', 'visa_library = " @py"'),
     r"\[instruments.sw\] visa_library: ' @py': must be a backend"),
    (('visa_library = "@ivi"', 'parity = "even"'),
     r"\[instruments.sw\] parity: applies to serial lines only .*not resource "
     r"'TCPIP::10.0.0.7::5025::SOCKET'"),
    (('resource = "GPIB0::24::INSTR"', 'resource = "GPIB0::24::INSTR"\nbaud_rate = 9600'),
     r"\[instruments.k1\] baud_rate: applies to serial lines only"),
    (('baud_rate = 57600', 'baud_rate = 57600\nvisa_library = "@py"'),
     r"\[instruments.amp\] visa_library: applies to VISA resources only; resource "
     r"'/dev/ttyUSB0' is a serial line"),
    (('resource = "GPIB0::24::INSTR"', 'resource = "GPIB0::31::INSTR"'),
     r"\[instruments.k1\] resource: 'GPIB0::31::INSTR': GPIB primary address 31 is not "
     r"0 to 30"),
    (('resource = "GPIB0::24::INSTR"', 'resource = "GPIB0::24::96::INSTR"'),
     r"GPIB secondary address 96 is not 0 to 30"),
    (('resource = "GPIB0::24::INSTR"', 'resource = "GPIB0::twenty-four::INSTR"'),
     r"\[instruments.k1\] resource: 'GPIB0::twenty-four::INSTR' is not a GPIB resource"),
    (('driver = "switch_matrix"', 'driver = "switch_matrix"\nstop_bit = 1'),
     r"\[instruments.sw\] stop_bit: unknown key \(allowed: .*stop_bits"),
])
def test_link_setting_errors_name_the_file_and_key(edit, message):
    old, new = edit
    assert old in BENCH, old
    with pytest.raises(StationFileError, match=message) as info:
        parse_station(BENCH.replace(old, new, 1), "bench.toml")
    assert str(info.value).startswith("bench.toml: ")


def test_gpib_forms_accepted():
    for resource in ("GPIB::24", "GPIB1::0::INSTR", "GPIB0::30::12::INSTR", "gpib0::5::instr"):
        cfg = parse_station(BENCH.replace("GPIB0::24::INSTR", resource), "g.toml")
        assert cfg.instruments["k1"].resource == resource


def test_a_simulated_station_takes_the_settings_its_links_have():
    # The simulator serves the ADC on a pty (serial settings apply) and the rest on VISA
    # sockets (a serial setting there is refused, a VISA library accepted).
    text = BUILTIN_TEXT.replace('[instruments.adc]\ndriver = "adc_board"',
                                '[instruments.adc]\ndriver = "adc_board"\nstop_bits = 2\n'
                                'read_termination = "\\r\\n"')
    cfg = parse_station(text, "sim.toml")
    assert (cfg.instruments["adc"].stop_bits, cfg.instruments["adc"].read_termination) == (
        2, "\r\n")
    bad = BUILTIN_TEXT.replace('[instruments.smu_a]\ndriver = "keithley2400"',
                               '[instruments.smu_a]\ndriver = "keithley2400"\nparity = "odd"')
    with pytest.raises(StationFileError, match=r"\[instruments.smu_a\] parity: applies to "
                                               r"serial lines only .*the simulated link"):
        parse_station(bad, "sim.toml")
