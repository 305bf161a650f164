"""Adaptive context models for float16 passthrough tensors: ideal code lengths, a bound, a real coder.

Used by `benchmarks/squeeze.py --fp16-models`. No stored tables: every binary decision has a 16-bit
probability that starts at 1/2 and moves toward each coded bit by 1/min(n + 2, 2**limit) of the
distance (n: bits seen by that probability; integers only, the same in encoder and decoder).
A value is its high byte (7 magnitude bits as a binary tree, then the sign, its probability keyed
by the magnitude) and its low byte (8 bits as a tree, or raw). Contexts select which tree a value uses;
they read only values already coded (left, above, running row / column means of the exponent).

`ideal_bytes(mats, config)` sums -log2 p over all bits (float64; a range coder adds a few bytes per
stream). `encode` / `decode` are an LZMA-style binary range coder for the context-free
model and, through DECODER_SOURCE, the minified pure-Python decoder a submission would ship.
`gaussian_bound` is the cost of the high bytes under a Gaussian whose scale is each value's row
rms x column rms / tensor rms, those scales known for free: what a scale context could reach;
`gaussian_causal` the same with the scales estimated from the values already coded.

>>> m = np.array([[0x3C00, 0xBC00] * 32] * 8, np.uint16)  # +1.0, -1.0
>>> round(ideal_bytes([m], "order0")), len(encode([m]))
(76, 81)
>>> decode(encode([m]), [m.size]) == m.tobytes()
True
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

ONE = 1 << 16
LOG2 = [0.0] + [-math.log2(p / ONE) for p in range(1, ONE)]
CONFIGS = {  # name -> (context of the high byte, context of the low byte, limit, tables shared by all tensors)
    "order0": ("none", "none", 10, False),
    "order0 fast (limit 5)": ("none", "none", 5, False),
    "order0 shared": ("none", "none", 10, True),
    "hi | left exponent": ("left", "none", 10, False),
    "hi | mean exponent of 4 left": ("run4", "none", 10, False),
    "hi | above exponent": ("up", "none", 10, False),
    "hi | row scale (3)": ("row", "none", 10, False),
    "hi | column scale (3)": ("col", "none", 10, False),
    "hi | row x column scale (3x3)": ("rowcol", "none", 10, False),
    "hi | column scale (3), shared": ("col", "none", 10, True),
    "order0, lo | hi magnitude": ("none", "hi", 10, False),
    "order0, lo raw": ("none", "raw", 10, False),
    "hi | column scale (3), shared, lo raw": ("col", "raw", 10, True),
}


def _shifted(e: np.ndarray, rows: int, cols: int, fill: int) -> np.ndarray:
    out = np.full_like(e, fill)
    if rows < e.shape[0] and cols < e.shape[1]:
        out[rows:, cols:] = e[:e.shape[0] - rows, :e.shape[1] - cols]
    return out


def _scale_class(run_sum, run_n, all_sum, all_n) -> np.ndarray:
    """3 classes: floor(1.5 * (running mean - tensor's running mean)) + 1 clipped to 0..2, in integers."""
    num = 3 * (run_sum * all_n - all_sum * run_n)
    den = 2 * np.maximum(run_n, 1) * np.maximum(all_n, 1)
    return np.where((run_n > 0) & (all_n > 0), np.clip(num // den + 1, 0, 2), 1)


def hi_context(kind: str, a: np.ndarray) -> np.ndarray:
    """Context id per value of the uint16 matrix `a`, from earlier values only (row-major order)."""
    e = (a.astype(np.int64) >> 10) & 31
    rows, cols = e.shape
    if kind == "none":
        return np.zeros_like(e)
    if kind == "left":
        return _shifted(e, 0, 1, 32)
    if kind == "up":
        return _shifted(e, 1, 0, 32)
    if kind == "run4":
        return sum(_shifted(e, 0, j, 15) for j in range(1, 5)) // 4
    flat = np.concatenate([[0], np.cumsum(e.reshape(-1))])
    idx = np.arange(e.size).reshape(rows, cols)
    all_sum, all_n = flat[idx], idx
    row_sum = np.cumsum(e, 1) - e
    row_n = np.broadcast_to(np.arange(cols), (rows, cols))
    col_sum = np.cumsum(e, 0) - e
    col_n = np.broadcast_to(np.arange(rows)[:, None], (rows, cols))
    row, col = _scale_class(row_sum, row_n, all_sum, all_n), _scale_class(col_sum, col_n, all_sum, all_n)
    return {"row": row, "col": col, "rowcol": 3 * row + col}[kind]


class _Model:
    """Adaptive 16-bit bit probabilities keyed by anything hashable."""

    def __init__(self, limit: int):
        self.p: dict = {}
        self.cap = 1 << limit

    def prob(self, key) -> int:
        return self.p.get(key, (ONE >> 1, 0))[0]

    def update(self, key, bit: int) -> None:
        p, n = self.p.get(key, (ONE >> 1, 0))
        d = min(n + 2, self.cap)
        p = p + (ONE - p) // d if bit == 0 else p - p // d
        self.p[key] = (min(max(p, 32), ONE - 32), n + 1)


def _bits(a: np.ndarray, hc: np.ndarray, lo_kind: str):
    """(key, bit) of every binary decision of the values of `a`, in coding order. Keys: context
    * 512 + tree node (high magnitude 1..127, low byte 257..511), 128 + magnitude for the sign."""
    for v, c in zip(a.reshape(-1).tolist(), hc.reshape(-1).tolist()):
        mag, node = (v >> 8) & 127, 1
        for k in range(6, -1, -1):
            b = mag >> k & 1
            yield c * 512 + node, b
            node = 2 * node + b
        yield 128 + mag, v >> 15
        if lo_kind == "raw":  # 8 bits each, counted by the caller
            continue
        lc, node = (mag if lo_kind == "hi" else 0), 1
        for k in range(7, -1, -1):
            b = v >> k & 1
            yield lc * 512 + 256 + node, b
            node = 2 * node + b


def ideal_bytes(mats: list[np.ndarray], config: str) -> float:
    """Sum of -log2 p / 8 of the fp16 matrices (uint16 views) under CONFIGS[config]."""
    hi_kind, lo_kind, limit, shared = CONFIGS[config]
    model, total = _Model(limit), 0.0
    for a in mats:
        model = model if shared else _Model(limit)
        for key, b in _bits(a, hi_context(hi_kind, a), lo_kind):
            p = model.prob(key)
            total += LOG2[p] if b == 0 else LOG2[ONE - p]
            model.update(key, b)
        total += 8 * a.size if lo_kind == "raw" else 0
    return total / 8


def encode(mats: list[np.ndarray]) -> bytes:
    """The "order0" model's bits through an LZMA-style binary range coder (carry via a 33-bit low)."""
    low, rng, cache, pending, out = 0, 0xFFFFFFFF, 0, 1, bytearray()

    def shift():
        nonlocal low, cache, pending
        if low < 0xFF000000 or low >= 1 << 32:
            carry, t = low >> 32, cache
            for _ in range(pending):
                out.append((t + carry) & 255)
                t = 255
            pending, cache = 0, (low >> 24) & 255
        pending += 1
        low = (low & 0xFFFFFF) << 8

    for a in mats:
        model = _Model(10)
        for key, b in _bits(a, np.zeros(a.shape, np.int64), "none"):
            bound = (rng >> 16) * model.prob(key)
            if b:
                low, rng = low + bound, rng - bound
            else:
                rng = bound
            model.update(key, b)
            while rng < 1 << 24:
                rng = rng << 8 & 0xFFFFFFFF
                shift()
    for _ in range(5):
        shift()
    return bytes(out)


# The shipped decoder of `encode`'s stream (numpy as n): b the stream, S the matrices' value counts.
DECODER_SOURCE = '''def _f(b,S):
 R=4294967295;C=int.from_bytes(b[1:5],"big");p=5;o=[]
 def d(k):
  nonlocal R,C,p
  q,m=P.get(k,(32768,0));B=(R>>16)*q;D=min(m+2,1024)
  if C<B:R=B;q+=(65536-q)//D;x=0
  else:C-=B;R-=B;q-=q//D;x=1
  P[k]=(min(max(q,32),65504),m+1)
  while R<16777216:R<<=8;C=C<<8|b[p];p+=1
  return x
 for N in S:
  P={}
  for _ in range(N):
   h=1
   while h<128:h=2*h+d(h)
   s=d(h);l=1
   while l<256:l=2*l+d(l+256)
   o.append(s<<15|h-128<<8|l-256)
 return n.array(o,n.uint16).tobytes()
'''


def decode(blob: bytes, sizes: list[int]) -> bytes:
    """`encode`'s fp16 bytes back, through DECODER_SOURCE itself."""
    scope = {"n": np}
    exec(DECODER_SOURCE, scope)  # noqa: S102 - our own constant source, the code a submission ships
    return scope["_f"](blob, sizes)


def _intervals(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|value| interval of each value's high byte (all low bytes, half an ulp either side: they tile [0, inf))."""
    first = a.astype(np.int64) & 0x7F00
    lo = first.astype(np.uint16).view(np.float16).astype(np.float64)
    hi = (first | 255).astype(np.uint16).view(np.float16).astype(np.float64)
    step = np.abs(np.nextafter(hi.astype(np.float16), np.float16(np.inf)).astype(np.float64) - hi)
    return np.where(first == 0, 0.0, lo - step / 2), hi + step / 2


def _gauss_bytes(a: np.ndarray, var: np.ndarray, floor: float = 0.0) -> float:
    lo, hi = _intervals(a)
    s = np.sqrt(2 * np.maximum(var, 1e-30))
    p = 0.5 * (erf(hi / s) - erf(lo / s))
    return float(-np.log2(np.maximum((1 - floor) * p + floor / 256, 1e-300)).sum() / 8)


def gaussian_bound(a: np.ndarray) -> float:
    """Bytes of the high bytes of `a` under N(0, row ms * column ms / ms) per value, the scales free
    (not counted, taken from the whole tensor): what a scale context could reach at most."""
    w2 = a.view(np.float16).astype(np.float64) ** 2
    return _gauss_bytes(a, w2.mean(1, keepdims=True) * w2.mean(0, keepdims=True) / max(w2.mean(), 1e-30))


def gaussian_causal(a: np.ndarray, prior: int = 4) -> float:
    """`gaussian_bound` with the scales estimated from earlier values only: row and column mean
    squares so far, each blended with the tensor's running mean square as `prior` pseudo-values,
    and 0.5% of the probability spread evenly (float model: a measure, not a shippable coder)."""
    w2 = a.view(np.float16).astype(np.float64) ** 2
    rows, cols = w2.shape
    flat = np.concatenate([[0.0], np.cumsum(w2.reshape(-1))])
    idx = np.arange(w2.size).reshape(rows, cols)
    ms = np.maximum(np.where(idx > 0, flat[idx] / np.maximum(idx, 1), 1e-3), 1e-12)
    r = (np.cumsum(w2, 1) - w2 + prior * ms) / (np.arange(cols)[None, :] + prior)
    c = (np.cumsum(w2, 0) - w2 + prior * ms) / (np.arange(rows)[:, None] + prior)
    return _gauss_bytes(a, r * c / ms, floor=0.005)
