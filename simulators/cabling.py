"""How the simulated bench is cabled: SMU outputs to matrix rows, ADC inputs, trigger link.

The switch matrix has two rows (buses), "A" and "B", unless the cabling's ``matrix_rows``
names more of the card's rows A to H (:data:`MATRIX_ROWS`): channel ``1Akk`` connects row A
to device A of pair kk, ``1Bkk`` row B to device B of pair kk, and in general the rows come
in couples, A/B, C/D, E/F, G/H, the first of each reaching the pairs' devices A, the
second their devices B (``1Ckk``: row C to device A of pair kk). Every couple reaches every
pair, so that two pairs can be connected at once on two couples of rows, each couple driven
by its own SMU channels and read by its own ADC input. A :class:`Cabling` says which
SMU channel drives which row (:class:`SmuCable`), which rows each differential input of the
ADC board reads (:class:`AdcInputCable`) and which trigger-link output line of which
instrument reaches which input line of which other instrument (:class:`TriggerCable`). The
simulated world delivers a trigger pulse only along these cables, and its rows, ADC inputs
and instruments are named by them. Units: V for row voltages; lines are pin numbers.

:data:`DEFAULT_CABLING` is the built-in bench of docs/wire-protocols.md;
:func:`two_smu_cabling` builds the usual two-SMU variants of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: The rows (buses) of the switch matrix by default.
ROWS = ("A", "B")
#: Every row a simulated matrix card can have; even positions (A, C, E, G) reach devices A.
MATRIX_ROWS = ("A", "B", "C", "D", "E", "F", "G", "H")
#: The ADC board's differential inputs.
ADC_INPUTS = (1, 2)
#: Trigger-link lines of a Keithley 2400 (``:TRIG:OLIN`` / ``:TRIG:ILIN`` take 1 to 4).
TRIGGER_LINES = (1, 2, 3, 4)
#: The ADC board's single trigger input.
ADC_TRIGGER_LINE = 1
#: Switch channels that can connect a row to its reference resistor (matrix column 00).
REFERENCE_CHANNELS = tuple(f"1{row}00" for row in ROWS)


def row_device(row: str) -> int:
    """The device a matrix row reaches: 0 (device A) for A, C, E, G; 1 (B) for B, D, F, H."""
    return MATRIX_ROWS.index(row) % 2


@dataclass(frozen=True)
class SmuCable:
    """The output (HI terminal) of SMU ``instrument``'s channel ``channel`` is cabled to
    matrix row ``row`` ("A" or "B"); LO is the common ground. The row then carries the
    channel's source current (A) and sits at its terminal voltage (V)."""

    instrument: str
    channel: str = "1"
    row: str = "A"


@dataclass(frozen=True)
class AdcInputCable:
    """Differential input ``input`` of the ADC board reads V(``plus_row``) - V(``minus_row``)
    (V). ``plus_row`` and ``minus_row`` both None: an open input, which reads only the
    board's noise around 0 V."""

    input: int
    plus_row: str | None
    minus_row: str | None

    @property
    def is_open(self) -> bool:
        """True for an input with nothing cabled to it."""
        return self.plus_row is None and self.minus_row is None


@dataclass(frozen=True)
class TriggerCable:
    """A trigger-link cable from output line ``out_line`` of instrument ``source`` to input
    line ``in_line`` of instrument ``target``: every pulse the source puts on ``out_line``
    arrives on the target's ``in_line`` (and nowhere else)."""

    source: str
    out_line: int
    target: str
    in_line: int


@dataclass(frozen=True)
class Cabling:
    """The whole cabling of a simulated bench, and the names of its instruments.

    smus: one :class:`SmuCable` per SMU (its instrument name, channel and row); adc,
    switch, prober: the instrument names of the ADC board, switch matrix and prober;
    adc_inputs: the ADC board's input cables (an input without one is open); triggers: the
    trigger-link cables; reference_load_ohm, reference_channels: a calibration resistor on
    the rows (see those fields). Lists are stored as tuples. :meth:`validate` checks it all.
    """

    smus: tuple[SmuCable, ...]
    adc: str = "adc"
    switch: str = "switch"
    prober: str = "prober"
    adc_inputs: tuple[AdcInputCable, ...] = (
        AdcInputCable(1, "B", "A"),
        AdcInputCable(2, None, None),
    )
    triggers: tuple[TriggerCable, ...] = ()
    #: A bench's calibration resistor (Ohm) from a row to ground, one per row; None: none.
    reference_load_ohm: float | None = None
    #: Switch channels of matrix column 00 that connect a row to its reference resistor
    #: (``1A00``: row A). Empty with a ``reference_load_ohm``: the resistor is hard-wired to
    #: every SMU row in place of the switch matrix (the matrix then reaches no device).
    reference_channels: tuple[str, ...] = ()
    #: The rows the matrix card has: whole couples from A/B on (A, B or A, B, C, D, ...).
    matrix_rows: tuple[str, ...] = ROWS

    def __post_init__(self) -> None:
        for name in ("smus", "adc_inputs", "triggers", "reference_channels", "matrix_rows"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    # -- look-ups ----------------------------------------------------------------------
    @property
    def smu_names(self) -> tuple[str, ...]:
        """Instrument names of the SMUs, in cabling order (a two-channel SMU, with one
        cable per channel, once)."""
        return tuple(dict.fromkeys(c.instrument for c in self.smus))

    @property
    def instruments(self) -> tuple[str, ...]:
        """Every instrument name: the SMUs in cabling order, then ADC, switch, prober."""
        return (*self.smu_names, self.adc, self.switch, self.prober)

    def smu(self, instrument: str) -> SmuCable:
        """The cable of SMU ``instrument``; KeyError if there is none."""
        for cable in self.smus:
            if cable.instrument == instrument:
                return cable
        raise KeyError(f"no SMU {instrument!r} in the cabling")

    def smu_on_row(self, row: str) -> SmuCable | None:
        """The cable of the SMU that drives ``row``, or None if the row is not driven."""
        for cable in self.smus:
            if cable.row == row:
                return cable
        return None

    def adc_input(self, number: int) -> AdcInputCable:
        """The cable of ADC input ``number`` (an open one if nothing is cabled to it)."""
        for cable in self.adc_inputs:
            if cable.input == number:
                return cable
        return AdcInputCable(number, None, None)

    def trigger_targets(self, source: str, out_line: int) -> tuple[tuple[str, int], ...]:
        """(target, in_line) of every cable from ``source``'s ``out_line``, in cable order,
        without repeats (empty: a pulse there reaches nobody)."""
        out: dict[tuple[str, int], None] = {}
        for cable in self.triggers:
            if cable.source == source and cable.out_line == out_line:
                out[(cable.target, cable.in_line)] = None
        return tuple(out)

    # -- checks ------------------------------------------------------------------------
    def validate(self) -> Cabling:
        """Check the cabling; returns it. Raises ValueError naming the problem: a bad or
        repeated instrument name, an SMU on a row other than A/B, two SMU channels on one
        row, an ADC input that does not exist or is cabled twice or half-open, a trigger
        cable to or from an unknown instrument or one without a trigger link, a bad line.
        """
        names = self.instruments
        for name in names:
            if not isinstance(name, str) or not name or name != name.strip():
                raise ValueError(f"cabling: bad instrument name {name!r}")
        for name in dict.fromkeys(names):
            if names.count(name) > 1:
                raise ValueError(f"cabling: instrument name {name!r} is used more than once")
        if f"{self.adc}_socket" in names:
            raise ValueError(
                f"cabling: instrument name {self.adc + '_socket'!r} is taken by the "
                f"ADC board {self.adc!r}'s socket endpoint"
            )
        if not self.smus:
            raise ValueError("cabling: no SMU is cabled")
        n_rows = len(self.matrix_rows)
        if (n_rows < 2 or n_rows % 2 or n_rows > len(MATRIX_ROWS)
                or self.matrix_rows != MATRIX_ROWS[:n_rows]):
            raise ValueError(f"cabling: matrix rows {self.matrix_rows!r} are not whole couples "
                             "of rows from A/B on (A, B or A, B, C, D, ... up to H)")
        rows_text = _rows_text(self.matrix_rows)
        rows: dict[str, str] = {}
        for cable in self.smus:
            if not isinstance(cable.channel, str) or not cable.channel:
                raise ValueError(f"cabling: SMU {cable.instrument!r} has a bad channel "
                                 f"{cable.channel!r}")
            if cable.row not in self.matrix_rows:
                raise ValueError(f"cabling: SMU {cable.instrument!r} is cabled to row "
                                 f"{cable.row!r}; the rows are {rows_text}")
            if cable.row in rows:
                raise ValueError(f"cabling: two SMU channels on row {cable.row}: "
                                 f"{rows[cable.row]} and {cable.instrument} channel "
                                 f"{cable.channel}")
            if f"{cable.instrument} channel {cable.channel}" in rows.values():
                raise ValueError(f"cabling: {cable.instrument} channel {cable.channel} is "
                                 "cabled twice")
            rows[cable.row] = f"{cable.instrument} channel {cable.channel}"
        seen_inputs: set[int] = set()
        for cable in self.adc_inputs:
            if cable.input not in ADC_INPUTS:
                raise ValueError(f"cabling: the ADC board has no input {cable.input!r} "
                                 f"(inputs {', '.join(map(str, ADC_INPUTS))})")
            if cable.input in seen_inputs:
                raise ValueError(f"cabling: ADC input {cable.input} is cabled twice")
            seen_inputs.add(cable.input)
            if cable.is_open:
                continue
            for end in (cable.plus_row, cable.minus_row):
                if end is None:
                    raise ValueError(f"cabling: ADC input {cable.input} is half open "
                                     "(give both rows, or neither)")
                if end not in self.matrix_rows:
                    raise ValueError(f"cabling: ADC input {cable.input} reads row {end!r}; "
                                     f"the rows are {rows_text}")
            if cable.plus_row == cable.minus_row:
                raise ValueError(f"cabling: ADC input {cable.input} reads row "
                                 f"{cable.plus_row} against itself")
        smus = set(self.smu_names)
        seen_triggers: set[TriggerCable] = set()
        for cable in self.triggers:
            where = (f"trigger cable {cable.source}:{cable.out_line} -> "
                     f"{cable.target}:{cable.in_line}")
            for role, name in (("source", cable.source), ("target", cable.target)):
                if name not in names:
                    raise ValueError(f"cabling: {where}: unknown instrument {name!r}")
                if name in (self.switch, self.prober):
                    raise ValueError(f"cabling: {where}: {name!r} has no trigger link")
                if role == "source" and name not in smus:
                    raise ValueError(f"cabling: {where}: {name!r} has no trigger output")
            if cable.source == cable.target:
                raise ValueError(f"cabling: {where}: an instrument cabled to itself")
            if cable.out_line not in TRIGGER_LINES:
                raise ValueError(f"cabling: {where}: no output line {cable.out_line!r} "
                                 "(lines 1 to 4)")
            if cable.target == self.adc:
                if cable.in_line != ADC_TRIGGER_LINE:
                    raise ValueError(f"cabling: {where}: the ADC board has one trigger "
                                     f"input, line {ADC_TRIGGER_LINE}")
            elif cable.in_line not in TRIGGER_LINES:
                raise ValueError(f"cabling: {where}: no input line {cable.in_line!r} "
                                 "(lines 1 to 4)")
            if cable in seen_triggers:
                raise ValueError(f"cabling: {where} is given twice")
            seen_triggers.add(cable)
        _check_reference(self.reference_load_ohm, self.reference_channels, self.matrix_rows)
        return self


def _rows_text(rows: tuple[str, ...]) -> str:
    """"A and B", "A, B, C and D", ..."""
    return " and ".join([", ".join(rows[:-1]), rows[-1]])


def _check_reference(ohms: float | None, channels: tuple[str, ...],
                     rows: tuple[str, ...] = ROWS) -> None:
    """A reference resistor's value (finite, > 0 Ohm) and its column-00 switch channels."""
    if ohms is None:
        if channels:
            raise ValueError("cabling: reference channels without a reference_load_ohm")
        return
    if isinstance(ohms, bool) or not isinstance(ohms, (int, float)) or not 0 < ohms < float("inf"):
        raise ValueError(f"cabling: reference_load_ohm must be a positive number of Ohm, "
                         f"got {ohms!r}")
    allowed = [f"1{row}00" for row in rows]
    for name in channels:
        if name not in allowed:
            raise ValueError(f"cabling: reference channel {name!r} is not one of "
                             f"{', '.join(allowed)} (matrix column 00)")
        if channels.count(name) > 1:
            raise ValueError(f"cabling: reference channel {name} is given twice")


def _parse_difference(number: int, spec: str | tuple[str, str] | None) -> AdcInputCable:
    """An ADC input cable from "B-A" (reads V(B) - V(A)), ("B", "A"), or None (open)."""
    if spec is None:
        return AdcInputCable(number, None, None)
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split("-")]
        if len(parts) != 2:
            raise ValueError(f"cabling: ADC input {number}: {spec!r} is not a difference "
                             "like 'B-A'")
        return AdcInputCable(number, parts[0], parts[1])
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(f"cabling: ADC input {number}: {spec!r} is not a difference "
                         "like 'B-A' or ('B', 'A')")
    return AdcInputCable(number, spec[0], spec[1])


def two_smu_cabling(
    rows: Mapping[str, str] | None = None,
    *,
    master: str | None = None,
    adc_inputs: Mapping[int, str | tuple[str, str] | None] | None = None,
    line: int = 1,
    adc: str = "adc",
    switch: str = "switch",
    prober: str = "prober",
) -> Cabling:
    """The usual bench of two SMUs (channel 1 each), validated.

    rows: SMU instrument name -> the row it drives, in the order the SMUs are served
    (default ``{"smu_a": "A", "smu_b": "B"}``); master: the SMU whose trigger-link output
    ``line`` fans out to the other SMU's input ``line`` and to the ADC board's trigger
    input (default: the SMU on row A); adc_inputs: ADC input -> what it reads, as "B-A"
    (V(B) - V(A), in V), a (plus_row, minus_row) pair or None; inputs not named are open
    (default ``{1: "B-A"}``). For example ``two_smu_cabling({"left": "B", "right": "A"},
    master="right", adc_inputs={2: "A-B"})``.
    """
    rows = {"smu_a": "A", "smu_b": "B"} if rows is None else dict(rows)
    if len(rows) != 2:
        raise ValueError(f"cabling: a two-SMU bench needs two SMUs, got {len(rows)}")
    smus = tuple(SmuCable(name, "1", row) for name, row in rows.items())
    if master is None:
        on_a = [name for name, row in rows.items() if row == "A"]
        master = on_a[0] if on_a else next(iter(rows))
    if master not in rows:
        raise ValueError(f"cabling: trigger master {master!r} is not one of the SMUs "
                         f"({', '.join(rows)})")
    (slave,) = (name for name in rows if name != master)
    specs = {1: "B-A"} if adc_inputs is None else dict(adc_inputs)
    numbers = sorted(set(ADC_INPUTS) | set(specs))
    inputs: Iterable[AdcInputCable] = (_parse_difference(n, specs.get(n)) for n in numbers)
    return Cabling(
        smus=smus,
        adc=adc,
        switch=switch,
        prober=prober,
        adc_inputs=tuple(inputs),
        triggers=(
            TriggerCable(master, line, slave, line),
            TriggerCable(master, line, adc, ADC_TRIGGER_LINE),
        ),
    ).validate()


#: The built-in bench (docs/wire-protocols.md): smu_a channel 1 on row A, smu_b channel 1
#: on row B, ADC input 1 reads V(B) - V(A), input 2 open, and SMU A's trigger-link output
#: line 1 fans out to SMU B's input line 1 and to the ADC board's trigger input.
DEFAULT_CABLING = Cabling(
    smus=(SmuCable("smu_a", "1", "A"), SmuCable("smu_b", "1", "B")),
    adc="adc",
    switch="switch",
    prober="prober",
    adc_inputs=(AdcInputCable(1, "B", "A"), AdcInputCable(2, None, None)),
    triggers=(
        TriggerCable("smu_a", 1, "smu_b", 1),
        TriggerCable("smu_a", 1, "adc", ADC_TRIGGER_LINE),
    ),
).validate()
