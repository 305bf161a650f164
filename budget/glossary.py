"""The column vocabulary shared by every pgolf DataFrame, report and JSON output.

Names from the challenge (`val_loss`, `val_bpb`, `bytes_total`, `bytes_code`, `payload`) keep
their meaning; pgolf's additions are defined here once. Units: bytes are decimal integers,
bits are bits, BPB is bits per UTF-8 byte of validation text.
"""
from __future__ import annotations

from typing import NamedTuple

CAP_BYTES = 16_000_000  # the challenge's cap, decimal bytes, artifact must be strictly below

COLUMNS: dict[str, str] = {
    # one row per tensor (budget)
    "name": "state-dict key of the tensor",
    "shape": "tensor shape as a tuple",
    "numel": "number of values",
    "dtype": "dtype of the tensor in the input state dict",
    "scheme": "scheme name the plan assigned (see `pgolf schemes`)",
    "storage": "how values are laid out in bytes: byte, packed, base3, bits, raw (float bytes)",
    "kind": "quantized | passthrough",
    "bits_per_value": "stored bits per value, scales excluded",
    "values_bytes": "bytes of the stored values (after packing, before compression)",
    "scales_bytes": "bytes of the stored scales",
    "payload_bytes": "values_bytes + scales_bytes (+ padding): bytes before the compressor",
    "levels": "distinct quantized levels actually used",
    "entropy_bytes": "order-0 entropy of the stored symbols, in bytes: the entropy floor",
    "compressed_bytes": "bytes when this tensor's payload is compressed alone",
    "passthrough_bytes": "payload_bytes of a tensor stored unquantized (kind passthrough), else 0",
    "ratio_to_entropy": "compressed_bytes / entropy_bytes: below 1 the compressor beats the order-0 floor",
    "tied_to": "name of the tensor this one shares storage with, counted once",
    # squeeze: stored values coded alone per tensor (pgolf squeeze)
    "entropy_row_group_bytes": "sum over 16 row classes (by mean |q|) of n H(q | class), bytes; labels not counted",
    "entropy_col_group_bytes": "sum over 16 column classes (by mean |q|) of n H(q | class), bytes; labels not counted",
    "ans_table_bytes": "bytes of the stored order-0 frequency table (present symbols + LEB128 16-bit frequencies)",
    "zlib_bytes": "the tensor's stored values compressed alone by zlib-9",
    "zstd_bytes": "the tensor's stored values compressed alone by zstd-22 (long window)",
    "lzma_bytes": "the tensor's stored values compressed alone by lzma-9e",
    "brotli_shuffle_bytes": "the tensor's stored values compressed alone by brotli-11 after byte-shuffle",
    "ans_bytes": "the tensor's stored values as one order-0 table + ANS stream (constriction), headers included",
    "zpaq_bytes": "the tensor's stored values compressed alone by ZPAQ level 5 (the zpaq package)",
    "layout": "symbol layout before coding (pgolf squeeze --layout): as-is, transpose, sorted-rows (+ permute-mlp, + permute-heads)",
    "ans_row16_bytes": "the stored values as 16 row classes (by mean |q|), one ANS table each, labels included",
    "ans_col16_bytes": "the stored values as 16 column classes (by mean |q|), one ANS table each, labels included",
    "best_codec": "the codec the emitted decoder reads with the fewest bytes for this tensor (ties: alphabetical)",
    "best_bytes": "bytes under best_codec",
    "net_saving_bytes": "brotli_shuffle_bytes - best_bytes - bytes_code_decoder, totals over tensors",
    # totals (budget)
    "params": "number of parameters, tied tensors counted once",
    "plan": "plan name or file",
    "compressor": "compressor name (and transform, e.g. brotli+byte-shuffle)",
    "bytes_model": "exact compressed bytes of the serialized quantized model",
    "bytes_code": "bytes of the code that counts toward the artifact",
    "bytes_total": "bytes_model + bytes_code",
    "cap": "artifact cap in bytes (default 16,000,000)",
    "headroom_bytes": "cap - bytes_total; negative means over the cap",
    "on_frontier": "True where no other row has both fewer bytes and a lower val_bpb (Pareto frontier)",
    "bits_per_param": "8 * bytes_model / params",
    "serialized_bytes": "bytes of the serialized artifact before compression (torch.save dict or pgolf container)",
    "artifact": "official-export (the baseline's torch.save dict) or pgolf-container (budget/container.py)",
    "artifact_path": "where the artifact file was written (pgolf export, pgolf train --plan)",
    "roundtrip_exact": "True when every tensor decoded from the artifact equals the in-memory dequantization bit for bit",
    "bytes_code_raw": "UTF-8 bytes of the code file as it is",
    "bytes_code_wrapped": "bytes of the code's lzma+base85 self-extracting wrapper",
    "best": "the plan + compressor pair with the fewest bytes_model (pgolf compare)",
    "best_bytes_model": "bytes_model of that best pair",
    "estimated": "True where a number is a fast estimate, False where measured",
    # predictions (pgolf predict): X_b is X of config/plan B in --delta
    "role": "what a matrix does (embedding, head, attn_in, attn_out, mlp_in, mlp_out) or control: whose statistics it takes",
    "bytes_model_low": "low end of the interval of a predicted or estimated bytes_model",
    "bytes_model_high": "high end of that interval",
    "bytes_total_high": "bytes_model_high + bytes_code",
    "scale": "the weight scale a prediction assumed: long, calibrated, or like (a checkpoint's own values)",
    "like": "the checkpoint whose own values priced the prediction (pgolf predict --like)",
    "like_path": "how --like priced its draws: exact (each built and measured whole) or sub-model (an exact sub-model over its share of the estimate)",
    "measured_share": "share of each --like draw's bytes measured exactly (smallest over the draws; 1: every draw measured whole)",
    "delta_params": "params of B - params of A (exact)",
    "delta_payload_bytes": "payload_bytes of B - payload_bytes of A (exact)",
    "delta_bytes_model": "predicted bytes_model of B - that of A, same statistics and paired draws",
    "delta_bytes_model_low": "low end of the interval of delta_bytes_model",
    "delta_bytes_model_high": "high end of that interval",
    "matrices": "matrices of a role in the checkpoint",
    "std": "RMS of a role's matrices (median over them)",
    "kurtosis": "kurtosis of row-standardised values (3: Gaussian; larger: heavier tails), median over the role",
    "row_log_sd": "sd of log row RMS: how much rows differ in scale, median over the role",
    "entropy_bits_per_value": "order-0 entropy of the stored symbols per value under the plan (NaN: not quantized)",
    "floor_bound_frac": "fraction of rows whose stored scale sits at the scheme's floor (NaN: the scheme has none)",
    # quality (inspect, trainer)
    "val_loss": "mean cross-entropy in nats on the validation tokens",
    "val_bpb": "bits per byte on the validation text: (val_loss / ln 2) * tokens / bytes",
    "val_bpb_full": "val_bpb of the unquantized weights",
    "val_bpb_quantized": "val_bpb after the plan's quantize -> dequantize roundtrip",
    "val_loss_quantized": "val_loss after the plan's quantize -> dequantize roundtrip",
    "val_tokens": "validation tokens scored (targets)",
    "quant_gap_bpb": "val_bpb_quantized - val_bpb_full",
    "gap_only_this_bpb": "BPB gap when only this tensor is quantized",
    "gap_all_but_this_bpb": "whole-model gap minus the gap with this tensor kept unquantized",
    "proxy_gap_bpb": "gradient-based prediction of the only-this gap: g.dw + 0.5 * sum(Fisher * dw^2), in BPB",
    "proxy_gap_bpb_se": "spread of the proxy: SE of the mean of its per-calibration-batch terms, in BPB (a "
                        "prediction's spread, not a measurement error)",
    "proxy_spearman": "Spearman rank correlation of proxy_gap_bpb with gap_only_this_bpb",
    "val_bpb_artifact": "val_bpb of the weights read back from the real artifact bytes",
    "predicted_gap_bpb": "sum of the chosen schemes' only-this gaps (the allocator's objective)",
    "bytes": "a tensor's bytes under the plan: its payload compressed alone (as compressed_bytes)",
    "rel_mse": "||w - q(w)||^2 / ||w||^2",
    "sqnr_db": "10 log10(1 / rel_mse)",
    "max_abs_err": "max |w - q(w)|",
    "frac_clipped": "fraction of values clipped by the scheme's clip rule",
    # exchange rates (inspect)
    "scheme_next": "the next scheme up or down in precision",
    "direction": "up (toward more precision) or down",
    "delta_bytes": "change in exact compressed bytes for that step",
    "delta_bpb": "change in BPB for that step",
    "bpb_per_kb": "delta_bpb per 1,000 bytes",
    "exchange_bpb_per_kb": "-bpb_per_kb: BPB gained per 1,000 bytes spent, or lost per 1,000 bytes saved",
    # measurement statistics (inspect/uncertainty.py); X_se, X_lo, X_hi, X_significant below
    "target_se": "--target-se: the standard error (BPB) the slice was extended to reach",
    "se_reached": "the largest standard error of the targeted differences at the end (BPB)",
    "target_se_met": "True when se_reached <= target_se (else the data or --max-tokens ran out)",
    "chunks": "disjoint consecutive slices of --tokens each that were evaluated (cached separately)",
    "significant_only_this": "tensors whose only-this gap is significant (95% interval excludes 0)",
    "insignificant_options": "allocation options whose measured gap is within noise, counted as gap 0",
    "insignificant_moves": "tensors whose allocated scheme changed because within-noise gaps count as no gain",
    "insignificant_steps": "exchange-rate steps whose delta_bpb is within noise, ranked as no gain",
    "select_tokens": "tokens of the selection slice (allocate chooses its plan on it)",
    "report_tokens": "tokens of the held-out report slice, disjoint from the selection slice",
    "val_bpb_se": "standard error of a plan's val_bpb minus the unquantized val_bpb on the same windows",
    "frontier_within_noise": "True where a Pareto step is not significant (95%): the frontier is not drawn through it",
    # training logs
    "source": "the log or run a row comes from",
    "step": "optimizer step",
    "total_steps": "the run's configured number of steps (T in step:S/T)",
    "step_avg_ms": "mean wall-clock milliseconds per step so far",
    "tokens": "tokens: training tokens seen (logs), or validation targets scored (an evaluation slice)",
    "train_loss": "training loss in nats",
    "train_time_ms": "wall-clock training time in milliseconds",
    "score_kind": "kind of a log's headline score: roundtrip, sliding (window, with score_stride) or ttt",
    "val_loss_score": "val_loss of a log's headline score (the last eval of the quantized model, any kind)",
    "val_bpb_score": "val_bpb of a log's headline score",
    # code bytes and review (audit, significance, wrap, decoder)
    "bytes_code_inner": "bytes of the source a self-extracting script runs (the counted bytes stay as shipped)",
    "bytes_code_self_logged": "what the baseline script's own `Code size:` line logs for a CRLF file (text "
                              "read with universal newlines); the challenge counts the file as shipped",
    "bytes_code_decoder": "bytes of the decoder the artifact needs, counted in bytes_code (0: the script has it)",
    "check": "one item of the reviewer's checklist (pgolf audit)",
    "status": "pass | fail | not checked",
    "improvement": "mean(baseline) - mean(candidate) in the metric's units (lower loss is better)",
    "min_delta": "improvement the significance test must show (default 0.005 nats)",
    "verdict": "pass when p < alpha for H1: improvement > min_delta",
}


class Totals(NamedTuple):
    """The headline numbers every budget reports, derived one way (see COLUMNS)."""

    bytes_total: int
    headroom_bytes: int
    bits_per_param: float


def totals(bytes_model: int, bytes_code: int, params: int, cap: int = CAP_BYTES) -> Totals:
    """bytes_total, headroom_bytes and bits_per_param of a model's bytes; the one place they are computed.

    >>> totals(15_000_000, 50_000, 17_000_000)
    Totals(bytes_total=15050000, headroom_bytes=950000, bits_per_param=7.0588)
    """
    bytes_total = int(bytes_model) + int(bytes_code)
    bits = round(8 * int(bytes_model) / params, 4) if params else float("nan")
    return Totals(bytes_total, int(cap) - bytes_total, bits)


# Differences measured on the same windows carry a paired standard error and a 95% interval
UNCERTAIN = ("quant_gap_bpb", "artifact_gap_bpb", "gap_only_this_bpb", "gap_all_but_this_bpb", "delta_bpb",
             "select_quant_gap_bpb", "plan_gap_bpb")
COLUMNS.update({
    "select_val_bpb_quantized": "val_bpb_quantized of the chosen plan on the selection slice (beside the held-out one)",
    "select_val_bpb_full": "val_bpb_full on the selection slice",
    "select_quant_gap_bpb": "quant_gap_bpb of the chosen plan on the selection slice (optimistic: chosen there)",
    "plan_gap_bpb": "a plan's val_bpb minus the unquantized val_bpb, paired on the held-out slice",
    "artifact_gap_bpb": "val_bpb_artifact - val_bpb_full",
    "select_val_bpb": "a plan's val_bpb on the selection slice (what a choice among plans is made on)",
    "bpb_half95": "half-width of a point's 95% interval in BPB (the headroom plot's vertical error bar)",
    "within_noise": "True where a step's delta_bpb is not significant: ranked as rate 0, never bought",
})
for _base in UNCERTAIN:
    COLUMNS.update({
        f"{_base}_se": f"standard error of {_base} (BPB): paired per-window differences in blocks of 4,096 "
                       "tokens (at least 8 blocks), delta method for the ratio",
        f"{_base}_lo": f"lower end of the 95% interval of {_base} (Student t over the blocks)",
        f"{_base}_hi": f"upper end of the 95% interval of {_base}",
        f"{_base}_significant": f"True when the 95% interval of {_base} excludes 0; False means within noise",
    })


def describe(column: str) -> str:
    """The glossary entry for a column.

    >>> describe("headroom_bytes")
    'cap - bytes_total; negative means over the cap'
    """
    return COLUMNS[column]
