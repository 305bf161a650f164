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
from pgolf.inspect.evaluate import (EVAL_CODE_VERSION, EvalResult, EvalSlice, combine, evaluate_bpb, load_weights,
                                    set_tensor)
from pgolf.inspect.load import model_function_sha256, state_dict_sha256
from pgolf.inspect.metrics import weight_metrics
from pgolf.inspect.proxy import gradient_stats, proxy_gaps, proxy_se, spearman
from pgolf.inspect.replay import BlockReplay
from pgolf.inspect.reports import GapsReport
from pgolf.inspect.uncertainty import Interval, block_sums

GAPS_CACHE_VERSION = "gaps-v3"  # v3: per-unit losses stored beside val_loss; the model's function in the key
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

    >>> held = GapSweep(model, sd, eval_slice(opened, 8192, offset=8192))  # doctest: +SKIP
    >>> held.reference().val_bpb  # doctest: +SKIP
    1.8823...
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
        return {"model_sha256": self.model_sha256, "function_sha256": self.function_sha256,
                "slice_sha256": self.sl.digest, "tokens": self.sl.n_tokens,
                "batch_seqs": self.batch_seqs, "kind": kind, "tensor": tensor, "scheme": scheme,
                "values_sha256": values_sha256, "code_version": EVAL_CODE_VERSION}

    def _get(self, key: dict) -> EvalResult | None:
        value = self.cache.get(key) if self.cache else None
        if not isinstance(value, dict) or not {"val_loss", "val_bpb", "unit_loss", "unit_windows"} <= set(value):
            return None
        unit_windows = int(value["unit_windows"])
        unit_bytes = block_sums(self.sl.window_bytes, unit_windows).tolist()
        if len(value["unit_loss"]) != len(unit_bytes):
            return None
        return EvalResult(float(value["val_loss"]), float(value["val_bpb"]), self.sl.n_tokens, self.sl.byte_count,
                          tuple(float(x) for x in value["unit_loss"]), tuple(unit_bytes), unit_windows,
                          self.sl.seq_len)

    def _put(self, key: dict, r: EvalResult) -> None:
        if self.cache:  # JSON floats round-trip float64 exactly: a cached result equals the evaluated one
            self.cache.put(key, {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "unit_loss": list(r.unit_loss),
                                 "unit_windows": r.unit_windows})

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
        if ranks is not None:  # --nproc: rank 0's list is shared out; each rank evaluates what it takes
            todo = ranks.agree(todo)
        if not todo:
            return results
        if base_sd is not self.sd:
            load_weights(self.model, base_sd)
        try:
            if self.recorded != base_label:
                self._record(base_label, f"record for {desc}")
            share: list[int] = []  # what this rank took (its results go to the others)

            def taken():  # longest first by replay cost (known once the recording exists), as this rank comes free
                order = distributed.longest_first(
                    todo, [self.replay.cost_from(self.replay.restart_for(items[i][0])) for i in todo])
                for i in ranks.claim(order):
                    share.append(i)
                    if results[i] is None:
                        yield i

            mine = todo if ranks is None else taken()
            for i in progress(mine, desc=desc, total=len(todo) if ranks is None else None, quiet=self.quiet):
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
            results = ranks.merge(results, share)
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


ZERO = Interval(0.0, 0.0, 0.0, 0.0, 0)  # a tensor the plan stores bit for bit: no difference at all


def gap_frame_rows(names: list[str], schemes: dict[str, str], ref: EvalResult, quant: EvalResult,
                   only: dict[str, EvalResult], all_but: dict[str, EvalResult]) -> pd.DataFrame:
    """name, scheme, gap_only_this_bpb and gap_all_but_this_bpb, each with _se, _lo, _hi and
    _significant (paired over the same windows; 0 exactly where the plan stores a tensor exactly)."""
    rows = []
    for n in names:
        o, a = only.get(n), all_but.get(n)
        rows.append({"name": n, "scheme": schemes.get(n, ""),
                     **(o.minus(ref) if o else ZERO).columns("gap_only_this_bpb"),
                     **(quant.minus(a) if a else ZERO).columns("gap_all_but_this_bpb")})
    return pd.DataFrame(rows)


# --- plans and the whole measurement ------------------------------------------------------------

def _artifact_check(sweeps: list[GapSweep], sd, q_sd, plan: Plan, compressor: str) -> tuple[EvalResult, int, bool]:
    """Evaluate the real artifact path: build -> bytes -> read -> evaluate (every chunk), never from the cache."""
    blob = build_artifact(sd, plan, compressor)
    decoded = read_artifact(blob, max(64 * len(blob), 4 * 16_000_000))
    exact = not roundtrip_mismatches(decoded, q_sd)
    results = []
    for sweep in sweeps:
        load_weights(sweep.model, decoded)
        try:
            results.append(sweep.evaluate_plain())
        finally:
            load_weights(sweep.model, sweep.sd)
    return combine(results), len(blob), exact


class _Chunks:
    """The slice as consecutive disjoint chunks, each measured by its own GapSweep (own cache keys,
    so an extended or interrupted run reuses every chunk already measured)."""

    def __init__(self, model, sd, first: EvalSlice, next_chunk, cache_dir, quiet, batch_seqs=None,
                 max_replay_bytes=None):
        self.model, self.sd, self.next_chunk, self.cache_dir, self.quiet = model, sd, next_chunk, cache_dir, quiet
        self.replay_args = (batch_seqs, max_replay_bytes)
        self.sweeps = [GapSweep(model, sd, first, cache_dir, quiet, *self.replay_args)]
        self.exhausted = next_chunk is None

    def extend(self, max_tokens: int | None) -> bool:
        """Add the next chunk; False when the data or `max_tokens` runs out."""
        if self.exhausted:
            return False
        tokens = sum(s.sl.n_tokens for s in self.sweeps)
        sl = self.next_chunk(len(self.sweeps))
        if sl is None or (max_tokens is not None and tokens + sl.n_tokens > max_tokens):
            self.exhausted = True
            return False
        self.sweeps.append(GapSweep(self.model, self.sd, sl, self.cache_dir, self.quiet, *self.replay_args))
        return True

    def total(self, attr: str) -> float:
        return sum(getattr(s, attr) for s in self.sweeps)


def _sweep_chunk(sweep: GapSweep, names, schemes, q_sd, plan_name: str, all_but_this: bool, part: dict) -> None:
    """Only-this (and all-but-this) results of one chunk into `part` (whole-model results there already)."""
    part["only"] = dict(zip(names, sweep.only_this([(n, schemes[n], q_sd[n]) for n in names])))
    if all_but_this and names:
        sweep.evaluate_state(q_sd, plan_name, record=True)
        part["rest"] = dict(zip(names, sweep.all_but_this(q_sd, names, plan_name)))
    sweep.release()


def _combined(parts: list[dict], key: str) -> EvalResult | dict[str, EvalResult]:
    if isinstance(parts[0][key], dict):
        return {n: combine([p[key][n] for p in parts]) for n in parts[0][key]}
    return combine([p[key] for p in parts])


def measure_gaps(model: nn.Module, plan: str | Plan, sl: EvalSlice, *, sd: dict[str, Tensor] | None = None,
                 compressor: str = "zlib", all_but_this: bool = True, proxy: bool = True, verify: bool = True,
                 cache_dir: str | Path | None = None, quiet: bool = False,
                 calib_tokens: int | None = None, source: str = "", batch_seqs: int | None = None,
                 max_replay_bytes: int | None = None, target_se: float | None = None,
                 per_tensor_se: bool = False, next_chunk=None, max_tokens: int | None = None) -> GapsReport:
    """Per-tensor gaps of `plan` for `model` (forward(x, y) -> mean loss) holding `sd`.

    `sd` defaults to the model's own state dict; pass the original state dict (e.g. bf16
    tok_emb) so quantization sees the stored dtypes. `cache_dir=None` measures without a cache.
    With `target_se` (BPB), chunks `next_chunk(k)` (k = 1, 2, ...; None when the data runs out) are
    added until the whole-model gap's SE (and with `per_tensor_se` every only-this gap's) is at
    most `target_se`, or `max_tokens` would be passed.

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
    chunks = _Chunks(model, sd, sl, next_chunk if target_se is not None else None, cache_dir, quiet, batch_seqs,
                     max_replay_bytes)
    parts: list[dict] = []

    def whole(sweep: GapSweep, record: bool) -> dict:
        # record the reference only when the sweep follows at once (recordings of many chunks would pile up)
        return {"ref": sweep.reference(record=record), "quant": sweep.evaluate_state(q_sd, plan.name)}

    def se_of(key: str) -> float:
        ref, got = _combined(parts, "ref"), _combined(parts, key)
        if key == "quant":
            return got.minus(ref).se
        return max((r.minus(ref).se for r in got.values()), default=0.0)

    parts.append(whole(chunks.sweeps[0], target_se is None))
    while target_se is not None and not se_of("quant") <= target_se and chunks.extend(max_tokens):
        parts.append(whole(chunks.sweeps[-1], False))
    for sweep, part in zip(chunks.sweeps, parts):
        _sweep_chunk(sweep, names, schemes, q_sd, plan.name, all_but_this, part)
    def reached() -> float:
        return max(se_of("quant"), se_of("only")) if per_tensor_se and names else se_of("quant")

    while (target_se is not None and per_tensor_se and names and not reached() <= target_se
           and chunks.extend(max_tokens)):
        parts.append(whole(chunks.sweeps[-1], True))
        _sweep_chunk(chunks.sweeps[-1], names, schemes, q_sd, plan.name, all_but_this, parts[-1])
    ref, quant = _combined(parts, "ref"), _combined(parts, "quant")
    only, rest = _combined(parts, "only"), (_combined(parts, "rest") if all_but_this and names else {})
    first = chunks.sweeps[0]
    head = {"plan": plan.name, "compressor": compressor, "tokens": ref.tokens, "slice": sl.source,
            "val_bpb_full": ref.val_bpb, "val_bpb_quantized": quant.val_bpb,
            **quant.minus(ref).columns("quant_gap_bpb")}
    if target_se is not None:
        head.update(target_se=target_se, se_reached=reached(), chunks=len(parts))
        head["target_se_met"] = bool(head["se_reached"] <= target_se)
    if verify:
        art, nbytes, exact = _artifact_check(chunks.sweeps, sd, q_sd, plan, compressor)
        head.update(val_bpb_artifact=art.val_bpb, **art.minus(ref).columns("artifact_gap_bpb"),
                    artifact_matches=bool(exact and art.val_bpb == quant.val_bpb), bytes_model=nbytes)
    frame = gap_frame_rows(list(sd), schemes, ref, quant, only, rest)
    prox: dict[str, float] = {}
    spread: dict[str, float] = {}
    if proxy and names:
        t0 = time.perf_counter()
        deltas = {n: q_sd[n].detach().float() - sd[n].detach().float() for n in names}
        stats = gradient_stats(model, sl, calib_tokens, set(names), deltas)
        prox = proxy_gaps(stats, sd, {n: q_sd[n] for n in names}, sl.tokens_per_byte)
        spread = proxy_se(stats, sl.tokens_per_byte)
        head.update(proxy_seconds=time.perf_counter() - t0, proxy_tokens=stats.tokens, proxy_fisher=stats.fisher_kind)
    frame["proxy_gap_bpb"] = [prox.get(n, 0.0 if n not in names else float("nan")) for n in frame["name"]]
    frame["proxy_gap_bpb_se"] = [spread.get(n, 0.0 if n not in names else float("nan")) for n in frame["name"]]
    table = tensor_table(sd, plan, compressor).set_index("name")
    metrics = weight_metrics(sd, plan=plan).set_index("name")
    frame["bytes"] = frame["name"].map(table["compressed_bytes"]).astype(int)
    for col in ("rel_mse", "sqnr_db", "max_abs_err", "frac_clipped", "levels", "entropy_bytes"):
        frame[col] = frame["name"].map(metrics[col])
    frame = frame[list(GAP_COLUMNS)]
    in_names = frame["name"].isin(names)
    head.update(tensors_changed=len(names), sum_gap_only_this_bpb=float(frame["gap_only_this_bpb"].sum()),
                significant_only_this=int(frame.loc[in_names, "gap_only_this_bpb_significant"].sum()),
                proxy_spearman=spearman(frame.loc[in_names, "proxy_gap_bpb"], frame.loc[in_names, "gap_only_this_bpb"]),
                evaluations=int(chunks.total("evaluations")), eval_seconds=chunks.total("seconds"),
                seconds=time.perf_counter() - started)
    if first.cache is not None:
        head["cache_hits"] = sum(s.cache.hits for s in chunks.sweeps)
    replayed = sum(s.replay.replayed for s in chunks.sweeps)
    head["replayed_evaluations"] = replayed
    head.update(replay_bytes=max(s.replay.peak_bytes for s in chunks.sweeps), replay_limit_bytes=first.replay.max_bytes)
    report = GapsReport.build(head, frame, source=source, replay=replayed > 0)
    if any(s.replay.over_limit for s in chunks.sweeps):
        report.notes.append(f"the block activations would exceed replay_limit_bytes ({first.replay.max_bytes:,}): "
                            f"those sweeps ran full evaluations instead (same numbers, slower)")
    return report


_STAT = ("", "_se", "_lo", "_hi", "_significant")
GAP_COLUMNS = ("name", "scheme", "bytes", *(f"gap_only_this_bpb{s}" for s in _STAT),
               *(f"gap_all_but_this_bpb{s}" for s in _STAT), "proxy_gap_bpb", "proxy_gap_bpb_se", "rel_mse",
               "sqnr_db", "max_abs_err", "frac_clipped", "levels", "entropy_bytes")
