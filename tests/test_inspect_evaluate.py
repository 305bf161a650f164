"""BPB evaluation on a fixed slice, and the exactness of replayed (restarted) evaluations."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import fixture_path
from tolerances import float32_mean_rtol
from inspect_fixtures import one_thread  # noqa: F401 (fixture)
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict
from pgolf.inspect.replay import BlockReplay, Restart
from pgolf.inspect.evaluate import (byte_luts_uniform, evaluate_bpb, load_slice, make_slice,
                                    set_tensor)
from pgolf.inspect.load import build_model, infer_architecture

VARIANTS = {  # name: (baseline_specs kwargs, sidecar config)
    "3L-tied": (dict(num_layers=3, model_dim=64, num_heads=4, num_kv_heads=2, vocab_size=256), None),
    "4L-untied": (dict(num_layers=4, model_dim=64, num_heads=4, num_kv_heads=1, vocab_size=256,
                       tie_embeddings=False), None),
    "5L-recurrent": (dict(num_layers=5, model_dim=64, num_heads=4, num_kv_heads=2, vocab_size=256,
                          num_unique_layers=2), {"num_layers": 5, "num_unique_layers": 2}),
}


def _model(variant: str):
    kwargs, config = VARIANTS[variant]
    sd = synthetic_state_dict(baseline_specs(**kwargs), seed=5)
    return build_model(sd, infer_architecture(sd, config)), sd


def _slice(vocab: int, n: int = 4 * 32, seq_len: int = 32):
    tokens = torch.randint(0, vocab, (n + 1,), generator=torch.Generator().manual_seed(0))
    return make_slice(tokens, seq_len, byte_luts_uniform(vocab))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_replay_equals_full_evaluation_bit_for_bit(variant, one_thread):
    """Every tensor perturbed alone: the evaluation restarted from its first block equals a full one."""
    model, sd = _model(variant)
    sl = _slice(256)
    replay = BlockReplay(model, batch_seqs=2)
    base = replay.record(sl)
    assert base == evaluate_bpb(model, sl, 2)
    restarts = set()
    for name, t in sd.items():
        noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(len(name))) * 0.05
        set_tensor(model, name, (t.float() + noise).to(t.dtype))
        restart = replay.restart_for(name)
        restarts.add(restart)
        got = replay.evaluate_from(restart)
        want = evaluate_bpb(model, sl, 2)
        set_tensor(model, name, t)
        assert got.val_bpb == want.val_bpb, (name, restart)
        assert got.val_bpb != base.val_bpb, name  # the perturbation is seen
    # the restarts really skip work: later blocks, the MLP half, the head alone
    last_block_first_call = replay.call_modules.index(len(model.blocks) - 1)
    assert Restart(last_block_first_call, True) in restarts and Restart(0, False) in restarts
    if variant == "4L-untied":
        assert replay.restart_for("lm_head.weight") == Restart(4)
        assert replay.restart_for("skip_weights") == Restart(2)
    if variant == "5L-recurrent":
        assert replay.call_modules == [0, 1, 0, 1, 0]
        assert replay.restart_for("blocks.1.attn.c_q.weight") == Restart(1)


def test_evaluation_matches_the_trainers_eval_val_bpb(one_thread):
    from pgolf.trainer.train_gpt import build_sentencepiece_luts, eval_val_bpb
    from pgolf.budget.exact.inputs import read_tokenizer

    model, _ = _model("3L-tied")
    sp = read_tokenizer(fixture_path("tokenizers", "fineweb_1024_bpe.model"))
    luts = build_sentencepiece_luts(sp, 1024, torch.device("cpu"))
    ids = [1] + sp.encode("The quick brown fox jumps over the lazy dog. " * 12)
    tokens = torch.tensor([min(i, 255) for i in ids])  # the test model has 256 embeddings
    sl = make_slice(tokens, 32, luts)
    mine = evaluate_bpb(model, sl, 2)
    loss, bpb = eval_val_bpb(model, sl.tokens, luts, 32, batch_tokens=64, device="cpu")
    rtol = float32_mean_rtol(sl.n_tokens, inner=model.tok_emb.weight.shape[1], vocab=256)
    assert mine.val_loss == pytest.approx(loss, rel=rtol)
    assert mine.val_bpb == pytest.approx(bpb, rel=rtol)
    # the byte count by hand: piece bytes without the leading space marker, plus the space
    # unless the previous token is a boundary (BOS here)
    pieces = [sp.id_to_piece(int(t)) for t in sl.tokens[1:]]
    prev = sl.tokens[:-1].tolist()
    by_hand = 0
    for p, t, q in zip(pieces, sl.tokens[1:].tolist(), prev):
        by_hand += 1 if sp.is_byte(t) else len(p.lstrip("\u2581").encode()) + (
            1 if p.startswith("\u2581") and not sp.is_control(q) else 0)
    assert sl.byte_count == by_hand
    assert mine.val_bpb == pytest.approx(mine.val_loss / math.log(2) * sl.n_tokens / sl.byte_count, rel=1e-12)


def test_slice_is_whole_windows_and_hashes_its_content():
    luts = byte_luts_uniform(16)
    a = make_slice(torch.arange(1000) % 16, 64, luts, max_tokens=300)
    assert (a.n_tokens, a.n_seqs, a.byte_count) == (256, 4, 256.0)
    assert [tuple(x.shape) for x, _ in a.batches(3)] == [(3, 64), (1, 64)]
    b = make_slice(torch.arange(1000) % 16, 64, luts, max_tokens=300)
    c = make_slice((torch.arange(1000) + 1) % 16, 64, luts, max_tokens=300)
    assert a.digest == b.digest != c.digest


@pytest.mark.parametrize("kwargs, problem", [
    (dict(tokens=torch.arange(10), seq_len=64), "too short for one window"),
    (dict(tokens=torch.arange(100) + 20, seq_len=8), "outside the tokenizer's 16 pieces"),
])
def test_bad_slices(kwargs, problem):
    with pytest.raises(PgolfInputError, match=problem):
        make_slice(kwargs["tokens"], kwargs["seq_len"], byte_luts_uniform(16))


def test_load_slice_bad_data_folder(tmp_path):
    with pytest.raises(PgolfInputError, match="no fineweb_val_"):
        load_slice(data=tmp_path, tokenizer=fixture_path("tokenizers", "fineweb_1024_bpe.model"))
    with pytest.raises(PgolfInputError, match="must be a folder"):
        load_slice(data=tmp_path / "missing")


def test_load_slice_with_the_challenge_tokenizer():
    sl = load_slice(tokenizer=fixture_path("tokenizers", "fineweb_1024_bpe.model"), tokens=2048, seq_len=512,
                    vocab_size=1024, quiet=True)
    assert (sl.n_tokens, sl.seq_len) == (2048, 512)
    assert "fineweb_1024_bpe.model" in sl.source
    assert 2.0 < sl.byte_count / sl.n_tokens < 6.0  # English prose: a few bytes per sp1024 token


def test_load_slice_from_a_shard_folder_equals_the_default():
    """--data with official-format shards (the embedded default's own folder) and the tokenizer
    found beside them gives the very slice of the default path."""
    from pgolf.trainer.corpus import prepare_default

    info = prepare_default(quiet=True)
    default = load_slice(tokens=4096, seq_len=256, quiet=True)
    from_folder = load_slice(data=info.data_path, tokens=4096, seq_len=256, quiet=True)
    assert from_folder.digest == default.digest and from_folder.byte_count == default.byte_count
    assert "official val shards" in from_folder.source


class TinyLM(torch.nn.Module):
    """Not the baseline family: no blocks, its own names; forward(x, y) -> mean loss."""

    def __init__(self, vocab: int = 64, dim: int = 32):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.emb = torch.nn.Parameter(torch.randn(vocab, dim, generator=g) * 0.5)
        self.mix = torch.nn.Linear(dim, dim, bias=False)
        self.out = torch.nn.Linear(dim, vocab, bias=True)
        with torch.no_grad():
            self.mix.weight.copy_(torch.randn(dim, dim, generator=g) * 0.2)

    def forward(self, x, y):
        h = torch.tanh(self.mix(self.emb[x]))
        return torch.nn.functional.cross_entropy(self.out(h).flatten(0, 1), y.flatten())


def test_any_module_with_forward_x_y(one_thread):
    """The Python API measures gaps of any nn.Module: full evaluations, no replay, same contract."""
    from pgolf.budget.quant.plans import Plan
    from pgolf.inspect.gaps import measure_gaps

    model = TinyLM()
    sl = _slice(64, n=8 * 16, seq_len=16)
    plan = Plan("int4-all", default="int4", keep_float_max_numel=0)
    report = measure_gaps(model, plan, sl, quiet=True)
    h = report.headline
    assert h["artifact_matches"] is True and h["tensors_changed"] == 4  # emb, mix, out.weight, out.bias
    frame = report.frame.set_index("name")
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    ref = evaluate_bpb(model, sl).val_bpb
    from pgolf.budget.exact.build import fake_quantize

    q = fake_quantize(sd, plan)
    set_tensor(model, "mix.weight", q["mix.weight"])
    assert frame.loc["mix.weight", "gap_only_this_bpb"] == evaluate_bpb(model, sl).val_bpb - ref
    set_tensor(model, "mix.weight", sd["mix.weight"])
    assert h["val_bpb_full"] == ref


def test_replay_over_its_memory_budget_falls_back_to_full_evaluations(one_thread):
    model, sd = _model("3L-tied")
    sl = _slice(256)
    replay = BlockReplay(model, batch_seqs=1, max_bytes=1)  # nothing fits: record nothing
    base = replay.record(sl)
    assert not replay.supported and replay.cached_bytes() == 0
    assert base == evaluate_bpb(model, sl, 1)
    name = "blocks.2.mlp.fc.weight"
    set_tensor(model, name, sd[name] * 1.5)
    assert replay.evaluate_from(replay.restart_for(name)) == evaluate_bpb(model, sl, 1)
    assert replay.replayed == 0
    set_tensor(model, name, sd[name])


def test_a_mean_loss_spread_over_positions_is_one_unit_per_batch(one_thread):
    """A script's model without logits gives its mean loss at every position: its windows are not
    seen, so the standard error may not treat them as independent units."""
    model, _ = _model("3L-tied")
    sl = _slice(256)

    class SpreadMean(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x, y, reduction="mean"):
            loss = self.inner(x, y)
            return loss if reduction == "mean" else loss.expand(y.shape)

    spread, real = evaluate_bpb(SpreadMean(), sl, 2), evaluate_bpb(model, sl, 2)
    assert (spread.unit_windows, len(spread.unit_loss)) == (2, sl.n_seqs // 2)
    assert (real.unit_windows, len(real.unit_loss)) == (1, sl.n_seqs)
    assert spread.val_bpb == pytest.approx(real.val_bpb, rel=float32_mean_rtol(sl.n_tokens, 64, 256))


def test_replay_cost_counts_the_work_an_evaluation_does(one_thread):
    """cost_from: a full evaluation costs every block call plus the head, a late restart less, the
    MLP half of a block its MLP only; this is what `--nproc` deals by."""
    model, sd = _model("3L-tied")
    sl = _slice(256)
    replay = BlockReplay(model, batch_seqs=2)
    assert replay.cost_from(Restart(0)) == 1.0  # nothing recorded: equal costs
    replay.record(sl)
    block = sum(p.numel() for p in model.blocks[0].parameters())
    attn = sum(p.numel() for p in model.blocks[0].attn.parameters())
    scores = 32 * 64  # seq_len x width
    head = sum(p.numel() for p in model.parameters()) - 3 * block
    assert replay.cost_from(Restart(0)) == head + 3 * (block + scores)
    assert replay.cost_from(Restart(3)) == head
    assert replay.cost_from(Restart(2, True)) == head + block - attn
    costs = [replay.cost_from(replay.restart_for(n)) for n in sd]
    # tied head: the cheapest tensor is the last block's MLP
    assert max(costs) == replay.cost_from(Restart(0)) and min(costs) == head + block - attn
