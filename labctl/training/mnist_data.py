"""MNIST in the IDX format: a checked reader.

The four canonical files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``) are read from a directory the
caller names, gzip-compressed (``.gz``) or raw. If the directory holds ``SHA256SUMS``
(checksums of the ``.gz`` files) or ``SHA256SUMS.raw`` (of the raw files), the file read is
verified against it first. Every failure names the file at fault.

The IDX layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions, then one big-endian uint32 per
dimension and the data, big-endian, C order.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = Path("../shared/datasets/mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Native-byte-order dtype -> IDX type code, for writing.
IDX_CODES = {v.newbyteorder("="): k for k, v in IDX_TYPES.items()}


class IDXError(ValueError):
    """A file is not a valid IDX file (or not the one expected)."""


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the one its directory lists."""


@dataclass
class MNIST:
    """The four arrays: images uint8 (n, 28, 28), labels uint8 (n,) with digits 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def read_checksums(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum``-style file: ``<hex>  <name>`` or ``<hex> *<name>`` per line."""
    sums: dict[str, str] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ChecksumError(f"{path}: line {lineno} is not '<sha256>  <name>': {line!r}")
        sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes as stored."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: Path) -> bool:
    """Check ``path`` against its directory's SHA256SUMS (``.gz``) or SHA256SUMS.raw (raw).

    Returns False if there is no such list; raises :class:`ChecksumError` naming the file,
    the expected and the actual digest on a mismatch, or if the list lacks the file.
    """
    path = Path(path)
    sums_file = path.parent / ("SHA256SUMS" if path.suffix == ".gz" else "SHA256SUMS.raw")
    if not sums_file.is_file():
        return False
    sums = read_checksums(sums_file)
    if path.name not in sums:
        raise ChecksumError(f"{path}: not listed in {sums_file}")
    actual = sha256_of(path)
    if actual != sums[path.name]:
        raise ChecksumError(
            f"{path}: SHA-256 mismatch: expected {sums[path.name]} (from {sums_file.name}), "
            f"actual {actual}"
        )
    return True


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of native byte order; ``name`` goes into errors."""
    if len(data) < 4:
        raise IDXError(f"{name}: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise IDXError(
            f"{name}: bad IDX magic {data[:4].hex()} (must start with two zero bytes); "
            "is it an IDX file, or gzip-compressed without a .gz name?"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        raise IDXError(f"{name}: unknown IDX type code 0x{code:02x} in magic {data[:4].hex()}")
    if ndim == 0:
        raise IDXError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{name}: truncated header ({len(data)} bytes, needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise IDXError(
            f"{name}: size {len(data)} bytes does not match its header (dims {dims}, "
            f"{dtype.name}): expected {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path, *, verify: bool = True) -> np.ndarray:
    """Read one IDX file, gzip-compressed if its name ends in ``.gz``.

    With ``verify`` the directory's checksum list, if any, is checked first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if verify:
        verify_checksum(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IDXError(f"{path}: not a valid gzip file: {exc}") from exc
    return parse_idx(raw, str(path))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as IDX (gzip-compressed if ``path`` ends in ``.gz``); for tests/tools."""
    path = Path(path)
    arr = np.asarray(array)
    code = IDX_CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"dtype {arr.dtype} has no IDX type code")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"IDX holds 1 to 255 dimensions, got {arr.ndim}")
    body = (
        bytes([0, 0, code, arr.ndim])
        + np.asarray(arr.shape, dtype=">u4").tobytes()
        + arr.astype(IDX_TYPES[code], copy=False).tobytes()
    )
    path.write_bytes(gzip.compress(body, mtime=0) if path.suffix == ".gz" else body)
    return path


def find_file(data_dir: str | Path, stem: str) -> Path:
    """``stem.gz`` or ``stem`` in ``data_dir`` (the compressed one when both exist)."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{data_dir}: neither {stem}.gz nor {stem} found (give the MNIST directory)"
    )


def load_mnist(data_dir: str | Path = DEFAULT_DATA_DIR, *, verify: bool = True) -> MNIST:
    """Read and check the four MNIST files in ``data_dir``.

    Checks beyond the IDX format: images are uint8 (n, 28, 28), labels uint8 (n,) in 0..9,
    and images and labels of a split have the same n.
    """
    arrays = {}
    for key, stem in FILES.items():
        path = find_file(data_dir, stem)
        arr = read_idx(path, verify=verify)
        if key.endswith("images"):
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != (28, 28):
                raise IDXError(
                    f"{path}: expected uint8 images of shape (n, 28, 28), "
                    f"got {arr.dtype} {arr.shape}"
                )
        else:
            if arr.dtype != np.uint8 or arr.ndim != 1:
                raise IDXError(
                    f"{path}: expected uint8 labels of shape (n,), got {arr.dtype} {arr.shape}"
                )
            if arr.size and arr.max() > 9:
                raise IDXError(f"{path}: label {int(arr.max())} out of range 0..9")
        arrays[key] = arr
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise IDXError(f"{data_dir}: {split} split has {n_img} images but {n_lab} labels")
    return MNIST(**arrays)


def flatten(images: np.ndarray, *, dtype: type = np.float32) -> np.ndarray:
    """Images (n, 28, 28) uint8 -> (n, 784) in [0, 1]."""
    return (np.asarray(images).reshape(len(images), -1) / 255.0).astype(dtype)
