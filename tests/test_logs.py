"""The log parser reads our trainer's and the official records' `key:value` logs (lines authored
here in their formats; no record's log is copied into the project)."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgolf.budget.errors import PgolfInputError
from pathlib import Path

from pgolf.trainer.logs import STEP_COLUMNS, SUMMARY_KEYS, describe_score, parse_log, parse_log_summary

# A log in the official layout: torchrun warnings, the script's own source pasted in, hyperparameter
# lines, train/val step lines (a train and a val line share step 400), the export sentences.
OFFICIAL_STYLE = """\
W0101 00:00:00.000000 1 site-packages/torch/distributed/run.py:852] *****
import os
def main() -> None:
    log0(f"step:{step}/{args.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f}")
    log0(f"model_params:{n_params}")
    log0(f"Serialized model int8+zlib: {quant_file_bytes} bytes")
model_params:1234567
world_size:1 grad_accum_steps:8
train_batch_tokens:65536 train_seq_len:1024 iterations:500 warmup_steps:20 max_wallclock_seconds:600.000
warmup_step:1/20
step:0/500 val_loss:6.9312 val_bpb:4.1050 train_time:0ms step_avg:0.02ms
step:1/500 train_loss:6.9320 train_time:31ms step_avg:31.00ms
step:2/500 train_loss:11.2044 train_time:74ms step_avg:37.00ms
step:200/500 train_loss:3.1021 train_time:8700ms step_avg:43.50ms
step:400/500 train_loss:2.8533 train_time:17400ms step_avg:43.50ms
step:400/500 val_loss:2.8812 val_bpb:1.7064 train_time:17425ms step_avg:43.56ms
step:431/500 val_loss:2.8690 val_bpb:1.6992 train_time:18750ms step_avg:43.50ms
stopping_early: wallclock_cap train_time:18750ms step:431/500
peak memory allocated: 10184 MiB reserved: 10200 MiB
Serialized model: 4938112 bytes
Code size: 47211 bytes
Total submission size: 4985323 bytes
Serialized model int8+zlib: 1187406 bytes (payload:1305588 raw_torch:1311017 payload_ratio:3.78x)
Total submission size int8+zlib: 1234617 bytes
final_int8_zlib_roundtrip val_loss:2.8761 val_bpb:1.7034 eval_time:1401ms
final_int8_zlib_roundtrip_exact val_loss:2.87612345 val_bpb:1.70341234
"""

# Later records: `N/T key: value` step lines, minutes, an EMA eval before quantizing, `quantized`.
LATER_STYLE = """\
1776142360.538 Hyperparameters:
1776142360.539   train_batch_tokens: 786432
0/20000 val_loss: 9.0092 val_bpb: 3.4878
1/20000 train_loss: 9.0111 train_time: 0.0m tok/s: 8223613
500/20000 train_loss: 3.3363 train_time: 0.8m tok/s: 7727074
4000/20000 val_loss: 2.9184 val_bpb: 1.1298
stopping_early: wallclock_cap train_time: 588138ms step: 4988/20000
pre-quantization post-ema val_loss:2.81547748 val_bpb:1.08995907 eval_time:6003ms
Code size: 15516 bytes
Serialized model quantized+brotli: 15972031 bytes
Total submission size quantized+brotli: 15987547 bytes
quantized val_loss:2.84757723 val_bpb:1.10238588 eval_time:7531ms
quantized_sliding_window val_loss:2.80405024 val_bpb:1.08553523 eval_time:83990ms
"""


def test_official_style_golden_rows():
    frame = parse_log(OFFICIAL_STYLE, source="ours")
    assert list(frame.columns) == list(STEP_COLUMNS)
    assert frame["step"].tolist() == [0, 1, 2, 200, 400, 431]
    assert frame["total_steps"].tolist() == [500] * 6
    assert frame["tokens"].tolist() == [s * 65536 for s in (0, 1, 2, 200, 400, 431)]
    assert frame["source"].unique().tolist() == ["ours"]
    row400 = frame[frame["step"] == 400].iloc[0]  # train line and val line folded into one row
    assert (row400["train_loss"], row400["val_loss"], row400["val_bpb"]) == (2.8533, 2.8812, 1.7064)
    assert row400["train_time_ms"] == 17425.0 and row400["step_avg_ms"] == 43.56
    assert frame["train_loss"].isna().tolist() == [True, False, False, False, False, True]
    assert frame["val_bpb"].dropna().tolist() == [4.1050, 1.7064, 1.6992]


def test_official_style_golden_summary():
    s = parse_log_summary(OFFICIAL_STYLE, source="ours")
    assert set(s) == set(SUMMARY_KEYS) | {"format"}
    assert s["format"] == "pgolf-log-parse-v2"
    expected = {
        "params": 1_234_567, "export": "int8+zlib", "bytes_model": 1_187_406, "bytes_code": 47_211,
        "bytes_total": 1_234_617, "payload_bytes": 1_305_588, "raw_torch_bytes": 1_311_017,
        "bytes_model_unquantized": 4_938_112, "train_batch_tokens": 65_536, "step": 431, "total_steps": 500,
        "train_time_ms": 18750.0, "val_loss_full": 2.8690, "val_bpb_full": 1.6992,
        "val_loss_quantized": 2.87612345, "val_bpb_quantized": 1.70341234,
    }
    assert {k: s[k] for k in expected} == expected
    assert s["bytes_total"] == s["bytes_model"] + s["bytes_code"]
    assert s["quant_gap_bpb"] == pytest.approx(1.70341234 - 1.6992, abs=1e-12)
    assert s["evals"]["final_int8_zlib_roundtrip"] == {"val_loss": 2.8761, "val_bpb": 1.7034}


def test_later_style_golden():
    frame = parse_log(LATER_STYLE)
    assert frame["step"].tolist() == [0, 1, 500, 4000]
    assert frame["train_time_ms"].tolist()[1:3] == [0.0, 0.8 * 60_000]
    assert frame["tokens"].tolist() == [s * 786_432 for s in (0, 1, 500, 4000)]  # from `train_batch_tokens: N`
    s = parse_log_summary(LATER_STYLE)
    assert (s["export"], s["bytes_model"], s["bytes_total"], s["bytes_code"]) == \
        ("quantized+brotli", 15_972_031, 15_987_547, 15_516)
    assert s["val_bpb_full"] == 1.08995907  # the EMA weights' pre-quantization eval, not the last step line
    assert s["val_bpb_quantized"] == 1.10238588  # sliding window changes the eval, so it is not the roundtrip
    assert s["quant_gap_bpb"] == pytest.approx(1.10238588 - 1.08995907, abs=1e-12)


def test_our_trainer_lines():
    """Lines trainer/train_gpt.py writes besides the official ones: config dump, checkpoints, resume."""
    text = (
        "pgolf_train_gpt torch:2.13.0 numpy:2.3\nconfig train_batch_tokens:4096\nconfig iterations:20\n"
        "train_batch_tokens:4096 train_seq_len:128 iterations:20 warmup_steps:0 max_wallclock_seconds:0.000\n"
        "step:10/20 train_loss:5.1234 train_time:812ms step_avg:81.20ms\n"
        "step:10/20 val_loss:5.2000 val_bpb:3.0100 train_time:840ms step_avg:84.00ms\n"
        "checkpoint:runs/x/checkpoints/step_000010.safetensors step:10\n"
        "resume_from:step_000010 step:10 train_time:840ms\n"
        "step:20/20 train_loss:4.9000 train_time:1650ms step_avg:82.50ms\n"
    )
    frame = parse_log(text)
    assert frame["step"].tolist() == [10, 20] and frame["tokens"].tolist() == [40960, 81920]
    assert frame["train_loss"].tolist() == [5.1234, 4.9] and frame["val_bpb"].iloc[0] == 3.01
    assert frame["val_bpb"].isna().tolist() == [False, True]
    assert frame["train_time_ms"].tolist() == [840.0, 1650.0]


@pytest.mark.parametrize("export", ["int8+zlib", "int6+zstd", "int6+zstd-22", "int6+lzma", "mixed+brotli",
                                    "mixed_int5_int6+brotli"])
def test_export_scheme_words(export):
    text = (f"step:10/10 val_loss:2.5 val_bpb:1.5\nCode size: 1000 bytes\n"
            f"Serialized model {export}: 123456 bytes\nTotal submission size {export}: 124456 bytes\n"
            f"final_{export.split('+')[0]}_roundtrip_exact val_loss:2.51 val_bpb:1.51\n")
    s = parse_log_summary(text)
    assert (s["export"], s["bytes_model"], s["bytes_total"], s["val_bpb_quantized"]) == (export, 123456, 124456, 1.51)


def test_scheme_less_total_after_an_export_is_its_total():
    text = ("step:1/1 val_loss:2 val_bpb:1.2\nSerialized model: 999999 bytes\nTotal submission size: 1000999 bytes\n"
            "Serialized model rdquant+zstd: 5000 bytes\nTotal submission size: 6000 bytes\n")
    s = parse_log_summary(text)
    assert (s["bytes_model_unquantized"], s["bytes_model"], s["bytes_total"]) == (999_999, 5_000, 6_000)


def test_rounded_roundtrip_used_when_no_exact_line():
    s = parse_log_summary("step:5/5 val_loss:2.0 val_bpb:1.2\n"
                          "final_int6_roundtrip val_loss:2.1 val_bpb:1.25 eval_time:9ms\n")
    assert s["val_bpb_quantized"] == 1.25
    assert s["quant_gap_bpb"] == pytest.approx(0.05)


def test_path_and_default_source(tmp_path):
    path = tmp_path / "run7" / "train.log"
    path.parent.mkdir()
    path.write_text(OFFICIAL_STYLE)
    by_path, by_str = parse_log(path), parse_log(str(path))
    pd.testing.assert_frame_equal(by_path, by_str)
    assert by_path["source"].iloc[0] == "run7/train.log"
    pd.testing.assert_frame_equal(by_path.drop(columns="source"), parse_log(OFFICIAL_STYLE).drop(columns="source"))
    assert parse_log_summary(path)["bytes_model"] == 1_187_406


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    (b"step:1/2 train_loss:3.0\x00\x01\x02", "binary file"),
    (b"", "no `step:` lines"),
    (b"hello\nworld: 3\nstep:5 checkpoint saved\n", "no `step:` lines"),
])
def test_bad_files_raise_one_clear_error(tmp_path, content, problem):
    path = tmp_path / "train.log"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PgolfInputError) as info:
        parse_log(path)
    assert problem in str(info.value) and str(path) in str(info.value)


def test_directory_is_bad_input(tmp_path):
    with pytest.raises(PgolfInputError, match="not a file"):
        parse_log(tmp_path)


def test_summary_of_junk_is_bad_input(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("nothing to see\nkey: value\n")
    with pytest.raises(PgolfInputError, match="not a training log"):
        parse_log_summary(path)


def test_malformed_values_are_skipped_not_fatal():
    text = ("step:1/9 train_loss:nan train_time:5ms\nstep:2/9 train_loss:abc\nstep:x/9 train_loss:3\n"
            "step:3/9 train_loss:2.5e0 train_time:1.5s\nmodel_params:12x\nCode size: many bytes\n")
    frame = parse_log(text)
    assert frame["step"].tolist() == [3]
    assert frame["train_time_ms"].tolist() == [1500.0]
    s = parse_log_summary(text)
    assert s["params"] is None and s["bytes_code"] is None


def test_docstring_examples():
    import doctest

    import pgolf.trainer.logs

    result = doctest.testmod(pgolf.trainer.logs)
    assert result.failed == 0 and result.attempted >= 3


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=60),
    st.sampled_from(["step:", "step:1/", "step:/3 val_bpb:", "Serialized model x+y: bytes", "final_ val_bpb:1e999",
                     "Code size: -1 bytes", "model_params:", "train_batch_tokens:99999999999999999999"]),
), max_size=30))
def test_any_text_parses_or_raises_input_error(lines):
    text = "\n".join(lines) + "\n"
    try:
        frame = parse_log(text)
    except PgolfInputError:
        return
    assert list(frame.columns) == list(STEP_COLUMNS)
    assert all(math.isfinite(v) for v in frame[["train_loss", "val_loss", "val_bpb"]].stack())


# --- score kinds: every score of the quantized model kept with its kind; the headline names it ---

RECORDS = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "records"
needs_records = pytest.mark.skipif(not RECORDS.is_dir(), reason=f"record fixtures absent: {RECORDS}")


def _kinds(s):
    return [(x["label"], x["kind"], x["stride"], x["repeat_of"]) for x in s["scores"]]


def test_sliding_score_after_roundtrip_is_the_headline_not_the_roundtrip():
    s = parse_log_summary(LATER_STYLE)
    assert _kinds(s) == [("quantized", "roundtrip", None, None), ("quantized_sliding_window", "sliding", None, None)]
    assert (s["score_kind"], s["val_loss_score"], s["val_bpb_score"]) == ("sliding", 2.80405024, 1.08553523)
    assert s["val_loss_quantized"] == 2.84757723
    assert describe_score(s) == "sliding window"


def test_repeated_compatibility_line_printed_last_is_the_sliding_score():
    text = ("step:9/9 val_loss:2.30 val_bpb:1.36\n"
            "final_int6_roundtrip val_loss:2.3100 val_bpb:1.3700 eval_time:900ms\n"
            "final_int6_roundtrip_exact val_loss:2.31004567 val_bpb:1.36998765\n"
            "final_int6_sliding_window val_loss:2.2500 val_bpb:1.3300 stride:64 eval_time:80000ms\n"
            "final_int8_zlib_roundtrip_exact val_loss:2.25001234 val_bpb:1.33004321\n")
    s = parse_log_summary(text)
    assert s["val_loss_quantized"] == 2.31004567 and s["val_bpb_quantized"] == 1.36998765
    assert s["quant_gap_bpb"] == pytest.approx(1.36998765 - 1.36, abs=1e-12)  # positive, as it must be
    assert _kinds(s)[-1] == ("final_int8_zlib_roundtrip_exact", "sliding", 64, "final_int6_sliding_window")
    assert (s["score_kind"], s["score_stride"], s["val_bpb_score"]) == ("sliding", 64, 1.3300)
    assert describe_score(s) == "sliding window (stride 64)"


def test_sliding_eval_announced_on_the_line_before_a_roundtrip_label():
    text = ("step:9/9 val_loss:2.30 val_bpb:1.36\n"
            "final_eval_mode:sliding_window stride:256 seq_len:2048\n"
            "final_int8_zlib_roundtrip val_loss:2.2600 val_bpb:1.3400 eval_time:70000ms\n"
            "final_int8_zlib_roundtrip_exact val_loss:2.26001111 val_bpb:1.34002222\n")
    s = parse_log_summary(text)
    assert [k[1:3] for k in _kinds(s)] == [("sliding", 256), ("sliding", 256)]
    assert s["val_loss_quantized"] is None and s["quant_gap_bpb"] is None
    assert (s["score_kind"], s["score_stride"], s["val_loss_score"]) == ("sliding", 256, 2.26001111)


def test_stride_or_eval_mode_on_a_roundtrip_line_and_ttt():
    text = ("step:9/9 val_loss:2.30 val_bpb:1.36\n"
            "final_int8_zlib_roundtrip val_loss:2.3200 val_bpb:1.3710\n"
            "final_int8_zlib_roundtrip val_loss:2.2700 val_bpb:1.3450 stride:64\n"
            "ttt:start lr=0.002 epochs=3 chunk=32768\n"
            "final_int8_zlib_roundtrip val_loss:2.2400 val_bpb:1.3300 eval_mode:ttt\n")
    s = parse_log_summary(text)
    assert [k[1:3] for k in _kinds(s)] == [("roundtrip", None), ("sliding", 64), ("ttt", None)]
    assert s["val_bpb_quantized"] == 1.3710
    assert (s["score_kind"], s["val_bpb_score"], describe_score(s)) == ("ttt", 1.33, "test-time training")


def test_budget_line_params_variants_and_utf16(tmp_path):
    text = ("Params: 73,621,504\nstep:9/9 val_loss:2.30 val_bpb:1.36\n"
            "artifact: 15,912,345 bytes budget:15958901/16000000 (99.74%)\n"
            "final_ternary_roundtrip val_loss:2.3100 val_bpb:1.3700\n")
    s = parse_log_summary(text)
    assert (s["params"], s["bytes_total"], s["log_cap"]) == (73_621_504, 15_958_901, 16_000_000)
    assert parse_log_summary("step:1/1 val_loss:2 val_bpb:1\nbudget:16500000/16777216\n")["log_cap"] == 16_777_216
    assert parse_log_summary("model: 10L d768 | params:24,117,312 | tied\nstep:1/1 val_loss:2 val_bpb:1\n")[
        "params"] == 24_117_312
    path = tmp_path / "train.log"
    path.write_bytes("\ufeff".encode("utf-16-le") + text.replace("\n", "\r\n").encode("utf-16-le"))
    assert parse_log_summary(path)["bytes_total"] == 15_958_901
    assert parse_log(path)["val_bpb"].tolist() == [1.36]


@needs_records
@pytest.mark.parametrize("folder, log, kind, roundtrip, score, params, total", [
    ("2026-03-17_NaiveBaseline", "train.log", "roundtrip", 2.07269931, 2.07269931, 17_059_912, 15_863_489),
    ("2026-03-18_LongContextSeq2048", "train_seed1339.log", "roundtrip", 2.03823779, 2.03823779, 17_059_912,
     15_861_752),
    ("2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2", "train_seed1.log", "sliding", 2.84757723, 2.80405024,
     35_943_512, 15_987_547),
    ("2026-04-05_SP8192_GPTQ-Embeddings_SDClip_Loop45x2", "train_seed42.log", "sliding", 2.85032574, 2.80691494,
     35_943_512, 15_988_983),
])
def test_record_logs(folder, log, kind, roundtrip, score, params, total):
    s = parse_log_summary(RECORDS / folder / log)
    assert (s["score_kind"], s["val_loss_quantized"], s["val_loss_score"]) == (kind, roundtrip, score)
    assert (s["params"], s["bytes_total"]) == (params, total)
    assert s["quant_gap_bpb"] > 0
