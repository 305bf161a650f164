"""Allocation under a cap, and exchange rates, on a checkpoint trained by our trainer."""
from __future__ import annotations

import json

import pytest
import torch

from inspect_fixtures import SLICE_TOKENS, one_thread, trained, trained_run  # noqa: F401 (fixtures)
from pgolf.budget.exact.build import fake_quantize
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.quant.plans import Plan, load_plan
from pgolf.figures.cli import main
from pgolf.inspect import allocate as allocate_module
from pgolf.inspect.allocate import Option, allocate, greedy, monotone
from pgolf.inspect.evaluate import evaluate_bpb, load_slice, load_weights
from pgolf.budget.quant.plans import quantize_small
from pgolf.inspect.headroom import DEFAULT_LADDER, GapOracle, headroom, ladder_steps, with_scheme


def test_greedy_takes_the_best_rate_first_and_fills_ties():
    options = {"a": [Option("int4", 10, 0.5), Option("int6", 14, 0.2), Option("int8", 20, 0.1)],
               "b": [Option("int4", 10, 0.05), Option("int6", 14, 0.05), Option("int8", 20, 0.05)]}
    assert greedy(options, 20) == {"a": "int4", "b": "int4"}
    assert greedy(options, 24) == {"a": "int6", "b": "int4"}          # 0.3 BPB for 4 bytes
    assert greedy(options, 30) == {"a": "int8", "b": "int4"}          # then 0.1 for 6 more
    assert greedy(options, 34) == {"a": "int8", "b": "int6"}          # leftover: a tie, fewest bytes first
    assert greedy(options, 10**6) == {"a": "int8", "b": "int8"}


def test_monotone_never_predicts_coarser_better():
    opts = monotone([Option("int4", 1, -0.01), Option("int5", 2, 0.03), Option("int6", 3, 0.001), Option("fp16", 9, 0.0)])
    assert [o.gap for o in opts] == [0.03, 0.03, 0.001, 0.0]


def test_ladder_steps():
    assert ladder_steps("int4", DEFAULT_LADDER) == (None, "int5")
    assert ladder_steps("fp16", DEFAULT_LADDER) == ("int8", None)
    assert ladder_steps("int8_clean_per_row_v1", DEFAULT_LADDER) == ("int6", "fp16")
    assert ladder_steps("ternary", DEFAULT_LADDER) == (None, "int4")


def test_tied_and_control_tensors_are_not_allocated_separately():
    from pgolf.inspect.headroom import allocatable

    emb = torch.randn(300, 300)
    sd = {"tok_emb.weight": emb, "lm_head.weight": emb, "blocks.0.attn_scale": torch.ones(300),
          "blocks.0.mlp.fc.weight": torch.randn(100, 300), "step": torch.tensor(3)}
    assert allocatable(sd, quantize_small("int6")) == ["tok_emb.weight", "blocks.0.mlp.fc.weight"]
    assert allocatable(sd, Plan("p", default="int6")) == ["tok_emb.weight"]  # 30,000 values: passthrough
    # the tied entry follows its source's scheme in the real artifact, counted once
    plan = with_scheme(quantize_small("int6"), {"tok_emb.weight": "int4", "blocks.0.mlp.fc.weight": "int8"})
    rows = measure_budget(sd, plan, per_tensor=False).frame.set_index("name")
    assert rows.loc["tok_emb.weight", "scheme"] == "int4" and rows.loc["lm_head.weight", "tied_to"] == "tok_emb.weight"


def _uniform(sd, schemes):
    return {s: measure_budget(sd, quantize_small(s), per_tensor=False).headline["bytes_total"] for s in schemes}


@pytest.mark.slow
def test_allocation_between_uniform_plans_fits_and_beats_them(trained, trained_run, tmp_path, capsys, one_thread):
    opened, model, sl = trained
    sd = opened.state_dict
    sizes = _uniform(sd, DEFAULT_LADDER)
    assert sorted(sizes.values()) == [sizes[s] for s in DEFAULT_LADDER]  # more precision, more bytes
    cap = (sizes["int5"] + sizes["int6"]) // 2
    plan_file = tmp_path / "plan.json"
    code = main(["allocate", str(trained_run / "checkpoints"), "--cap", str(cap), "--gaps", "measured",
                 "--select-tokens", str(SLICE_TOKENS), "--report-tokens", str(SLICE_TOKENS),
                 "--cache-dir", str(tmp_path / "cache"), "-o", str(plan_file), "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["fits"] is True and report["bytes_total"] < cap
    # the plan file is budget's versioned plan: measured again from the file, it fits
    plan = load_plan(plan_file)
    assert json.loads(plan_file.read_text())["format"] == "pgolf-plan-v1"
    measured = measure_budget(sd, plan, per_tensor=False).headline["bytes_total"]
    assert measured == report["bytes_total"] < cap
    assert main(["budget", str(trained_run / "checkpoints"), "--plan", str(plan_file), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["bytes_model"] == measured
    # measured BPB on the selection slice: not significantly worse than the best uniform plan that
    # fits (each evaluated here, independently)
    def result(p, where=sl):
        load_weights(model, sd if p is None else fake_quantize(sd, p))
        return evaluate_bpb(model, where)
    fitting = [s for s in DEFAULT_LADDER if sizes[s] < cap]
    assert fitting == ["int4", "int5"]
    best_uniform = min((result(quantize_small(s)) for s in fitting), key=lambda r: r.val_bpb)
    allocated = result(plan)
    assert allocated.val_bpb == report["select_val_bpb_quantized"]
    assert not allocated.minus(best_uniform).significant or allocated.val_bpb < best_uniform.val_bpb
    assert report["chosen"] == "allocation"  # the knapsack's own plan, not the uniform fallback
    # the headline is the held-out slice: the next SLICE_TOKENS tokens, disjoint from the selection
    held = load_slice(tokens=SLICE_TOKENS, seq_len=sl.seq_len, quiet=True, offset=SLICE_TOKENS)
    held_q, held_full = result(plan, held), result(None, held)
    load_weights(model, sd)
    assert report["val_bpb_quantized"] == held_q.val_bpb and report["report_tokens"] == SLICE_TOKENS
    gap = held_q.minus(held_full)
    assert report["quant_gap_bpb_se"] == gap.se > 0 and report["quant_gap_bpb_lo"] < report["quant_gap_bpb"]
    assert report["quant_gap_bpb_significant"] == gap.significant
    assert report["insignificant_options"] >= 0 and report["insignificant_moves"] >= 0
    rows = {r["name"]: r["scheme"] for r in report["tensors"]}
    assert len(rows) == 19 and len(set(rows.values())) >= 2  # really mixed precision


@pytest.mark.slow
def test_overshooting_plan_is_repaired_until_it_fits(trained, monkeypatch, one_thread):
    """Force the knapsack to propose everything in fp16: the measured build overshoots and the
    repair loop downgrades (cheapest BPB per byte first) until the real artifact fits."""
    opened, model, sl = trained
    sd = opened.state_dict
    sizes = _uniform(sd, ("int6", "int8"))
    cap = (sizes["int6"] + sizes["int8"]) // 2
    monkeypatch.setattr(allocate_module, "greedy", lambda options, budget: {n: "fp16" for n in options})
    oracle = GapOracle(model, sd, sl, "proxy", None, True)
    report = allocate(sd, cap, oracle=oracle, quiet=True)
    h = report.headline
    assert h["repairs"] > 0 and h["fits"] is True and h["bytes_total"] < cap
    assert measure_budget(sd, report.plan, per_tensor=False).headline["bytes_total"] == h["bytes_total"]


@pytest.mark.slow
def test_headroom_exchange_rates_measured(trained, one_thread):
    opened, model, sl = trained
    sd = opened.state_dict
    plan = quantize_small("int6")
    oracle = GapOracle(model, sd, sl, "measured", None, True)
    report = headroom(sd, plan, oracle=oracle, delta_bytes="alone", quiet=True)
    frame = report.frame.set_index(["name", "direction"])
    assert len(frame) == 2 * 19
    assert (frame["bpb_per_kb"] == frame["delta_bpb"] / (frame["delta_bytes"] / 1000)).all()
    # the embedding is the sensitive tensor: int5 costs it clearly more BPB than int8 could gain
    down, up = frame.loc[("tok_emb.weight", "down")], frame.loc[("tok_emb.weight", "up")]
    assert down["delta_bpb"] > 0.01 and down["delta_bytes"] < 0 < up["delta_bytes"]
    assert down["delta_bpb"] > -up["delta_bpb"] and down["bpb_per_kb"] < 0
    assert down["delta_bpb"] > frame.xs("down", level="direction")["delta_bpb"].drop("tok_emb.weight").max()
    # the measured delta is the difference of two only-this gaps, each an exact replayed evaluation
    q = fake_quantize(sd, with_scheme(plan, {"tok_emb.weight": "int5"}))
    load_weights(model, {**sd, "tok_emb.weight": q["tok_emb.weight"]})
    low = evaluate_bpb(model, sl).val_bpb
    load_weights(model, {**sd, "tok_emb.weight": fake_quantize(sd, plan)["tok_emb.weight"]})
    cur = evaluate_bpb(model, sl).val_bpb
    load_weights(model, sd)
    assert down["delta_bpb"] == pytest.approx(low - cur, abs=1e-12)
    assert report.headline["headroom_bytes"] == 16_000_000 - report.headline["bytes_total"]
    assert report.headline["delta_bytes_method"] == "tensor compressed alone"
    assert torch.equal(model.state_dict()["tok_emb.weight"], sd["tok_emb.weight"])


def _small_model_and_slice():
    from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict
    from pgolf.inspect.evaluate import byte_luts_uniform, make_slice
    from pgolf.inspect.load import build_model

    sd = synthetic_state_dict(baseline_specs(2, 64, 4, 2, 2, 256), seed=4)
    tokens = torch.randint(0, 256, (4 * 64 + 1,), generator=torch.Generator().manual_seed(1))
    return sd, build_model(sd), make_slice(tokens, 64, byte_luts_uniform(256))


def test_api_headline_is_measured_never_nan_and_the_infeasible_error_names_no_flag(one_thread):
    """The API with a proxy oracle: val_bpb_full / val_bpb_quantized / quant_gap_bpb are measured
    numbers; a cap below every candidate raises CapTooSmall whose message advises no CLI flag."""
    import math

    from pgolf.budget.errors import PgolfInputError
    from pgolf.inspect.allocate import CapTooSmall

    sd, model, sl = _small_model_and_slice()
    oracle = GapOracle(model, sd, sl, "proxy", None, True)
    sizes = _uniform(sd, ("int4", "int8"))
    report = allocate(sd, (sizes["int4"] + sizes["int8"]) // 2, oracle=oracle, candidates=("int4", "int8"), quiet=True)
    h = report.headline
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in h.values()), h
    assert h["val_bpb_full"] == evaluate_bpb(model, sl, oracle.sweep.batch_seqs).val_bpb
    load_weights(model, fake_quantize(sd, report.plan))
    assert h["val_bpb_quantized"] == evaluate_bpb(model, sl, oracle.sweep.batch_seqs).val_bpb
    load_weights(model, sd)
    assert h["quant_gap_bpb"] == h["val_bpb_quantized"] - h["val_bpb_full"] and h["artifact_matches"] is True
    with pytest.raises(CapTooSmall) as exc:
        allocate(sd, 1_000, oracle=oracle, candidates=("int6", "int8"), quiet=True)
    assert isinstance(exc.value, PgolfInputError) and exc.value.smallest == "int6" and exc.value.need > 1_000
    assert exc.value.problem == (f"cap 1,000 is below the smallest candidate plan (uniform int6: "
                                 f"{exc.value.need:,} bytes with code and margin)")
    # need = the real artifact of uniform int6 (as the allocator builds it, named "allocated") + 1 byte
    from pgolf.budget.exact.build import build_artifact
    from pgolf.inspect.headroom import allocatable

    base = quantize_small("official-int8")
    uniform_int6 = with_scheme(base, {n: "int6" for n in allocatable(sd, base)}, "allocated")
    assert exc.value.need == len(build_artifact(sd, uniform_int6)) + 1


class WeightSpaceOracle:
    """An oracle with no evaluation slice: the gap of (tensor, scheme) is its weight-space
    relative MSE x numel (real, computed; no BPB)."""

    label = "weight-space rel_mse"

    def __init__(self, sd):
        self.sd = sd

    def gaps(self, pairs, desc=""):
        from pgolf.inspect.headroom import roundtrip

        out = {}
        for n, s in pairs:
            w = self.sd[n].float()
            out[(n, s)] = float((roundtrip(self.sd[n], s).float() - w).square().sum() / w.square().sum()) * w.numel()
        return out


def test_an_oracle_without_a_slice_reports_no_bpb_rather_than_nan():
    sd, _, _ = _small_model_and_slice()
    sizes = _uniform(sd, ("int4", "int8"))
    cap = (sizes["int4"] + sizes["int8"]) // 2
    report = allocate(sd, cap, oracle=WeightSpaceOracle(sd), candidates=("int4", "int8"), quiet=True)
    h = report.headline
    assert not {"val_bpb_full", "val_bpb_quantized", "quant_gap_bpb", "tokens"} & set(h)
    assert h["fits"] is True and h["bytes_total"] < cap and h["chosen"] == "allocation"
    assert set(report.frame["scheme"]) == {"int4", "int8"}
    assert "no evaluation slice" in report.to_text()
    json.loads(report.to_json())  # allow_nan=False: would raise on NaN
