"""Simulated wafer prober: the MPI SENTIO-style remote-command subset of docs/wire-protocols.md.

A state machine over the chuck's z state (contact / separation) and the die under the
probes; it refuses any xy move while in contact. Dies are ``world.dies`` keys
(column, row), 1-based; the wafer map is walked row by row (``map:path:get_die <seq>``,
seq 0-based in that order, and ``map:get_num_dies`` tell a client the whole map). Units:
s, um.
"""

from __future__ import annotations

import threading

from simulators.world import StationWorld

DIE_PITCH_UM = 5000.0
Z_MOVE_S = 0.2  # chuck travel between separation and contact, either way
XY_STEP_S = 0.1  # stepping to another die (separated)

OK = 0
ERR_UNKNOWN_COMMAND = 2
ERR_END_OF_MAP = 2
ERR_UNKNOWN_DIE = 3
ERR_IN_CONTACT = 5


class SimProber:
    """The prober's line protocol acting on a :class:`StationWorld`."""

    def __init__(self, world: StationWorld, *, serial: str = "SN0001"):
        self.world = world
        self.serial = serial
        # Serialises prober commands while a move spends clock time outside world.lock.
        self._lock = threading.Lock()

    @property
    def die_order(self) -> list[tuple[int, int]]:
        """Every die (col, row) in row-major order: row 1 left to right, then row 2, ..."""
        return sorted(self.world.dies, key=lambda die: (die[1], die[0]))

    def handle(self, line: str) -> str | None:
        """Execute one command; returns ``<errcode>,<async id>,<text>`` (bare for ``*IDN?``)."""
        text = line.strip()
        if not text:
            return None
        command, *rest = text.split(None, 1)
        command, arg = command.lower(), (rest[0].strip() if rest else "")
        if command == "*idn?":
            return f"MPI Corporation,SENTIO (labctl sim),{self.serial},24.0"
        with self._lock:
            code, reply = self._execute(command, arg)
        return f"{code},0,{reply}"

    def _execute(self, command: str, arg: str) -> tuple[int, str]:
        world = self.world
        if command == "move_chuck_contact" and not arg:
            return self._move_z(True)
        if command == "move_chuck_separation" and not arg:
            return self._move_z(False)
        if command == "get_chuck_z_state" and not arg:
            return OK, "contact" if world.in_contact else "separation"
        if command == "map:die:get_current_index" and not arg:
            return OK, _die_text(world.die)
        if command == "get_chuck_xy" and not arg:
            col, row = world.die
            return OK, f"{(col - 1) * DIE_PITCH_UM:.1f},{(row - 1) * DIE_PITCH_UM:.1f}"
        if command == "map:step_die":
            die = _parse_die(arg)
            if die is None or die not in world.dies:
                return ERR_UNKNOWN_DIE, f"unknown die {arg!r}"
            return self._step(die)
        if command == "map:get_num_dies" and arg.lower() in ("", "present", "selected"):
            # Every die of the simulated map is present and selected for test.
            return OK, str(len(world.dies))
        if command == "map:path:get_die":
            order = self.die_order
            try:
                seq = int(arg)
            except ValueError:
                seq = -1
            if not 0 <= seq < len(order):
                return ERR_UNKNOWN_DIE, f"no die with sequence number {arg!r}"
            return OK, _die_text(order[seq])
        if command == "map:step_next_die" and not arg:
            order = self.die_order
            index = order.index(world.die) + 1
            if index >= len(order):
                return ERR_END_OF_MAP, "end of wafer map: no next die"
            return self._step(order[index])
        return ERR_UNKNOWN_COMMAND, f"unknown command {f'{command} {arg}'.strip()!r}"

    def _move_z(self, contact: bool) -> tuple[int, str]:
        if self.world.in_contact != contact:
            self.world.clock.spend(Z_MOVE_S)
            self.world.set_contact(contact)
        return OK, ""

    def _step(self, die: tuple[int, int]) -> tuple[int, str]:
        with self.world.lock:
            if self.world.in_contact:
                return ERR_IN_CONTACT, "chuck is in contact; separate first"
        if die != self.world.die:
            self.world.clock.spend(XY_STEP_S)
            try:
                self.world.set_die(die)
            except RuntimeError:  # something outside the prober brought the chuck up
                return ERR_IN_CONTACT, "chuck is in contact; separate first"
        return OK, _die_text(die)


def _die_text(die: tuple[int, int]) -> str:
    return f"{die[0]},{die[1]}"


def _parse_die(arg: str) -> tuple[int, int] | None:
    parts = [p.strip() for p in arg.split(",")]
    if len(parts) != 2:
        return None
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return None
