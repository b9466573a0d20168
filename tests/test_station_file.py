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
