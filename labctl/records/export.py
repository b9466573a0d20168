"""A session's streams as files other tools open: NetCDF (xarray) or Parquet tables.

One dataset (NetCDF: ``<stream>.nc``) or table (Parquet: ``<stream>.parquet``) per stream,
one row per event along ``time`` (the event's time, s since the epoch), with ``seq_num``,
arrays filled (their files' checksums verified on the way), a column per data key with its
units and its event-model ``dtype`` (NetCDF keeps booleans as 0/1 int8: ``dtype`` says
``boolean``). The session's identity and start metadata go into the attributes (NetCDF) or the
schema metadata (Parquet): ``labctl_session``, ``plan_name``, ``scan_id``, ``uid``,
``stream`` and ``start`` (the whole start document as JSON). Every value written is read
back equal (``tests/test_export.py``).

NetCDF needs the optional extra ``export`` (xarray and h5netcdf); Parquet needs pyarrow,
a base dependency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from labctl.records.session import Session

FORMATS = ("netcdf", "parquet")


class MissingExtra(RuntimeError):
    """An export format whose library is not installed."""


def _columns(session: Session, stream: str) -> tuple[dict[str, np.ndarray], dict]:
    """The stream's data keys as arrays over its events (a leading ``time`` axis), and the
    data keys' descriptions."""
    descriptor = session.descriptors[stream]
    keys = descriptor["data_keys"]
    rows = session.events(stream, fill=True)
    columns = {key: np.array([row[key] for row in rows]) for key in keys}
    for key, spec in keys.items():
        if spec["dtype"] == "string":
            columns[key] = columns[key].astype(str)
    return columns, keys


def _times(session: Session, stream: str) -> tuple[np.ndarray, np.ndarray]:
    """Each event's time (s) and seq_num, in the order :meth:`Session.events` gives."""
    times, seqs = session.event_times(stream)
    return np.asarray(times, dtype=float), np.asarray(seqs, dtype=np.int64)


def _metadata(session: Session, stream: str) -> dict[str, str]:
    start = session.start
    return {"labctl_session": session.path.name, "plan_name": str(start.get("plan_name", "")),
            "scan_id": str(start.get("scan_id", "")), "uid": start["uid"], "stream": stream,
            "start": json.dumps(start, default=str)}


def to_netcdf(session: Session, stream: str, path: Path) -> Path:
    try:
        import xarray as xr
    except ImportError:
        raise MissingExtra("export --to netcdf needs xarray and h5netcdf: "
                           "pip install 'labctl[export]'") from None
    columns, keys = _columns(session, stream)
    times, seqs = _times(session, stream)
    variables: dict[str, Any] = {"seq_num": ("time", seqs)}
    for key, values in columns.items():
        dims = ("time", *(f"{key}_dim_{i}" for i in range(values.ndim - 1)))
        attrs = {k: str(v) for k, v in keys[key].items()
                 if k in ("units", "source", "dtype") and v}
        if values.dtype == bool:  # netCDF has no boolean type: 0/1, the dtype attribute says
            values = values.astype(np.int8)
        variables[key] = (dims, values, attrs)
    ds = xr.Dataset(variables, coords={"time": times}, attrs=_metadata(session, stream))
    try:
        ds.to_netcdf(path, engine="h5netcdf")
    except ValueError as err:
        if "h5netcdf" in str(err):
            raise MissingExtra("export --to netcdf needs h5netcdf: "
                               "pip install 'labctl[export]'") from None
        raise
    return path


def to_parquet(session: Session, stream: str, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns, keys = _columns(session, stream)
    times, seqs = _times(session, stream)
    arrays = {"time": pa.array(times), "seq_num": pa.array(seqs)}
    fields = [pa.field("time", pa.float64(), metadata={"units": "s"}),
              pa.field("seq_num", pa.int64())]
    for key, values in columns.items():
        if values.ndim > 1:  # one fixed-shape tensor per row
            column = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(values))
        else:
            column = pa.array(values)
        arrays[key] = column
        meta = {k: str(v) for k, v in keys[key].items() if k in ("units", "source") and v}
        fields.append(pa.field(key, column.type, metadata=meta or None))
    schema = pa.schema(fields, metadata=_metadata(session, stream))
    pq.write_table(pa.Table.from_arrays(list(arrays.values()), schema=schema), path)
    return path


def export(session: Session, fmt: str, out: Path) -> list[Path]:
    """Every stream of ``session`` into ``out`` as ``fmt``; returns the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    write, suffix = (to_netcdf, "nc") if fmt == "netcdf" else (to_parquet, "parquet")
    return [write(session, stream, out / f"{stream}.{suffix}")
            for stream in session.descriptors if session.events(stream)]
