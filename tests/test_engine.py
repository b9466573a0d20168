"""The protocol layer (engine, safety envelope, finite differences) on the built-in
simulated station, in-process but through real sockets and a pty.

What is checked: list and host-paced sweeps agree and answer in the Sweep's order; the
swap derivative matches the device model; the safety envelope refuses before anything is
sent, per-pair limits are kept, and every level sent to an SMU is ramped and in range;
every way out of ``open_station`` leaves outputs off and the switch open; compliance is
flagged, never used as data. Units: A, V, Ohm.
"""

from __future__ import annotations

import numpy as np
import pytest

from instruments.transport import InstrumentError
from labctl.station.file import BUILTIN_TEXT, StationConfig, load_station
from labctl.station.runtime import open_station
from labctl.training.station_neurons import StationNeurons
from protocols.engine import Engine
from protocols.finite_difference import calibrate, fd_batch
from protocols.intents import ComplianceInData, Sweep
from protocols.safety import MAX_LIST_POINTS, SafetyViolation
from simulators.mtj import dvdi, voltage
from tests.wire_levels import assert_ramped, source_levels, wire_entries

SMU_NOISE_V = 20e-6  # nominal preset, 1 NPLC
ADC_NOISE_V = 5e-6  # nominal preset, 1 ms integration (the ADC board's default)
SMUS = ("smu_a", "smu_b")


# -- helpers -----------------------------------------------------------------------------
def nominal_config(**overrides) -> StationConfig:
    return load_station(None, seed=1, variability="nominal", time_scale=0.0, **overrides)


def station_file(tmp_path, *, replace: dict[str, str] | None = None, extra: str = ""):
    """The built-in station's text with edits, written to a file; returns its config."""
    text = BUILTIN_TEXT
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "station.toml"
    path.write_text(text + extra)
    return load_station(path)


def assert_levels_in_envelope(station) -> None:
    limits = [p.limits for p in station.config.pairs.values()]
    for name in station.wiring.smu_instruments():
        assert_ramped(
            source_levels(wire_entries(station, name)),
            max(lim.max_current_a for lim in limits),
            max(lim.ramp_step_a for lim in limits),
        )


def assert_no_overbias(world, config: StationConfig) -> None:
    """No device of any die saw more than its pair's max_current_a or compliance_v."""
    for die, record in world.max_bias_record().items():
        assert not record["destroyed"].any(), die
        for k, wiring in config.pairs.items():
            lim = wiring.limits
            assert record["max_abs_i"][k - 1].max() <= lim.max_current_a * (1 + 1e-9), (die, k)
            assert record["max_abs_v"][k - 1].max() <= lim.compliance_v + 1e-9, (die, k)


def assert_safe_state(world) -> None:
    assert world.buses["A"].on is False and world.buses["B"].on is False
    assert world.buses["A"].set_current == 0.0 and world.buses["B"].set_current == 0.0
    assert world.closed == set()


def messages(station) -> int:
    """Every message written to or read from any instrument so far."""
    return sum(sum(log.counts.values()) for log in station.wire_logs.values())


@pytest.fixture
def station(tmp_path):
    """The nominal built-in station, wire logs in tmp_path/wire."""
    with open_station(nominal_config()) as st:
        st.attach_wire_logs(tmp_path)
        yield st


# -- list and host-paced sweeps ------------------------------------------------------------
def test_list_and_host_modes_agree_and_answer_in_the_sweeps_order(station):
    pair = 3
    rng = np.random.default_rng(7)
    i_a = rng.uniform(-90e-6, 90e-6, 60)
    i_a[[5, 17, 40]] = i_a[11]  # repeated currents must keep their own places too
    i_b = i_a + 2e-6 * np.sign(rng.standard_normal(60))
    sweep = Sweep(pair, i_a, i_b, label="order")
    params = station.simulator.world.chip.params
    model_a = voltage(params.take((pair - 1, 0)), i_a)
    model_b = voltage(params.take((pair - 1, 1)), i_b)

    results, trips = {}, {}
    for mode in ("list", "host"):
        engine = Engine(station, mode=mode)
        before = station.round_trips()
        results[mode] = r = engine.execute(sweep)
        trips[mode] = station.round_trips() - before
        assert r.sweep is sweep and len(r.v_a) == len(sweep)
        assert engine.stats.padded_points > engine.stats.points == len(sweep)  # ramps added
        assert r.valid.all()
        # In the Sweep's order: each reading is the model's voltage at its own current.
        assert np.max(np.abs(r.v_a - model_a)) < 6 * SMU_NOISE_V
        assert np.max(np.abs(r.v_b - model_b)) < 6 * SMU_NOISE_V
        assert np.max(np.abs(r.v_diff - (model_b - model_a))) < 6 * ADC_NOISE_V

    lst, host = results["list"], results["host"]
    # Two independent readings of the same point differ by sqrt(2) sigma rms.
    sigmas = {"v_a": SMU_NOISE_V, "v_b": SMU_NOISE_V, "v_diff": ADC_NOISE_V}
    for key, sigma in ((k, np.sqrt(2) * s) for k, s in sigmas.items()):
        diff = getattr(lst, key) - getattr(host, key)
        assert np.sqrt(np.mean(diff**2)) < 1.5 * sigma, key
        assert np.max(np.abs(diff)) < 6 * sigma, key
    # The list sweep is one list per SMU and one ADC block, not round trips per point.
    assert trips["list"] < 25 < 3 * len(sweep) <= trips["host"]
    assert_levels_in_envelope(station)


# -- derivatives -------------------------------------------------------------------------
def test_swap_derivative_matches_the_device_model_forward_needs_calibration(station):
    pairs = list(range(1, 17))
    currents = np.linspace(-80e-6, 80e-6, 33)
    batch = np.repeat(currents[:, None], len(pairs), axis=1)
    di = 1e-6
    params = station.simulator.world.chip.params
    exact = np.stack([dvdi(params.take((k - 1, 0)), currents) for k in pairs], axis=1)
    engine = Engine(station, mode="list")

    def median_error(readout) -> np.ndarray:
        assert readout.valid.all()
        return np.median(np.abs(readout.dvdi / exact - 1), axis=0)  # per pair

    swap = median_error(engine.run(fd_batch(batch, pairs, di, "swap")))
    forward = median_error(engine.run(fd_batch(batch, pairs, di, "forward")))
    cal = engine.run(calibrate(pairs, 80e-6))
    fixed = median_error(engine.run(fd_batch(batch, pairs, di, "forward", calibration=cal)))

    assert np.all(swap <= 0.03), swap  # measured: 0.2 .. 1.6 %, median 0.9 %
    # Forward differences carry the pair's mismatch V_B(I) - V_A(I) divided by dI.
    assert np.median(forward) > 0.2, forward  # measured: median 60 %, 3 .. 210 %
    assert np.all(forward > 2 * swap)
    # The dI = 0 calibration removes most of it.
    assert np.all(fixed <= 0.5 * forward), fixed / forward
    assert np.median(fixed) <= 0.03 and np.all(fixed <= 0.06), fixed
    assert_levels_in_envelope(station)
    assert_no_overbias(station.simulator.world, station.config)


# -- the safety envelope -------------------------------------------------------------------
def test_refused_sweeps_send_nothing_to_any_instrument(station):
    engine = Engine(station, mode="list")
    i = np.linspace(-50e-6, 50e-6, 11)
    engine.execute(Sweep(1, i, i))  # sources prepared, pair 1 connected
    fresh = Engine(station, mode="host")  # not yet prepared: it would contact and connect
    limit = station.config.limits.max_current_a
    refused = [
        (Sweep(1, [0.0, limit * 1.01], [0.0, 0.0]), "device A"),
        (Sweep(2, [0.0, 0.0], [0.0, -limit * 1.01]), "device B"),
        (Sweep(2, [0.0, np.inf], [0.0, 0.0]), "non-finite"),
        (Sweep(17, [0.0], [0.0]), "pair 17"),
    ]
    for sweep, match in refused:
        for eng in (engine, fresh):
            before, trips = messages(station), station.round_trips()
            with pytest.raises(SafetyViolation, match=match):
                eng.execute(sweep)
            assert messages(station) == before and station.round_trips() == trips
    # Too long for the 2400's list memory once the ramps are added.
    long = np.linspace(-limit, limit, MAX_LIST_POINTS)
    before = messages(station)
    with pytest.raises(SafetyViolation, match="a list holds at most"):
        engine.execute(Sweep(4, long, long))
    assert messages(station) == before

    # A plan whose second sweep is refused: the first ran, nothing after it was sent.
    def plan():
        yield Sweep(3, i, i)
        yield Sweep(3, i, i * 2.5)  # device B up to 125 uA
        raise AssertionError("the engine must not send a refused sweep's result")

    before = messages(station)
    counts: list[int] = []
    real_execute = engine.execute

    def spy(intent):
        counts.append(messages(station))
        return real_execute(intent)

    engine.execute = spy
    with pytest.raises(SafetyViolation, match="device B"):
        engine.run(plan())
    assert counts[0] == before and messages(station) == counts[1] > before
    assert station.simulator.world.closed == {"1A03", "1B03"}  # the last pair that really ran
    assert_levels_in_envelope(station)
    assert_no_overbias(station.simulator.world, station.config)


PAIR5 = """
[[wiring.pair]]
pair = 5
max_current_a = 60e-6
compliance_v = 0.2
ramp_step_a = 5e-6
"""


@pytest.mark.parametrize("mode", ["list", "host"])
def test_per_pair_limits_from_the_station_file(tmp_path, mode):
    config = station_file(tmp_path, extra=PAIR5)
    lim5 = config.pair(5).limits
    assert (lim5.max_current_a, lim5.compliance_v, lim5.ramp_step_a) == (60e-6, 0.2, 5e-6)
    with open_station(config) as st:
        st.attach_wire_logs(tmp_path)
        world = st.simulator.world
        engine = Engine(st, mode=mode)
        before = messages(st)
        with pytest.raises(SafetyViolation, match=r"pair 5 device A: \|I\| = 7e-05 A exceeds"):
            engine.execute(Sweep(5, [0.0, 70e-6], [0.0, 0.0]))
        assert messages(st) == before

        wide, narrow = np.linspace(-100e-6, 100e-6, 21), np.linspace(-60e-6, 60e-6, 25)
        segments = {}
        for label, pair, currents in (("4a", 4, wide), ("5", 5, narrow), ("4b", 4, wide)):
            start = {name: len(wire_entries(st, name)) for name in SMUS}
            r = engine.execute(Sweep(pair, currents, currents))
            segments[label] = (r, {name: wire_entries(st, name)[start[name] :] for name in SMUS})
            assert world.buses["A"].compliance_v == config.pair(pair).limits.compliance_v

        r5, logs5 = segments["5"]
        for name in SMUS:
            # Within pair 5's sweep (ramps included): its own, smaller limit and step.
            assert_ramped(source_levels(logs5[name]), 60e-6, 5e-6)
            sent = [e["w"] for e in logs5[name] if "VOLT:PROT" in e.get("w", "")]
            assert sent and float(sent[-1].split()[-1]) == 0.2
        # 0.2 V is reached at some currents: flagged, and clipped at the device.
        params = world.chip.params
        v_model = np.maximum(
            np.abs(voltage(params.take((4, 0)), narrow)),
            np.abs(voltage(params.take((4, 1)), narrow)),
        )
        over, under = v_model > 0.21, v_model < 0.19
        assert over.sum() >= 3 and r5.compliance[over].all() and not r5.compliance[under].any()
        assert np.all(np.abs(r5.v_a) <= 0.2 + 6 * SMU_NOISE_V)
        # Back on pair 4: 0.8 V again, so nothing is in compliance at +-100 uA.
        assert not segments["4a"][0].compliance.any() and not segments["4b"][0].compliance.any()
    assert_safe_state(world)
    assert_levels_in_envelope(st)
    assert_no_overbias(world, config)
    record = world.max_bias_record()["1,1"]
    assert record["max_abs_i"][3].max() == pytest.approx(100e-6)
    assert record["max_abs_i"][4].max() <= 60e-6 * (1 + 1e-9)
    assert record["max_abs_v"][4].max() == pytest.approx(0.2, abs=1e-9)


# -- leaving open_station -------------------------------------------------------------------
def test_normal_exit_turns_everything_off(tmp_path):
    config = nominal_config()
    with open_station(config) as st:
        st.attach_wire_logs(tmp_path)
        world = st.simulator.world
        engine = Engine(st)
        engine.run(fd_batch(np.linspace(-80e-6, 80e-6, 9)[:, None], [6], 1e-6, "swap"))
        assert world.buses["A"].on and world.buses["B"].on and world.in_contact
        assert world.closed == {"1A06", "1B06"}
    assert_safe_state(world)
    assert_levels_in_envelope(st)
    assert_no_overbias(world, config)


@pytest.mark.parametrize("mode", ["list", "host"])
def test_exception_raised_by_the_plan(tmp_path, mode):
    config = nominal_config()

    def plan():
        currents = np.linspace(-100e-6, 100e-6, 21)
        yield Sweep(2, currents, currents)
        yield Sweep(9, currents, -currents)
        raise RuntimeError("plan failed")

    with pytest.raises(RuntimeError, match="plan failed"):
        with open_station(config) as st:
            st.attach_wire_logs(tmp_path)
            world = st.simulator.world
            Engine(st, mode=mode).run(plan())
    assert world.closed == set() and world.buses["A"].on is False
    assert_safe_state(world)
    assert_levels_in_envelope(st)
    assert_no_overbias(world, config)


@pytest.mark.parametrize(
    "error", [InstrumentError("adc: lost"), KeyboardInterrupt()], ids=["adc-error", "ctrl-c"]
)
def test_failure_mid_sweep_ramps_the_sources_down(tmp_path, monkeypatch, error):
    """An ADC failure (or Ctrl-C) while both SMUs source ~70 uA: ramped down, then off."""
    config = nominal_config()
    seen = {}
    with pytest.raises(type(error)):
        with open_station(config) as st:
            st.attach_wire_logs(tmp_path)
            world = st.simulator.world
            real_measure = st.adc.measure
            calls = []

            def measure():
                calls.append(1)
                if len(calls) == 8:
                    seen.update(a=world.buses["A"].set_current, b=world.buses["B"].set_current)
                    seen.update(on=world.buses["A"].on, closed=set(world.closed))
                    raise error
                return real_measure()

            monkeypatch.setattr(st.adc, "measure", measure)
            currents = np.linspace(0.0, 90e-6, 10)
            Engine(st, mode="host").run(fd_batch(currents[:, None], [7], 1e-6, "forward"))
    assert seen["on"] and seen["closed"] == {"1A07", "1B07"}
    assert seen["a"] == pytest.approx(70e-6) and seen["b"] == pytest.approx(71e-6)
    assert_safe_state(world)
    for name in SMUS:
        levels = source_levels(wire_entries(st, name))
        assert_ramped(levels, 100e-6, 20e-6)
        peak = int(np.argmax(np.abs(levels)))
        assert levels[peak] == pytest.approx(seen["a" if name == "smu_a" else "b"])
        assert len(levels) - peak > 3  # 70 uA to 0 in steps of at most 20 uA
    assert_no_overbias(world, config)


# -- compliance is flagged, never data ---------------------------------------------------------
@pytest.mark.parametrize("mode", ["list", "host"])
def test_separated_prober_is_reported_as_compliance(station, mode):
    engine = Engine(station, mode=mode)
    currents = np.linspace(-50e-6, 50e-6, 11)
    neurons = StationNeurons(engine, [2], di=1e-6, grad="fd-swap")
    batch = np.full((4, 1), 30e-6)
    assert engine.execute(Sweep(2, currents, currents)).valid.all()
    neurons.measure(batch)  # in contact: fine

    station.prober.separate()
    assert not station.simulator.world.in_contact
    r = engine.execute(Sweep(2, currents, currents))
    nonzero = currents != 0
    assert r.compliance[nonzero].all() and not r.valid[nonzero].any()
    # No device: the open bus sits at the compliance voltage.
    assert np.allclose(np.abs(r.v_a[nonzero]), 0.8, atol=6 * SMU_NOISE_V)
    with pytest.raises(ComplianceInData, match=r"pair 2: \d+ readings in compliance"):
        neurons.measure(batch)

    station.prober.contact()
    readout = neurons.measure(batch)
    assert np.all(np.isfinite(readout.dvdi)) and np.all(readout.dvdi > 0)


def test_tiny_compliance_from_the_station_file(tmp_path):
    config = station_file(tmp_path, replace={"compliance_v = 0.8": "compliance_v = 0.15"})
    assert config.pair(3).limits.compliance_v == 0.15
    currents = np.linspace(-100e-6, 100e-6, 25)
    with open_station(config) as st:
        st.attach_wire_logs(tmp_path)
        world = st.simulator.world
        engine = Engine(st)
        r = engine.execute(Sweep(3, currents, currents))
        params = world.chip.params
        v_model = np.maximum(
            np.abs(voltage(params.take((2, 0)), currents)),
            np.abs(voltage(params.take((2, 1)), currents)),
        )
        over, under = v_model > 0.155, v_model < 0.145
        assert over.sum() >= 6 and under.sum() >= 6
        assert r.compliance[over].all() and not r.compliance[under].any()
        assert not r.valid[over].any() and r.valid[under].all()
        assert np.all(np.abs(r.v_a) <= 0.15 + 6 * SMU_NOISE_V)

        neurons = StationNeurons(engine, [3, 4], di=1e-6, grad="fd")
        low = np.full((3, 2), 5e-6)
        assert neurons.measure(low).v.shape == (3, 2)
        high = low.copy()
        high[1, 1] = 90e-6
        with pytest.raises(ComplianceInData, match="pair 4: 1 readings"):
            neurons.measure(high)
    assert_safe_state(world)
    assert_levels_in_envelope(st)
    assert_no_overbias(world, config)


def test_a_shutdown_that_recovers_on_the_way_is_confirmed(station):
    """A reply left unread on smu_a's link (as a late duplicate would be): the shutdown meets
    it, resyncs, and the SMU then reads back off at 0 A: confirmed, the detour a note."""
    Engine(station).execute(Sweep(3, [20e-6], [21e-6]))
    smu = station.smu(station.wiring.pair(3).a.smu)
    smu.adapter.write(":SOUR:CURR?")  # its answer stays in the input, unread
    report = station.safe_shutdown()
    assert report.confirmed, report.problems
    assert report.problems == []
    # the detour: the waiting bytes discarded, or the stray reply caught and the link resynced
    assert any(n.startswith("smu_a: ") and ("unsolicited" in n or "resynced" in n)
               for n in report.notes), report.notes
    assert_safe_state(station.simulator.world)
