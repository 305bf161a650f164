"""`pgolf audit RECORD_DIR`: a reviewer's checklist for one record folder, as a report.

The folder holds `submission.json`, `train_gpt.py` as shipped, one training log per seed (`*.log`)
and maybe the artifact. Checks, one row each (status pass / fail / not checked):

- code: the shipped script's bytes (a self-extracting wrapper is read back, never run) against
  `bytes_code`; a wrapper pgolf cannot read is a failed check;
- per log: counted bytes = shipped code + the log's model bytes under 16,000,000 (decimal); the
  log's own code and total bytes against the file and against each other;
- `submission.json` against the logs: val_loss, val_bpb, bytes_total (one log's, or the mean over
  the logs), and per seed (`seed_results`) val_loss, val_bpb, artifact_bytes, steps;
- BPB byte accounting (only with a tokenizer and `check_luts`, since it imports the script);
- significance against a baseline (`vs` folder or `vs_loss`), the challenge's rule.

>>> audit("../shared/fixtures/records/2026-03-17_NaiveBaseline").headline["verdict"]  # doctest: +SKIP
'pass'
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from pgolf.budget.files.codebytes import read_code, unwrap_source
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.glossary import CAP_BYTES
from pgolf.budget.report_base import Report
from pgolf.inspect.bpb_check import check_bpb_luts
from pgolf.inspect.significance import MIN_DELTA, record_logs, welch_test
from pgolf.trainer.logs import describe_score, parse_log_summary

AUDIT_FORMAT = "pgolf-audit-v1"
COLUMNS = ("check", "subject", "expected", "found", "status", "detail")
ARTIFACT_SUFFIXES = (".ptz", ".pt", ".bin", ".xz", ".zst", ".br", ".lzma")
MAX_JSON_BYTES = 10_000_000


@dataclasses.dataclass(repr=False)
class AuditReport(Report):
    """Headline: the verdict and the counted bytes; one row per check."""

    rows_key: str = "checks"

    @property
    def exit_code(self) -> int:
        return 1 if (self.frame["status"] == "fail").any() else 0


def _decimals(value: float) -> int:
    text = repr(float(value))
    return 0 if "e" in text or "." not in text else len(text.split(".")[1])


def agrees(claimed: float, measured: float) -> bool:
    """A published (rounded) number agrees with a logged one to its own precision.

    >>> agrees(2.80405, 2.80405024), agrees(2.8040, 2.80470)
    (True, False)
    """
    return abs(float(claimed) - float(measured)) <= 0.5 * 10.0 ** -_decimals(claimed) + 1e-12


def read_submission(folder: Path) -> dict[str, Any]:
    path = folder / "submission.json"
    if not path.is_file():
        raise PgolfInputError(folder, "no submission.json: not a record folder")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise PgolfInputError(path, f"over {MAX_JSON_BYTES:,} bytes")
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PgolfInputError(path, f"invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PgolfInputError(path, "invalid submission: expected a JSON object")
    return data


def _looks_wrapped(source: bytes) -> str | None:
    """A top-level exec/eval of something that is not a plain string: a wrapper (we could not read it)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return "does not parse as Python"
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) \
                and node.value.func.id in ("exec", "eval") and node.value.args \
                and not isinstance(node.value.args[0], ast.Constant):
            return f"top-level {node.value.func.id}({ast.unparse(node.value.args[0])[:40]}...)"
    return None


def read_code_info(path: Path) -> dict[str, Any]:
    """{shipped_bytes, inner_bytes, layers, readable, detail} of the script as shipped."""
    shipped = read_code(path)
    inner = unwrap_source(shipped, path)
    if inner is not None:
        return {"shipped_bytes": len(shipped), "inner_bytes": inner.inner_bytes, "layers": " -> ".join(inner.layers),
                "readable": True, "detail": f"self-extracting wrapper ({' -> '.join(inner.layers)}), "
                                            f"{inner.inner_bytes:,} bytes of source inside"}
    odd = _looks_wrapped(shipped)
    return {"shipped_bytes": len(shipped), "inner_bytes": None if odd else len(shipped), "layers": "",
            "readable": odd is None,
            "detail": f"wrapped in a way pgolf cannot unwrap: {odd}" if odd else "plain source"}


def _row(check: str, subject: str, expected: Any, found: Any, ok: bool | None, detail: str = "") -> dict[str, Any]:
    status = "not checked" if ok is None else ("pass" if ok else "fail")
    return {"check": check, "subject": subject, "expected": "" if expected is None else expected,
            "found": "" if found is None else found, "status": status, "detail": detail}


def _cell(v) -> str:
    """expected/found as text: '15,516', '2.80405', '< 16,000,000'."""
    return v if isinstance(v, str) else f"{v:,}" if isinstance(v, int) else f"{v:.10g}"


def _log_rows(name: str, s: dict, code: dict, cap: int) -> list[dict]:
    rows = []
    shipped = code["shipped_bytes"]
    if s["log_cap"] is not None:
        rows.append(_row("log cap", name, f"{CAP_BYTES:,}", s["log_cap"], s["log_cap"] == CAP_BYTES,
                         "" if s["log_cap"] == CAP_BYTES else "the log measures against another cap (MiB?)"))
    if s["bytes_code"] is not None:
        ok = s["bytes_code"] == shipped
        rows.append(_row("log code bytes", name, shipped, s["bytes_code"], ok,
                         "" if ok else "the log counts a different script than the one shipped"))
    if s["bytes_model"] is None:
        rows.append(_row("counted bytes < cap", name, f"< {cap:,}", None, None, "the log states no model bytes"))
        return rows
    counted = shipped + s["bytes_model"]
    rows.append(_row("counted bytes < cap", name, f"< {cap:,}", counted, counted < cap,
                     f"{shipped:,} code as shipped + {s['bytes_model']:,} model"))
    if s["bytes_total"] is not None:
        ok = s["bytes_total"] == counted
        rows.append(_row("log total bytes", name, counted, s["bytes_total"], ok,
                         "" if ok else f"the log's total is off by {s['bytes_total'] - counted:+,} bytes"))
    return rows


def _value_rows(sub: dict, logs: dict[str, dict], code: dict) -> list[dict]:
    """Top-level submission numbers: equal to one log's, or to the mean over the logs."""
    rows = []
    counted = {n: code["shipped_bytes"] + s["bytes_model"] for n, s in logs.items() if s["bytes_model"] is not None}
    found_by_key = {"val_loss": {n: s["val_loss_score"] for n, s in logs.items()},
                    "val_bpb": {n: s["val_bpb_score"] for n, s in logs.items()}, "bytes_total": counted}
    for key, found in found_by_key.items():
        if key not in sub:
            continue
        claimed, values = sub[key], {n: v for n, v in found.items() if v is not None}
        if not isinstance(claimed, (int, float)) or not values:
            rows.append(_row(f"submission {key}", "submission.json", claimed, None, None, "nothing to compare"))
            continue
        close = agrees if key != "bytes_total" else (lambda a, b: abs(a - b) <= 0.5)
        match = next((n for n, v in values.items() if close(claimed, v)), None)
        mean = math.fsum(values.values()) / len(values)
        if key == "bytes_total":
            mean = round(mean)
        if match is not None:
            rows.append(_row(f"submission {key}", "submission.json", claimed, values[match], True, f"= {match}"))
        else:
            # a published mean is often the mean of already rounded per-seed numbers: one unit of its last digit
            unit = 0.5 if key == "bytes_total" else 10.0 ** -_decimals(claimed) + 1e-12
            ok = len(values) > 1 and abs(claimed - mean) <= unit
            rows.append(_row(f"submission {key}", "submission.json", claimed, mean, ok,
                             f"mean over {len(values)} logs" if ok else "no log and not the logs' mean"))
    if "bytes_code" in sub:
        ok = sub["bytes_code"] == code["shipped_bytes"]
        rows.append(_row("submission bytes_code", "train_gpt.py", sub["bytes_code"], code["shipped_bytes"], ok,
                         "the script as shipped" if ok else "bytes_code is not the shipped script's size"))
    for key in ("bytes_total",):
        if isinstance(sub.get(key), (int, float)):
            rows.append(_row("submission under cap", "submission.json", f"< {CAP_BYTES:,}", sub[key],
                             sub[key] < CAP_BYTES, "decimal cap, not MiB"))
    return rows


def _seed_rows(sub: dict, logs: dict[str, dict], code: dict) -> list[dict]:
    rows = []
    results = sub.get("seed_results")
    if not isinstance(results, dict):
        return rows
    by_seed = {str(s["seed"]): (n, s) for n, s in logs.items() if s["seed"] is not None}
    for seed, claimed in results.items():
        if str(seed) not in by_seed:
            rows.append(_row("seed has a log", f"seed {seed}", "a log", None, False, "no log for this seed"))
            continue
        name, s = by_seed[str(seed)]
        subject = f"seed {seed} ({name})"
        found = {"val_loss": s["val_loss_score"], "val_bpb": s["val_bpb_score"], "steps": s["step"],
                 "artifact_bytes": None if s["bytes_model"] is None else code["shipped_bytes"] + s["bytes_model"]}
        for key, value in (claimed.items() if isinstance(claimed, dict) else []):
            if key not in found:
                continue
            if found[key] is None or not isinstance(value, (int, float)):
                rows.append(_row(f"seed {key}", subject, value, found[key], None, "the log does not state it"))
                continue
            ok = agrees(value, found[key]) if key.startswith("val_") else value == found[key]
            detail = describe_score(s) if key.startswith("val_") else ""
            if not ok and key.startswith("val_"):
                other = [x for x in s["scores"] if x[key] is not None and agrees(value, x[key])]
                detail = f"matches the {other[0]['kind']} score {other[0]['label']}" if other else detail
            rows.append(_row(f"seed {key}", subject, value, found[key], ok, detail))
    return rows


def _artifact_rows(folder: Path, logs: dict[str, dict]) -> list[dict]:
    rows = []
    for f in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in ARTIFACT_SUFFIXES):
        size = f.stat().st_size
        match = next((n for n, s in logs.items() if s["bytes_model"] == size), None)
        rows.append(_row("artifact bytes", f.name, "a log's model bytes", size, match is not None,
                         f"= {match}" if match else "no log states this size"))
    return rows


def _significance_rows(logs: dict[str, dict], vs: str | os.PathLike | None, vs_loss: float | None,
                       min_delta: float, folder: Path, metric: str) -> tuple[list[dict], dict]:
    if vs is None and vs_loss is None:
        why = "no baseline given (--vs RECORD_DIR or --vs-loss X)"
        return [_row("significance", "seeds", None, None, None, why)], {}
    key = f"{metric}_score"
    values = [s[key] for s in logs.values()]
    if len(values) < 2:
        raise PgolfInputError(folder, f"significance needs at least two seeds' logs, found {len(values)}")
    baseline = None
    if vs is not None:
        base_logs = [parse_log_summary(p) for p in _logs_of(Path(vs))]
        baseline = [s[key] for s in base_logs]
        if any(v is None for v in baseline):
            raise PgolfInputError(vs, f"a baseline log has no final {metric} score")
        if len(baseline) == 1:  # one baseline run: compare against its number
            vs_loss, baseline = baseline[0], None
    r = welch_test(values, baseline, vs_loss, min_delta)
    what = f"{r['n_vs']} seeds of {vs}" if baseline is not None else f"{metric} {r['mean_vs']:.10g}"
    detail = (f"{metric} mean {r['mean']:.6f} vs {what}: improvement {r['improvement']:.6f}, "
              f"t={r['t']:.3f} df={r['df']:.2f} p={r['p']:.3g}")
    return [_row("significance", f"{r['n']} seeds", f">= {min_delta:g} at p < {r['alpha']:g}",
                 round(r["improvement"], 6), r["verdict"] == "pass", detail)], r


def _logs_of(folder: Path) -> list[Path]:
    logs = record_logs(folder)
    if not logs:
        raise PgolfInputError(folder, "no training logs (*.log) in the record folder")
    return logs


def audit(folder: str | os.PathLike, vs: str | os.PathLike | None = None, vs_loss: float | None = None,
          min_delta: float = MIN_DELTA, tokenizer: str | os.PathLike | None = None, check_luts: bool = False,
          cap: int = CAP_BYTES, metric: str = "val_loss", quiet: bool = True) -> AuditReport:
    """Run every check on a record folder -> AuditReport (exit_code 0 all pass, 1 a check fails)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PgolfInputError(folder, "not a folder")
    sub = read_submission(folder)
    script = folder / "train_gpt.py"
    if not script.is_file():
        raise PgolfInputError(folder, "no train_gpt.py in the record folder")
    code = read_code_info(script)
    logs = {}
    for p in _logs_of(folder):
        s = parse_log_summary(p)
        if s["score_kind"] is None:
            raise PgolfInputError(p, "no final roundtrip line (no score of the quantized model)")
        logs[p.name] = s
    rows = [_row("code readable", "train_gpt.py", "source or a known wrapper", code["layers"] or "plain source",
                 code["readable"], code["detail"])]
    rows += _value_rows(sub, logs, code)
    for name, s in logs.items():
        rows += _log_rows(name, s, code, cap)
    rows += _seed_rows(sub, logs, code)
    rows += _artifact_rows(folder, logs)
    if check_luts and tokenizer is not None:
        r = check_bpb_luts(script, tokenizer, quiet=quiet)
        ok = None if r["status"] == "not checked" else r["status"] == "pass"
        rows.append(_row("BPB byte accounting", Path(tokenizer).name, r["bytes_official"], r["bytes_script"], ok,
                         r["detail"]))
    else:
        rows.append(_row("BPB byte accounting", "train_gpt.py", None, None, None,
                         "not checked: it imports the script; ask with --check-bpb-luts --tokenizer MODEL"))
    sig_rows, sig = _significance_rows(logs, vs, vs_loss, min_delta, folder, metric)
    rows += sig_rows
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("expected", "found"):
        frame[col] = frame[col].map(_cell)
    counts = frame["status"].value_counts()
    kinds = sorted({describe_score(s) for s in logs.values()})
    head = {"record": str(folder), "verdict": "fail" if counts.get("fail", 0) else "pass",
            "checks_passed": int(counts.get("pass", 0)), "checks_failed": int(counts.get("fail", 0)),
            "not_checked": int(counts.get("not checked", 0)), "cap": cap,
            "bytes_code_shipped": code["shipped_bytes"], "bytes_code_inner": code["inner_bytes"],
            "code_wrapper": code["layers"] or "none", "logs": len(logs), "score_kind": ", ".join(kinds),
            "bytes_counted_max": max((code["shipped_bytes"] + s["bytes_model"] for s in logs.values()
                                      if s["bytes_model"] is not None), default=None)}
    if sig:
        head.update(significance_t=sig["t"], significance_df=sig["df"], significance_p=sig["p"],
                    significance_verdict=sig["verdict"])
    head["format"] = AUDIT_FORMAT
    notes = [f"scores compared are each log's headline score ({', '.join(kinds)})"]
    if sig and metric == "val_loss":
        notes.append("val_loss is nats per token: across different tokenizers compare val_bpb (--metric val_bpb)")
    return AuditReport(title=f"pgolf audit {folder.name}", headline=head, frame=frame, notes=notes)
