"""Simulated stations only: a sweep runs cells in parallel and never drives real hardware.

A cell's station file must have a ``[simulation]`` table and leave every instrument's
``resource`` out (then the simulator serves it); a resource string, even in a simulated
station, may reach a real instrument (or one served bench shared by all cells), so it is
refused. No station file is the built-in simulated station. Each cell starts its own
simulated bench (on ephemeral ports), so cells never share one.
"""

from __future__ import annotations

from labctl.sweep.cells import Cell
from labctl.sweep.options import GridError


def check_stations(cells: list[Cell], source: str) -> None:
    """Refuse the sweep (GridError naming the file) if any cell's station is not purely
    simulated."""
    from labctl.station.file import StationFileError, load_station

    checked: set[str] = set()
    for cell in cells:
        path = cell.config["options"].get("station")
        if not path or path in checked:
            continue
        checked.add(path)
        try:
            config = load_station(path)
        except StationFileError as exc:
            raise GridError(f"{source}: --station: {exc}") from None
        if config.simulation is None:
            raise GridError(
                f"{source}: --station {path}: a station with real instruments (no "
                "[simulation] table); a sweep runs simulated stations only, never hardware "
                "in parallel"
            )
        real = [f"{i.name} at {i.resource}" for i in config.instruments.values() if i.resource]
        if real:
            raise GridError(
                f"{source}: --station {path}: names instrument resources ({', '.join(real)}); "
                "a sweep runs only stations the simulator serves itself (leave resource out)"
            )
