"""`pgolf wrap`: the smallest self-extracting script, read back byte for byte, and it runs."""
from __future__ import annotations

import base64
import lzma
import random
import subprocess
import sys

import pytest

from conftest import fixture_path
from pgolf.budget.files.codebytes import code_bytes, unwrap_source
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.files.codebytes import mixed_template
from pgolf.budget.files.wrap import _base92, _encodings, _mixed, smallest_wrapper
from pgolf.figures.cli import main

SCRIPT = '''"""A script with what wrappers trip on: a docstring, non-ASCII (é, ▁, 🙂), a main guard, a dataclass."""
import dataclasses, sys

@dataclasses.dataclass
class Point:
    x: int
    y: int = 2

def main():
    p = Point(3)
    print("π ≈", round(sum(4 * (-1) ** k / (2 * k + 1) for k in range(2000)), 6), p, sys.argv[1:])
    print("name", __name__, "▁piece".encode("utf-8"))

if __name__ == "__main__":
    main()
'''


def records_wrapper(source: bytes) -> str:
    """The SP8192 record's own wrapper form: lzma raw (LZMA2, preset 9e) + base85."""
    packed = lzma.compress(source, format=lzma.FORMAT_RAW,
                           filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
    text = base64.b85encode(packed).decode()
    return (f'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("{text}"),format=L.FORMAT_RAW,'
            f'filters=[{{"id":L.FILTER_LZMA2}}]))\n')


def test_official_baseline_wraps_smaller_than_the_records_form():
    path = fixture_path("scripts", "official_baseline_train_gpt.py")
    source = path.read_bytes()
    r = smallest_wrapper(source)
    records = records_wrapper(source).encode()
    assert unwrap_source(records).source == source
    assert r.sizes["lzma+base85"] == len(records)
    assert unwrap_source(r.text.encode()).source == source
    assert r.encoding.endswith("+mixed 1/2-byte") and r.size == r.sizes["mixed 1/2-byte"] == min(r.sizes.values())
    # bytes per payload byte: mixed 1.181, base92 1.226, base85 1.25 (a smaller decoder, a raw lzma stream)
    assert 0.04 * r.sizes["lzma+base85"] < r.sizes["lzma+base85"] - r.size < 0.06 * r.sizes["lzma+base85"]
    assert r.size < r.sizes["base92"] < r.sizes["base85"] < r.sizes["base64"] < r.sizes["latin-1 str"] \
        < r.sizes["bytes literal"]


@pytest.mark.parametrize("data", [b"\x00" * 9, b"\x00\x01", b"\xff" * 33, bytes(range(256)),
                                  random.Random(0).randbytes(3000)])
def test_every_encoding_reads_back(data):
    """Each encoding of a payload (here the bytes themselves, zlib-compressed by the wrapper) decodes exactly."""
    import zlib
    packed = zlib.compress(data, 9)
    for name, imp, expr in _encodings(packed):
        text = f"import zlib{',' + imp if imp else ''}\nexec(zlib.decompress({expr}))\n"
        try:
            compile(text, "w", "exec")
        except SyntaxError:
            assert name in ("base92", "mixed 1/2-byte") and expr.split('"[')[0].split('",')[0].endswith("\\"), name
            continue
        inner = unwrap_source(text.encode())
        assert inner is not None and inner.source == data, name


def test_base92_digits_and_a_corrupt_payload():
    assert _base92(b"") == "" and _base92(b"\x00\x5b") == chr(0x23 + 91)  # 91 is one digit
    for data in (random.Random(n).randbytes(n) for n in (1, 50, 700)):
        n = 0
        for c in _base92(data):
            n = n * 92 + ord(c) - 35
        assert n.to_bytes(len(data), "big") == data
    bad = 'import functools as F\nexec(F.reduce(lambda n,c:n*92+ord(c)-35,r"~~~~~",0).to_bytes(2,"big"))\n'
    with pytest.raises(PgolfInputError, match="corrupt payload"):
        unwrap_source(bad.encode(), "w.py")
    other = 'import functools as F\nexec(F.reduce(lambda n,c:n*92+ord(c)-36,r"ab",1).to_bytes(2,"big"))\n'
    assert unwrap_source(other.encode()) is None  # not the form pgolf writes: not read as a wrapper
    fold = mixed_template(92, 1888, 35, 160)
    mixed = 'import functools as F\nexec(F.reduce(' + fold + ',r"{}"[::-1],(0,1,0))[0].to_bytes({},"big"))\n'
    data = b"print(1)\n"
    assert unwrap_source(mixed.format(_mixed(data), len(data)).encode()).source == data
    with pytest.raises(PgolfInputError, match="corrupt payload"):
        unwrap_source(mixed.format("\u4e00", 1).encode(), "w.py")  # a three-byte character is no digit


def test_wrapped_script_runs_like_the_original(tmp_path):
    original = tmp_path / "train_gpt.py"
    original.write_text(SCRIPT, encoding="utf-8")
    wrapped = tmp_path / "wrapped.py"
    assert main(["wrap", str(original), "-o", str(wrapped)]) == 0
    runs = [subprocess.run([sys.executable, "-I", str(p), "--flag", "x"], capture_output=True, timeout=60)
            for p in (original, wrapped)]
    assert runs[0].returncode == runs[1].returncode == 0
    assert runs[0].stdout == runs[1].stdout and b"Point(x=3, y=2)" in runs[0].stdout
    assert unwrap_source(wrapped.read_bytes()).source == original.read_bytes()
    sizes = code_bytes(wrapped)
    assert sizes == {"raw": wrapped.stat().st_size, "wrapped": wrapped.stat().st_size,
                     "inner": len(SCRIPT.encode("utf-8"))}


def test_cli_prints_the_saving(tmp_path, capsys):
    path = fixture_path("scripts", "official_baseline_train_gpt.py")
    assert main(["wrap", str(path), "-o", str(tmp_path / "w.py")]) == 0
    out = capsys.readouterr().out
    size = (tmp_path / "w.py").stat().st_size
    assert f"-> {tmp_path / 'w.py'}: {size:,} bytes" in out and "saving" in out
    assert main(["wrap", str(path), "-o", str(tmp_path / "w2.py"), "--json"]) == 0
    import json
    j = json.loads(capsys.readouterr().out)
    assert j["wrapped_bytes"] == size and j["saving_vs_lzma_base85"] == j["lzma_base85_bytes"] - size > 0
