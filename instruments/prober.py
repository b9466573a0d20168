"""Wafer prober: MPI SENTIO-style remote commands (docs/wire-protocols.md).

Every command answers ``<errcode>,<async id>,<text>``; a non-zero errcode raises
:class:`InstrumentReportedError` carrying the prober's text. Dies are (column, row),
1-based. Every reply is checked against what its command answers
(:meth:`Prober.reply_rule`); :meth:`Prober.configuration` reads the chuck state and die.
Units: um.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymeasure.instruments import Instrument

from instruments import replies
from instruments.transport import (
    GarbledReply,
    InstrumentReportedError,
    LockedInstrumentMixin,
    read_setting,
)

# The text of a successful (errcode 0) reply, per command (lower case).
_TEXT_RULES: dict[str, Callable[[str], str | None]] = {
    "move_chuck_contact": replies.exactly(""),
    "move_chuck_separation": replies.exactly(""),
    "get_chuck_z_state": replies.one_of("CONTACT", "SEPARATION"),
    "map:step_die": replies.fields(replies.integer, replies.integer),
    "map:step_next_die": replies.fields(replies.integer, replies.integer),
    "map:die:get_current_index": replies.fields(replies.integer, replies.integer),
    "get_chuck_xy": replies.fields(replies.number, replies.number),
    "map:get_num_dies": replies.integer,
    "map:path:get_die": replies.fields(replies.integer, replies.integer),
}


def _reply_check(text_rule: Callable[[str], str | None] | None) -> Callable[[str], str | None]:
    def check(reply: str) -> str | None:
        code, sep, rest = reply.strip().partition(",")
        _async_id, sep2, text = rest.partition(",")
        if not (sep and sep2) or replies.integer(code) or replies.integer(_async_id):
            return "expected <errcode>,<async id>,<text>"
        if int(float(code)) != 0 or text_rule is None:
            return None  # an error's text is the prober's own message
        why = text_rule(text)
        return None if why is None else f"text: {why}"

    return check


class Prober(LockedInstrumentMixin, Instrument):
    """The prober; no I/O on construction."""

    capabilities = {"wafer_map": True}

    def __init__(self, adapter, name: str = "prober", **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)

    id = Instrument.measurement("*IDN?", """Get the identification (str).""",
                                cast=str, maxsplit=0)

    def reply_rule(self, command: str) -> Callable[[str], str | None] | None:
        """The check of ``command``'s reply (docs/wire-protocols.md)."""
        words = command.strip().split(None, 1)
        head = words[0].lower() if words else ""
        if head == "*idn?":
            return replies.text
        return _reply_check(_TEXT_RULES.get(head))

    def configuration(self) -> dict[str, Any]:
        """The settings worth recording: chuck state (``contact``/``separation``), die
        [col, row] and chuck position [x, y] (um); ``"unreadable: <why>"`` for one that
        cannot be read."""
        with self.lock:
            return {
                "chuck": read_setting(self, "get_chuck_z_state", self._text),
                "die": read_setting(self, "map:die:get_current_index",
                                    lambda r: list(self._pair(self._text(r), int))),
                "position_um": read_setting(self, "get_chuck_xy",
                                            lambda r: list(self._pair(self._text(r), float))),
            }

    def _text(self, reply: str) -> str:
        code, _, rest = reply.strip().partition(",")
        text = rest.partition(",")[2]
        if int(float(code)) != 0:
            raise InstrumentReportedError(self.name, [(int(float(code)), text)])
        return text

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

    def die_count(self) -> int:
        """How many dies the prober's wafer map holds (selected for test)."""
        text = self.command("map:get_num_dies selected")
        try:
            return int(float(text))
        except ValueError:
            raise GarbledReply(self.name, text, "expected an integer") from None

    def wafer_map(self) -> list[tuple[int, int]]:
        """Every die (col, row) of the prober's map, in its stepping order."""
        return [self._pair(self.command(f"map:path:get_die {seq}"), int)
                for seq in range(self.die_count())]

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
