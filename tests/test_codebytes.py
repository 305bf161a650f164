"""Self-extracting scripts are read back without running them."""
import base64
import lzma
import zlib
from pathlib import Path

import pytest
import torch

from pgolf.budget.files import codebytes
from pgolf.budget.files.codebytes import unwrap_source, wrap_source
from pgolf.budget.errors import PgolfInputError

WRAPPED = Path(__file__).resolve().parents[1] / "../shared/fixtures/scripts/wrapped_sp8192_loop_train_gpt.py"
PLAIN = WRAPPED.with_name("official_baseline_train_gpt.py")


def test_the_records_lzma_raw_base85_wrapper_is_read_back():
    if not WRAPPED.exists():
        pytest.skip(f"fixture absent: {WRAPPED}")
    u = unwrap_source(WRAPPED.read_bytes())
    assert u.shipped_bytes == 15_516
    assert u.inner_bytes == 43_103  # 43,097 characters; six are two-byte UTF-8
    assert len(u.source.decode("utf-8")) == 43_097
    assert u.layers == ("base64.b85decode", "lzma.decompress")
    compile(u.source, "inner", "exec")


def test_plain_source_is_not_a_wrapper():
    if not PLAIN.exists():
        pytest.skip(f"fixture absent: {PLAIN}")
    assert unwrap_source(PLAIN.read_bytes()) is None
    assert unwrap_source(b"exec(input())\n") is None
    assert unwrap_source(b"\xff\xfe not python") is None


@pytest.mark.parametrize("build, layers", [
    (lambda s: f'import zlib,base64\nexec(zlib.decompress(base64.b64decode("{base64.b64encode(zlib.compress(s)).decode()}")))',
     ("base64.b64decode", "zlib.decompress")),
    (lambda s: f'import lzma as L, base64 as B\nexec(L.decompress(B.a85decode({base64.a85encode(lzma.compress(s))!r})).decode())',
     ("base64.a85decode", "lzma.decompress")),
    (lambda s: f'import base64\nexec(base64.b85decode("{base64.b85encode(s).decode()}"))', ("base64.b85decode",)),
])
def test_variants_roundtrip(build, layers):
    source = b"x = 1\nprint('inner', x)\n" * 20
    u = unwrap_source(build(source).encode())
    assert u.source == source and u.layers == layers


def test_nested_wrappers_are_followed():
    source = b"print('deep')\n" * 50
    twice = wrap_source(wrap_source(source).encode()).encode()
    u = unwrap_source(twice)
    assert u.source == source and len(u.layers) == 4 and u.shipped_bytes == len(twice)


def test_corrupt_payload_names_the_file():
    bad = b'import lzma,base64\nexec(lzma.decompress(base64.b85decode("abcdefgh")))\n'
    with pytest.raises(PgolfInputError, match="train_gpt.py: self-extracting script with a corrupt payload"):
        unwrap_source(bad, "train_gpt.py")


def test_a_payload_that_would_blow_up_is_refused(monkeypatch):
    monkeypatch.setattr(codebytes, "MAX_INNER_BYTES", 10_000)
    bomb = wrap_source(b"#" * 20_000).encode()
    with pytest.raises(PgolfInputError, match="over 10,000 bytes"):
        unwrap_source(bomb, "bomb.py")


def test_a_crlf_script_counts_as_shipped_and_names_what_it_logs(tmp_path):
    from pgolf.budget.exact.measure import measure_budget
    from pgolf.budget.files.codebytes import code_bytes

    script = tmp_path / "train_gpt.py"
    script.write_bytes(b"import os\r\nprint('hi')\r\n# last\r\n")
    sizes = code_bytes(script)
    assert (sizes["raw"], sizes["self_logged"]) == (32, 29)
    report = measure_budget({"w": torch.zeros(4, 4)}, "int6", "zlib", code=script, per_tensor=False)
    assert report.headline["bytes_code"] == 32 and report.headline["bytes_code_self_logged"] == 29
    assert any("CRLF line ends" in n for n in report.notes)
    lf = tmp_path / "lf.py"
    lf.write_bytes(b"import os\nprint('hi')\n")
    assert "self_logged" not in code_bytes(lf)
