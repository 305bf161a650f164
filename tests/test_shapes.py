"""Shapes of the baseline family: official names/order/dtypes, exact counts, official export sizes."""
from __future__ import annotations

import pytest
import torch

from conftest import FIXTURE_MODELS, fixture_path
from pgolf.budget.quant.official import quantize_state_dict_int8, serialize_export
from pgolf.budget.forecast.shapes import TensorSpec, baseline_specs, param_count, synthetic_state_dict, tensor_kind


def test_baseline_param_count_and_tensor_count():
    specs = baseline_specs()
    assert param_count(specs) == 17_059_912
    assert len(specs) == 92
    assert specs[1] == TensorSpec("tok_emb.weight", (1024, 512), torch.bfloat16)
    assert all(s.dtype == torch.float32 for s in specs if s.name != "tok_emb.weight")


@pytest.mark.parametrize("unique, expected", [(3, 6_037_528), (1, 2_363_400), (9, 17_059_912)])
def test_depth_recurrent_param_count(unique, expected):
    # U stored blocks of 1,837,064 + tok_emb 524,288 + skip_weights 4x512 (set by the effective depth 9).
    specs = baseline_specs(num_unique_layers=unique)
    assert param_count(specs) == expected
    assert sum(s.name.startswith("blocks.") for s in specs) == 10 * unique


def test_record_shape_with_bigram_hash_matches_published_params():
    # R18 (11L XSA4 EMA Int6 MLP3x): 26,829,913 params published, bigram 2048x128 and SmearGate.
    specs = baseline_specs(11, 512, 8, 4, 3, 1024, bigram_hash_size=2048, smear_gate=True)
    assert param_count(specs) == 26_829_913
    names = [s.name for s in specs]
    assert names[:6] == ["skip_weights", "tok_emb.weight", "bigram.embed.weight", "bigram.proj.weight",
                         "bigram.scale", "smear.gate"]


def test_untied_head_adds_lm_head_last():
    specs = baseline_specs(tie_embeddings=False)
    assert specs[-1] == TensorSpec("lm_head.weight", (1024, 512), torch.float32)
    assert param_count(specs) == 17_059_912 + 1024 * 512


@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_specs_match_real_state_dicts(model):
    sd = torch.load(fixture_path("artifacts", model, "final_model.pt"), weights_only=True, map_location="cpu")
    dim = sd["tok_emb.weight"].shape[1]
    layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    mlp_mult = sd["blocks.0.mlp.fc.weight"].shape[0] / dim
    specs = baseline_specs(layers, dim, 4, 2, mlp_mult, 1024)
    assert [(s.name, s.shape) for s in specs] == [(k, tuple(v.shape)) for k, v in sd.items()]
    assert param_count(specs) == sum(v.numel() for v in sd.values())


def test_official_export_sizes_of_synthetic_baseline():
    sd = synthetic_state_dict(baseline_specs())
    obj, stats = quantize_state_dict_int8(sd)
    assert stats["int8_payload_bytes"] == 17_178_912
    assert len(serialize_export(obj)) == 17_224_025


def test_synthetic_is_deterministic_and_trained_like():
    specs = baseline_specs(2, 64, 4, 2, 2, 128)
    a, b, c = synthetic_state_dict(specs, 0), synthetic_state_dict(specs, 0), synthetic_state_dict(specs, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blocks.0.mlp.fc.weight"], c["blocks.0.mlp.fc.weight"])
    assert [(k, v.dtype, tuple(v.shape)) for k, v in a.items()] == [(s.name, s.dtype, s.shape) for s in specs]
    assert abs(float(a["blocks.0.attn_scale"].mean()) - 1.0) < 0.1
    assert abs(float(a["blocks.0.attn.q_gain"].mean()) - 1.5) < 0.3
    assert float(a["blocks.0.resid_mix"][0].mean()) > 0.8 and abs(float(a["blocks.0.resid_mix"][1].mean())) < 0.2
    assert 0.3 < float(a["blocks.1.mlp.fc.weight"].std()) < 0.4


@pytest.mark.parametrize("name, kind", [("tok_emb.weight", "embedding"), ("bigram.embed.weight", "embedding"),
                                        ("blocks.2.attn.c_k.weight", "attention"), ("lm_head.weight", "head"),
                                        ("blocks.0.mlp.proj.weight", "mlp"), ("skip_weights", "control")])
def test_tensor_kind(name, kind):
    assert tensor_kind(name) == kind


@pytest.mark.parametrize("kwargs", [dict(model_dim=500), dict(num_kv_heads=3), dict(num_unique_layers=10),
                                    dict(num_layers=0), dict(mlp_mult=1.0001)])
def test_bad_shapes_are_refused(kwargs):
    with pytest.raises(ValueError):
        baseline_specs(**kwargs)
