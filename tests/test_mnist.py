"""The MNIST IDX reader (labctl.training.mnist_data) and the `simulate mnist` command."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labctl.training.mnist_data import (
    FILES,
    ChecksumError,
    IDXError,
    flatten,
    load_mnist,
    parse_idx,
    read_idx,
    verify_checksum,
    write_idx,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def shared_dir() -> Path:
    if not SHARED_MNIST.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_MNIST} is missing on CI")
        pytest.skip(f"{SHARED_MNIST} not present")
    return SHARED_MNIST


def test_shared_mnist_reads_and_verifies(shared_dir):
    for stem in FILES.values():
        assert verify_checksum(shared_dir / f"{stem}.gz")
    data = load_mnist(shared_dir)
    assert data.train_images.shape == (60000, 28, 28)
    assert data.test_images.shape == (10000, 28, 28)
    assert data.train_images.dtype == np.uint8
    assert np.bincount(data.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(data.test_labels, minlength=10).tolist() == TEST_COUNTS
    assert data.train_images.max() == 255 and data.train_images.min() == 0
    x = flatten(data.test_images[:5])
    assert x.shape == (5, 784) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1


def write_sums(directory: Path, names: list[str], sums_name: str) -> None:
    lines = [f"{hashlib.sha256((directory / n).read_bytes()).hexdigest()}  {n}" for n in names]
    (directory / sums_name).write_text("\n".join(lines) + "\n")


def small_mnist(directory: Path, *, gz: bool, n_train=30, n_test=12, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    names = []
    for key, stem in FILES.items():
        name = f"{stem}.gz" if gz else stem
        write_idx(directory / name, arrays[key])
        names.append(name)
    write_sums(directory, names, "SHA256SUMS" if gz else "SHA256SUMS.raw")
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_small_files_round_trip(tmp_path, gz):
    arrays = small_mnist(tmp_path, gz=gz)
    data = load_mnist(tmp_path)
    for key, arr in arrays.items():
        np.testing.assert_array_equal(getattr(data, key), arr)
    name = f"{FILES['train_labels']}{'.gz' if gz else ''}"
    assert verify_checksum(tmp_path / name)


@pytest.mark.parametrize("gz", [True, False])
def test_checksum_mismatch_names_file_and_digests(tmp_path, gz):
    small_mnist(tmp_path, gz=gz)
    name = f"{FILES['test_labels']}{'.gz' if gz else ''}"
    sums_name = "SHA256SUMS" if gz else "SHA256SUMS.raw"
    sums = (tmp_path / sums_name).read_text()
    expected = "0" * 64
    lines = [f"{expected}  {name}" if line.endswith(name) else line
             for line in sums.splitlines()]
    (tmp_path / sums_name).write_text("\n".join(lines) + "\n")
    actual = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    with pytest.raises(ChecksumError) as err:
        load_mnist(tmp_path)
    message = str(err.value)
    assert name in message and expected in message and actual in message
    # Without verification the (intact) file still reads.
    assert len(load_mnist(tmp_path, verify=False).test_labels) == 12


def test_corrupted_file_fails_its_checksum(tmp_path):
    small_mnist(tmp_path, gz=False)
    path = tmp_path / FILES["train_images"]
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=FILES["train_images"]):
        load_mnist(tmp_path)


def test_file_missing_from_the_sums_list(tmp_path):
    small_mnist(tmp_path, gz=True)
    (tmp_path / "SHA256SUMS").write_text("")
    with pytest.raises(ChecksumError, match="not listed"):
        load_mnist(tmp_path)


def test_no_sums_file_means_no_check(tmp_path):
    small_mnist(tmp_path, gz=True)
    (tmp_path / "SHA256SUMS").unlink()
    assert not verify_checksum(tmp_path / f"{FILES['train_images']}.gz")
    assert len(load_mnist(tmp_path).train_labels) == 30


def test_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03")
    with pytest.raises(IDXError, match="bad-idx1-ubyte.*magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03")
    with pytest.raises(IDXError, match="type code 0x07"):
        read_idx(path)


def test_gzip_file_without_gz_name_is_explained(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x05"))
    with pytest.raises(IDXError, match="gzip"):
        read_idx(path)
    broken = tmp_path / "labels-idx1-ubyte.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(IDXError, match="labels-idx1-ubyte.gz.*gzip"):
        read_idx(broken)


def test_size_must_match_the_header(tmp_path):
    header = b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28))
    with pytest.raises(IDXError, match="expected 1584"):
        parse_idx(header + bytes(2 * 784 - 1), "short-file")
    with pytest.raises(IDXError, match="too short"):
        parse_idx(b"\x00\x00", "tiny")
    with pytest.raises(IDXError, match="truncated header"):
        parse_idx(b"\x00\x00\x08\x03\x00\x00", "cut")


def test_other_idx_types_round_trip(tmp_path):
    for dtype in (np.int16, np.int32, np.float32, np.float64, np.int8):
        arr = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
        np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", arr)), arr)


def test_mnist_specific_checks(tmp_path):
    small_mnist(tmp_path, gz=False)
    write_idx(tmp_path / FILES["test_labels"], np.array([1, 2, 12], dtype=np.uint8))
    (tmp_path / "SHA256SUMS.raw").unlink()
    with pytest.raises(IDXError, match="out of range"):
        load_mnist(tmp_path)
    write_idx(tmp_path / FILES["test_labels"], np.array([1, 2, 3], dtype=np.uint8))
    with pytest.raises(IDXError, match="12 images but 3 labels"):
        load_mnist(tmp_path)
    write_idx(tmp_path / FILES["test_images"], np.zeros((3, 28, 27), dtype=np.uint8))
    with pytest.raises(IDXError, match=r"\(n, 28, 28\)"):
        load_mnist(tmp_path)


def test_missing_file_names_both_candidates(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz nor"):
        load_mnist(tmp_path)


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "labctl.commands.simulate_mnist", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_simulate_mnist_smoke(shared_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("--data-dir", str(shared_dir), "--subset", "800", "--epochs", "2",
                   "--widths", "32,32,16,16", "--batch-size", "64", "--distill",
                   "--teacher-widths", "64", "--teacher-epochs", "2", "--json",
                   "--no-progress", "--out", str(out), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary["models"]) == {"teacher", "tanh", "mtj", "mtj_distilled"}
    assert summary["data"] == {"y_train": 720, "y_val": 80, "y_test": 800}
    for model in summary["models"].values():
        assert 0.1 < model["test_acc"] <= 1.0
        assert len(model["history"]["val_acc"]) == 2
    assert summary["models"]["mtj"]["widths"] == [32, 32, 16, 16]
    assert summary["epoch_time_ratio_mtj_over_tanh"] > 0
    assert "distillation_gain" in summary
    assert len(set(summary["device_seeds"])) == 4
    text = (out / "results.md").read_text()
    assert "| mtj (mtj fd-swap)" in text and "epoch time" in text
    for png in ("learning_curves.png", "neurons.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_mnist_reports_missing_data(tmp_path):
    proc = run_cli("--data-dir", str(tmp_path / "nowhere"), "--subset", "10", "--no-progress")
    assert proc.returncode == 2
    assert "nowhere" in proc.stderr and "Traceback" not in proc.stderr


def test_shift_images_moves_pixels_and_fills_background():
    from labctl.commands.simulate_mnist import shift_images

    x = np.full((50, 784), -0.5, dtype=np.float32)
    x[:, 14 * 28 + 14] = 3.0  # one bright pixel in the middle
    out = shift_images(x, np.random.default_rng(0), max_shift=2, fill=-0.5)
    assert out.shape == x.shape and out.dtype == np.float32
    rows, cols = np.divmod(out.argmax(axis=1), 28)
    assert np.all(np.abs(rows - 14) <= 2) and np.all(np.abs(cols - 14) <= 2)
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10  # per-image offsets
    assert np.all(np.sort(out, axis=1)[:, :-1] == -0.5)  # the rest is background
    image = np.random.default_rng(2).standard_normal((1, 784)).astype(np.float32)
    moved = shift_images(image, np.random.default_rng(1), max_shift=3, fill=-9.0)
    rng = np.random.default_rng(1)  # the same draws: offsets of the padded window
    dy, dx = int(rng.integers(0, 7, 1)[0]) - 3, int(rng.integers(0, 7, 1)[0]) - 3
    expected = np.full((28 + 6, 28 + 6), -9.0, dtype=np.float32)
    expected[3:31, 3:31] = image.reshape(28, 28)
    np.testing.assert_array_equal(
        moved.reshape(28, 28), expected[3 + dy : 31 + dy, 3 + dx : 31 + dx]
    )
