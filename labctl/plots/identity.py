"""The run's identity, as every plot's title states it: command, session id, station and
preset, derivative source."""

from __future__ import annotations

from pathlib import Path


def run_identity(start: dict, session_dir: Path) -> str:
    """``"<command> · <session id> · <station> (<preset>)[ · grad <g>]"`` from a start
    document: what tells one run's plot from another's."""
    config = start.get("config") if isinstance(start.get("config"), dict) else {}
    parts = [str(start.get("plan_name") or config.get("command") or "session"),
             Path(session_dir).name]
    settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
    station = config.get("station") if isinstance(config.get("station"), dict) else {}
    backend = settings.get("backend")
    if backend == "model":
        where = "device model backend"
        preset = settings.get("variability")
    else:
        where = str(station.get("name") or "station")
        sim = station.get("simulation") if isinstance(station.get("simulation"), dict) else None
        preset = sim.get("variability") if sim else None
        if sim is None:
            where += ", real instruments (no oracle)"
    parts.append(f"{where} ({preset})" if preset else where)
    if settings.get("grad"):
        parts.append(f"grad {settings['grad']}")
    return " · ".join(parts)
