"""A simulated bench cabled as a station file's wiring says (and nothing else).

:func:`cabling_for` turns the declared wiring into the simulator's cabling: each SMU
channel on the matrix row its devices' switch channels name (``1Akk`` row A, ``1Bkk``
row B; ``1Ckk``/``1Dkk`` rows C/D and so on up to H, the matrix then having those rows too:
a station with channels for several pairs at once), each ADC input reading what the pairs
on it declare (``adc_polarity``), and the trigger master's output line fanned out to every
other SMU and the ADC. A ``[simulation.miswire]`` table departs from the declaration on
purpose (reversed or open ADC input), to rehearse a miswired bench. A ``[reference]``
resistor is served as ``Cabling.reference_load_ohm``: on the switch channels the file
names for it, which must be the simulated matrix's column 00 of each SMU channel's row
(``1A00``, ``1B00``), or hard-wired to every SMU channel in place of the matrix when it names none.
"""

from __future__ import annotations

import re

from labctl.station.file import SMU_DRIVERS, StationConfig, StationFileError
from protocols.wiring import TRIGGER_LINE, Channel
from simulators.cabling import (
    ADC_TRIGGER_LINE,
    MATRIX_ROWS,
    AdcInputCable,
    Cabling,
    SmuCable,
    TriggerCable,
)

_SIM_CHANNEL = re.compile(r"^1([A-H])\d\d$")


def smu_models_for(config: StationConfig) -> dict[str, str]:
    """The simulated model of each SMU instrument: its station-file driver."""
    return {name: cfg.driver for name, cfg in config.instruments.items()
            if cfg.driver in SMU_DRIVERS}


def cabling_for(config: StationConfig) -> Cabling:
    """The simulator's cabling for ``config``; StationFileError if it cannot be simulated."""
    w = config.wiring
    rows: dict[Channel, str] = {}
    inputs: dict[int, tuple[str, str]] = {}
    for k, p in sorted(w.pairs.items()):
        dev_rows = []
        for name, dev in (("A", p.a), ("B", p.b)):
            m = _SIM_CHANNEL.match(dev.switch_channel)
            if not m:
                raise StationFileError(
                    f"{config.source}: pair {k} device {name}: switch channel "
                    f"{dev.switch_channel!r} does not exist on the simulated matrix "
                    "(channels 1Akk and 1Bkk, or 1Ckk/1Dkk ... 1Gkk/1Hkk)"
                )
            row = m.group(1)
            if rows.setdefault(dev.smu, row) != row:
                raise StationFileError(
                    f"{config.source}: SMU channel {dev.smu} biases devices on matrix rows "
                    f"{rows[dev.smu]} and {row}; the simulator cables a channel to one row"
                )
            dev_rows.append(row)
        row_a, row_b = dev_rows
        reads = (row_b, row_a) if p.adc_polarity > 0 else (row_a, row_b)
        if inputs.setdefault(p.adc_input, reads) != reads:
            raise StationFileError(
                f"{config.source}: pair {k}: ADC input {p.adc_input} is declared to read "
                f"both V({inputs[p.adc_input][0]}) - V({inputs[p.adc_input][1]}) and "
                f"V({reads[0]}) - V({reads[1]})"
            )
    mis = config.miswiring
    adc_cables = []
    for number, (plus, minus) in sorted(inputs.items()):
        if mis.adc_open:
            adc_cables.append(AdcInputCable(number, None, None))
        elif mis.adc_reversed:
            adc_cables.append(AdcInputCable(number, minus, plus))
        else:
            adc_cables.append(AdcInputCable(number, plus, minus))
    master = w.trigger_master
    smus = [SmuCable(ch.instrument, ch.channel, row) for ch, row in sorted(rows.items())]
    # One cable per other instrument (a two-channel SMU has one trigger input line 1).
    triggers = [TriggerCable(master.instrument, TRIGGER_LINE, name, TRIGGER_LINE)
                for name in dict.fromkeys(c.instrument for c in smus)
                if name != master.instrument]
    triggers.append(TriggerCable(master.instrument, TRIGGER_LINE, w.adc, ADC_TRIGGER_LINE))
    prober = w.prober or "prober"
    ohms, ref_channels = _reference_cabling(config, rows)
    # Whole couples of rows from A/B up to the last one a device is reached on.
    last = max(MATRIX_ROWS.index(r) for r in rows.values())
    matrix_rows = MATRIX_ROWS[:max(2, 2 * (last // 2 + 1))]
    try:
        return Cabling(smus=tuple(smus), adc=w.adc, switch=w.switch, prober=prober,
                       adc_inputs=tuple(adc_cables), triggers=tuple(triggers),
                       reference_load_ohm=ohms, reference_channels=ref_channels,
                       matrix_rows=matrix_rows).validate()
    except ValueError as exc:
        raise StationFileError(f"{config.source}: the simulator cannot be cabled so: {exc}"
                               ) from None


def _reference_cabling(config: StationConfig, rows: dict[Channel, str]
                       ) -> tuple[float | None, tuple[str, ...]]:
    """(Ohm, switch channels) of the station's reference resistor in the simulator."""
    ref = config.reference
    if ref is None:
        return None, ()
    for smu, name in sorted(ref.channels.items()):
        if name != f"1{rows[smu]}00":
            raise StationFileError(
                f"{config.source}: [reference.channels] {smu}: {name!r} does not exist on the "
                f"simulated matrix; it reaches the reference on column 00 of the SMU's row: "
                f"1{rows[smu]}00"
            )
    return ref.ohms, tuple(sorted(ref.channels.values()))
