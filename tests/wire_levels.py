"""Checks on the source levels a session's wire logs show (shared by the safety tests)."""

import re

import numpy as np

from instruments.transport import WireLog

_LEVEL = re.compile(
    r":?SOUR(?:CE)?:CURR(?:ENT)?(?::LEV(?:EL)?)?(?::IMM(?:EDIATE)?)?(?::AMPL(?:ITUDE)?)?"
    r"\s+(\S+)",
    re.IGNORECASE,
)
_LIST = re.compile(r":?SOUR(?:CE)?:LIST:CURR(?:ENT)?(?::APP(?:END)?)?\s+(.+)", re.IGNORECASE)


def source_levels(entries: list[dict]) -> list[float]:
    """Every current level written to an SMU (fixed levels and list points), in order."""
    levels: list[float] = []
    for entry in entries:
        for command in entry.get("w", "").split(";"):
            command = command.strip()
            if m := _LIST.fullmatch(command):
                levels.extend(float(v) for v in m.group(1).split(","))
            elif m := _LEVEL.fullmatch(command):
                levels.append(float(m.group(1)))
    return levels


def wire_entries(station, name: str) -> list[dict]:
    """The wire log of instrument ``name`` as written so far (logs attached to a file)."""
    log = station.wire_logs[name]
    assert log.path is not None, "attach the wire logs first"
    log.flush()
    return WireLog.load(log.path)


def assert_ramped(levels: list[float], max_current_a: float, ramp_step_a: float) -> None:
    """Levels start at 0 A, stay within +-max_current_a, end at 0 A, and no step (from
    the output's 0 A before the first one) exceeds ramp_step_a."""
    assert levels, "no source level was ever sent"
    assert levels[0] == 0.0 and levels[-1] == 0.0, (levels[:3], levels[-3:])
    lv = np.array([0.0, *levels])
    assert np.max(np.abs(lv)) <= max_current_a * (1 + 1e-9), np.max(np.abs(lv))
    steps = np.abs(np.diff(lv))
    # %g / %.9g formatting on the wire rounds levels by < 1e-10 A.
    assert steps.max() <= ramp_step_a + 1e-10, (steps.max(), int(np.argmax(steps)))
