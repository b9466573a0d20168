"""The fields of Bluesky documents that its consumers rely on, beyond event-model's schemas.

The schemas require little; the tools a Bluesky user already has (databroker and Tiled,
bluesky's ``LiveTable``, ``BestEffortCallback`` and ``TiledWriter``) also read, in the start
document, ``scan_id``, ``plan_type``, ``plan_name``, ``plan_args`` and ``hints``
(``dimensions``: what the primary stream is plotted against), and in each descriptor
``object_keys`` (which data keys each device made), ``configuration`` (each device's
settings, with their own data keys), ``hints`` (the fields worth plotting) and concrete
``shape`` s (a ``None`` dimension defeats databroker's array reading). The session writer
(:class:`labctl.records.session.SessionWriter`) is the one place that writes documents; it
calls these functions to fill those fields in.

A data key's ``source`` names the part that made the value: an instrument of the station
(``smu_a``) or a part of labctl (``labctl.training.iris``). Its object name is the source
with ``.`` and ``/`` replaced (event-model refuses those in the keys of extra fields).
An object that is an instrument of the station gets its settings from the instrument
snapshot of the start document as its configuration.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

PLAN_TYPE = "generator"  # what a RunEngine records for a plan written as a generator


def object_name(source: str) -> str:
    """The device name Bluesky groups a data key under (see the module docstring)."""
    return source.replace(".", "_").replace("/", "_") or "labctl"


def next_scan_id(root: Path) -> int:
    """A scan id for a new session under ``root``: one more than the sessions there."""
    try:
        return 1 + sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return 1


def start_fields(config: dict, instruments: dict, scan_id: int,
                 dimension: str | None) -> dict:
    """``scan_id``, ``plan_type``, ``plan_args`` (the command's settings), ``detectors``
    (the station's instruments) and ``hints`` (the primary stream's dimension, if any)."""
    fields = {"scan_id": scan_id, "plan_type": PLAN_TYPE,
              "plan_args": dict(config.get("settings", {})),
              "detectors": sorted(instruments), "hints": {}}
    if dimension:
        fields["hints"] = {"dimensions": [[[dimension], "primary"]]}
    return fields


def _scalar_key(value: Any, source: str) -> dict:
    if isinstance(value, bool):
        dtype, numpy_dtype = "boolean", "|b1"
    elif isinstance(value, int):
        dtype, numpy_dtype = "integer", "<i8"
    elif isinstance(value, float):
        dtype, numpy_dtype = "number", "<f8"
    elif isinstance(value, list | tuple):
        return {"dtype": "array", "shape": list(np.shape(value)), "source": source}
    else:
        return {"dtype": "string", "shape": [], "source": source}
    return {"dtype": dtype, "dtype_numpy": numpy_dtype, "shape": [], "source": source}


def _configuration(name: str, instruments: dict, now: float) -> dict:
    """The configuration of object ``name``: its instrument's settings, else nothing."""
    settings = (instruments.get(name) or {}).get("settings") or {}
    data = {f"{name}_{key}": value for key, value in settings.items()
            if value is None or isinstance(value, bool | int | float | str | list | tuple)}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    return {"data": data, "timestamps": dict.fromkeys(data, now),
            "data_keys": {k: _scalar_key(v, name) for k, v in data.items()}}


def descriptor_fields(data_keys: dict[str, dict], instruments: dict,
                      dimension: str | None = None) -> dict:
    """``object_keys``, ``configuration`` and ``hints`` of a descriptor with ``data_keys``
    (each key also gets its ``object_name``). Hinted: every scalar number, integer or
    boolean but the dimension."""
    objects: dict[str, list[str]] = {}
    for key, spec in data_keys.items():
        obj = object_name(spec["source"])
        spec["object_name"] = obj
        objects.setdefault(obj, []).append(key)
    now = time.time()
    hints = {}
    for obj, keys in objects.items():
        fields = [k for k in keys if k != dimension and not data_keys[k]["shape"]
                  and data_keys[k]["dtype"] in ("number", "integer")]
        hints[obj] = {"fields": fields}
    return {"object_keys": objects,
            "configuration": {obj: _configuration(obj, instruments, now) for obj in objects},
            "hints": hints}


def has_open_shape(data_keys: dict[str, dict]) -> bool:
    """True when some data key's shape has a ``None`` dimension still to be filled in."""
    return any(d is None for spec in data_keys.values() for d in spec["shape"])


def fill_shapes(data_keys: dict[str, dict], shapes: dict[str, tuple[int, ...]],
                dtypes: dict[str, str]) -> None:
    """Replace the declared ``None`` dimensions by those of the first event's values
    (``shapes``, ``dtypes``: numpy shape and dtype string per array key), in place."""
    for key, spec in data_keys.items():
        if key not in shapes:
            continue
        declared, actual = spec["shape"], shapes[key]
        if len(declared) != len(actual) or any(
                d is not None and d != a for d, a in zip(declared, actual, strict=True)):
            raise ValueError(f"data key {key!r}: value of shape {list(actual)} does not fit "
                             f"the declared shape {declared}")
        spec["shape"] = list(actual)
        spec["dtype_numpy"] = dtypes[key]


def check_shapes(stream: str, data_keys: dict[str, dict],
                 shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse an event whose array values differ in shape from the stream's descriptor (a
    descriptor declares one shape for all its events)."""
    for key, actual in shapes.items():
        declared = data_keys[key]["shape"]
        if None not in declared and list(actual) != declared:
            raise ValueError(f"stream {stream!r}, data key {key!r}: value of shape "
                             f"{list(actual)} differs from the declared shape {declared}")
