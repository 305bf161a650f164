"""Opening model files and inferring the baseline architecture from tensor shapes."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import FIXTURE_MODELS, fixture_path
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.forecast.shapes import baseline_specs, param_count, synthetic_state_dict
from pgolf.figures.cli import main
from pgolf.inspect.load import build_model, infer_architecture, open_model, state_dict_sha256

SHAPES = [  # (num_layers, model_dim, num_heads, num_kv_heads, mlp_mult, vocab, tied)
    (9, 512, 8, 4, 2, 1024, True),
    (3, 128, 4, 2, 2, 1024, True),
    (2, 64, 4, 2, 1, 1024, True),
    (5, 96, 6, 3, 3, 512, False),
    (4, 64, 2, 1, 4, 256, True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:2])) + ("-tied" if s[6] else "-untied"))
def test_architecture_from_shapes(shape):
    layers, dim, heads, kv, mlp, vocab, tied = shape
    specs = baseline_specs(layers, dim, heads, kv, mlp, vocab, tied)
    sd = {s.name: torch.zeros(s.shape, dtype=s.dtype) for s in specs}
    arch = infer_architecture(sd)
    assert (arch.num_layers, arch.model_dim, arch.num_heads, arch.num_kv_heads, arch.mlp_mult, arch.vocab_size,
            arch.tie_embeddings, arch.num_unique_layers) == (layers, dim, heads, kv, mlp, vocab, tied, None)
    assert arch.source == "tensor shapes"
    if dim <= 128:  # strict=True load into the trainer's GPT: names, shapes all match
        model = build_model(synthetic_state_dict(specs, seed=1), arch)
        assert sum(p.numel() for p in model.parameters()) == param_count(specs)


def test_depth_recurrence_needs_the_sidecar():
    specs = baseline_specs(6, 64, 4, 2, 2, 256, num_unique_layers=2)
    sd = synthetic_state_dict(specs, seed=2)
    with pytest.raises(PgolfInputError, match="sidecar with num_layers"):
        infer_architecture(sd)
    arch = infer_architecture(sd, {"num_layers": 6, "num_unique_layers": 2, "train_seq_len": 64, "rope_base": 500.0})
    assert (arch.num_layers, arch.num_unique_layers, arch.train_seq_len, arch.rope_base) == (6, 2, 64, 500.0)
    assert arch.source == "sidecar config"
    model = build_model(sd, arch)
    assert len(model.blocks) == 2
    with pytest.raises(PgolfInputError, match="sidecar config says 3 stored blocks, the weights hold 2"):
        infer_architecture(sd, {"num_layers": 6, "num_unique_layers": 3})


@pytest.mark.parametrize("edit, problem", [
    (lambda sd: sd.update({"bigram.scale": torch.zeros(())}), "unexpected tensor bigram.scale"),
    (lambda sd: sd.pop("blocks.1.attn.c_k.weight"), "block 1 has or lacks attn.c_k.weight"),
    (lambda sd: sd.pop("tok_emb.weight"), "missing tok_emb.weight"),
    (lambda sd: sd.update({"blocks.0.attn.c_k.weight": torch.zeros(40, 64)}), "not a whole number of 16-wide"),
])
def test_not_the_baseline_family(edit, problem):
    sd = {s.name: torch.zeros(s.shape) for s in baseline_specs(2, 64, 4, 2, 2, 256)}
    edit(sd)
    with pytest.raises(PgolfInputError, match=problem):
        infer_architecture(sd)


def test_state_dict_hash_sees_every_bit():
    sd = synthetic_state_dict(baseline_specs(2, 64, 4, 2, 2, 256), seed=3)
    h = state_dict_sha256(sd)
    assert h == state_dict_sha256({k: v.clone() for k, v in sd.items()})
    bumped = dict(sd)
    w = sd["blocks.1.mlp.fc.weight"].clone()
    w.view(torch.int32)[0, 0] ^= 1  # one mantissa bit
    bumped["blocks.1.mlp.fc.weight"] = w
    assert state_dict_sha256(bumped) != h


@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_inspect_ptz_matches_pt(model, capsys):
    """`pgolf inspect` on the official .ptz and the raw .pt: same params, tensor names and shapes."""
    reports = {}
    for name in ("final_model.pt", "final_model.int8.ptz"):
        assert main(["inspect", str(fixture_path("artifacts", model, name)), "--json", "--quiet"]) == 0
        reports[name] = json.loads(capsys.readouterr().out)
    pt, ptz = reports["final_model.pt"], reports["final_model.int8.ptz"]
    assert pt["params"] == ptz["params"] == {"sp1024-2L-d64": 107_080, "sp1024-3L-d128": 476_812}[model]
    # the export stores quantized tensors before passthrough ones: same list, another order
    listed = {key: sorted((r["name"], tuple(r["shape"]), r["numel"]) for r in rep["tensors"]) for key, rep in reports.items()}
    assert listed["final_model.pt"] == listed["final_model.int8.ptz"]
    assert len(listed["final_model.pt"]) == pt["num_tensors"] == ptz["num_tensors"] == {"sp1024-2L-d64": 22,
                                                                                      "sp1024-3L-d128": 32}[model]
    assert pt["architecture"] == ptz["architecture"]
    # the .ptz is measured as stored: its model bytes are the file's bytes
    ptz_path = fixture_path("artifacts", model, "final_model.int8.ptz")
    assert ptz["bytes_model"] == ptz["file_bytes"] == ptz_path.stat().st_size
    assert ptz["headroom_bytes"] == 16_000_000 - ptz["bytes_model"]


def test_inspect_metrics_table_and_text(capsys):
    path = fixture_path("artifacts", "sp1024-2L-d64", "final_model.pt")
    assert main(["inspect", str(path), "--schemes", "int8,int4", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "architecture: 2x64, 4 heads / 2 kv, MLP x1, vocab 1,024, tied embeddings (from tensor shapes)" in text
    assert "weight-space metrics:" in text
    opened = open_model(path)
    assert opened.arch is not None and len(opened.state_dict) == 22


def test_inspect_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model at all")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pgolf: error: {bad}")
