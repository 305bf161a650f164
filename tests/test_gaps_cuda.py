"""CPU and CUDA gaps agree within bf16 tolerance (CUDA evaluates under bf16 autocast like the
official scorer); skipped with the reason on machines without CUDA."""
from __future__ import annotations

import pytest
import torch

from conftest import fixture_path
from pgolf.inspect.evaluate import load_slice
from pgolf.inspect.gaps import measure_gaps
from pgolf.budget.quant.plans import quantize_small
from pgolf.inspect.load import load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this machine (torch.cuda.is_available() is False)")
BF16 = 2.0 ** -8  # bf16 keeps 8 significant bits


@pytest.mark.parametrize("script", [None, "official_baseline_train_gpt.py"])
def test_cpu_and_cuda_gaps_agree(script):
    pt = fixture_path("artifacts", "sp1024-3L-d128", "final_model.pt")
    tok = fixture_path("tokenizers", "fineweb_1024_bpe.model")
    kwargs = {}
    if script:
        kwargs = dict(script=fixture_path("scripts", script),
                      env=["NUM_LAYERS=3", "MODEL_DIM=128", "NUM_HEADS=4", "NUM_KV_HEADS=2"])
    sl = load_slice(tokenizer=tok, tokens=8192, seq_len=256, vocab_size=1024, quiet=True)
    reports = {}
    for device in ("cpu", "cuda"):
        lm = load_model(pt, device=device, **kwargs)
        reports[device] = measure_gaps(lm.model, quantize_small("int6"), sl, sd=lm.state_dict, proxy=False,
                                       quiet=True)
    cpu, cuda = reports["cpu"], reports["cuda"]
    full = cpu.headline["val_bpb_full"]
    # each evaluation carries bf16 rounding of ~2^-8 relative per activation; over a slice of 8,192
    # tokens the mean is far tighter, and 2^-8 of the BPB bounds both values and their differences
    assert abs(cuda.headline["val_bpb_full"] - full) <= BF16 * full
    assert abs(cuda.headline["quant_gap_bpb"] - cpu.headline["quant_gap_bpb"]) <= BF16 * full
    assert cuda.headline["artifact_matches"] and cpu.headline["artifact_matches"]
    diff = (cuda.frame["gap_only_this_bpb"] - cpu.frame["gap_only_this_bpb"]).abs().max()
    assert diff <= BF16 * full, diff


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices for an nccl --nproc 2 run")
def test_nccl_two_ranks_agree_with_one(tmp_path):
    """`pgolf gaps --device cuda --nproc 2`: one GPU per rank (nccl), the numbers of one GPU within bf16."""
    import contextlib
    import io
    import json

    from pgolf.figures.cli import main

    pt = fixture_path("artifacts", "sp1024-3L-d128", "final_model.pt")
    tok = fixture_path("tokenizers", "fineweb_1024_bpe.model")
    argv = ["gaps", str(pt), "--tokenizer", str(tok), "--tokens", "4096", "--seq-len", "256", "--plan", "int6",
            "--quantize-small", "--quiet", "--json", "--device", "cuda", "--no-cache", "--no-proxy"]
    reports = []
    for extra in ([], ["--nproc", "2"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(argv + extra) == 0
        reports.append(json.loads(out.getvalue()))
    one, two = reports
    assert two["nproc"] == 2 and [t["name"] for t in two["tensors"]] == [t["name"] for t in one["tensors"]]
    full = one["val_bpb_full"]
    for key in ("val_bpb_full", "quant_gap_bpb"):
        assert abs(two[key] - one[key]) <= BF16 * full
    for a, b in zip(one["tensors"], two["tensors"]):  # GPUs of one kind need not agree bit for bit
        assert abs(a["gap_only_this_bpb"] - b["gap_only_this_bpb"]) <= BF16 * full, a["name"]
