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

LOG_FORMAT = "pgolf-log-parse-v2"
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
# `... | params:24,123,456 | ...` and `Params: 24123456` (ternary/binary records)
_PARAMS_ANY = re.compile(r"(?:\|\s*params:|^Params:\s*)([\d,_]+)(?:\s|$|\|)")
_BUDGET = re.compile(r"(?:^|\s)budget:(\d+)/(\d+)(?:\s|$|\()")  # ternary/binary records: total/cap
_SEED = re.compile(r"^(?:seed|SEED)(?::|=|: +)(\d+)(?:\s|$)")  # `seed:1337`, `  seed: 42` (hyperparameter dumps)
_STRIDE = re.compile(r"(?:^|\s)(?:stride|eval_stride)[:=](\d+)(?:\s|$)")
KINDS = ("roundtrip", "sliding", "ttt")  # scores of the quantized model, by how the eval ran

SUMMARY_KEYS = (
    "source", "seed", "params", "log_cap", "export", "bytes_model", "bytes_code", "bytes_total", "payload_bytes",
    "raw_torch_bytes", "bytes_model_unquantized", "bytes_code_uncompressed", "train_batch_tokens",
    "step", "total_steps", "train_time_ms", "val_loss_full", "val_bpb_full", "val_loss_quantized",
    "val_bpb_quantized", "quant_gap_bpb", "score_kind", "score_label", "score_stride", "val_loss_score",
    "val_bpb_score", "scores", "evals", "exports",
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
    return decode_text(data, p)


def decode_text(data: bytes, path: str | os.PathLike | None = None) -> str:
    """Bytes of a text file -> str: UTF-8 (BOM or not), or UTF-16 with its BOM (Windows PowerShell's
    `>` writes that); NUL bytes without a UTF-16 BOM -> PgolfInputError (binary).

    >>> decode_text("\ufeffstep:1".encode("utf-16-le"))
    'step:1'
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace").lstrip("\ufeff")
    if b"\x00" in data[:65536]:
        raise PgolfInputError(path, "binary file (NUL bytes), expected text")
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


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


def _eval_line(line: str) -> tuple[str, dict[str, float | None], dict[str, str]] | None:
    """`final_int8_zlib_roundtrip_exact val_loss:2.07 val_bpb:1.22` -> (label, numbers, tokens)."""
    words = line.split()
    first = next((i for i, w in enumerate(words) if _TOKEN.match(w)), None)
    if not first:
        return None
    label = " ".join(words[:first])
    toks = _tokens(line)
    bpb = _number(toks.get("val_bpb", ""))
    if bpb is None or not _LABEL.match(label):
        return None
    return label, {"val_loss": _number(toks.get("val_loss", "")), "val_bpb": bpb}, toks


def _decimals(text: str | None) -> int:
    m = _NUMBER.match(text or "")
    return len(m.group(0).partition(".")[2]) if m and "." in m.group(0) else 0


def _announced(line: str) -> tuple[str, int | None] | None:
    """A line that announces the next eval's kind: `final_eval_mode:sliding_window stride:64` -> ('sliding', 64)."""
    low = line.lower()
    stride = _STRIDE.search(line)
    if "sliding" in low:
        return "sliding", _int(stride.group(1)) if stride else None
    if re.search(r"(?<![a-z])ttt(?![a-z])", low) or "test-time" in low or "test_time" in low:
        return "ttt", None
    return None


def _score(label: str, numbers: dict, toks: dict[str, str], announced, previous: dict | None,
           scores: list[dict]) -> dict | None:
    """Classify one eval line of the quantized model: roundtrip, sliding (with its stride) or ttt.

    A roundtrip label is only believed when nothing says otherwise: a `stride:` or `eval_mode:` token
    on the line, an announcement on the line before, or values equal to an earlier sliding/TTT score
    (the compatibility `final_int8_zlib_roundtrip_exact` line some scripts repeat last).
    """
    low, mode = label.lower(), toks.get("eval_mode", "").lower()
    if "pre-quant" in low or "prequant" in low:
        return None
    stride = _int(toks.get("stride") or toks.get("eval_stride"))
    score = {"label": label, "kind": None, "stride": stride, **numbers, "exact": low.endswith("_exact"),
             "repeat_of": None, "decimals": min(_decimals(toks.get("val_loss")) or 99, _decimals(toks.get("val_bpb")))}
    roundtrip_label = "roundtrip" in low or low.endswith("quantized") or low.startswith("quantized")
    if "ttt" in low or "ttt" in mode:
        score["kind"] = "ttt"
    elif "sliding" in low or "sliding" in mode or stride is not None:
        score["kind"] = "sliding"
    elif not roundtrip_label:
        return None
    elif previous is not None and score["exact"] and previous["label"] == label[:-len("_exact")]:
        score["kind"], score["stride"] = previous["kind"], previous["stride"]  # the rounded twin's kind
    elif announced:
        score["kind"], score["stride"] = announced[0], announced[1] if stride is None else stride
    else:
        score["kind"] = "roundtrip"
    if score["kind"] == "roundtrip":
        for earlier in reversed(scores):
            if earlier["kind"] != "roundtrip" and _same_values(earlier, score):
                score.update(kind=earlier["kind"], stride=earlier["stride"], repeat_of=earlier["label"])
                break
    return score


def _same_values(a: dict, b: dict) -> bool:
    """Equal to the printed precision of the coarser line (a `.4f` line vs its `.8f` repeat)."""
    tol = 0.5 * 10.0 ** -min(a["decimals"], b["decimals"]) + 1e-12
    pairs = [(a["val_bpb"], b["val_bpb"])] + ([(a["val_loss"], b["val_loss"])]
                                             if a["val_loss"] is not None and b["val_loss"] is not None else [])
    return all(abs(x - y) <= tol for x, y in pairs)


def _parse(text: str, source: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {k: None for k in SUMMARY_KEYS}
    summary["source"], summary["evals"], summary["exports"], summary["scores"] = source, {}, {}, []
    previous_line, previous_score = "", None
    export_seen = False  # a scheme-less `Total submission size` after `Serialized model <export>` is its total
    for raw in text.splitlines():
        line = _STAMP.sub("", raw.strip(), count=1).lstrip()
        if not line:
            continue
        announced, previous_line = _announced(previous_line), line
        last_score, previous_score = previous_score, None
        if summary["seed"] is None and (m := _SEED.match(line)):
            summary["seed"] = _int(m.group(1))
        if m := _BUDGET.search(line):
            summary["bytes_total"], summary["log_cap"] = _int(m.group(1)), _int(m.group(2))
        if m := _PARAMS_ANY.search(line):
            summary["params"] = _int(m.group(1).replace(",", "").replace("_", ""))
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
            if score := _score(*found, announced, last_score, summary["scores"]):
                summary["scores"].append(score)
                previous_score = score
            previous_line = ""  # an eval line announces nothing
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


def _pick(evals: dict[str, dict], wanted) -> dict | None:
    """The last matching eval, an `_exact` (8-decimal) line winning over its rounded twin."""
    names = [k for k in evals if wanted(k.lower())]
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
    scores = [s for s in summary["scores"] if s["repeat_of"] is None]
    if quant := _last(scores, "roundtrip"):
        summary["val_loss_quantized"], summary["val_bpb_quantized"] = quant["val_loss"], quant["val_bpb"]
        if summary["val_bpb_full"] is not None:
            summary["quant_gap_bpb"] = quant["val_bpb"] - summary["val_bpb_full"]
    if scores:
        final = _last(scores, scores[-1]["kind"], scores[-1]["stride"])
        summary.update(score_kind=final["kind"], score_label=final["label"], score_stride=final["stride"],
                       val_loss_score=final["val_loss"], val_bpb_score=final["val_bpb"])


def _last(scores: list[dict], kind: str, stride: int | None = None) -> dict | None:
    """The newest score of that kind (and stride), an `_exact` line winning over its rounded twin."""
    same = [s for s in scores if s["kind"] == kind and (kind == "roundtrip" or s["stride"] == stride)]
    if not same:
        return None
    tail = same[-1]
    twin = [s for s in same[-2:] if s["exact"] and (s is tail or s["label"] == tail["label"] + "_exact")]
    return twin[-1] if twin else tail


def describe_score(summary: dict[str, Any]) -> str:
    """The headline score's kind in words: 'sliding window (stride 64)', 'quantized roundtrip', 'test-time training'.

    >>> describe_score({"score_kind": "sliding", "score_stride": 64})
    'sliding window (stride 64)'
    """
    kind = summary.get("score_kind")
    if kind == "sliding":
        stride = summary.get("score_stride")
        return "sliding window" + (f" (stride {stride})" if stride else "")
    return {"roundtrip": "quantized roundtrip", "ttt": "test-time training"}.get(kind, "no score")


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
    size <export>:` lines (or a `budget:N/CAP` line, log_cap = CAP); bytes_code prefers `Code size (compressed)`;
    val_bpb_full is the last val line of training (or a `pre-quantization` eval).
    scores: every eval of the quantized model as {label, kind, stride, val_loss, val_bpb, exact,
    repeat_of}, kind 'roundtrip', 'sliding' or 'ttt'. A roundtrip label counts as a sliding/TTT score
    when the line carries `stride:`/`eval_mode:`, the line before announces it, or it repeats an
    earlier sliding/TTT score's values (repeat_of names that score). val_*_quantized is the last true
    roundtrip (`_exact` over its rounded twin); val_*_score/score_kind/score_stride/score_label the
    last score of any kind: what the run claims (`describe_score` says it in words).
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
