"""`labctl export`: every stream of a recorded session as NetCDF and as Parquet, read back
with xarray and pyarrow equal to what the session recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import xarray as xr

from labctl.records.session import Session, SessionWriter

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}


def labctl(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labctl.cli", *map(str, args)], cwd=cwd,
                          env=env or ENV, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> list[Path]:
    """A real iv session, and a written one with every kind of value."""
    root = tmp_path_factory.mktemp("export")
    proc = labctl("iv", "--pair", 3, "--points", 15, "--sessions-dir", root / "s", cwd=root)
    assert proc.returncode == 0, proc.stderr
    with SessionWriter.create(root / "s", "kinds", [], {"settings": {"n": 3}}, {}) as w:
        d = w.descriptor("mixed", {
            "n": {"dtype": "integer", "shape": [], "source": "t"},
            "x": {"dtype": "number", "shape": [], "source": "t", "units": "V"},
            "ok": {"dtype": "boolean", "shape": [], "source": "t"},
            "label": {"dtype": "string", "shape": [], "source": "t"},
            "trace": {"dtype": "array", "shape": [4], "source": "t"},
            "image": {"dtype": "array", "shape": [None, 3], "source": "t",
                      "external": "FILESTORE:"},
        }, primary=True)
        for i in range(3):
            w.event(d, {"n": i, "x": 0.5 * i, "ok": i % 2 == 0, "label": f"row {i}",
                        "trace": [i, i + 1.5, -i, 1e-9], "image": np.arange(6.0).reshape(2, 3) * i})
    return sorted(p for p in (root / "s").iterdir() if p.is_dir())


def recorded(session: Session, stream: str) -> dict[str, np.ndarray]:
    rows = session.events(stream, fill=True)
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("fmt", ["netcdf", "parquet"])
def test_export_round_trips_every_stream(sessions, fmt, tmp_path):
    for path in sessions:
        session = Session(path)
        out = tmp_path / f"{path.name}-{fmt}"
        proc = labctl("export", path, "--to", fmt, "--out", out, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        written = [Path(line) for line in proc.stdout.split()]
        assert {p.stem for p in written} == {s for s in session.descriptors
                                             if session.events(s)}
        for file in written:
            want = recorded(session, file.stem)
            times, seqs = session.event_times(file.stem)
            if fmt == "netcdf":
                with xr.open_dataset(file, engine="h5netcdf") as ds:
                    assert ds.attrs["labctl_session"] == path.name
                    assert json.loads(ds.attrs["start"])["uid"] == session.start["uid"]
                    np.testing.assert_array_equal(ds["time"].values, times)
                    np.testing.assert_array_equal(ds["seq_num"].values, seqs)
                    for key, values in want.items():
                        got = ds[key].values
                        if ds[key].attrs.get("dtype") == "boolean":
                            got = got.astype(bool)
                        assert got.dtype.kind == values.dtype.kind, (file, key)
                        np.testing.assert_array_equal(got, values, err_msg=f"{file} {key}")
            else:
                table = pq.read_table(file)
                meta = table.schema.metadata
                assert meta[b"labctl_session"].decode() == path.name
                np.testing.assert_array_equal(table["seq_num"].to_numpy(), seqs)
                for key, values in want.items():
                    column = table[key].combine_chunks()
                    got = (column.to_numpy_ndarray() if values.ndim > 1
                           else np.array(column.to_pylist()))
                    np.testing.assert_array_equal(got, values, err_msg=f"{file} {key}")


def test_export_says_which_extra_is_missing(sessions, tmp_path):
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "xarray.py").write_text("raise ImportError('not installed here')\n")
    env = {**ENV, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"}
    proc = labctl("export", sessions[0], "--to", "netcdf", "--out", tmp_path / "o", cwd=tmp_path,
                  env=env)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'labctl[export]'" in proc.stderr, proc.stderr
    bad = labctl("export", sessions[0], "--to", "hdf4", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'hdf4'" in bad.stderr
