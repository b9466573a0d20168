"""A session's document stream read after a byte offset, for a page that follows it.

Only whole lines are served: a line the writer has not finished (no trailing newline yet) is
left for the next read, so a page never sees half a document. Both JSONL layouts
(``[name, doc]`` and ``{"name": ..., "doc": ...}``) are read; every document is served as
``[name, doc]``. NaN and infinities (a diverged loss) become ``null``: JSON as browsers parse
it has no NaN.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.records.session import DOCUMENTS, RecordError, is_being_written, parse_line

#: Bytes of whole lines one read serves at most (a longer single line is served whole).
CHUNK_BYTES = 1 << 20


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (for strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


@dataclass
class Chunk:
    """Documents of whole lines from ``offset`` to ``next_offset`` (bytes); ``size``: the
    file's size when read; ``pending``: bytes after ``next_offset`` not served yet (a line
    being written, or more than one chunk); ``writing``: a process has the session open;
    ``more``: the chunk stopped at :data:`CHUNK_BYTES`, the rest is there to read."""

    offset: int
    next_offset: int
    size: int
    docs: list[list]
    writing: bool
    more: bool = False  # bytes beyond this chunk that were not read: ask again at once

    @property
    def pending(self) -> int:
        return self.size - self.next_offset

    def as_json(self) -> dict:
        return {"offset": self.offset, "next_offset": self.next_offset, "size": self.size,
                "pending": self.pending, "more": self.more, "writing": self.writing,
                "docs": self.docs}


class DocumentReader:
    """Reads documents after an offset; remembers the line number at each offset it
    returned, so an error names the line without rereading the file."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes
        self._lines: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def _line_at(self, file: Path, offset: int, f) -> int:
        """Line number (1-based) that starts at ``offset``."""
        with self._lock:
            known = self._lines.get((str(file), offset))
        if known is not None:
            return known
        f.seek(0)
        count, left = 0, offset
        while left > 0:
            block = f.read(min(left, 1 << 20))
            if not block:
                break
            count += block.count(b"\n")
            left -= len(block)
        return count + 1

    def read(self, session_dir: str | os.PathLike, offset: int = 0) -> Chunk:
        """Whole documents from byte ``offset`` (0, or a ``next_offset`` returned before).

        RecordError names the file and line of a document that is not a labctl document,
        or an offset that does not start a line."""
        file = Path(session_dir) / DOCUMENTS
        try:
            f = open(file, "rb")
        except FileNotFoundError:
            raise RecordError(f"{file}: missing, not a labctl session") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if not 0 <= offset <= size:
                raise RecordError(f"{file}: offset {offset} is outside the file ({size} bytes)")
            if offset > 0:
                f.seek(offset - 1)
                if f.read(1) != b"\n":
                    raise RecordError(f"{file}: offset {offset} does not start a line")
            lineno = self._line_at(file, offset, f)
            f.seek(offset)
            data = f.read(self.chunk_bytes)
            end = data.rfind(b"\n") + 1
            while end == 0 and len(data) < size - offset:  # one line longer than a chunk
                more = f.read(self.chunk_bytes)
                if not more:
                    break
                data += more
                end = data.rfind(b"\n") + 1
        docs = []
        for raw in data[:end].splitlines(keepends=True):
            name, doc = parse_line(file, lineno, raw)
            docs.append([name, finite(doc)])
            lineno += 1
        next_offset = offset + end
        with self._lock:
            if len(self._lines) > 10_000:  # pages come and go; keep this bounded
                self._lines.clear()
            self._lines[(str(file), next_offset)] = lineno
        return Chunk(offset, next_offset, size, docs, is_being_written(session_dir),
                     more=len(data) < size - offset)
