"""Read training logs: ours and the official records' `key:value` lines, into one tidy frame.

Both write space-separated `key:value` tokens (`step:200/20000 val_loss:2.8397 val_bpb:1.6774
train_time:8699ms step_avg:43.49ms`) plus a few sentences for the export
(`Serialized model int8+zlib: 15815847 bytes (...)`). Anything else (warnings, the script's own
source that records paste into their logs) is skipped.

>>> frame = parse_log("step:1/10 train_loss:6.9408 train_time:24ms step_avg:23.99ms\\n")
>>> frame[["step", "total_steps", "train_loss", "train_time_ms"]].to_dict("records")
[{'step': 1, 'total_steps': 10, 'train_loss': 6.9408, 'train_time_ms': 24.0}]
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from pgolf.budget.errors import PgolfInputError

LOG_FORMAT = "pgolf-log-parse-v1"
MAX_LOG_BYTES = 256 * 1_000_000  # records' logs are a few MB; refuse anything absurd
STEP_COLUMNS = (
    "source", "step", "total_steps", "tokens", "train_loss", "val_loss", "val_bpb",
    "train_time_ms", "step_avg_ms",
)
METRICS = ("train_loss", "val_loss", "val_bpb")
# Keys seen in step lines -> our column. Some records shorten `train_loss`/`train_time`.
_STEP_KEYS = {
    "train_loss": "train_loss", "loss": "train_loss", "val_loss": "val_loss", "val_bpb": "val_bpb",
    "train_time": "train_time_ms", "t": "train_time_ms", "step_avg": "step_avg_ms", "avg": "step_avg_ms",
}
_TOKEN = re.compile(r"^([A-Za-z_][\w]*):(\S+)$")
_SPACED = re.compile(r"\b([A-Za-z_]\w*): +(?=[-+.\d])")  # `val_loss: 2.54` (later records)
_BARE_STEP = re.compile(r"^\d+/\d+\s")  # `4000/20000 val_loss: ...` (later records)
_STAMP = re.compile(r"^\d{9,}\.\d+ ")  # unix-time prefix some records put on every line
_LABEL = re.compile(r"^[A-Za-z][\w\- ]*$")
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_STEP = re.compile(r"^step:(\d+)(?:/(\d+))?$")
_SERIALIZED = re.compile(r"^Serialized model(?: (\S+))?: (\d+) bytes(?: \((.*)\))?\s*$")
_TOTAL = re.compile(r"^Total submission size(?: (\S+))?: (\d+) bytes\s*$")
_CODE = re.compile(r"^Code size(?: \((compressed|uncompressed)\))?: (\d+) bytes\s*$")
_BATCH_TOKENS = re.compile(r"^train_batch_tokens[:=] *(\d+)(?:\s|$)")
_BATCH_TOKENS_DUMP = re.compile(r"\strain_batch_tokens=(\d+)(?:\s|$)")  # `a=1 train_batch_tokens=N ...`
_PARAMS = re.compile(r"^(?:model_)?params:(\d+)(?:\s|$)")

SUMMARY_KEYS = (
    "source", "params", "export", "bytes_model", "bytes_code", "bytes_total", "payload_bytes",
    "raw_torch_bytes", "bytes_model_unquantized", "bytes_code_uncompressed", "train_batch_tokens",
    "step", "total_steps", "train_time_ms", "val_loss_full", "val_bpb_full", "val_loss_quantized",
    "val_bpb_quantized", "quant_gap_bpb", "evals", "exports",
)
EXPORT_KEYS = ("bytes_model", "bytes_total", "payload_bytes", "serialized_bytes")


def _number(text: str) -> float | None:
    """'43.54ms' -> 43.54 (milliseconds), '1.2s' -> 1200.0, '2.06' -> 2.06, 'nan' -> None."""
    m = _NUMBER.match(text)
    if not m:
        return None
    value = float(m.group(0))
    unit = text[m.end():]
    if unit in ("s", "m"):
        value *= 1000.0 if unit == "s" else 60_000.0
    elif unit not in ("", "ms", "x"):
        return None
    return value if math.isfinite(value) else None


def _int(text: str | None) -> int | None:
    """A plausible count (steps, bytes, params, tokens); absurd digit runs are junk, not data."""
    return int(text) if text and text.isdigit() and len(text) <= 15 else None


def _tokens(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for tok in line.split():
        m = _TOKEN.match(tok)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
    return out


def read_log_text(path: str | os.PathLike) -> str:
    """The text of a text file (a log, a CSV), or PgolfInputError if missing, binary or oversized."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise PgolfInputError(p, "not a file")
        if size > MAX_LOG_BYTES:
            raise PgolfInputError(p, f"log is {size:,} bytes, over the {MAX_LOG_BYTES:,} byte limit")
        data = p.read_bytes()
    except FileNotFoundError:
        raise PgolfInputError(p, "no such file") from None
    except OSError as exc:
        raise PgolfInputError(p, f"cannot read: {exc.strerror or exc}") from None
    if b"\x00" in data[:65536]:
        raise PgolfInputError(p, "binary file (NUL bytes), expected text")
    return data.decode("utf-8", errors="replace")


def _resolve(path_or_text: str | os.PathLike, source: str | None) -> tuple[str, str, str | None]:
    """(text, source name, path or None). A str with a newline is log text; otherwise a path."""
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        return path_or_text, source or "log", None
    p = Path(path_or_text)
    default = f"{p.parent.name}/{p.name}" if p.parent.name else p.name
    return read_log_text(p), source or default, str(p)


def _step_row(line: str) -> dict[str, Any] | None:
    toks = _tokens(line)
    m = _STEP.match(f"step:{toks.get('step', '')}")
    if not m or _int(m.group(1)) is None:
        return None
    row: dict[str, Any] = {"step": _int(m.group(1)), "total_steps": _int(m.group(2))}
    for key, column in _STEP_KEYS.items():
        if key in toks and row.get(column) is None:
            if key == "loss" and "val_loss" in toks:
                continue
            row[column] = _number(toks[key])
    if all(row.get(c) is None for c in METRICS):
        return None  # e.g. `step:500 checkpoint saved`
    return row


def _merge(rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """Append, or fold into the previous row when it is the same step and the metrics don't clash."""
    if rows and rows[-1]["step"] == row["step"]:
        prev = rows[-1]
        if all(prev.get(c) is None or row.get(c) is None for c in METRICS):
            for key, value in row.items():
                if value is not None:
                    prev[key] = value
            return
    rows.append(row)


def _eval_line(line: str) -> tuple[str, dict[str, float | None]] | None:
    """`final_int8_zlib_roundtrip_exact val_loss:2.07 val_bpb:1.22` -> (label, numbers)."""
    words = line.split()
    first = next((i for i, w in enumerate(words) if _TOKEN.match(w)), None)
    if not first:
        return None
    label = " ".join(words[:first])
    toks = _tokens(line)
    bpb = _number(toks.get("val_bpb", ""))
    if bpb is None or not _LABEL.match(label):
        return None
    return label, {"val_loss": _number(toks.get("val_loss", "")), "val_bpb": bpb}


def _parse(text: str, source: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {k: None for k in SUMMARY_KEYS}
    summary["source"], summary["evals"], summary["exports"] = source, {}, {}
    export_seen = False  # a scheme-less `Total submission size` after `Serialized model <export>` is its total
    for raw in text.splitlines():
        line = _STAMP.sub("", raw.strip(), count=1).lstrip()
        if _BARE_STEP.match(line):
            line = "step:" + line
        if line.startswith("step:"):
            row = _step_row(_SPACED.sub(r"\1:", line))
            if row is not None:
                _merge(rows, row)
            continue
        if m := _SERIALIZED.match(line):
            export_seen = bool(m.group(1))
            if m.group(1):
                if summary["export"] not in (None, m.group(1)):  # a second export: no sizes carried over
                    summary["payload_bytes"] = summary["raw_torch_bytes"] = None
                summary["export"], summary["bytes_model"] = m.group(1), _int(m.group(2))
                extra = _tokens(m.group(3) or "")
                for key, name in (("payload", "payload_bytes"), ("raw_torch", "raw_torch_bytes")):
                    summary[name] = _int(extra.get(key)) if key in extra else summary[name]
                entry = summary["exports"].pop(m.group(1), dict.fromkeys(EXPORT_KEYS))  # re-inserted: last is newest
                entry.update(bytes_model=summary["bytes_model"], payload_bytes=_int(extra.get("payload")),
                             serialized_bytes=_int(extra.get("raw_torch") or extra.get("serialized")))
                summary["exports"][m.group(1)] = entry
            else:
                summary["bytes_model_unquantized"] = _int(m.group(2))
        elif m := _TOTAL.match(line):
            if m.group(1) or export_seen:
                summary["bytes_total"] = _int(m.group(2))
                label = m.group(1) or summary["export"]
                if label in summary["exports"]:
                    summary["exports"][label]["bytes_total"] = summary["bytes_total"]
        elif m := _CODE.match(line):
            key = "bytes_code_uncompressed" if m.group(1) == "uncompressed" else "bytes_code"
            summary[key] = _int(m.group(2))
        elif m := _PARAMS.match(line):
            summary["params"] = _int(m.group(1))
        elif m := _BATCH_TOKENS.match(line) or _BATCH_TOKENS_DUMP.search(line):
            summary["train_batch_tokens"] = _int(m.group(1))
        elif found := _eval_line(line):
            summary["evals"].pop(found[0], None)  # a repeated label moves to the end: the newest eval wins
            summary["evals"][found[0]] = found[1]
    frame = pd.DataFrame(rows, columns=[c for c in STEP_COLUMNS if c not in ("source", "tokens")])
    frame.insert(0, "source", source)
    frame["step"] = frame["step"].astype("int64")
    frame["total_steps"] = frame["total_steps"].astype("Int64")
    for column in ("train_loss", "val_loss", "val_bpb", "train_time_ms", "step_avg_ms"):
        frame[column] = frame[column].astype("float64")
    per_step = summary["train_batch_tokens"]
    fits = per_step and (not len(frame) or int(frame["step"].max()) * per_step < 2**62)
    tokens = frame["step"] * per_step if fits else pd.Series(pd.NA, index=frame.index)
    frame.insert(3, "tokens", tokens.astype("Int64"))
    _finish_summary(summary, frame)
    return frame, summary


def _pick(evals: dict[str, dict], wanted, unwanted=("sliding", "ttt")) -> dict | None:
    """The last matching eval, an `_exact` (8-decimal) line winning over its rounded twin."""
    names = [k for k in evals if wanted(k.lower()) and not any(u in k.lower() for u in unwanted)]
    names = [k for k in names if k.endswith("_exact")] or names
    return evals[names[-1]] if names else None


def _finish_summary(summary: dict[str, Any], frame: pd.DataFrame) -> None:
    if len(frame):
        last = frame.iloc[-1]
        summary["step"] = int(last["step"])
        summary["total_steps"] = None if pd.isna(last["total_steps"]) else int(last["total_steps"])
        times = frame["train_time_ms"].dropna()
        summary["train_time_ms"] = float(times.iloc[-1]) if len(times) else None
        vals = frame.dropna(subset=["val_bpb"])
        if len(vals):
            summary["val_loss_full"] = float(vals["val_loss"].iloc[-1])
            summary["val_bpb_full"] = float(vals["val_bpb"].iloc[-1])
    evals = summary["evals"]
    # Records with EMA evaluate the averaged weights before quantizing: that is the unquantized score.
    if full := _pick(evals, lambda k: "pre-quant" in k):
        summary["val_loss_full"], summary["val_bpb_full"] = full["val_loss"], full["val_bpb"]
    if quant := _pick(evals, lambda k: "roundtrip" in k or k.endswith("quantized")):
        summary["val_loss_quantized"], summary["val_bpb_quantized"] = quant["val_loss"], quant["val_bpb"]
        if summary["val_bpb_full"] is not None:
            summary["quant_gap_bpb"] = quant["val_bpb"] - summary["val_bpb_full"]


def parse_log(path_or_text: str | os.PathLike, source: str | None = None) -> pd.DataFrame:
    """One row per logged step: step, total_steps, tokens, train_loss, val_loss, val_bpb, times.

    `path_or_text`: a path, or the log text itself (a str containing a newline). A train line and
    a val line for the same step become one row. `tokens` = step x train_batch_tokens when the
    log states it. Missing/binary file, or a log with no step lines -> PgolfInputError.

    >>> parse_log("step:0/9 val_loss:6.9 val_bpb:4.1 train_time:0ms\\n")[["step", "val_bpb"]].values.tolist()
    [[0.0, 4.1]]
    """
    text, name, path = _resolve(path_or_text, source)
    frame, _ = _parse(text, name)
    if not len(frame):
        raise PgolfInputError(path, "no `step:` lines with train_loss/val_loss/val_bpb: not a training log")
    return frame


def parse_log_summary(path_or_text: str | os.PathLike, source: str | None = None) -> dict[str, Any]:
    """The run's headline numbers (None where the log does not state them).

    bytes_model/bytes_total/export come from the `Serialized model <export>:` and `Total submission
    size <export>:` lines; bytes_code prefers `Code size (compressed)`; val_bpb_full is the last
    val line of training (or a `pre-quantization` eval), val_bpb_quantized the `*roundtrip_exact`
    line (else its rounded twin, else a `... quantized` line); sliding-window and TTT evals are
    left in `evals` only, since they change the evaluation, not the weights;
    evals holds every `<label> val_loss:.. val_bpb:..` line by label (`final_int8_zlib_roundtrip_exact`,
    `pre-quantization post-ema`, ...); exports every `Serialized model <export>` by export (`int8+zlib`,
    `int6+zlib` from `pgolf export`, ...): {bytes_model, bytes_total, payload_bytes, serialized_bytes}.
    With several exports the headline (export, bytes_*, val_*_quantized) is the last one logged.

    >>> parse_log_summary("model_params:17059912\\nCode size: 47642 bytes\\n")["bytes_code"]
    47642
    """
    text, name, path = _resolve(path_or_text, source)
    frame, summary = _parse(text, name)
    if not len(frame) and all(summary[k] is None for k in ("params", "bytes_model", "bytes_total", "bytes_code")) \
            and not summary["evals"]:
        raise PgolfInputError(path, "no pgolf/official log lines found: not a training log")
    summary["format"] = LOG_FORMAT
    return summary
