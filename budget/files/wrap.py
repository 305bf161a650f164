"""The smallest self-extracting train_gpt.py: compressors x payload encodings, measured in UTF-8 bytes.

The challenge counts the UTF-8 bytes of the shipped script, so a wrapper pays for its compressed
payload's text encoding: base85 spends 5 characters per 4 bytes (a quarter on top), base64 a
third, a latin-1 string literal two bytes for every byte >= 0x80 (about half on top), a bytes
literal four for every escaped byte. A big number written in base 92 (the printable ASCII from
`#` to `~` in a raw string, neither quote nor newline) spends 8 / log2(92) = 1.226 bytes per
byte; one whose digits are also two-byte characters, each costing its UTF-8 bytes (`_mixed`),
1.181, the least of these; their decoders are one `functools.reduce`. Every candidate is compiled
and read back with `unwrap_source`, which must give the input byte for byte; the smallest wins.

>>> r = smallest_wrapper(b"print('hi')\\n" * 200)
>>> r.size < r.sizes["lzma+base85"], unwrap_source(r.text.encode()).source == b"print('hi')\\n" * 200
(True, True)
"""
from __future__ import annotations

import base64
import bz2
import lzma
import zlib
from dataclasses import dataclass

from pgolf.budget.files.codebytes import mixed_template, unwrap_source
from pgolf.budget.errors import PgolfInputError

BASE, FIRST = 92, 0x23  # digits '#'..'~': no quote, no newline; a backslash is fine inside r"..." unless last
WIDE, WIDE_FIRST = 1888, 0xA0  # two-byte UTF-8 characters U+00A0..U+07FF (C1 controls left out)
MIXED_TRIES = 3  # the mixed encoding is the slow one: only the smallest compressed payloads get it
_ALONE = "{m}.decompress({payload})"
_RAW = '{m}.decompress({payload},format={m}.FORMAT_RAW,filters=[{{"id":{m}.FILTER_LZMA2}}])'


@dataclass(frozen=True)
class WrapResult:
    """The chosen wrapper and the UTF-8 size of every candidate that compiled and read back exactly."""

    text: str
    encoding: str
    sizes: dict[str, int]

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8"))


def _payloads(source: bytes) -> list[tuple[str, bytes, str, str]]:
    """(name, compressed bytes, import line, decompress expression with {payload}) per compressor setting."""
    out = []
    for lc in (0, 1, 2, 3, 4):
        for pb in (0, 1, 2):
            f = {"id": lzma.FILTER_LZMA1, "preset": 9 | lzma.PRESET_EXTREME, "lc": lc, "lp": 0, "pb": pb,
                 "nice_len": 273}
            packed = lzma.compress(source, format=lzma.FORMAT_ALONE, filters=[f])
            out.append((f"lzma-alone(lc{lc},pb{pb})", packed, "lzma as L", _ALONE.format(m="L", payload="{payload}")))
    raw = lzma.compress(source, format=lzma.FORMAT_RAW,
                        filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
    out.append(("lzma-raw", raw, "lzma as L", _RAW.format(m="L", payload="{payload}")))
    out.append(("zlib", zlib.compress(source, 9), "zlib as Z", "Z.decompress({payload})"))
    out.append(("bz2", bz2.compress(source, 9), "bz2 as Z", "Z.decompress({payload})"))
    return out


def _base92(data: bytes) -> str:
    """Big-endian base-92 digits of the number `data` spells, no leading zeros (split in halves: fast)."""
    n = int.from_bytes(data, "big")
    k = max(1, n.bit_length() * 1000 // 6523)  # log2(92) = 6.5236: a lower bound on the digit count
    while BASE ** k <= n:
        k += 1
    return _digits(n, k).lstrip(chr(FIRST)) if n else ""


def _digits(n: int, k: int) -> str:
    if k <= 48:
        out = []
        for _ in range(k):
            n, d = divmod(n, BASE)
            out.append(chr(FIRST + d))
        return "".join(reversed(out))
    high, low = divmod(n, BASE ** (k // 2))
    return _digits(high, k - k // 2) + _digits(low, k // 2)


def _mixed(data: bytes) -> str:
    """`data` as a number in a numeration whose digits cost their UTF-8 bytes: 92 one-byte characters
    ('#'..'~') and 1,888 two-byte ones. Strings of L bytes number f(L) = 92 f(L-1) + 1888 f(L-2), so a
    character carries log2 of that growth per byte: 6.77 bits against base92's 6.52 (1.181 bytes per
    payload byte). Encoded left to right from the top f values, which step down exactly."""
    n = int.from_bytes(data, "big")
    top, below, length = BASE, 1, 1  # f(L), f(L-1)
    while top <= n:
        top, below, length = BASE * top + WIDE * below, top, length + 1
    out = []
    while length > 0:
        below2 = (top - BASE * below) // WIDE if length >= 2 else 0
        if n < BASE * below:
            j, n = divmod(n, below)
            out.append(chr(FIRST + j))
            length, top, below = length - 1, below, below2
        else:
            j, n = divmod(n - BASE * below, below2)
            out.append(chr(WIDE_FIRST + j))
            below3 = (below - BASE * below2) // WIDE if length >= 3 else 0
            length, top, below = length - 2, below2, below3
    return "".join(out)


def _latin1_literal(data: bytes) -> str:
    text = data.decode("latin-1")
    for a, b in (("\\", "\\\\"), ('"', '\\"'), ("\r", "\\r"), ("\n", "\\n"), ("\x00", "\\x00")):
        text = text.replace(a, b)
    return f'"{text}".encode("latin1")'


def _encodings(data: bytes, mixed: bool = True) -> list[tuple[str, str, str]]:
    """(name, extra import, expression giving `data` back) per text encoding."""
    digits = _base92(data)
    fold = mixed_template(BASE, WIDE, FIRST, WIDE_FIRST)
    extra = [("mixed 1/2-byte", "functools as F",
              f'F.reduce({fold},r"{_mixed(data)}"[::-1],(0,1,0))[0].to_bytes({len(data)},"big")')] if mixed else []
    return extra + [
        ("base85", "base64 as B", f'B.b85decode("{base64.b85encode(data).decode()}")'),
        ("base64", "base64 as B", f'B.b64decode("{base64.b64encode(data).decode()}")'),
        ("latin-1 str", "", _latin1_literal(data)),
        ("bytes literal", "", repr(data)),
        (f"base{BASE}", "functools as F",
         f'F.reduce(lambda n,c:n*{BASE}+ord(c)-{FIRST},r"{digits}",0).to_bytes({len(data)},"big")'),
    ]


def _candidate(imports: list[str], expression: str) -> str:
    head = "import " + ",".join(i for i in imports if i)
    return f"{head}\nexec({expression})\n"


def smallest_wrapper(source: bytes) -> WrapResult:
    """Every compressor x encoding wrapper of `source`; the smallest that compiles and unwraps to `source`.

    sizes holds each encoding's best size and 'lzma+base85' (the records' wrapper: lzma raw + base85).
    """
    if not source:
        raise PgolfInputError(None, "nothing to wrap: the script is empty")
    found: dict[str, list[tuple[int, str, str]]] = {}
    payloads = sorted(_payloads(source), key=lambda p: len(p[1]))
    for rank, (cname, packed, cimport, decompress) in enumerate(payloads):
        for ename, eimport, expr in _encodings(packed, mixed=rank < MIXED_TRIES):
            text = _candidate([cimport, eimport], decompress.replace("{payload}", expr))
            size = len(text.encode("utf-8"))
            for key in [ename] + (["lzma+base85"] if (cname, ename) == ("lzma-raw", "base85") else []):
                found.setdefault(key, []).append((size, text, cname))
    best = {}
    for key, candidates in found.items():  # the smallest of each encoding that compiles and reads back
        best[key] = next((c for c in sorted(candidates) if _reads_back(c[1], source)), None)
    best = {k: v for k, v in best.items() if v is not None}
    encoding, winner = min(((k, v) for k, v in best.items() if k != "lzma+base85"), key=lambda kv: kv[1][0])
    return WrapResult(text=winner[1], encoding=f"{winner[2]}+{encoding}", sizes={k: v[0] for k, v in best.items()})


def _reads_back(text: str, source: bytes) -> bool:
    try:
        compile(text, "<wrapper>", "exec")
        inner = unwrap_source(text.encode("utf-8"))
    except (SyntaxError, ValueError, PgolfInputError):
        return False
    return inner is not None and inner.source == source
