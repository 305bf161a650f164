"""val_bpb as the challenge defines it, checked by hand against the raw text's UTF-8 bytes."""
from __future__ import annotations

import math

import pytest
import sentencepiece as spm
import torch

from conftest import fixture_path
from tolerances import float32_mean_rtol
from pgolf.trainer.train_gpt import GPT, build_sentencepiece_luts, eval_val_bpb, eval_windows

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Parameter Golf scores a model in bits per byte of 2024 validation text.",
    "Compression is prediction, and prediction is compression.",
]


def tokenizer(name: str = "fineweb_1024_bpe.model") -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(fixture_path("tokenizers", name)))


def stream(sp, sentences) -> torch.Tensor:
    """BOS before each document, no EOS: the shard layout."""
    ids = []
    for s in sentences:
        ids += [sp.bos_id(), *sp.encode(s)]
    return torch.tensor(ids, dtype=torch.int64)


def random_model(vocab: int, seed: int = 0) -> GPT:
    # Every weight random (the baseline's zero-initialised projections too) so per-token losses differ.
    torch.manual_seed(seed)
    model = GPT(vocab, 2, 32, 2, 1, 2, True, 0.005, 30.0, 10000.0, 1.5)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def test_bpb_by_hand_matches_trainer():
    sp = tokenizer()
    tokens = stream(sp, SENTENCES)
    assert sp.unk_id() not in tokens.tolist()  # plain ASCII: every byte is accounted for
    n = tokens.numel() - 1
    model = random_model(sp.vocab_size())
    luts = build_sentencepiece_luts(sp, 1024, torch.device("cpu"))

    val_loss, val_bpb = eval_val_bpb(model, tokens, luts, seq_len=n, batch_tokens=n)

    with torch.no_grad():
        hand_loss = float(model(tokens[None, :-1], tokens[None, 1:]))  # mean nats over all n targets
    hand_bytes = sum(len(s.encode("utf-8")) for s in SENTENCES)  # no dummy prefix: text bytes exactly
    hand_bpb = hand_loss / math.log(2.0) * n / hand_bytes
    rtol = float32_mean_rtol(n, inner=32, vocab=1024)  # per-token losses summed in another order
    assert val_loss == pytest.approx(hand_loss, rel=rtol)
    assert val_bpb == pytest.approx(hand_bpb, rel=rtol)
    assert 1.0 < val_bpb < 20.0


def test_token_bytes_sum_to_text_bytes_with_byte_fallback():
    # The 8192 tokenizer has byte fallback: non-ASCII text still sums to its exact UTF-8 length.
    sp = tokenizer("fineweb_8192_bpe.model")
    text = ["Café naïve — 東京 🙂 costs 4 bytes", "Zürich ½ ﬁne"]
    base, lead, boundary = build_sentencepiece_luts(sp, sp.vocab_size(), torch.device("cpu"))
    tokens = stream(sp, text)
    prev, tgt = tokens[:-1], tokens[1:]
    nbytes = (base[tgt].long() + (lead[tgt] & ~boundary[prev]).long()).sum().item()
    normalized = [sp.decode(sp.encode(t)) for t in text]  # nmt_nfkc folds "½" and "ﬁ"
    assert nbytes == sum(len(t.encode("utf-8")) for t in normalized)
    assert any(sp.is_byte(int(t)) for t in tgt)


def test_luts_count_unknown_and_control_tokens_as_zero_bytes():
    sp = tokenizer()  # the sp1024 model has no byte fallback: unseen characters become <unk>
    base, lead, boundary = build_sentencepiece_luts(sp, 1024, torch.device("cpu"))
    for special in (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()):
        assert base[special] == 0 and bool(boundary[special])
    space_piece = sp.piece_to_id("\u2581the")
    assert bool(lead[space_piece]) and base[space_piece] == 3
    assert base.dtype == torch.int16 and lead.dtype == boundary.dtype == torch.bool


@pytest.mark.parametrize("n,seq_len,stride", [(8, 4, 2), (100, 16, 16), (100, 16, 5), (37, 8, 3), (64, 64, None)])
def test_eval_windows_score_every_target_once(n, seq_len, stride):
    windows = eval_windows(n, seq_len, stride)
    scored = [s + off for s, first in windows for off in range(first, seq_len)]
    assert sorted(scored) == list(range(n if stride and stride < seq_len else n // seq_len * seq_len))
    assert all(0 <= s <= n - seq_len for s, _ in windows)


def test_eval_windows_doc_example():
    assert eval_windows(8, 4, 2) == [(0, 0), (2, 2), (4, 2)]


def test_sliding_window_matches_brute_force():
    sp = tokenizer()
    tokens = stream(sp, SENTENCES * 2)
    n, seq_len, stride = tokens.numel() - 1, 16, 5
    model = random_model(sp.vocab_size(), seed=1)
    luts = build_sentencepiece_luts(sp, 1024, torch.device("cpu"))
    val_loss, val_bpb = eval_val_bpb(model, tokens, luts, seq_len=seq_len, batch_tokens=48, stride=stride)

    loss_sum, covered = 0.0, 0
    with torch.no_grad():  # one window at a time, each target taken from the window that scores it
        for start, first in eval_windows(n, seq_len, stride):
            x, y = tokens[start : start + seq_len], tokens[start + 1 : start + seq_len + 1]
            losses = model(x[None], y[None], reduction="none")[0]
            loss_sum += float(losses[first:].double().sum())
            covered += seq_len - first
    assert covered == n
    hand_bytes = sum(len(s.encode("utf-8")) for s in SENTENCES * 2)
    rtol = float32_mean_rtol(n, inner=32, vocab=1024)  # batched windows against one at a time
    assert val_loss == pytest.approx(loss_sum / n, rel=rtol)
    assert val_bpb == pytest.approx(loss_sum / n / math.log(2.0) * n / hand_bytes, rel=rtol)
    full_loss, _ = eval_val_bpb(model, tokens[: n // seq_len * seq_len + 1], luts, seq_len=seq_len)
    assert full_loss != pytest.approx(val_loss, rel=rtol)  # different context, different number
