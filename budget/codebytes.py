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
    """code_sizes of a file: {"raw": ..., "wrapped": ...}."""
    return code_sizes(read_code(path))


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
    if func.attr in {"decode", "encode"} and not node.keywords:  # bytes.decode() / str.encode()
        return _evaluate(func.value, aliases, layers)
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
        except (ValueError, TypeError, LookupError, lzma.LZMAError, zlib.error, OSError, EOFError) as exc:
            raise PgolfInputError(path, f"self-extracting script with a corrupt payload ({exc})") from None
    if not layers:
        return None
    return Unwrapped(shipped_bytes=len(shipped), source=source, layers=tuple(layers))
