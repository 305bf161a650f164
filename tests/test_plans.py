"""Plans: official passthrough first, ordered rules, presets, bare schemes, versioned JSON files."""
from __future__ import annotations

import json

import pytest
import torch

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.quant.plans import PLAN_FORMAT, PRESETS, Plan, load_plan, resolve_plan
from pgolf.budget.forecast.shapes import baseline_specs



def _meta(shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device="meta")  # shapes and dtypes only, no memory


BASELINE = {s.name: _meta(s.shape, s.dtype) for s in baseline_specs()}


@pytest.mark.parametrize("name,t,expected", [
    ("step", torch.zeros(3, dtype=torch.int64), "passthrough"),
    ("blocks.0.attn_scale", _meta((512,)), "fp32"),                  # control: fp32 always
    ("blocks.0.resid_mix", _meta((2, 512), torch.bfloat16), "fp32"),
    ("small.weight", _meta((256, 256)), "fp16"),                     # 65,536 values: still kept
    ("small.weight", _meta((256, 256), torch.bfloat16), "fp16"),
    ("small.weight", _meta((10, 10), torch.float16), "passthrough"),
    ("small.weight", _meta((10, 10), torch.float64), "passthrough"),
    ("big.weight", _meta((257, 256)), "int8_clean_per_row_v1"),
])
def test_official_passthrough_rules_come_first(name, t, expected):
    assert PRESETS["official-int8"].scheme_for(name, t) == expected
    if expected != "int8_clean_per_row_v1":
        assert resolve_plan("ternary").scheme_for(name, t) == expected


def test_rules_are_ordered_first_match_wins():
    plan = Plan("p", ((r"mlp", "int5"), (r"mlp\.fc", "int3"), (r"^blocks\.0\.", "int4")), default="int6")
    big = _meta((1024, 512))
    assert plan.scheme_for("blocks.0.mlp.fc.weight", big) == "int5"
    assert plan.scheme_for("blocks.0.attn.c_q.weight", big) == "int4"
    assert plan.scheme_for("blocks.1.attn.c_q.weight", big) == "int6"


def _counts(plan_name):
    out = {}
    for name, t in BASELINE.items():
        s = resolve_plan(plan_name).scheme_for(name, t)
        out[s] = out.get(s, 0) + 1
    return out


@pytest.mark.parametrize("plan,expected", [
    ("official-int8", {"fp32": 37, "int8_clean_per_row_v1": 55}),
    ("fp16-embed", {"fp32": 37, "fp16": 1, "int8_clean_per_row_v1": 54}),
    ("int6", {"fp32": 37, "int6": 55}),
    ("int5-mlp-int6-attn", {"fp32": 37, "int8": 1, "int5": 18, "int6": 36}),
    ("sdclip-int6-int8emb", {"fp32": 37, "int8:sdclip(20)": 1, "int6:sdclip(12.85)": 54}),
    ("ternary", {"fp32": 37, "fp8_e4m3": 1, "ternary": 54}),
    ("int4:packed", {"fp32": 37, "int4:packed": 55}),
])
def test_presets_on_the_baseline_shape(plan, expected):
    assert _counts(plan) == expected


def test_preset_names():
    assert list(PRESETS) == ["official-int8", "fp16-embed", "int6", "int5-mlp-int6-attn", "sdclip-int6-int8emb",
                             "ternary", "int6-floor", "int6-floor-int8emb", "int6-floor-fp16emb",
                             "int6-floor-int8emb-latek", "sdclip-int6-int7emb", "sdclip-int6-int7emb-k14"]


def test_bare_scheme_is_a_plan():
    plan = resolve_plan("int6:sdclip(12.85)")
    assert (plan.name, plan.rules, plan.default) == ("int6:sdclip(12.85)", (), "int6:sdclip(12.85)")


def test_json_roundtrip_is_versioned_and_atomic(tmp_path):
    plan = Plan("mine", ((r"\.mlp\.", "int5:packed"),), default="int6:mse", keep_float_max_numel=1000,
                description="test plan")
    path = plan.save(tmp_path / "plans" / "mine.json")
    obj = json.loads(path.read_text())
    assert obj["format"] == PLAN_FORMAT == "pgolf-plan-v1"
    assert obj["rules"] == [{"pattern": r"\.mlp\.", "scheme": "int5:packed"}]
    assert load_plan(path) == plan == resolve_plan(str(path))
    assert [p.name for p in tmp_path.joinpath("plans").iterdir()] == ["mine.json"]  # no temp litter


@pytest.mark.parametrize("content,problem", [
    ("{not json", "not valid JSON"),
    ('{"format": "pgolf-plan-v0"}', "format tag is 'pgolf-plan-v0'"),
    ('[1, 2]', "expected a JSON object"),
    ('{"format": "pgolf-plan-v1", "rules": [{"pattern": "(", "scheme": "int6"}]}', "bad regex '('"),
    ('{"format": "pgolf-plan-v1", "default": "int9"}', "N in 2..8"),
    ('{"format": "pgolf-plan-v1", "rules": [["x", "int6"]]}', '"rules" must be a list'),
    ('{"format": "pgolf-plan-v1", "colour": "red"}', "unknown key(s) colour"),
    ('{"format": "pgolf-plan-v1", "keep_float_max_numel": "many"}', "must be an integer"),
])
def test_bad_plan_files_name_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(PgolfInputError) as info:
        load_plan(path)
    assert info.value.path == str(path) and problem in info.value.problem


def test_unknown_plan_lists_choices(tmp_path):
    with pytest.raises(PgolfInputError, match="not a preset \\(official-int8, fp16-embed.*see `pgolf schemes`"):
        resolve_plan("int-six")
    with pytest.raises(PgolfInputError, match="cannot read plan file"):
        resolve_plan(str(tmp_path / "missing.json"))
