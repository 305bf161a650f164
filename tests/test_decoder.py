"""Emitted decoders: for every plan preset x compressor (and the storages presets do not use), run in a
fresh `python -I` with pgolf made unimportable, they return pgolf's own dequantization bit for bit."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pgolf.budget.exact.build import build_artifact
from pgolf.budget.exact.decoder import best_ids_of, decoder_source
from pgolf.budget.quant.plans import PRESETS, Plan
from pgolf.budget.exact.decode import bits_equal, read_artifact
from pgolf.figures.cli import main

COMPRESSORS = ("zlib", "zstd", "lzma", "brotli", "none", "zstd+byte-shuffle", "lzma+transpose(64)", "ans", "zpaq:2", "best",
               "ans+transpose(250)", "ans:col16", "ans:row4")
EXTRA_PLANS = ("int6:packed", "int4:group(64):packed", "int3:group(100)", "ternary:packed", "ternary:byte",
               "ternary:group(64)", "binary", "binary:byte", "fp8_e4m3", "bf16",
               Plan("official-int8-attn-int6", rules=((r"\.attn\.", "int6"),)))


def model() -> dict[str, torch.Tensor]:
    """Large enough that plans quantize (> 65,536 values), with ragged groups, 3-D, bf16, ints, a tie, controls."""
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(1024, 72, generator=g) * 0.05
    return {"tok_emb.weight": emb, "blocks.0.attn.c_q.weight": torch.randn(272, 256, generator=g) * 0.02,
            "blocks.0.mlp.fc.weight": torch.randn(300, 250, generator=g) * 0.02,
            "blocks.0.mlp.proj.weight": (torch.randn(40, 50, 40, generator=g) * 0.02).to(torch.bfloat16),
            "blocks.0.attn_scale": torch.rand(256, generator=g), "blocks.0.q_gain": torch.randn(8, generator=g),
            "blocks.0.small": torch.randn(16, 16, generator=g).to(torch.bfloat16), "steps": torch.tensor([3, 4]),
            "lm_head.weight": emb}


def test_every_decoder_matches_pgolf(tmp_path):
    sd, jobs = model(), []
    for plan in [*PRESETS, *EXTRA_PLANS]:
        for comp in COMPRESSORS if plan in PRESETS else ("lzma",):
            name = f"d{len(jobs)}"
            src = decoder_source(plan, comp, sd)
            blob = build_artifact(sd, plan, comp)
            if not src:  # the baseline's own .ptz: its script reads it
                assert plan in ("official-int8", "fp16-embed") and comp == "zlib" and blob[:1] == b"\x78"
                continue
            (tmp_path / f"{name}.py").write_text(src)
            (tmp_path / f"{name}.bin").write_bytes(blob)
            jobs.append((name, plan, comp))
    assert len(jobs) == len(PRESETS) * len(COMPRESSORS) - 2 + len(EXTRA_PLANS)
    driver = (
        'import sys; sys.modules["pgolf"] = None\n'
        "import importlib.util, torch\n"
        "try:\n import pgolf\nexcept ImportError:\n pass\nelse:\n raise SystemExit('pgolf importable')\n"
        f"for name in {[j[0] for j in jobs]!r}:\n"
        f"    spec = importlib.util.spec_from_file_location(name, r'{tmp_path}/' + name + '.py')\n"
        "    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"    torch.save(m.load(r'{tmp_path}/' + name + '.bin'), r'{tmp_path}/' + name + '.out')\n")
    run = subprocess.run([sys.executable, "-I", "-c", driver], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    for name, plan, comp in jobs:
        got = torch.load(tmp_path / f"{name}.out", weights_only=True)
        want = read_artifact((tmp_path / f"{name}.bin").read_bytes())
        assert list(got) == list(want), (plan, comp)
        bad = [k for k in want if not bits_equal(got[k], want[k])]
        assert not bad, (plan, comp, bad)


def column_scaled_model() -> dict[str, torch.Tensor]:
    """Columns whose magnitudes span 100x: grouped (column-class) tables pay, so `best` takes them."""
    g = torch.Generator().manual_seed(1)
    w = torch.distributions.Laplace(0.0, 1.0).sample((256, 320)) * torch.logspace(-1, 1, 320)
    return {"blocks.0.mlp.fc.weight": w, "blocks.0.attn.c_q.weight": torch.randn(128, 128, generator=g)}


@pytest.mark.parametrize("plan, comp, constriction", [("int6", "ans", False), ("official-int8", "ans", False),
                                                       ("int6", "ans:col16", False), ("official-int8", "ans:row4", False),
                                                       ("int6", "best", True), ("official-int8", "best", False)])
def test_ans_decoder_without_constriction_reads_the_same_bits(tmp_path, plan, comp, constriction):
    """The emitted `ans` decoders' pure numpy path (constriction made unimportable) and, for `best`
    on a model where it codes a matrix by column class, both paths match pgolf."""
    sd = column_scaled_model() if comp == "best" else {k: v for k, v in model().items() if k != "lm_head.weight"}
    blob = build_artifact(sd, plan, comp)
    if comp == "best":  # the matrix went through a grouped table: id 4 somewhere in the segment list
        body = blob[8 + blob[7]:]
        ids, pos = [], 4
        for _ in range(int.from_bytes(body[:4], "little")):
            ids.append(body[pos])
            pos += 5 + int.from_bytes(body[pos + 1:pos + 5], "little")
        assert 4 in ids and pos == len(body), ids
    assert_reads_alone(tmp_path, decoder_source(plan, comp, sd, blob), blob, constriction)  # best: its codecs only


def assert_reads_alone(tmp_path, source: str, blob: bytes, constriction: bool = True) -> None:
    """`source`'s load() in a fresh `python -I` (pgolf, and constriction unless asked, unimportable)
    returns read_artifact(blob) bit for bit."""
    (tmp_path / "d.py").write_text(source)
    (tmp_path / "d.bin").write_bytes(blob)
    hide = "" if constriction else ' sys.modules["constriction"] = None;'
    driver = (f'import sys; sys.modules["pgolf"] = None;{hide}\n'
              "import importlib.util, torch\n"
              f"spec = importlib.util.spec_from_file_location('d', r'{tmp_path}/d.py')\n"
              "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
              f"torch.save(m.load(r'{tmp_path}/d.bin'), r'{tmp_path}/d.out')\n")
    run = subprocess.run([sys.executable, "-I", "-c", driver], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    got = torch.load(tmp_path / "d.out", weights_only=True)
    want = read_artifact(blob)
    assert list(got) == list(want) and all(bits_equal(got[k], want[k]) for k in want)


def fp16_model() -> dict[str, torch.Tensor]:
    """Matrices of <= 65,536 values: official-int8 keeps them fp16, and `best` takes brotli + byte-shuffle (id 5)."""
    g = torch.Generator().manual_seed(2)
    return {"blocks.0.attn.c_q.weight": torch.randn(128, 256, generator=g) * 0.02,
            "blocks.0.mlp.fc.weight": torch.randn(256, 128, generator=g) * torch.logspace(-1, 0, 128) * 0.05}


def test_best_decoder_reads_the_byte_shuffled_choice(tmp_path):
    sd = fp16_model()
    blob = build_artifact(sd, "official-int8", "best")
    body = blob[8 + blob[7]:]
    assert body[:5] == b"\xff\xff\xff\xff\x05"  # the whole export as one brotli + byte-shuffle stream
    assert len(blob) <= len(build_artifact(sd, "official-int8", "brotli+byte-shuffle")) + 5
    full, only = decoder_source("official-int8", "best", sd), decoder_source("official-int8", "best", sd, blob)
    assert best_ids_of(blob) == {5} and len(only.encode()) < len(full.encode()) - 1_500
    assert "brotli" in only and not any(m in only for m in ("zstandard", "lzma", "constriction", "_m("))
    assert_reads_alone(tmp_path, only, blob)


def test_only_what_the_plan_uses():
    int6 = decoder_source("int6", "zstd")
    assert "zstandard" in int6 and "lzma" not in int6 and "81]" not in int6 and "float8" not in int6
    assert "constriction" in decoder_source("int6", "ans") and "constriction" not in int6
    assert "unpackbits" not in int6  # int6 stores one value per byte
    tern = decoder_source("ternary", "lzma")
    assert "81]" in tern and "float8_e4m3fn" in tern and "zstandard" not in tern
    assert decoder_source("official-int8", "zlib") == "" and decoder_source("fp16-embed", "zlib") == ""
    assert "json" not in decoder_source("official-int8", "brotli")  # the torch export needs no container code
    sizes = {p: len(decoder_source(p, "zstd").encode()) for p in PRESETS}
    assert sizes["official-int8"] < sizes["int6"] < sizes["ternary"] < 2_000


def test_cli(tmp_path, capsys):
    out = tmp_path / "dec.py"
    assert main(["decoder", "--plan", "int6", "--compressor", "brotli", "-o", str(out)]) == 0
    assert out.read_text() == decoder_source("int6", "brotli")
    assert f"{out.stat().st_size:,} bytes" in capsys.readouterr().out
    assert main(["decoder", "--plan", "official-int8", "--compressor", "zlib"]) == 0
    assert "no decoder needed" in capsys.readouterr().out


def test_budget_counts_the_decoder_unless_the_script_holds_it(tmp_path, capsys):
    import json

    from conftest import fixture_path
    model = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    sd = torch.load(model, weights_only=True, map_location="cpu")
    decoder = decoder_source("ternary", "lzma", sd)
    plain, holding = tmp_path / "plain.py", tmp_path / "holding.py"
    plain.write_text("print('train')\n" * 50)
    holding.write_text("print('train')\n" * 50 + decoder)
    args = ["budget", str(model), "--plan", "ternary", "--compressor", "lzma", "--no-per-tensor", "--quiet", "--json"]
    heads = []
    for extra in (["--code", str(plain)], ["--code", str(holding)], ["--code", str(plain), "--decoder-included"]):
        assert main(args + extra) == 0
        heads.append(json.loads(capsys.readouterr().out))
    counted, found, told = heads
    assert counted["bytes_code_decoder"] == len(decoder.encode()) > 0
    assert counted["bytes_code"] == 750 + len(decoder.encode()) and counted["bytes_total"] == \
        counted["bytes_model"] + counted["bytes_code"]
    assert found["bytes_code_decoder"] == 0 and found["bytes_code"] == 750 + len(decoder.encode())  # shipped inside
    assert "bytes_code_decoder" not in told and told["bytes_code"] == 750


SCRIPT = '''import sys
def main():
    sd = pgolf_load(sys.argv[1])
    print(len(sd), sorted(sd)[0], repr(float(sum(v.double().sum() for v in sd.values()))))
if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("plan, comp", [("int6", "brotli"), ("ternary", "zstd+byte-shuffle"), ("int6", "ans"),
                                        ("official-int8", "ans:col16"), ("official-int8", "best")])
def test_export_emit_script_runs_with_its_artifact(tmp_path, capsys, plan, comp):
    """`pgolf export --emit-script`: the spliced script, run under python -I, loads the artifact as pgolf does."""
    import json

    sd = model()
    weights = tmp_path / "model.pt"
    torch.save(sd, weights)
    script = tmp_path / "src" / "train_gpt.py"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    art = tmp_path / "out" / "final_model.ptz"
    assert main(["export", str(weights), "--plan", plan, "--compressor", comp, "-o", str(art), "--emit-script",
                 str(script), "--json", "--quiet"]) == 0
    head = json.loads(capsys.readouterr().out)
    emitted = tmp_path / "out" / "train_gpt.py"
    decoder = decoder_source(plan, comp, sd, art.read_bytes())  # best: only the codecs this artifact holds
    assert head["bytes_code"] == emitted.stat().st_size > len(SCRIPT) + len(decoder)
    assert decoder.split("\n", 1)[1] in emitted.read_text()
    assert head["bytes_total"] == head["bytes_code"] + art.stat().st_size
    run = subprocess.run([sys.executable, "-I", str(emitted), str(art)], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": ""})
    assert run.returncode == 0, run.stderr[-1500:]
    want = read_artifact(art.read_bytes())
    total = float(sum(v.double().sum() for v in want.values()))
    assert run.stdout == f"{len(want)} {sorted(want)[0]} {total!r}\n"


def test_budget_and_cli_count_only_the_codecs_a_best_artifact_uses(tmp_path, capsys):
    """`budget --code` counts the decoder of the artifact it measured; `pgolf decoder --artifact` writes it."""
    import json

    from safetensors.torch import save_file
    sd = fp16_model()
    weights, code, art = tmp_path / "m.safetensors", tmp_path / "train_gpt.py", tmp_path / "m.ptz"
    save_file(sd, str(weights))
    code.write_text("print('train')\n" * 10)
    assert main(["budget", str(weights), "--plan", "official-int8", "--compressor", "best", "--code", str(code),
                 "--write-artifact", str(art), "--no-per-tensor", "--quiet", "--json"]) == 0
    head = json.loads(capsys.readouterr().out)
    only = decoder_source("official-int8", "best", sd, art.read_bytes())
    assert head["bytes_code_decoder"] == len(only.encode()) < len(decoder_source("official-int8", "best", sd)) - 1_500
    assert head["bytes_code"] == 150 + len(only.encode())
    out = tmp_path / "d.py"
    assert main(["decoder", "--plan", "official-int8", "--compressor", "best", "--model", str(weights),
                 "--artifact", str(art), "-o", str(out)]) == 0
    assert out.read_text() == only
    assert main(["decoder", "--plan", "official-int8", "--compressor", "zstd", "--artifact", str(art)]) == 2
    assert f"{art}: built with compressor best, not zstd" in capsys.readouterr().err


def test_export_emit_script_of_the_baseline_ptz_leaves_the_script_as_it_is(tmp_path, capsys):
    """official-int8 + zlib is the plain .ptz the script already reads: nothing spliced, nothing counted."""
    import json

    weights, script = tmp_path / "model.pt", tmp_path / "src" / "train_gpt.py"
    torch.save(model(), weights)
    script.parent.mkdir()
    script.write_text(SCRIPT)
    art = tmp_path / "out" / "final_model.ptz"
    assert main(["export", str(weights), "--plan", "official-int8", "--compressor", "zlib", "-o", str(art),
                 "--emit-script", str(script), "--json", "--quiet"]) == 0
    head = json.loads(capsys.readouterr().out)
    assert art.read_bytes()[:1] == b"\x78" and (tmp_path / "out" / "train_gpt.py").read_text() == SCRIPT
    assert head["bytes_code"] == len(SCRIPT) and head["bytes_total"] == len(SCRIPT) + art.stat().st_size
