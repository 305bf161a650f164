"""budget/quant/official.py carries the script's official-format rule block verbatim."""
from __future__ import annotations

import torch

from conftest import ROOT
from pgolf.budget.quant import official

FIRST, AFTER = "CONTROL_TENSOR_NAME_PATTERNS = (", "def fake_quantize("
BEGIN, END = "# --- verbatim from trainer/train_gpt.py", "# --- end of the verbatim block ---"


def script_block() -> str:
    src = (ROOT / "trainer" / "train_gpt.py").read_text(encoding="utf-8")
    return src[src.index(FIRST):src.index(AFTER)].strip()


def library_block() -> str:
    src = (ROOT / "budget" / "quant" / "official.py").read_text(encoding="utf-8")
    body = src[src.index(BEGIN):src.index(END)]
    return body[body.index("\n") + 1:].strip()


def test_rule_block_is_the_scripts_verbatim():
    assert library_block() == script_block()
    assert "def quantize_state_dict_int8(" in library_block() and "def dequantize_state_dict_int8(" in library_block()


def test_copy_agrees_with_the_script_bit_for_bit():
    from pgolf.trainer import train_gpt

    g = torch.Generator().manual_seed(0)
    sd = {"w": torch.randn(300, 257, generator=g), "blocks.0.attn_scale": torch.randn(64, generator=g),
          "b": torch.randn(70, generator=g).bfloat16(), "n": torch.arange(5)}
    ours, theirs = official.quantize_state_dict_int8(sd)[0], train_gpt.quantize_state_dict_int8(sd)[0]
    assert official.serialize_export(ours) == official.serialize_export(theirs)
    a, b = official.dequantize_state_dict_int8(ours), train_gpt.dequantize_state_dict_int8(theirs)
    assert all(torch.equal(a[k].view(torch.uint8) if a[k].is_floating_point() else a[k],
                           b[k].view(torch.uint8) if b[k].is_floating_point() else b[k]) for k in sd)
