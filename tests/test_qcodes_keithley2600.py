"""QCoDeS's own Keithley 2602B driver, unmodified, against the simulated 2602B: pyvisa-py
(``@py``) on the simulator's raw socket; parameters set and read back, and ``fastsweep``
(a Lua script sent as ``loadandrunscript`` ... ``endscript``, read back as a REAL32
``printbuffer``) matching the device model."""

from __future__ import annotations

import numpy as np
import pytest

qcodes_keithley = pytest.importorskip("qcodes.instrument_drivers.Keithley")
from qcodes.dataset import LinSweep  # noqa: E402

from simulators.cabling import Cabling, SmuCable  # noqa: E402
from simulators.keithley2600 import SimKeithley2600  # noqa: E402
from simulators.mtj import voltage  # noqa: E402
from simulators.server import TcpServer  # noqa: E402
from simulators.world import SimSettings, StationWorld  # noqa: E402

CABLING = Cabling(smus=(SmuCable("k2602", "a", "A"), SmuCable("k2602", "b", "B")))
NOISE_V = 20e-6


@pytest.fixture
def bench():
    world = StationWorld(SimSettings(seed=5), CABLING)
    world.set_contact(True)
    world.set_closed({"1A02", "1B02"})
    sim = SimKeithley2600(world, {"a": CABLING.smus[0], "b": CABLING.smus[1]})
    server = TcpServer(sim).start()
    keith = qcodes_keithley.Keithley2602B("sim2602b", server.resource, visalib="@py",
                                          terminator="\n", timeout=5)
    yield world, sim, keith
    keith.close()
    server.stop()


def model_v(world: StationWorld, dev: int, current) -> np.ndarray:
    params = world.chip.params.take((np.array([1]), np.array([dev])))
    return np.asarray(voltage(params, np.asarray(current, dtype=float)))


def test_identity_and_parameters(bench):
    world, sim, keith = bench
    assert keith.get_idn()["model"] == "2602B"
    assert keith.smua.linefreq() == 60.0
    keith.smua.mode("current")
    keith.smua.limitv(1.0)
    keith.smua.nplc(0.1)
    keith.smua.sourcerange_i(1e-4)
    assert keith.smua.mode() == "current"
    assert keith.smua.limitv() == 1.0
    assert keith.smua.nplc() == pytest.approx(0.1)
    assert keith.smua.sourcerange_i() == pytest.approx(1e-4)
    assert keith.smua.source_autorange_i_enabled() is False
    keith.smua.output("on")
    keith.smua.curr(25e-6)
    assert keith.smua.curr() == pytest.approx(25e-6)
    assert keith.smua.volt() == pytest.approx(model_v(world, 0, 25e-6)[0],
                                              abs=6 * NOISE_V / np.sqrt(0.1))
    assert keith.smua.volt.measurement_status.name == "NORMAL"
    keith.smua.curr(0.0)
    keith.smua.output("off")
    assert keith.smua.output() is False
    assert not world.buses["A"].on
    assert list(sim.errors) == []


def test_fastsweep_vi_matches_the_device(bench):
    world, sim, keith = bench
    keith.smub.mode("current")
    keith.smub.limitv(1.0)
    keith.smub.nplc(0.01)
    keith.smub.setup_fastsweep(LinSweep(keith.smub.curr, 0.0, 40e-6, 101), mode="VI")
    data = keith.smub.fastsweep()
    assert data.shape == (101,)
    np.testing.assert_allclose(data, model_v(world, 1, np.linspace(0, 40e-6, 101)),
                               atol=6 * NOISE_V / np.sqrt(0.01))
    assert list(sim.errors) == []
    keith.smub.curr(0.0)
    keith.smub.output("off")


def test_fastsweep_iv(bench):
    """QCoDeS's default mode sources voltage on smua and reads its current. With a world
    that drives voltages (``StationWorld.drive_voltage``) the currents are the devices':
    the model's V(I) at the measured currents gives back the setpoints; without one the
    script's output-on is refused with -221 and the sweep reads the output-off 0 A."""
    world, sim, keith = bench
    setpoints = np.linspace(0.0, 0.5, 11)
    keith.smua.setup_fastsweep(LinSweep(keith.smua.volt, 0.0, 0.5, 11), mode="IV")
    data = keith.smua.fastsweep()
    assert data.shape == (11,)
    if sim.voltage_physical:
        assert list(sim.errors) == []
        assert np.all(np.diff(data) > 0)
        np.testing.assert_allclose(model_v(world, 0, data[1:]), setpoints[1:], atol=2e-3)
        keith.smua.volt(0.0)
    else:
        assert np.all(data == 0.0)
        assert [code for code, _ in sim.errors] == [-221]
    keith.smua.output("off")
    assert keith.smua.output() is False  # a round trip: the writes are done
    assert not world.buses["A"].on
    assert keith.get_idn()["model"] == "2602B"


def test_reset_snapshot_and_timetrace(bench):
    """QCoDeS's reset re-reads every parameter (snapshot); its timetrace runs a
    measure.count / measure.interval script and reads a REAL32 buffer."""
    world, sim, keith = bench
    keith.reset()
    snap = keith.snapshot(update=True)
    assert snap["submodules"]["smua"]["parameters"]["nplc"]["value"] == 1.0
    assert snap["submodules"]["smub"]["parameters"]["mode"]["value"] == "voltage"
    keith.smua.mode("current")
    keith.smua.limitv(1.0)
    keith.smua.output("on")
    keith.smua.curr(10e-6)
    keith.smua.nplc(0.01)
    keith.smua.timetrace_mode("voltage")
    keith.smua.timetrace_npts(50)
    keith.smua.timetrace_dt(1e-3)
    trace = keith.smua.timetrace()
    assert trace.shape == (50,)
    np.testing.assert_allclose(trace, model_v(world, 0, 10e-6)[0],
                               atol=6 * NOISE_V / np.sqrt(0.01))
    assert list(sim.errors) == []
    keith.smua.curr(0.0)
    keith.smua.output("off")
