"""Measured quantization gaps on a checkpoint trained by our trainer on the embedded default."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from inspect_fixtures import SLICE_TOKENS, one_thread, trained, trained_run  # noqa: F401 (fixtures)
from pgolf.budget.exact.decode import roundtrip_mismatches
from pgolf.budget.exact.build import build_artifact, fake_quantize
from pgolf.budget.exact.decode import read_artifact
from pgolf.budget.exact.inputs import load_input
from pgolf.inspect import gaps as gaps_module
from pgolf.inspect.evaluate import evaluate_bpb, load_weights
from pgolf.budget.quant.plans import quantize_small
from pgolf.inspect.gaps import GAP_COLUMNS, measure_gaps
from pgolf.inspect.load import build_model

pytestmark = pytest.mark.slow  # a shared ~1 minute training run, then ~10 s per sweep


def _bpb(model, sd, sl):
    load_weights(model, sd)
    return evaluate_bpb(model, sl).val_bpb


@pytest.mark.parametrize("plan, compressor", [("official-int8", "zlib"), ("int6", "zstd"), ("int4", "brotli")])
def test_whole_model_gap_real_artifact_equals_in_memory(trained, plan, compressor, one_thread):
    """build -> compress -> bytes -> decompress -> read -> evaluate == fake_quantize -> evaluate, exactly."""
    opened, model, sl = trained
    sd = opened.state_dict
    plan = plan if plan == "official-int8" else quantize_small(plan)
    in_memory = fake_quantize(sd, plan)
    decoded = read_artifact(build_artifact(sd, plan, compressor))
    assert roundtrip_mismatches(decoded, in_memory) == []
    full = _bpb(model, sd, sl)
    gap_memory = _bpb(model, in_memory, sl) - full
    gap_artifact = _bpb(model, decoded, sl) - full
    load_weights(model, sd)
    assert gap_artifact == gap_memory
    assert gap_memory != 0.0


def test_trainers_own_ptz_scores_like_in_memory_official_int8(trained, trained_run, one_thread):
    """The final_model.int8.ptz our trainer wrote, read back from disk: same tensors, same BPB."""
    opened, model, sl = trained
    ptz = load_input(trained_run / "final_model.int8.ptz")
    in_memory = fake_quantize(opened.state_dict, "official-int8")
    assert roundtrip_mismatches(ptz.state_dict, in_memory) == []
    assert _bpb(model, ptz.state_dict, sl) == _bpb(model, in_memory, sl)
    load_weights(model, opened.state_dict)


@pytest.fixture(scope="module")
def gap_tables(trained):
    opened, model, sl = trained
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {p: measure_gaps(model, quantize_small(p), sl, sd=opened.state_dict, quiet=True)
                for p in ("int8", "int4", "ternary")}
    finally:
        torch.set_num_threads(before)


def test_int8_gaps_near_zero_int4_and_ternary_clearly_larger(gap_tables):
    heads = {p: r.headline for p, r in gap_tables.items()}
    for p, h in heads.items():
        assert h["artifact_matches"] is True, p
        assert h["val_bpb_artifact"] == h["val_bpb_quantized"]
        assert h["quant_gap_bpb"] == h["val_bpb_quantized"] - h["val_bpb_full"]
    assert abs(heads["int8"]["quant_gap_bpb"]) < 0.003
    assert heads["int4"]["quant_gap_bpb"] > 10 * abs(heads["int8"]["quant_gap_bpb"])
    assert heads["ternary"]["quant_gap_bpb"] > 2 * heads["int4"]["quant_gap_bpb"]
    frames = {p: r.frame.set_index("name") for p, r in gap_tables.items()}
    int8 = frames["int8"]
    matrices = int8.index[int8["scheme"] == "int8"]
    assert len(matrices) == 19  # 3 blocks x 6 matrices + tok_emb
    assert int8.loc[matrices, "gap_only_this_bpb"].abs().max() < 0.002
    assert frames["int4"].loc["tok_emb.weight", "gap_only_this_bpb"] > 20 * abs(
        int8.loc["tok_emb.weight", "gap_only_this_bpb"])
    blocks = [n for n in matrices if n.startswith("blocks.")]
    assert frames["ternary"].loc[blocks, "gap_only_this_bpb"].mean() > 20 * int8.loc[blocks, "gap_only_this_bpb"].abs().mean()


def test_gap_frame_columns_and_exact_zeros(gap_tables):
    frame = gap_tables["int4"].frame
    assert tuple(frame.columns) == GAP_COLUMNS
    control = frame[frame["scheme"] == "fp32"]
    assert len(control) == 3 * 4 + 1  # attn_scale, mlp_scale, resid_mix, q_gain per block + skip_weights
    assert (control[["gap_only_this_bpb", "gap_all_but_this_bpb", "proxy_gap_bpb", "rel_mse"]] == 0).all().all()
    quantized = frame[frame["scheme"] == "int4"]
    assert (quantized["bytes"] > 0).all() and (quantized["levels"] <= 15).all() and (quantized["rel_mse"] > 0).all()
    data = gap_tables["int4"].to_dict()
    assert {"val_bpb_full", "val_bpb_quantized", "quant_gap_bpb", "tensors"} <= set(data)
    assert set(data["tensors"][0]) >= {"name", "scheme", "bytes", "gap_only_this_bpb", "gap_all_but_this_bpb",
                                       "proxy_gap_bpb", "rel_mse", "sqnr_db"}


def test_every_gap_carries_its_interval(gap_tables, trained, one_thread):
    """SE > 0 and lo < gap < hi wherever a tensor changed; significant iff 0 is outside; the
    whole-model gap's interval equals the paired difference of the two evaluations."""
    from pgolf.budget.exact.build import fake_quantize

    report = gap_tables["int4"]
    frame = report.frame
    for view in ("gap_only_this_bpb", "gap_all_but_this_bpb"):
        changed = frame[frame["scheme"] == "int4"]
        assert (changed[f"{view}_se"] > 0).all()
        assert ((changed[f"{view}_lo"] < changed[view]) & (changed[view] < changed[f"{view}_hi"])).all()
        outside = (changed[f"{view}_lo"] > 0) | (changed[f"{view}_hi"] < 0)
        assert (changed[f"{view}_significant"] == outside).all()
        exact = frame[frame["scheme"] == "fp32"]
        assert (exact[f"{view}_se"] == 0).all() and not exact[f"{view}_significant"].any()
    assert frame.loc[frame["name"] == "tok_emb.weight", "gap_only_this_bpb_significant"].item()
    opened, model, sl = trained
    sd = opened.state_dict
    ref = evaluate_bpb(load_weights(model, sd), sl)
    quant = evaluate_bpb(load_weights(model, fake_quantize(sd, quantize_small("int4"))), sl)
    load_weights(model, sd)
    iv = quant.minus(ref)
    h = report.headline
    assert (h["quant_gap_bpb_se"], h["quant_gap_bpb_lo"], h["quant_gap_bpb_hi"]) == (iv.se, iv.lo, iv.hi)
    assert h["quant_gap_bpb_significant"] is True and h["significant_only_this"] >= 1


def test_proxy_ranks_large_gaps_like_the_measurement(gap_tables):
    """Spearman of the gradient proxy against measured only-this gaps where gaps are large."""
    for plan in ("int4", "ternary"):
        h = gap_tables[plan].headline
        assert h["proxy_spearman"] >= 0.8, plan
        # the true Fisher (targets sampled from the model) over the whole 4,096-token slice; its
        # speed against the sweep is measured by benchmarks/gaps_speed.py, not timed here
        assert h["proxy_fisher"] == "sampled" and h["proxy_tokens"] == SLICE_TOKENS


def test_interrupted_sweep_resumes_from_the_cache(trained, tmp_path, monkeypatch, one_thread):
    opened, model, sl = trained
    plan = quantize_small("int5")
    kw = dict(sd=opened.state_dict, all_but_this=False, proxy=False, verify=False, quiet=True)
    real_put, puts = gaps_module.GapSweep._put, []

    def put_then_stop(self, key, result):
        if len(puts) == 6:
            raise KeyboardInterrupt
        puts.append(key)
        real_put(self, key, result)

    monkeypatch.setattr(gaps_module.GapSweep, "_put", put_then_stop)
    with pytest.raises(KeyboardInterrupt):
        measure_gaps(model, plan, sl, cache_dir=tmp_path, **kw)
    monkeypatch.undo()
    # the model holds the original weights again
    assert all(torch.equal(model.state_dict()[n].to(t.dtype), t) for n, t in opened.state_dict.items())
    assert len(list(tmp_path.glob("*.json"))) == 6  # reference + 5 tensors
    corrupt = sorted(tmp_path.glob("*.json"))[0]
    corrupt.write_text(corrupt.read_text().replace("val_bpb", "val_bpx"))  # fails its checksum
    resumed = measure_gaps(model, plan, sl, cache_dir=tmp_path, **kw)
    fresh = measure_gaps(model, plan, sl, cache_dir=None, **kw)
    assert resumed.frame["gap_only_this_bpb"].tolist() == fresh.frame["gap_only_this_bpb"].tolist()
    assert resumed.headline["val_bpb_quantized"] == fresh.headline["val_bpb_quantized"]
    # 19 only-this + reference + quantized = 21 for a fresh run; resumed skips the 4 or 5 intact entries
    assert fresh.headline["evaluations"] == 21
    assert resumed.headline["evaluations"] in (21 - 5, 21 - 4)
    again = measure_gaps(model, plan, sl, cache_dir=tmp_path, **kw)
    assert again.headline["evaluations"] == 0 and again.headline["cache_hits"] == 21


@pytest.mark.parametrize("change", [{"logit_softcap": 12.0}, {"rope_base": 500.0}])
def test_the_same_weights_under_another_config_are_not_served_from_the_cache(trained, tmp_path, change, one_thread):
    opened, model, sl = trained
    kw = dict(sd=opened.state_dict, all_but_this=False, proxy=False, verify=False, quiet=True, cache_dir=tmp_path)
    plan = quantize_small("int5")
    first = measure_gaps(model, plan, sl, **kw)
    other = build_model(opened.state_dict, dataclasses.replace(opened.arch, **change))
    second = measure_gaps(other, plan, sl, **kw)
    assert second.headline["cache_hits"] == 0
    assert second.headline["val_bpb_full"] != first.headline["val_bpb_full"]  # measured, not the cached value
