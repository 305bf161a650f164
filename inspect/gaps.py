"""Measured quantization gaps in BPB, per tensor, cached on disk and resumable.

For a plan, the whole-model gap (val_bpb of the plan's quantize -> dequantize roundtrip minus the
unquantized val_bpb) and, per tensor, two views: *only-this* (that tensor alone quantized) and
*all-but-this* (whole-model gap minus the gap with that tensor kept unquantized). The sweeps
restart each evaluation from the tensor's first block (`BlockReplay`), which is exact. Tensors the
plan stores exactly (bitwise-equal roundtrip) have gap 0 without an evaluation. Each evaluation
is one cache entry keyed by the model's content hash, the hash of its function (module tree, scalar
settings, buffers: a config change), the slice, the tensor, its scheme and the
sha256 of the replacement values, so an interrupted sweep resumes where it stopped.

>>> report = measure_gaps(model, sd, "int6", load_slice(tokens=8192, seq_len=256))   # doctest: +SKIP
>>> report.headline["quant_gap_bpb"]   # doctest: +SKIP
0.0213
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from pgolf.budget.exact.decode import roundtrip_mismatches
from pgolf.budget.files.cache import JsonCache
from pgolf.budget.exact.build import build_artifact, fake_quantize
from pgolf.budget.exact.decode import read_artifact
from pgolf.budget.exact.measure import tensor_table
from pgolf.budget.quant.plans import Plan, resolve_plan
from pgolf.budget.progress import progress
from pgolf.inspect import distributed
from pgolf.inspect.evaluate import (EVAL_CODE_VERSION, BlockReplay, EvalResult, EvalSlice, evaluate_bpb,
                                    load_weights, set_tensor)
from pgolf.inspect.load import model_function_sha256, state_dict_sha256
from pgolf.inspect.metrics import weight_metrics
from pgolf.inspect.proxy import gradient_stats, proxy_gaps, spearman
from pgolf.inspect.reports import GapsReport

GAPS_CACHE_VERSION = "gaps-v2"
CACHE_KEY_FIELDS = ("model_sha256", "function_sha256", "slice_sha256", "tokens", "batch_seqs", "kind", "tensor", "scheme",
                    "values_sha256", "code_version")


def default_cache_dir() -> Path:
    return Path(os.environ.get("PGOLF_CACHE") or Path.home() / ".cache" / "pgolf") / "gaps"


def tensor_sha256(t: Tensor) -> str:
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


def changed_tensors(sd: dict[str, Tensor], new: dict[str, Tensor]) -> list[str]:
    """Names whose replacement differs from the original bit for bit (in state-dict order)."""
    return [n for n in sd if n in new and not (new[n].dtype == sd[n].dtype and torch.equal(new[n], sd[n]))]


class GapSweep:
    """Evaluations of one model on one slice: the unquantized reference, single-tensor
    replacements (only-this) and single-tensor restorations (all-but-this), each cached.

    The model holds `sd` between calls; every method puts it back.
    """

    def __init__(self, model: nn.Module, sd: dict[str, Tensor], sl: EvalSlice, cache_dir: str | Path | None = None,
                 quiet: bool = False, batch_seqs: int | None = None, max_replay_bytes: int | None = None):
        self.model, self.sd, self.sl, self.quiet = model, sd, sl, quiet
        self.replay = BlockReplay(model, batch_seqs, **({"max_bytes": max_replay_bytes} if max_replay_bytes else {}))
        self.batch_seqs = self.replay.batch_seqs or max(1, 8192 // sl.seq_len)
        self.replay.batch_seqs = self.batch_seqs
        self.cache = JsonCache(cache_dir, CACHE_KEY_FIELDS, GAPS_CACHE_VERSION) if cache_dir else None
        self.model_sha256 = state_dict_sha256(sd)
        self.function_sha256 = model_function_sha256(model)  # the same weights under another config differ
        identity = getattr(model, "pgolf_identity", "")  # the code that evaluates (a script, CUDA bf16)
        if identity:
            self.model_sha256 = hashlib.sha256(f"{self.model_sha256}|{identity}".encode()).hexdigest()
        self.evaluations = 0  # evaluations actually run (cache misses), for reports and benchmarks
        self.recorded: str | None = None  # which weights the replay recording belongs to
        self._reference: EvalResult | None = None
        self.seconds = 0.0

    # -- cache ------------------------------------------------------------------------------
    def _key(self, kind: str, tensor: str, scheme: str, values_sha256: str) -> dict:
        return {"model_sha256": self.model_sha256, "function_sha256": self.function_sha256, "slice_sha256": self.sl.digest, "tokens": self.sl.n_tokens,
                "batch_seqs": self.batch_seqs, "kind": kind, "tensor": tensor, "scheme": scheme,
                "values_sha256": values_sha256, "code_version": EVAL_CODE_VERSION}

    def _get(self, key: dict) -> EvalResult | None:
        value = self.cache.get(key) if self.cache else None
        if not isinstance(value, dict) or not {"val_loss", "val_bpb"} <= set(value):
            return None
        return EvalResult(float(value["val_loss"]), float(value["val_bpb"]), self.sl.n_tokens, self.sl.byte_count)

    def _put(self, key: dict, r: EvalResult) -> None:
        if self.cache:
            self.cache.put(key, {"val_loss": r.val_loss, "val_bpb": r.val_bpb})

    # -- evaluations ------------------------------------------------------------------------
    def _record(self, label: str, desc: str = "evaluate") -> EvalResult:
        t0 = time.perf_counter()
        result = self.replay.record(self.sl, desc=desc, quiet=self.quiet)
        self.seconds += time.perf_counter() - t0
        self.evaluations += 1
        self.recorded = label
        return result

    def evaluate_plain(self) -> EvalResult:
        """One full evaluation of the model's current weights, counted and timed (no recording)."""
        t0 = time.perf_counter()
        result = evaluate_bpb(self.model, self.sl, self.batch_seqs)
        self.seconds += time.perf_counter() - t0
        self.evaluations += 1
        return result

    def reference(self, record: bool = True) -> EvalResult:
        """val_bpb of the unquantized weights (recording the replay, unless cached or not `record`)."""
        if self._reference is not None:
            return self._reference
        key = self._key("reference", "", "", self.model_sha256)
        result = self._get(key)
        if result is None:
            if record:
                result = self._record("reference", "evaluate unquantized")
            else:
                result = self.evaluate_plain()
            self._put(key, result)
        self._reference = result
        return result

    def evaluate_state(self, new_sd: dict[str, Tensor], label: str, record: bool = False) -> EvalResult:
        """Full evaluation of other weights (e.g. a plan's roundtrip), cached by their content;
        `record` keeps the replay recording of those weights for a following all-but-this sweep."""
        key = self._key("state", "", label, state_dict_sha256(new_sd))
        cached = self._get(key)
        if cached is not None:
            return cached
        load_weights(self.model, new_sd)
        try:
            if record:
                result = self._record(key["values_sha256"], f"evaluate {label}")
            else:
                result = self.evaluate_plain()
        finally:
            load_weights(self.model, self.sd)
        self._put(key, result)
        return result

    def _sweep(self, kind: str, base_sd: dict[str, Tensor], base_label: str,
               items: list[tuple[str, str, Tensor]], desc: str) -> list[EvalResult]:
        """One evaluation per (name, scheme, value): `base_sd` with tensor `name` set to `value`."""
        keys = [self._key(kind, n, s, tensor_sha256(v) if kind == "only_this" else base_label)
                for n, s, v in items]
        results = [self._get(k) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        ranks = distributed.current()
        if ranks is not None:  # --nproc: rank 0's list is dealt out; each rank evaluates its share
            todo = ranks.agree(todo)
        if not todo:
            return results
        mine = [i for i in ranks.mine(todo) if results[i] is None] if ranks is not None else todo
        if base_sd is not self.sd:
            load_weights(self.model, base_sd)
        try:
            if self.recorded != base_label:
                self._record(base_label, f"record for {desc}")
            for i in progress(mine, desc=desc, total=len(mine), quiet=self.quiet):
                name, _, value = items[i]
                set_tensor(self.model, name, value)
                t0 = time.perf_counter()
                try:
                    results[i] = self.replay.evaluate_from(self.replay.restart_for(name))
                finally:
                    set_tensor(self.model, name, base_sd[name])
                self.seconds += time.perf_counter() - t0
                self.evaluations += 1
                self._put(keys[i], results[i])
        finally:
            if base_sd is not self.sd:
                load_weights(self.model, self.sd)  # the recording stays valid for base_label's weights
        if ranks is not None:
            results = ranks.merge(results, todo, lambda loss, bpb: EvalResult(loss, bpb, self.sl.n_tokens,
                                                                              self.sl.byte_count))
        return results

    def only_this(self, items: list[tuple[str, str, Tensor]], desc: str = "only-this") -> list[EvalResult]:
        """val_bpb with exactly one tensor replaced, for each (name, scheme label, value)."""
        self.reference()
        return self._sweep("only_this", self.sd, "reference", items, desc)

    def all_but_this(self, q_sd: dict[str, Tensor], names: list[str], scheme_label: str,
                     desc: str = "all-but-this") -> list[EvalResult]:
        """val_bpb of `q_sd` with one tensor restored to its original value, per name."""
        q_label = state_dict_sha256(q_sd)
        items = [(n, scheme_label, self.sd[n]) for n in names]
        return self._sweep("all_but_this", q_sd, q_label, items, desc)

    def release(self) -> None:
        self.replay.release()
        self.recorded = None


def gap_frame_rows(names: list[str], schemes: dict[str, str], ref: EvalResult, quant: EvalResult,
                   only: dict[str, EvalResult], all_but: dict[str, EvalResult]) -> pd.DataFrame:
    """name, scheme, gap_only_this_bpb, gap_all_but_this_bpb (0 where the plan stores a tensor exactly)."""
    rows = []
    for n in names:
        o = only.get(n)
        a = all_but.get(n)
        rows.append({"name": n, "scheme": schemes.get(n, ""),
                     "gap_only_this_bpb": (o.val_bpb - ref.val_bpb) if o else 0.0,
                     "gap_all_but_this_bpb": (quant.val_bpb - a.val_bpb) if a else 0.0})
    return pd.DataFrame(rows)


# --- plans and the whole measurement ------------------------------------------------------------

def _artifact_check(sweep: GapSweep, sd, q_sd, plan: Plan, compressor: str) -> tuple[EvalResult, int, bool]:
    """Evaluate the real artifact path: build -> bytes -> read -> evaluate, never from the cache."""
    blob = build_artifact(sd, plan, compressor)
    decoded = read_artifact(blob, max(64 * len(blob), 4 * 16_000_000))
    exact = not roundtrip_mismatches(decoded, q_sd)
    load_weights(sweep.model, decoded)
    try:
        result = sweep.evaluate_plain()
    finally:
        load_weights(sweep.model, sweep.sd)
    return result, len(blob), exact


def measure_gaps(model: nn.Module, plan: str | Plan, sl: EvalSlice, *, sd: dict[str, Tensor] | None = None,
                 compressor: str = "zlib", all_but_this: bool = True, proxy: bool = True, verify: bool = True,
                 cache_dir: str | Path | None = None, quiet: bool = False,
                 calib_tokens: int | None = None, source: str = "", batch_seqs: int | None = None,
                 max_replay_bytes: int | None = None) -> GapsReport:
    """Per-tensor gaps of `plan` for `model` (forward(x, y) -> mean loss) holding `sd`.

    `sd` defaults to the model's own state dict; pass the original state dict (e.g. bf16
    tok_emb) so quantization sees the stored dtypes. `cache_dir=None` measures without a cache.

    >>> gaps = measure_gaps(model, small_plans(["int4"])[0], sl, sd=sd)  # doctest: +SKIP
    >>> gaps.headline["artifact_matches"]  # doctest: +SKIP
    True
    """
    plan = resolve_plan(plan)
    sd = dict(sd) if sd is not None else {k: v.detach().clone() for k, v in model.state_dict().items()}
    load_weights(model, sd)
    started = time.perf_counter()
    q_sd = fake_quantize(sd, plan)
    names = changed_tensors(sd, q_sd)
    schemes = {n: plan.scheme_for(n, sd[n]) for n in sd}
    sweep = GapSweep(model, sd, sl, cache_dir, quiet, batch_seqs, max_replay_bytes)
    ref = sweep.reference()
    only = dict(zip(names, sweep.only_this([(n, schemes[n], q_sd[n]) for n in names])))
    quant = sweep.evaluate_state(q_sd, plan.name, record=all_but_this and bool(names))
    rest = dict(zip(names, sweep.all_but_this(q_sd, names, plan.name))) if all_but_this and names else {}
    sweep.release()
    head = {"plan": plan.name, "compressor": compressor, "tokens": sl.n_tokens, "slice": sl.source,
            "val_bpb_full": ref.val_bpb, "val_bpb_quantized": quant.val_bpb,
            "quant_gap_bpb": quant.val_bpb - ref.val_bpb}
    if verify:
        art, nbytes, exact = _artifact_check(sweep, sd, q_sd, plan, compressor)
        head.update(val_bpb_artifact=art.val_bpb, artifact_gap_bpb=art.val_bpb - ref.val_bpb,
                    artifact_matches=bool(exact and art.val_bpb == quant.val_bpb), bytes_model=nbytes)
    frame = gap_frame_rows(list(sd), schemes, ref, quant, only, rest)
    prox: dict[str, float] = {}
    if proxy and names:
        t0 = time.perf_counter()
        stats = gradient_stats(model, sl, calib_tokens, set(names))
        prox = proxy_gaps(stats, sd, {n: q_sd[n] for n in names}, sl.tokens_per_byte)
        head.update(proxy_seconds=time.perf_counter() - t0, proxy_tokens=stats.tokens, proxy_fisher=stats.fisher_kind)
    frame["proxy_gap_bpb"] = [prox.get(n, 0.0 if n not in names else float("nan")) for n in frame["name"]]
    table = tensor_table(sd, plan, compressor).set_index("name")
    metrics = weight_metrics(sd, plan=plan).set_index("name")
    frame["bytes"] = frame["name"].map(table["compressed_bytes"]).astype(int)
    for col in ("rel_mse", "sqnr_db", "max_abs_err", "frac_clipped", "levels", "entropy_bytes"):
        frame[col] = frame["name"].map(metrics[col])
    frame = frame[list(GAP_COLUMNS)]
    in_names = frame["name"].isin(names)
    head.update(tensors_changed=len(names), sum_gap_only_this_bpb=float(frame["gap_only_this_bpb"].sum()),
                proxy_spearman=spearman(frame.loc[in_names, "proxy_gap_bpb"], frame.loc[in_names, "gap_only_this_bpb"]),
                evaluations=sweep.evaluations, eval_seconds=sweep.seconds, seconds=time.perf_counter() - started)
    if sweep.cache is not None:
        head["cache_hits"] = sweep.cache.hits
    head["replayed_evaluations"] = sweep.replay.replayed
    head.update(replay_bytes=sweep.replay.peak_bytes, replay_limit_bytes=sweep.replay.max_bytes)
    report = GapsReport.build(head, frame, source=source, replay=sweep.replay.replayed > 0)
    if sweep.replay.over_limit:
        report.notes.append(f"the block activations would exceed replay_limit_bytes ({sweep.replay.max_bytes:,}): "
                            f"those sweeps ran full evaluations instead (same numbers, slower)")
    return report


GAP_COLUMNS = ("name", "scheme", "bytes", "gap_only_this_bpb", "gap_all_but_this_bpb", "proxy_gap_bpb", "rel_mse",
               "sqnr_db", "max_abs_err", "frac_clipped", "levels", "entropy_bytes")
