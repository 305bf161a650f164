"""Code bytes: the script's own length, and the length of a self-extracting lzma+base85 wrapper.

The challenge counts the UTF-8 bytes of the training script. Late records ship the script as a
one-line wrapper that decompresses and executes itself; `wrap_source` builds exactly such a
wrapper (lzma preset 9|extreme in the compact .lzma "alone" format, base85 in a string
literal; base85's alphabet has no quote or backslash), and tests run it. `unwrap_source` reads
any such wrapper back (the records' lzma raw + base85 one, zlib/base64 variants) by interpreting
its syntax tree, so a reviewer sees the inner source without executing anything.

>>> src = b"print('hello from inside')\\n" * 40
>>> sizes = code_sizes(src)
>>> sizes["raw"], sizes["wrapped"] < sizes["raw"]
(1080, True)
"""
from __future__ import annotations

import ast
import base64
import bz2
import importlib
import lzma
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from pgolf.budget.errors import PgolfInputError

MAX_CODE_BYTES = 100_000_000
_FILTERS = [{"id": lzma.FILTER_LZMA1, "preset": 9 | lzma.PRESET_EXTREME}]


def wrap_source(source: bytes) -> str:
    """Python source that runs `source`: exec(lzma.decompress(base64.b85decode("...")))."""
    packed = lzma.compress(source, format=lzma.FORMAT_ALONE, filters=_FILTERS)
    text = base64.b85encode(packed).decode("ascii")
    return f'import lzma,base64\nexec(lzma.decompress(base64.b85decode("{text}")))\n'


def code_sizes(source: bytes) -> dict[str, int]:
    """{"raw": UTF-8 bytes of the source, "wrapped": bytes of its self-extracting wrapper}."""
    return {"raw": len(source), "wrapped": len(wrap_source(source).encode("ascii"))}


def read_code(path: str | os.PathLike) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise PgolfInputError(p, "code path is not a file")
        if size > MAX_CODE_BYTES:
            raise PgolfInputError(p, f"code file is {size:,} bytes; over the {MAX_CODE_BYTES:,}-byte reading limit")
        data = p.read_bytes()
    except OSError as exc:
        raise PgolfInputError(p, f"cannot read code file ({exc.strerror or exc})") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PgolfInputError(p, f"code file is not UTF-8 text (byte {exc.start})") from None
    return data


def code_bytes(path: str | os.PathLike) -> dict[str, int]:
    """Code sizes of a file as shipped: {"raw": its bytes, "wrapped": its lzma+base85 wrapper's}.

    A file that already is a self-extracting wrapper counts as shipped both ways and adds
    "inner": the bytes of the source it runs (read back, never executed). A file with CRLF line
    ends adds "self_logged": what the baseline's `Code size:` line prints for it (it reads the
    file as text, so each CRLF counts one byte); the challenge counts the file as shipped.
    """
    data = read_code(path)
    inner = unwrap_source(data, path)
    sizes = code_sizes(data) if inner is None else {"raw": len(data), "wrapped": len(data), "inner": inner.inner_bytes}
    if b"\r\n" in data:  # the script's own log reads text with universal newlines: one byte less per line
        sizes["self_logged"] = len(data.replace(b"\r\n", b"\n"))
    return sizes


# ---------------------------------------------------------------------------------------------
# Reading a self-extracting script back without running it.

MAX_INNER_BYTES = 50_000_000  # a training script's source; anything larger is refused, not decoded

_DECODERS = {  # (module, function) -> bytes -> bytes; the text encodings records wrap with
    ("base64", "b85decode"): base64.b85decode, ("base64", "b64decode"): base64.b64decode,
    ("base64", "a85decode"): base64.a85decode, ("base64", "b32decode"): base64.b32decode,
    ("base64", "decodebytes"): base64.decodebytes, ("base64", "urlsafe_b64decode"): base64.urlsafe_b64decode,
}
_DECOMPRESSORS = {("lzma", "decompress"), ("zlib", "decompress"), ("bz2", "decompress"), ("gzip", "decompress")}


@dataclass(frozen=True)
class Unwrapped:
    """A self-extracting script read back: what ships, what runs, and how it was packed."""

    shipped_bytes: int   # the counted code bytes: the file as shipped
    source: bytes        # the source the wrapper executes
    layers: tuple[str, ...]  # outermost call last, e.g. ("base64.b85decode", "lzma.decompress")

    @property
    def inner_bytes(self) -> int:
        return len(self.source)


class _NotAWrapper(Exception):
    pass


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    aliases = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name] = a.name
    return aliases


def _literal(node: ast.AST, aliases: dict[str, str]):
    """A keyword value: a literal, a list/dict of literals, or a module constant (lzma.FORMAT_RAW)."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        module = aliases.get(node.value.id)
        if module in {"lzma", "zlib"} and node.attr.isupper():
            return getattr(importlib.import_module(module), node.attr)
        raise _NotAWrapper(f"unknown constant {ast.unparse(node)}")
    if isinstance(node, ast.List):
        return [_literal(e, aliases) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k, aliases): _literal(v, aliases) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand, aliases)
    if isinstance(node, ast.Constant):
        return node.value
    raise _NotAWrapper(f"not a literal: {ast.unparse(node)[:40]}")


def _bounded_decompress(module: str, data: bytes, kwargs: dict) -> bytes:
    if module == "lzma":
        dec = lzma.LZMADecompressor(**kwargs)
        out = dec.decompress(data, max_length=MAX_INNER_BYTES + 1)
    elif module == "zlib":
        dec = zlib.decompressobj(*([kwargs.pop("wbits")] if "wbits" in kwargs else []))
        out = dec.decompress(data, MAX_INNER_BYTES + 1)
    elif module == "bz2":
        dec = bz2.BZ2Decompressor()
        out = dec.decompress(data, max_length=MAX_INNER_BYTES + 1)
    else:  # gzip
        dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = dec.decompress(data, MAX_INNER_BYTES + 1)
    if len(out) > MAX_INNER_BYTES:
        raise _NotAWrapper(f"payload decodes to over {MAX_INNER_BYTES:,} bytes")
    if not dec.eof:  # a truncated stream decodes without error to a prefix of the source
        raise EOFError(f"{module} stream ends before its end marker, after {len(out):,} bytes")
    return out


def _evaluate(node: ast.AST, aliases: dict[str, str], layers: list[str]) -> bytes:
    """Interpret the exec argument: nested decompress/decode calls around one string literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return node.value.encode("ascii") if isinstance(node.value, str) else node.value
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        raise _NotAWrapper("exec's argument is not a chain of decode calls")
    func = node.func
    if func.attr == "encode" and len(node.args) == 1 and isinstance(func.value, ast.Constant) \
            and isinstance(func.value.value, str) and _literal(node.args[0], aliases) in _LATIN1:
        layers.append("str.encode(latin1)")
        return func.value.value.encode("latin-1")
    if func.attr in {"decode", "encode"} and not node.keywords and not node.args:  # bytes.decode() / str.encode()
        return _evaluate(func.value, aliases, layers)
    if func.attr == "to_bytes":
        return _base_n(node, aliases, layers)
    if not isinstance(func.value, ast.Name) or len(node.args) != 1:
        raise _NotAWrapper(f"unknown call {ast.unparse(func)}")
    key = (aliases.get(func.value.id, ""), func.attr)
    inner = _evaluate(node.args[0], aliases, layers)
    kwargs = {k.arg: _literal(k.value, aliases) for k in node.keywords}
    if key in _DECODERS and not kwargs:
        out = _DECODERS[key](inner)
    elif key in _DECOMPRESSORS:
        out = _bounded_decompress(key[0], inner, kwargs)
    else:
        raise _NotAWrapper(f"unknown call {ast.unparse(func)}")
    layers.append(".".join(key))
    return out


_LATIN1 = {"latin1", "latin-1", "l1", "iso-8859-1", "iso8859-1"}


def mixed_template(a: int, b: int, k1: int, k2: int) -> str:
    """The fold `pgolf wrap` decodes a mixed one/two-byte number with (right to left; state N, f(k), f(k-1))."""
    h = f"{a}*P+{b}*Q"
    return (f"lambda s,c:(lambda N,P,Q,o:(N+(o-{k1})*P,{h},P)if o<128 else"
            f"(N+{a}*({h})+(o-{k2})*P,{a}*({h})+{b}*P,{h}))(*s,ord(c))")


def _mixed_number(node: ast.Call, aliases: dict[str, str], layers: list[str]) -> bytes:
    """`F.reduce(<fold>, r"digits"[::-1], (0,1,0))[0].to_bytes(LEN, "big")`: pgolf wrap's mixed 1/2-byte number."""
    sub = node.func.value
    try:
        call, digits = sub.value, sub.value.args[1].value
        ok = (isinstance(sub.slice, ast.Constant) and sub.slice.value == 0 and isinstance(call, ast.Call)
              and isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
              and aliases.get(call.func.value.id) == "functools" and call.func.attr == "reduce"
              and len(call.args) == 3 and not call.keywords and ast.unparse(call.args[2]) == "(0, 1, 0)"
              and ast.unparse(call.args[1].slice) == "::-1" and isinstance(digits, ast.Constant)
              and isinstance(digits.value, str))
        nums = [int(x) for x in re.findall(r"\d+", ast.unparse(call.args[0]))]
        a, b, k1, k2 = nums[1], nums[2], nums[0], nums[7]
        template = ast.parse(mixed_template(a, b, k1, k2), mode="eval").body
        length, order = _literal(node.args[0], aliases), _literal(node.args[1], aliases)
        ok = ok and ast.dump(template) == ast.dump(call.args[0]) and isinstance(length, int) and order == "big" \
            and k1 + a <= 128 <= k2 and not node.keywords
    except (AttributeError, TypeError, ValueError, SyntaxError, IndexError):
        ok = False
    if not ok:
        raise _NotAWrapper(f"unknown call {ast.unparse(node.func)[:60]}")
    if not 0 <= length <= MAX_INNER_BYTES or len(digits.value) > 2 * MAX_INNER_BYTES:
        raise _NotAWrapper(f"payload decodes to over {MAX_INNER_BYTES:,} bytes")
    n, f, g = 0, 1, 0
    for ch in reversed(digits.value):
        o = ord(ch)
        if o < 128:
            if not 0 <= o - k1 < a:
                raise ValueError(f"digit {ch!r} outside the one-byte range")
            n, f, g = n + (o - k1) * f, a * f + b * g, f
        else:
            if not 0 <= o - k2 < b:
                raise ValueError(f"digit {ch!r} outside the two-byte range")
            h = a * f + b * g
            n, f, g = n + a * h + (o - k2) * f, a * h + b * f, h
    layers.append("mixed-number")
    return n.to_bytes(length, "big")


def _base_n(node: ast.Call, aliases: dict[str, str], layers: list[str]) -> bytes:
    """`F.reduce(lambda n,c:n*B+ord(c)-K, r"digits", 0).to_bytes(LEN, "big")`: a number in base B (pgolf wrap)."""
    if isinstance(node.func.value, ast.Subscript):
        return _mixed_number(node, aliases, layers)
    call = node.func.value
    try:
        ok = (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
              and isinstance(call.func.value, ast.Name) and aliases.get(call.func.value.id) == "functools"
              and call.func.attr == "reduce" and len(call.args) == 3 and not call.keywords)
        lam, digits, start = call.args if ok else (None, None, None)
        base, offset = lam.body.left.left.right.value, lam.body.right.value
        n_arg, c_arg = (a.arg for a in lam.args.args)
        template = ast.parse(f"lambda {n_arg},{c_arg}:{n_arg}*{base!r}+ord({c_arg})-{offset!r}", mode="eval").body
        length = _literal(node.args[0], aliases)
        order = _literal(node.args[1], aliases)
        ok = (ast.dump(template) == ast.dump(lam) and isinstance(base, int) and isinstance(offset, int)
              and isinstance(digits, ast.Constant) and isinstance(digits.value, str)
              and _literal(start, aliases) == 0 and isinstance(length, int) and order == "big" and not node.keywords)
    except (AttributeError, TypeError, ValueError, SyntaxError):
        ok = False
    if not ok:
        raise _NotAWrapper(f"unknown call {ast.unparse(node.func)[:60]}")
    if not 0 <= length <= MAX_INNER_BYTES or len(digits.value) > 2 * MAX_INNER_BYTES:
        raise _NotAWrapper(f"payload decodes to over {MAX_INNER_BYTES:,} bytes")
    n = 0
    for ch in digits.value:
        d = ord(ch) - offset
        if not 0 <= d < base:
            raise ValueError(f"digit {ch!r} outside base {base}")
        n = n * base + d
    layers.append(f"base{base}")
    return n.to_bytes(length, "big")  # too long a number: OverflowError, a corrupt payload


def unwrap_source(shipped: bytes, path: str | os.PathLike | None = None) -> Unwrapped | None:
    """The source inside a self-extracting script, or None when `shipped` is plain source.

    A wrapper is imports plus one `exec(...)` of nested base64/base85 decodes and
    lzma/zlib/bz2/gzip decompressions around a string literal. It is interpreted, never run.
    Nested wrappers are followed; a wrapper whose payload does not decode raises PgolfInputError.

    >>> unwrap_source(wrap_source(b"print(1)\\n").encode()).source
    b'print(1)\\n'
    >>> unwrap_source(b"print(1)\\n") is None
    True
    """
    layers: list[str] = []
    source = shipped
    for _ in range(8):
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            break
        calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
                 and isinstance(n.value.func, ast.Name) and n.value.func.id == "exec"]
        others = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom)) and n not in calls]
        if len(calls) != 1 or others or len(calls[0].value.args) != 1:
            break
        try:
            source = _evaluate(calls[0].value.args[0], _module_aliases(tree), layers)
        except _NotAWrapper as exc:
            if "payload" in str(exc):
                raise PgolfInputError(path, f"self-extracting script: {exc}") from None
            break
        except (ValueError, TypeError, LookupError, OverflowError, lzma.LZMAError, zlib.error, OSError,
                EOFError) as exc:
            raise PgolfInputError(path, f"self-extracting script with a corrupt payload ({exc})") from None
    if not layers:
        return None
    return Unwrapped(shipped_bytes=len(shipped), source=source, layers=tuple(layers))
