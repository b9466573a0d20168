"""Wafer prober: MPI SENTIO-style remote commands (docs/wire-protocols.md).

Every command answers ``<errcode>,<async id>,<text>``; a non-zero errcode raises
:class:`InstrumentReportedError` carrying the prober's text. Dies are (column, row),
1-based. Units: um.
"""

from __future__ import annotations

from pymeasure.instruments import Instrument

from instruments.transport import GarbledReply, InstrumentReportedError, LockedInstrumentMixin


class Prober(LockedInstrumentMixin, Instrument):
    """The prober; no I/O on construction."""

    capabilities = {"wafer_map": True}

    def __init__(self, adapter, name: str = "prober", **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)

    id = Instrument.measurement("*IDN?", """Get the identification (str).""",
                                cast=str, maxsplit=0)

    def command(self, command: str) -> str:
        """Send a remote command; its reply text, or :class:`InstrumentReportedError`."""
        reply = self.ask(command)
        code_text, sep, rest = reply.strip().partition(",")
        _async_id, sep2, text = rest.partition(",")
        try:
            code = int(code_text)
        except ValueError:
            code, sep = -1, ""
        if not (sep and sep2):
            raise GarbledReply(self.name, reply, "expected <errcode>,<async id>,<text>")
        if code != 0:
            raise InstrumentReportedError(self.name, [(code, text)])
        return text

    def contact(self) -> None:
        """Bring the chuck up to contact."""
        self.command("move_chuck_contact")

    def separate(self) -> None:
        """Lower the chuck to separation (every device disconnected)."""
        self.command("move_chuck_separation")

    def in_contact(self) -> bool:
        """True in contact, False separated."""
        state = self.command("get_chuck_z_state")
        if state not in ("contact", "separation"):
            raise GarbledReply(self.name, state, "expected contact or separation")
        return state == "contact"

    def move_to_die(self, col: int, row: int) -> tuple[int, int]:
        """Step to die (``col``, ``row``) (separate first); returns the die reached."""
        return self._pair(self.command(f"map:step_die {int(col)},{int(row)}"), int)

    def next_die(self) -> tuple[int, int]:
        """Step to the next die in row-major order; errcode 2 past the last die."""
        return self._pair(self.command("map:step_next_die"), int)

    def die(self) -> tuple[int, int]:
        """The die (col, row) under the probes."""
        return self._pair(self.command("map:die:get_current_index"), int)

    def position_um(self) -> tuple[float, float]:
        """The chuck position (x, y) in um."""
        return self._pair(self.command("get_chuck_xy"), float)

    def check_errors_raise(self) -> None:
        """The prober reports errors with each reply; nothing is queued to check."""

    def _pair(self, text: str, cast):
        parts = text.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            return cast(parts[0]), cast(parts[1])
        except ValueError:
            raise GarbledReply(self.name, text, "expected two comma-separated numbers") from None
