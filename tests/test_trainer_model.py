"""The trainer's GPT is the official baseline's state dict, and its export is the official one."""
from __future__ import annotations

import io
import subprocess
import sys
import zlib

import pytest
import torch

from conftest import FIXTURE_MODELS, ROOT, fixture_path
from pgolf.budget.quant import official
from pgolf.budget.forecast.shapes import baseline_specs, param_count
from pgolf.trainer.train_gpt import (
    GPT, CastedLinear, Hyperparameters, dequantize_state_dict_int8, fake_quantize, quantize_state_dict_int8,
    set_qat, zeropower_via_newtonschulz5,
)

FIXTURE_SHAPES = {  # from ../shared/fixtures/README.md
    "sp1024-2L-d64": dict(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=1),
    "sp1024-3L-d128": dict(num_layers=3, model_dim=128, num_heads=4, num_kv_heads=2, mlp_mult=2),
}
COMMON = dict(vocab_size=1024, tie_embeddings=True, tied_embed_init_std=0.005, logit_softcap=30.0,
              rope_base=10000.0, qk_gain_init=1.5)


def gpt(**shape) -> GPT:
    torch.manual_seed(0)
    return GPT(**{**COMMON, **shape})


def load_ptz(path) -> dict:
    return torch.load(io.BytesIO(zlib.decompress(path.read_bytes())), weights_only=True, map_location="cpu")


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_fixture_state_dict_loads_strictly(name):
    sd = torch.load(fixture_path("artifacts", name, "final_model.pt"), weights_only=True, map_location="cpu")
    model = gpt(**FIXTURE_SHAPES[name])
    model.load_state_dict(sd, strict=True)  # dtype-casting load, as the official eval does
    ours = model.state_dict()
    assert list(ours) == list(sd)
    assert all(ours[k].shape == sd[k].shape for k in sd)
    model.load_state_dict(sd, strict=True, assign=True)  # the file's own tensors, dtypes included
    assert all(torch.equal(model.state_dict()[k], sd[k]) and model.state_dict()[k].dtype == sd[k].dtype for k in sd)
    tokens = torch.randint(0, 1024, (2, 33), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.isfinite(model(tokens[:, :-1], tokens[:, 1:]))


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_export_of_fixture_matches_fixture_ptz_tensor_for_tensor(name):
    sd = torch.load(fixture_path("artifacts", name, "final_model.pt"), weights_only=True, map_location="cpu")
    model = gpt(**FIXTURE_SHAPES[name])
    model.load_state_dict(sd, strict=True, assign=True)
    ours, stats = quantize_state_dict_int8(model.state_dict())
    ref = load_ptz(fixture_path("artifacts", name, "final_model.int8.ptz"))
    assert set(ours) == set(ref)
    for section in ("quantized", "scales", "passthrough"):
        assert list(ours[section]) == list(ref[section])
        for key, t in ref[section].items():
            assert ours[section][key].dtype == t.dtype and torch.equal(ours[section][key], t), (section, key)
    for meta in ("__quant_format__", "dtypes", "qmeta", "passthrough_orig_dtypes"):
        assert ours.get(meta) == ref.get(meta)
    budget_obj, budget_stats = official.quantize_state_dict_int8(sd)
    assert stats == budget_stats
    restored = dequantize_state_dict_int8(ours)
    assert all(torch.equal(restored[k], v) for k, v in official.dequantize_state_dict_int8(budget_obj).items())


def test_baseline_state_dict_matches_official_shapes_and_dtypes():
    sd = gpt(num_layers=9, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=2).state_dict()
    specs = baseline_specs()
    assert [(s.name, tuple(s.shape), s.dtype) for s in specs] == [(k, tuple(v.shape), v.dtype) for k, v in sd.items()]
    assert sum(v.numel() for v in sd.values()) == param_count(specs) == 17_059_912
    assert sd["tok_emb.weight"].dtype == torch.bfloat16
    assert {v.dtype for k, v in sd.items() if k != "tok_emb.weight"} == {torch.float32}


@pytest.mark.parametrize("layers,unique", [(9, 3), (4, 1), (5, 2)])
def test_depth_recurrence_stores_unique_blocks_and_loops_them(layers, unique):
    shape = dict(num_layers=layers, model_dim=32, num_heads=2, num_kv_heads=1, mlp_mult=2)
    shared = gpt(**shape, num_unique_layers=unique)
    assert sorted({k.split(".")[1] for k in shared.state_dict() if k.startswith("blocks.")}) == [
        str(i) for i in range(unique)]
    assert shared.skip_weights.shape == (layers // 2, 32)
    spec_names = [s.name for s in baseline_specs(layers, 32, 2, 1, 2, num_unique_layers=unique)]
    assert spec_names == list(shared.state_dict())
    # The same computation as a full-depth model whose block i is a copy of unique block i % U.
    full = gpt(**shape)
    with torch.no_grad():
        for p in shared.parameters():
            p.normal_(0, 0.1)
        full_sd = {k: v for k, v in shared.state_dict().items() if not k.startswith("blocks.")}
        for i in range(layers):
            for k, v in shared.blocks[i % unique].state_dict().items():
                full_sd[f"blocks.{i}.{k}"] = v
        full.load_state_dict(full_sd, strict=True)
        x = torch.randint(0, 1024, (2, 16), generator=torch.Generator().manual_seed(1))
        assert torch.allclose(shared(x[:, :-1], x[:, 1:]), full(x[:, :-1], x[:, 1:]), rtol=1e-6, atol=1e-6)


def test_fp16_embed_keeps_embedding_as_fp16_passthrough():
    sd = gpt(num_layers=2, model_dim=128, num_heads=4, num_kv_heads=2, mlp_mult=2).state_dict()
    plain, _ = quantize_state_dict_int8(sd)
    kept, stats = quantize_state_dict_int8(sd, keep_float=("tok_emb.weight",))
    assert "tok_emb.weight" in plain["quantized"] and "tok_emb.weight" not in kept["quantized"]
    assert kept["passthrough"]["tok_emb.weight"].dtype == torch.float16
    assert kept["passthrough_orig_dtypes"]["tok_emb.weight"] == "bfloat16"
    restored = dequantize_state_dict_int8(kept)["tok_emb.weight"]
    assert restored.dtype == torch.bfloat16
    assert torch.equal(restored, sd["tok_emb.weight"].to(torch.float16).to(torch.bfloat16))
    assert stats["int8_payload_bytes"] > quantize_state_dict_int8(sd)[1]["int8_payload_bytes"]


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_fake_quantize_intn_uses_at_most_2n_minus_1_levels_per_row(bits):
    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(bits))
    q = fake_quantize(w, f"int{bits}")
    step = w.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1)
    levels = torch.round(q / step)
    assert torch.allclose(levels * step, q, atol=1e-6)
    assert levels.abs().max() <= 2 ** (bits - 1) - 1
    assert all(row.unique().numel() <= 2 ** bits - 1 for row in levels)
    assert (q - w).abs().max() <= step.max() / 2 + 1e-6


def test_fake_quantize_ternary_has_three_levels_per_group_of_128():
    w = torch.randn(4, 256, generator=torch.Generator().manual_seed(0))
    q = fake_quantize(w, "ternary").reshape(4, 2, 128)
    scale = w.reshape(4, 2, 128).abs().mean(dim=-1, keepdim=True)
    assert torch.allclose(q.abs() / scale, torch.round(q.abs() / scale), atol=1e-5)
    assert all(g.unique().numel() <= 3 for g in q.reshape(8, 128))


def test_qat_straight_through_gradient_is_the_gradient_at_the_quantized_weight():
    torch.manual_seed(0)
    layer = CastedLinear(64, 32, bias=False)
    x = torch.randn(8, 64)
    set_qat(layer, "int4")
    layer(x).square().sum().backward()
    wq = fake_quantize(layer.weight.detach(), "int4").requires_grad_(True)
    torch.nn.functional.linear(x, wq).square().sum().backward()
    assert torch.allclose(layer.weight.grad, wq.grad)
    set_qat(layer, "")
    assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight))


def test_newton_schulz_orthogonalises():
    g = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(zeropower_via_newtonschulz5(g, steps=5).float())
    assert 0.5 < s.min() and s.max() < 1.3  # the quintic's loose but fast fixed point


def test_hyperparameters_from_env_official_names_and_defaults():
    args = Hyperparameters.from_env({"NUM_LAYERS": "2", "TIE_EMBEDDINGS": "0", "MATRIX_LR": "0.02", "QAT": "int6"})
    assert (args.num_layers, args.tie_embeddings, args.matrix_lr, args.qat) == (2, False, 0.02, "int6")
    default = Hyperparameters.from_env({})
    assert (default.train_batch_tokens, default.iterations, default.max_wallclock_seconds) == (524_288, 20000, 600.0)
    assert (default.model_dim, default.num_heads, default.num_kv_heads, default.vocab_size) == (512, 8, 4, 1024)


@pytest.mark.parametrize("env,problem", [({"NUM_LAYERS": "two"}, "NUM_LAYERS='two'"),
                                         ({"QAT": "int9"}, "QAT='int9'"),
                                         ({"NUM_UNIQUE_LAYERS": "12"}, "NUM_UNIQUE_LAYERS=12")])
def test_hyperparameters_reject_bad_values(env, problem):
    with pytest.raises(ValueError, match=problem):
        Hyperparameters.from_env(env)


def test_importing_the_script_has_no_side_effects(tmp_path):
    code = "import sys; sys.path.insert(0, sys.argv[1]); import train_gpt; print('ok')"
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "trainer")], cwd=tmp_path,
                         capture_output=True, text=True, env={"PGOLF_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n" and list(tmp_path.iterdir()) == []
