"""Lossless transforms of one wire-log message, so that deflate sees small numbers.

Used by :mod:`instruments.wire_log` for the body of a record; every transform is exact
(the message is rebuilt byte for byte) and needs nothing but the bytes it wrote and the
:class:`EchoBuffer` that reader and writer keep alike.

Numeric text (:func:`encode_numeric` / :func:`decode_numeric`): the text is split into
numeric tokens (``[+-]?\\d+(\\.\\d*)?([eE][+-]?\\d+)?``) and the separators between them.
Each token keeps its *shape* (sign character, digit counts, ``e`` or ``E``, exponent sign
and digit count), so ``+1.004639E-01`` and ``1.004639e-1`` are told apart and rebuilt as
they were; its value is the integer mantissa ``M`` and ``Q``, the power of ten of its last
digit. Tokens are split into ``K`` interleaved columns (an SMU reading of 5 elements gives
K = 5); in a column all values are scaled to one power of ten (the scale of 95 % of them;
finer numbers, a voltage near 0 V, are kept exactly on the side as exceptions), and each
column is coded as the residual of one predictor, in units of each number's own last digit
(the prediction rounded to that grid first: the reader knows the scales before the values):

* ``0`` none, ``1`` the previous value, ``2`` a linear extrapolation of the previous two;
* ``3`` *echo*: the numbers written to the instrument before (a source list that the
  instrument returns in its readings), rounded to the column's precision;
* ``4`` *secant* on another column ``x``: ``y[i-1] + (y[i-1] - y[j]) * (x[i] - x[i-1]) /
  (x[i-1] - x[j])``, ``j`` the one of ``i-2..i-4`` farthest from ``x[i-1]`` (a voltage
  read against the current sourced), IEEE double arithmetic, rounded half to even;
* ``5`` *pairs*: a value ``D`` (the most common difference within 16 places) above one
  up to 16 places before it (a finite-difference list ``x, x + dI``), else the previous
  value; the distances are stored, and the two kinds of residual apart.

A column whose shape, scale or residuals are all alike stores one value. Residuals are
zig-zag varints, or little-endian byte planes when nearly all take two bytes or more (the
nearly random low bytes then apart from the skewed high ones, for deflate's Huffman codes).
The writer picks ``K`` from the tokens' scales (the period that repeats clearly best) and
per column the predictor with the fewest varint bytes (remembering its choice for messages
that look alike); a text that does not gain (few numbers, more than 18 digits, scales too
far apart) stays literal.

Binary (:func:`encode_binary` / :func:`decode_binary`): bytes that repeat at a stride
(fixed-size records such as the ADC's ``<Qdb``) are byte-shuffled into planes (byte ``k``
of every record together), each plane delta-coded mod 256; the rest is kept as it came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: A numeric token: sign, integer digits, dot, fraction digits, e/E, exponent sign, digits.
NUMBER = re.compile(r"([+-]?)(\d+)(\.?)(\d*)(?:([eE])([+-]?)(\d+))?")
_ECHARS = ("", "e", "E")
#: Integer part of a scaled column value must stay below this (int64 with room for sums).
_LIMIT = 1 << 60
_POW10 = np.array([10**k for k in range(19)], dtype=np.int64)
MIN_TOKENS = 8  # fewer numbers are not worth a numeric record, nor an echo
_ECHO_WRITES = 64  # writes an echo may reach back over
_ECHO_TRIES = 3  # echo start points tried per column


class CodecError(ValueError):
    """A record body that does not decode (a damaged or foreign log)."""


# -- varints ----------------------------------------------------------------------------
def zigzag(a: np.ndarray) -> np.ndarray:
    """int64 -> uint64 with small magnitudes small (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...)."""
    a = a.astype(np.int64, copy=False)
    return ((a << 1) ^ (a >> 63)).view(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.uint64)
    return ((u >> np.uint64(1)).astype(np.int64)) ^ (-(u & np.uint64(1)).astype(np.int64))


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def zz(n: int) -> int:
    return (n << 1) ^ -1 if n < 0 else n << 1  # == (n << 1) ^ (n >> 63) for Python ints


def unzz(u: int) -> int:
    return (u >> 1) ^ -(u & 1)


_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)[:10]


def varints(u: np.ndarray) -> bytes:
    """LEB128 of every uint64 of ``u``, concatenated."""
    u = np.asarray(u, dtype=np.uint64)
    if u.size == 0:
        return b""
    top = int(u.max())
    if top < 0x80:
        return u.astype(np.uint8).tobytes()
    width = (top.bit_length() + 6) // 7
    shifts = _SHIFTS[:width]
    groups = (u[:, None] >> shifts[None, :]) & np.uint64(0x7F)
    more = (u[:, None] >> (shifts[None, :] + np.uint64(7))) != 0
    out = (groups | (more.astype(np.uint64) << np.uint64(7))).astype(np.uint8)
    keep = np.ones_like(more)
    keep[:, 1:] = more[:, :-1]
    return out[keep].tobytes()


def varint_bytes(u: np.ndarray) -> int:
    """How many bytes :func:`varints` takes for ``u`` (the predictors' cost)."""
    bits = np.frexp(np.asarray(u, dtype=np.float64))[1]  # bit length (about, for 2**53+)
    return int(np.maximum((bits + 6) // 7, 1).sum())


class Reader:
    """Reads varints and byte strings from a record body; errors name what was read."""

    def __init__(self, data: bytes | memoryview, pos: int = 0):
        self.data = memoryview(data)
        self.pos = pos

    def uint(self) -> int:
        data, pos, shift, n = self.data, self.pos, 0, 0
        while True:
            if pos >= len(data):
                raise CodecError("a varint runs past the end of the record")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 70:
                raise CodecError("a varint is longer than 10 bytes")
        self.pos = pos
        return n

    def sint(self) -> int:
        return unzz(self.uint())

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CodecError(f"{n} bytes announced, {len(self.data) - self.pos} left")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def uints(self, n: int) -> np.ndarray:
        """``n`` varints as uint64 (vectorised: finds the ``n``-th terminator)."""
        if n == 0:
            return np.zeros(0, np.uint64)
        raw = np.frombuffer(self.data, np.uint8, offset=self.pos)
        ends = np.flatnonzero(raw < 0x80)
        if len(ends) < n:
            raise CodecError(f"{n} varints announced, {len(ends)} in the record")
        last = int(ends[n - 1])
        chunk = raw[:last + 1].astype(np.uint64)
        ends = ends[:n]
        starts = np.concatenate(([0], ends[:-1] + 1))
        if np.any(ends - starts >= 10):
            raise CodecError("a varint is longer than 10 bytes")
        index = np.arange(last + 1)
        owner = np.repeat(np.arange(n), ends - starts + 1)
        shift = ((index - starts[owner]) * 7).astype(np.uint64)
        parts = (chunk & np.uint64(0x7F)) << shift
        self.pos += last + 1
        return np.add.reduceat(parts, starts).astype(np.uint64)

    def sints(self, n: int) -> np.ndarray:
        return unzigzag(self.uints(n))


# -- tokens -----------------------------------------------------------------------------
@dataclass
class Tokens:
    """The numbers of a text: ``m`` signed mantissa, ``q`` power of ten of the last digit,
    ``shape`` packed (sign | dot << 2 | e << 3 | exponent sign << 5 | integer digits << 8
    | fraction digits << 16 | exponent digits << 24); ``seps``: the n + 1 separators."""

    m: np.ndarray
    q: np.ndarray
    shape: np.ndarray
    seps: list[str]


def tokenize(text: str) -> Tokens | None:
    """The numbers of ``text``, or None if there are too few or one has more than 18
    digits (kept literal)."""
    fast = _tokenize_fixed(text)
    if fast is not None:
        return fast
    parts = NUMBER.split(text)
    n = len(parts) // 8
    if n < MIN_TOKENS:
        return None
    sign, ints, dot, frac, ech, esign, edig = (parts[k::8] for k in range(1, 8))
    digits = [i + f for i, f in zip(ints, frac, strict=True)]
    nd = list(map(len, digits))
    if max(nd) > 18 or any(e is not None and len(e) > 18 for e in edig):
        return None
    # Python's int() per number and one array per field: faster than numpy's string
    # conversions for the tens to hundreds of numbers of a command.
    mag = [int(d) for d in digits]
    emag = [0 if d is None else int(d) for d in edig]
    ns = [len(x) for x in sign]
    nes = [0 if x is None else len(x) for x in esign]
    s = [0 if not h else (2 if x == "-" and v == 0 else 1) for h, x, v in zip(ns, sign, mag,
                                                                          strict=True)]
    es = [0 if not h else (2 if x == "-" and v == 0 else 1) for h, x, v in zip(nes, esign, emag,
                                                                           strict=True)]
    shape = [a | len(d) << 2 | (0 if c is None else (1 if c == "e" else 2)) << 3 | b << 5
             | len(i) << 8 | len(f) << 16 | (0 if x is None else len(x)) << 24
             for a, d, c, b, i, f, x in zip(s, dot, ech, es, ints, frac, edig, strict=True)]
    m = [-v if x == "-" else v for v, x in zip(mag, sign, strict=True)]
    q = [(-v if x == "-" else v) - len(f) for v, x, f in zip(emag, esign, frac, strict=True)]
    return Tokens(np.array(m, np.int64), np.array(q, np.int64), np.array(shape, np.int64),
                  parts[0::8])


def _sign_code(has: np.ndarray, neg: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """0: no sign character; 1: one, '-' exactly when the value is negative; 2: '-' on a
    zero (``-0``)."""
    return np.where(has == 0, 0, np.where(neg & (magnitude == 0), 2, 1))


_CLASS = np.zeros(256, np.int8)  # 1 digit, 2 sign, 3 dot, 4 e/E, 0 other
_CLASS[ord("0"):ord("9") + 1] = 1
_CLASS[[ord("+"), ord("-")]] = 2
_CLASS[ord(".")] = 3
_CLASS[[ord("e"), ord("E")]] = 4


def _tokenize_fixed(text: str) -> Tokens | None:
    """Fast path for long replies of same-width numbers joined by one separator
    (``+1.004639E-01,+1.499444E-05,...``): the same tokens as :func:`tokenize`."""
    if len(text) < 256 or not text.isascii():
        return None
    raw = text.encode("ascii")
    cut = raw.find(b",")
    if cut < 1 or cut > 40 or (len(raw) + 1) % (cut + 1):
        return None
    rows = np.frombuffer(raw + b",", np.uint8).reshape(-1, cut + 1)
    if np.any(rows[:, cut] != ord(",")):
        return None
    body = rows[:, :cut]
    first = body[0]
    cls = _CLASS[first]
    # Template: [sign] digits [. digits] [e [sign] digits], alike in every row.
    match = re.fullmatch(r"(s?)(d+)(\.?)(d*)(?:(e)(s?)(d+))?",
                         "".join("xdsde"[c] if c != 3 else "." for c in cls))
    if match is None or not np.array_equal(_CLASS[body], np.broadcast_to(cls, body.shape)):
        return None
    fixed = (cls == 3) | (cls == 4)
    if np.any(body[:, fixed] != first[fixed]):
        return None
    ns, ni, nd, nf = (len(match.group(k)) for k in (1, 2, 3, 4))
    ne = len(match.group(7) or "")
    if ni + nf > 18:
        return None
    n = len(body)
    digit_cols = np.r_[ns:ns + ni, ns + ni + nd:ns + ni + nd + nf]
    m = (body[:, digit_cols].astype(np.int64) - 48) @ _POW10[:ni + nf][::-1]
    neg = body[:, 0] == ord("-") if ns else np.zeros(n, bool)
    s = _sign_code(np.full(n, ns), neg, m)
    e = np.zeros(n, np.int64)
    es = np.zeros(n, np.int64)
    ec = 0
    if match.group(5):
        at = ns + ni + nd + nf
        ec = 1 if first[at] == ord("e") else 2
        nes = len(match.group(6))
        eneg = body[:, at + 1] == ord("-") if nes else np.zeros(n, bool)
        at += 1 + nes
        e = (body[:, at:at + ne].astype(np.int64) - 48) @ _POW10[:ne][::-1]
        es = _sign_code(np.full(n, nes), eneg, e)
        e = np.where(eneg, -e, e)
    shape = s | (nd << 2) | (ec << 3) | (es << 5) | (ni << 8) | (nf << 16) | (ne << 24)
    m = np.where(neg, -m, m)
    return Tokens(m, e - nf, shape.astype(np.int64), ["", *[","] * (n - 1), ""])


def render(t: Tokens) -> str:
    """The text of ``t`` (inverse of :func:`tokenize`)."""
    n = len(t.m)
    shape = t.shape
    if n and (shape == shape[0]).all() and set(t.seps[1:-1]) <= {","}:
        fixed = _render_fixed(t)
        if fixed is not None:
            return t.seps[0] + fixed + t.seps[-1]
    out = [t.seps[0]]
    for k in range(n):
        out.append(_render_one(int(t.m[k]), int(t.q[k]), int(shape[k])))
        out.append(t.seps[k + 1])
    return "".join(out)


def _render_one(m: int, q: int, shape: int) -> str:
    s, dot, ec, es = shape & 3, shape >> 2 & 1, shape >> 3 & 3, shape >> 5 & 3
    ni, nf, ne = shape >> 8 & 0xFF, shape >> 16 & 0xFF, shape >> 24 & 0xFF
    digits = str(abs(m)).zfill(ni + nf)
    text = _sign(s, m) + digits[:ni] + ("." if dot else "") + digits[ni:]
    if ec:
        e = q + nf
        text += _ECHARS[ec] + _sign(es, e) + str(abs(e)).zfill(ne)
    return text


def _sign(code: int, value: int) -> str:
    return "" if code == 0 else ("-" if code == 2 or value < 0 else "+")


def _render_fixed(t: Tokens) -> str | None:
    shape = int(t.shape[0])
    s, dot, ec, es = shape & 3, shape >> 2 & 1, shape >> 3 & 3, shape >> 5 & 3
    ni, nf, ne = shape >> 8 & 0xFF, shape >> 16 & 0xFF, shape >> 24 & 0xFF
    n = len(t.m)
    e = t.q + nf
    mag = np.abs(t.m)
    if ec and np.any(np.abs(e) >= 10**min(ne, 18)) or np.any(mag >= 10**(ni + nf)):
        return None
    if s != 1 and np.any(t.m < 0) or (ec and es != 1 and np.any(e < 0)) or s == 2 or es == 2:
        return None
    cols = []
    if s:
        cols.append(np.where(t.m < 0, ord("-"), ord("+"))[:, None])
    dig = (mag[:, None] // _POW10[:ni + nf][::-1][None, :]) % 10 + 48
    cols.append(dig[:, :ni])
    if dot:
        cols.append(np.full((n, 1), ord(".")))
    cols.append(dig[:, ni:])
    if ec:
        cols.append(np.full((n, 1), ord(_ECHARS[ec])))
        if es:
            cols.append(np.where(e < 0, ord("-"), ord("+"))[:, None])
        cols.append((np.abs(e)[:, None] // _POW10[:ne][::-1][None, :]) % 10 + 48)
    cols.append(np.full((n, 1), ord(",")))
    rows = np.concatenate(cols, axis=1).astype(np.uint8)
    return rows.tobytes()[:-1].decode("ascii")


# -- echo -------------------------------------------------------------------------------
class EchoBuffer:
    """The numbers of the last writes that held at least :data:`MIN_TOKENS` of them; writer
    and reader update it alike, after every written message."""

    def __init__(self) -> None:
        self.writes: list[tuple[np.ndarray, np.ndarray]] = []

    def add_text(self, text: str) -> None:
        if len(text) < 2 * MIN_TOKENS - 1:
            return
        tokens = tokenize(text)
        if tokens is not None:
            self.add(tokens)

    def add(self, tokens: Tokens) -> None:
        self.add_arrays(tokens.m, tokens.q)

    def add_arrays(self, m: np.ndarray, q: np.ndarray) -> None:
        if len(m) < MIN_TOKENS:
            return
        self.writes.append((m, q))
        if len(self.writes) > _ECHO_WRITES:
            del self.writes[0]

    def window(self, back: int, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``n`` numbers from the start of the write ``back`` places before the latest."""
        if back >= len(self.writes):
            return None
        parts = self.writes[len(self.writes) - 1 - back:]
        m = np.concatenate([p[0] for p in parts])
        if len(m) < n:
            return None
        q = np.concatenate([p[1] for p in parts])
        return m[:n], q[:n]

    def starts_for(self, n: int) -> list[int]:
        """The ``back`` values worth trying for a column of ``n`` numbers: the latest start
        with enough numbers after it, and a few before it."""
        total, out = 0, []
        for back in range(len(self.writes)):
            total += len(self.writes[-1 - back][0])
            if total >= n:
                out.append(back)
                if len(out) == _ECHO_TRIES:
                    break
        return out


def _rescale(m: np.ndarray, q: np.ndarray, base: int | np.ndarray) -> np.ndarray | None:
    """``m * 10**q`` in units of ``10**base``, rounded half up; None if out of range."""
    k = q - base
    if not k.any():
        return m.copy()
    if k.max() > 18:
        return None
    up = np.maximum(k, 0)
    if (np.abs(m) >= _LIMIT // _POW10[up]).any():
        return None
    scaled = m * _POW10[up]
    if k.min() >= 0:
        return scaled
    down = np.minimum(np.maximum(-k, 0), 18)  # finer than 10**-18 of the scale: rounds to 0
    div = _POW10[down]
    return np.where(down > 0, (scaled + div // 2) // div, scaled)


# -- numeric records --------------------------------------------------------------------
def _period(t: Tokens) -> int:
    """The number of interleaved columns: the period at which scales and shapes repeat
    most often (the smallest of the best)."""
    n = len(t.q)
    key = t.q
    if n > 1 and (key[1:] == key[0]).all():
        return 1  # one scale throughout: a list
    best, best_k = -1.0, 1
    for k in range(1, 9):
        if n < 2 * k:
            break
        score = np.count_nonzero(key[k:] == key[:-k]) / (n - k)
        if score > best + 0.1:  # a clear gain: chance alone makes some period look better
            best, best_k = score, k
    return best_k


def _predict(kind: int, y: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """Prediction of column ``y`` by predictor 0, 1, 2 or 4 (``x``: the secant's other
    column), vectorised; :func:`_sequential` is the same one value at a time."""
    n = len(y)
    p = np.zeros(n, np.int64)
    if kind == 1:
        p[1:] = y[:-1]
    elif kind == 2:
        if n > 1:
            p[1] = y[0]
        p[2:] = 2 * y[1:-1] - y[:-2]
    elif kind == 4:
        assert x is not None
        xf, yf = x.astype(np.float64), y.astype(np.float64)
        if n > 1:
            p[1] = y[0]
        if n > 2:
            i = np.arange(2, n)
            best_j = i - 2
            best_d = xf[i - 1] - xf[i - 2]
            for back in (3, 4):
                j = np.maximum(i - back, 0)
                d = xf[i - 1] - xf[j]
                better = (i - back >= 0) & (np.abs(d) > np.abs(best_d))
                best_j = np.where(better, j, best_j)
                best_d = np.where(better, d, best_d)
            safe = np.where(best_d == 0, 1.0, best_d)
            step = (yf[i - 1] - yf[best_j]) * (xf[i] - xf[i - 1]) / safe
            pred = np.where(best_d == 0, yf[i - 1], yf[i - 1] + step)
            p[2:] = np.rint(np.clip(pred, -_LIMIT, _LIMIT)).astype(np.int64)
    return p


_PAIR_WINDOW = 16


def _pairs(y: np.ndarray, step: int | None = None
           ) -> tuple[int, np.ndarray, np.ndarray] | None:
    """Predictor 5, for a list of levels that holds pairs (``x`` and ``x + D``, a
    finite-difference step, ``D`` the most common difference within 16 places): each
    value is its partner ``y[i - ref] + D`` where one is within 1, else the previous
    value. Returns ``(D, refs, prediction)``, or None without such pairs."""
    n = len(y)
    if n < 8:
        return None
    if step is not None:  # the step of the last such list, if it still pairs enough
        found = _pairs(y, None) if step == 0 else _pair_with(y, step)
        if found is not None and np.count_nonzero(found[1]) >= n // 8:
            return found
    diffs = np.concatenate([y[d:] - y[:-d] for d in range(1, min(_PAIR_WINDOW, n - 1) + 1)])
    diffs = diffs[diffs != 0]
    if len(diffs) == 0:
        return None
    values, counts = np.unique(diffs, return_counts=True)
    best = int(np.argmax(counts))
    if counts[best] < n // 8:
        return None
    return _pair_with(y, int(values[best]))


def _pair_with(y: np.ndarray, step: int) -> tuple[int, np.ndarray, np.ndarray]:
    n = len(y)
    window = min(_PAIR_WINDOW, n - 1)
    back = np.arange(n)[:, None] - np.arange(1, window + 1)[None, :]  # (n, window)
    hit = (back >= 0) & (np.abs(y[:, None] - y[np.maximum(back, 0)] - step) <= 1)
    refs = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)  # the nearest partner
    pred = np.zeros(n, np.int64)
    pred[1:] = y[:-1]
    at = np.flatnonzero(refs)
    pred[at] = y[at - refs[at]] + step
    return step, refs, pred


def _sequential(kind: int, res: np.ndarray, unit: np.ndarray, *, x: np.ndarray | None = None,
                refs: np.ndarray | None = None, step: int = 0) -> np.ndarray:
    """A column's values from its residuals (the reader's side of :func:`_predict`,
    :func:`_pairs` and :func:`_resid`), one value after the other."""
    n = len(res)
    uniform = n == 0 or bool(np.all(unit == unit[0]))
    if kind == 0:
        return res * unit
    if kind == 1 and uniform:  # the previous value is on the grid already
        return np.cumsum(res) * (unit[0] if n else 1)
    lim = float(_LIMIT)
    xs = [float(v) for v in x.tolist()] if x is not None else []
    rs, us = res.tolist(), unit.tolist()
    rf = refs.tolist() if refs is not None else []
    out: list[int] = []
    for i in range(n):
        if i == 0:
            pred = 0
        elif kind == 1 or i == 1 and kind in (2, 4):
            pred = out[i - 1]
        elif kind == 2:
            pred = 2 * out[i - 1] - out[i - 2]
        elif kind == 5:
            ref = rf[i]
            if ref > i:
                raise CodecError(f"value {i} pairs with one {ref} places before the first")
            pred = out[i - ref] + step if ref else out[i - 1]
        else:  # 4, the secant, in the same double arithmetic as the writer's numpy
            j, d = i - 2, xs[i - 1] - xs[i - 2]
            for back in (3, 4):
                if i - back >= 0:
                    dd = xs[i - 1] - xs[i - back]
                    if abs(dd) > abs(d):
                        j, d = i - back, dd
            y1 = float(out[i - 1])
            p = y1 if d == 0 else y1 + (y1 - float(out[j])) * (xs[i] - xs[i - 1]) / d
            pred = round(min(max(p, -lim), lim))
        u = us[i]
        out.append((pred + u // 2) // u * u + rs[i] * u)
    return np.array(out, np.int64)


def _resid(col: _Column, pred: np.ndarray) -> np.ndarray:
    """What is coded: the error of the prediction in units of each number's last digit."""
    return (col.s - _snap(pred, col.unit)) // col.unit


def _cost(res: np.ndarray) -> int:
    return 0 if not res.any() else varint_bytes(zigzag(res))


def _snap(pred: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """``pred`` rounded (half up) to a multiple of ``unit``: the grid of the number's own
    last digit, which the reader knows (its scale comes first)."""
    return (pred + unit // 2) // unit * unit


@dataclass
class _Column:
    base: int
    s: np.ndarray  # values in units of 10**base
    unit: np.ndarray  # 10**(q - base) per number, 1 for the exceptions (finer than base)
    kind: int = 1
    arg: int = 0  # echo: back; secant: the other column
    res: np.ndarray | None = None
    cost: int = 0
    refs: np.ndarray | None = None  # predictor 5: how far back each value's partner is


class Plans:
    """The writer's memory of the predictors it chose, by the look of a message (reply or
    write, number count, the first shapes and scales): a message like the last one reuses
    them, and every :attr:`REVISIT`-th is searched again. Only the writer's speed depends
    on it; the log records each choice."""

    REVISIT = 16

    def __init__(self) -> None:
        self.chosen: dict[tuple, tuple[int, list[tuple[int, int]], int]] = {}


def _echo_pred(echo: EchoBuffer, back: int, size: int, base: int) -> np.ndarray | None:
    window = echo.window(back, size)
    return None if window is None else _rescale(window[0], window[1], base)


def _search(col: _Column, echo: EchoBuffer | None) -> None:
    """The cheapest of predictors 0, 1, 2 and (``echo`` given) 3 for ``col``."""
    s = col.s
    for kind in (0, 1, 2):
        res = _resid(col, _predict(kind, s))
        cost = _cost(res)
        if col.res is None or cost < col.cost:
            col.kind, col.res, col.cost = kind, res, cost
    if echo is None and len(s) <= 1024:
        found = _pairs(s)
        if found is not None:
            step, refs, pred = found
            res = _resid(col, pred)
            cost = _cost(res) + varint_bytes(refs.astype(np.uint64))
            if cost < col.cost:
                col.kind, col.arg, col.res, col.cost, col.refs = 5, zz(step), res, cost, refs
    if echo is not None:
        for back in echo.starts_for(len(s)):
            pred = _echo_pred(echo, back, len(s), col.base)
            if pred is not None:
                res = _resid(col, pred)
                cost = _cost(res)
                if cost < col.cost:
                    col.kind, col.arg, col.res, col.cost = 3, back, res, cost


def _search_secant(cols: list[_Column]) -> None:
    """Predictor 4 where it beats the column's choice; a column another one refers to
    stays as it is (the reader decodes references first)."""
    referenced: set[int] = set()
    echoed = [i for i, c in enumerate(cols) if c.kind == 3]
    for c, col in enumerate(cols):
        if col.cost <= 1.2 * len(col.s) or c in referenced or len(col.s) < 16:
            continue  # about a byte a value already
        for other in echoed or range(len(cols)):
            if other == c or len(cols[other].s) != len(col.s) or cols[other].kind == 4:
                continue
            res = _resid(col, _predict(4, col.s, cols[other].s))
            cost = _cost(res)
            if cost < col.cost:
                col.kind, col.arg, col.res, col.cost = 4, other, res, cost
        if col.kind == 4:
            referenced.add(col.arg)


def _apply(col: _Column, kind: int, arg: int, cols: list[_Column], echo: EchoBuffer
           ) -> bool:
    """Predictor ``kind`` (``arg``) of a remembered plan on ``col``; False if unusable."""
    s = col.s
    if kind == 3:
        starts = echo.starts_for(len(s))
        if not starts:
            return False
        arg = starts[0] if arg not in starts else arg
        pred = _echo_pred(echo, arg, len(s), col.base)
        if pred is None:
            return False
    elif kind == 5:
        found = _pairs(s, unzz(arg))
        if found is None:
            return False
        step, col.refs, pred = found
        arg = zz(step)
    elif kind == 4:
        if arg >= len(cols) or cols[arg].res is None or cols[arg].kind == 4 \
                or len(cols[arg].s) != len(s):
            return False
        pred = _predict(4, s, cols[arg].s)
    else:
        pred = _predict(kind, s)
    col.kind, col.arg, col.res = kind, arg, _resid(col, pred)
    return True


def encode_numeric(text: str, echo: EchoBuffer, is_reply: bool, plans: Plans | None = None
                   ) -> tuple[bytes, Tokens] | None:
    """The numeric body of ``text``, or None when it should stay literal; also its tokens
    (a write's go to the echo buffer)."""
    t = tokenize(text)
    if t is None:
        return None
    n = len(t.m)
    k = _period(t)
    rows = n // k
    if rows * k == n:  # every column as long: all of them at once
        m2, q2 = t.m.reshape(rows, k), t.q.reshape(rows, k)
        # The scale of (nearly) all: a few finer numbers (a voltage near 0 V) would
        # otherwise make every other one longer; they are kept exactly as exceptions.
        bases = np.partition(q2, rows // 20, axis=0)[rows // 20]
        s2 = _rescale(m2, q2, bases[None, :])
        if s2 is None:
            return None
        unit2 = _POW10[np.maximum(q2 - bases[None, :], 0)]
        cols = [_Column(int(bases[c]), s2[:, c].copy(), unit2[:, c].copy()) for c in range(k)]
    else:
        cols = []
        for c in range(k):
            m, q = t.m[c::k], t.q[c::k]
            base = int(np.partition(q, len(q) // 20)[len(q) // 20])
            s = _rescale(m, q, base)
            if s is None:
                return None
            cols.append(_Column(base, s, _POW10[np.maximum(q - base, 0)]))
    look = (is_reply, n.bit_length(), k, tuple(t.shape[:k].tolist()), tuple(t.q[:k].tolist()))
    plan = plans.chosen.get(look) if plans is not None else None
    reused = False
    if plan is not None and plan[2] % Plans.REVISIT:
        order = sorted(range(k), key=lambda i: plan[1][i][0] == 4)  # references first
        reused = all(_apply(cols[i], *plan[1][i], cols, echo) for i in order)
    if not reused:
        for col in cols:
            col.res = None
            _search(col, echo if is_reply else None)
        _search_secant(cols)
    if plans is not None:
        uses = plan[2] + 1 if plan is not None else 1
        plans.chosen[look] = (k, [(c.kind, c.arg) for c in cols], uses)
        if len(plans.chosen) > 256:
            plans.chosen.pop(next(iter(plans.chosen)))
    out = bytearray(varint(n) + varint(k))
    seps = t.seps
    for sep in (seps[0], seps[-1]):
        raw = sep.encode("utf-8", "surrogatepass")
        out += varint(len(raw)) + raw
    middle = seps[1:-1]
    if len(set(middle)) == 1:
        raw = middle[0].encode("utf-8", "surrogatepass")
        out += b"\0" + varint(len(raw)) + raw
    else:
        out += b"\1"
        for sep in middle:
            raw = sep.encode("utf-8", "surrogatepass")
            out += varint(len(raw)) + raw
    for c, col in enumerate(cols):
        shape, q = t.shape[c::k], t.q[c::k]
        if (shape == shape[0]).all():
            out += b"\0" + varint(int(shape[0]))
        else:  # a table of the shapes, then one index a number
            table = np.array(sorted(set(shape.tolist())), np.int64)
            index = np.searchsorted(table, shape)
            out += b"\1" + varint(len(table)) + varints(table.astype(np.uint64))
            out += varints(index.astype(np.uint64))
        out += varint(zz(col.base))
        if (q == col.base).all():
            out += b"\0"
        else:
            out += b"\1" + varints(zigzag(q - col.base))
        fine = np.flatnonzero(q < col.base)
        out += varint(len(fine))
        if len(fine):
            out += varints(np.diff(fine, prepend=0).astype(np.uint64))
            out += varints(zigzag(t.m[c::k][fine]))
        out += bytes([col.kind]) + varint(col.arg)
        assert col.res is not None
        if col.kind == 5:  # partners' residuals (about 0) apart from the others'
            assert col.refs is not None
            out += varints(col.refs.astype(np.uint64))
            out += _block(col.res[col.refs > 0]) + _block(col.res[col.refs == 0])
        else:
            out += _block(col.res)
    if len(out) > len(text):
        return None
    return bytes(out), t


def _block(res: np.ndarray) -> bytes:
    """Residuals: flag 0 all zero, 2 all zero but the first (a constant column), else
    :func:`_residuals`."""
    if not res.any():
        return b"\0"
    if not res[1:].any():
        return b"\2" + varint(zz(int(res[0])))
    return _residuals(zigzag(res))


def _unblock(r: Reader, size: int) -> np.ndarray:
    flag = r.take(1)
    if flag == b"\1":
        return r.sints(size)
    if flag == b"\3":
        width = r.take(1)[0]
        if not 1 <= width <= 8:
            raise CodecError(f"residual planes {width} bytes wide")
        planes = np.frombuffer(r.take(width * size), np.uint8).reshape(width, size)
        wide = np.zeros((size, 8), np.uint8)
        wide[:, :width] = planes.T
        return unzigzag(wide.view("<u8").ravel())
    if flag not in (b"\0", b"\2"):
        raise CodecError(f"unknown residual flag {flag!r}")
    res = np.zeros(size, np.int64)
    if flag == b"\2" and size:
        res[0] = r.sint()
    return res


def _residuals(u: np.ndarray) -> bytes:
    """Flag 1 and varints; or, when 90 % of residuals take two bytes or more, flag 3 and
    fixed-width little-endian byte planes (low bytes together, then the next...): deflate's
    Huffman codes then see the nearly random low bytes apart from the skewed high ones."""
    if len(u) >= 32:
        bits = np.frexp(u.astype(np.float64))[1]
        if np.count_nonzero(bits > 7) >= 0.9 * len(u):
            width = max(1, (int(bits.max()) + 7) // 8)
            if width <= 8 and int(u.max()) < 1 << (8 * width):
                planes = u.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width].T
                return b"\3" + bytes([width]) + np.ascontiguousarray(planes).tobytes()
    return b"\1" + varints(u)


def decode_numeric(r: Reader, echo: EchoBuffer) -> Tokens:
    """Inverse of :func:`encode_numeric` (``r`` at the body)."""
    n, k = r.uint(), r.uint()
    if k < 1 or k > 8 or n < k:
        raise CodecError(f"numeric record of {n} numbers in {k} columns")
    first, last = (r.take(r.uint()).decode("utf-8", "surrogatepass") for _ in range(2))
    if r.take(1) == b"\0":
        sep = r.take(r.uint()).decode("utf-8", "surrogatepass")
        middle = [sep] * (n - 1)
    else:
        middle = [r.take(r.uint()).decode("utf-8", "surrogatepass") for _ in range(n - 1)]
    m = np.zeros(n, np.int64)
    q = np.zeros(n, np.int64)
    shape = np.zeros(n, np.int64)
    pending: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    values: dict[int, np.ndarray] = {}
    bases: dict[int, int] = {}
    fine: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in range(k):
        size = len(range(c, n, k))
        if r.take(1) == b"\0":
            shape[c::k] = r.uint()
        else:
            table = r.uints(r.uint()).astype(np.int64)
            index = r.uints(size).astype(np.int64)
            if len(index) and index.max() >= len(table):
                raise CodecError(f"column {c}: a shape index past its table")
            shape[c::k] = table[index]
        base = r.sint()
        bases[c] = base
        q[c::k] = base if r.take(1) == b"\0" else base + r.sints(size)
        nfine = r.uint()
        if nfine:
            where = np.cumsum(r.uints(nfine).astype(np.int64))
            if where[-1] >= size:
                raise CodecError(f"column {c}: an exception past its {size} numbers")
            fine[c] = (where, r.sints(nfine))
        kind, arg = r.take(1)[0], r.uint()
        refs = None
        if kind == 5:
            refs = r.uints(size).astype(np.int64)
            paired = refs > 0
            res = np.zeros(size, np.int64)
            res[paired] = _unblock(r, int(np.count_nonzero(paired)))
            res[~paired] = _unblock(r, size - int(np.count_nonzero(paired)))
        else:
            res = _unblock(r, size)
        unit = _POW10[np.clip(q[c::k] - base, 0, 18)]
        if kind == 3:
            window = echo.window(arg, size)
            pred = None if window is None else _rescale(window[0], window[1], base)
            if pred is None:
                raise CodecError(f"column {c} echoes numbers the log does not hold")
            values[c] = _snap(pred, unit) + res * unit
        elif kind == 4:
            pending.append((c, arg, res, unit))
        elif kind in (0, 1, 2, 5):
            values[c] = _sequential(kind, res, unit, refs=refs, step=unzz(arg))
        else:
            raise CodecError(f"column {c}: unknown predictor {kind}")
    for c, other, res, unit in pending:
        if other not in values or len(values[other]) != len(res):
            raise CodecError(f"column {c}: secant on column {other}, which is unusable")
        values[c] = _sequential(4, res, unit, x=values[other])
    for c in range(k):
        up = q[c::k] - bases[c]
        if np.any(up > 18):
            raise CodecError(f"column {c}: scale out of range")
        mc = values[c] // _POW10[np.maximum(up, 0)]
        if c in fine:
            mc[fine[c][0]] = fine[c][1]
        m[c::k] = mc
    return Tokens(m, q, shape, [first, *middle, last])


# -- binary records ---------------------------------------------------------------------
def _stride(data: bytes, hint: int = 1) -> int:
    """The record size at which ``data`` repeats best (1: none found); ``hint``, the last
    one found, is taken at once if it still fits well."""
    a = np.frombuffer(data[:4096], np.uint8)
    if 1 < hint < len(a) // 4 \
            and np.count_nonzero(a[hint:] == a[:-hint]) > 0.6 * (len(a) - hint):
        return hint
    best, best_s = 0.3, 1
    for s in range(2, 33):
        if len(a) < 4 * s:
            break
        score = np.count_nonzero(a[s:] == a[:-s]) / (len(a) - s)
        if score > best + 0.02:
            best, best_s = score, s
    return best_s


def encode_binary(data: bytes, hint: int = 1) -> bytes | None:
    """Byte-shuffled, delta-coded ``data``, or None if it has no stride (``hint``: see
    :func:`_stride`)."""
    if len(data) < 64:
        return None
    s = _stride(data, hint)
    if s == 1:
        return None
    n = len(data) // s
    planes = np.frombuffer(data, np.uint8, n * s).reshape(n, s).T
    delta = np.diff(planes, axis=1, prepend=np.zeros((s, 1), np.uint8))
    return varint(len(data)) + varint(s) + delta.astype(np.uint8).tobytes() + data[n * s:]


def decode_binary(r: Reader) -> bytes:
    size, s = r.uint(), r.uint()
    if s < 2 or s > 32:
        raise CodecError(f"binary record of stride {s}")
    n = size // s
    delta = np.frombuffer(r.take(n * s), np.uint8).reshape(s, n)
    planes = np.cumsum(delta, axis=1, dtype=np.uint8)
    return planes.T.tobytes() + r.take(size - n * s)
