"""Plans: which scheme each tensor gets, by ordered regex rules on state-dict names.

The official passthrough rules come first (shared/reference/official_format.md §2): non-float
tensors stay as they are, float tensors with at most `keep_float_max_numel` values are kept as
fp32 (control tensors) or fp16 (other fp32/bf16). Then the first rule whose regex matches the
name (`re.search`) wins, then the default. A bare scheme spec is a plan (`int6`, `fp16`, ...).
Plans persist as small versioned JSON files: {"format": "pgolf-plan-v1", ...}.

>>> import torch
>>> p = resolve_plan("int5-mlp-int6-attn")
>>> p.scheme_for("blocks.0.mlp.fc.weight", torch.zeros(1024, 512)), p.scheme_for("blocks.0.attn_scale", torch.zeros(512))
('int5', 'fp32')
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import re._parser as re_parser  # the stdlib's own regex parser: its tree shows nested repeats
from pathlib import Path

import torch
from torch import Tensor

from pgolf.budget.quant import official
from pgolf.budget.atomic import write_text_atomic
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.quant.schemes import FLOAT_FORMATS, get_scheme

PLAN_FORMAT = "pgolf-plan-v1"
MAX_PLAN_BYTES = 1_000_000


MAX_UNBOUNDED_REPEATS = 3  # .*a.*b.*c tries n^3/6 splits: 0.4 s on a 300-character name, 4 repeats took 55 s


def nested_repetition(pattern: str) -> bool:
    """True for the shapes of catastrophic backtracking: a repeat inside a repeat (even bounded ones),
    an alternation inside a repeat ((a|a)* is 2^n), or more than MAX_UNBOUNDED_REPEATS unbounded
    repeats in all (n^k).

    >>> nested_repetition(r"^((([a-z_.0-9])+)+)+\\d$"), nested_repetition(r"blocks\\.\\d+\\.mlp\\..*")
    (True, False)
    >>> nested_repetition(r"^(.|.)*Z$"), nested_repetition(r"(.{0,40}){0,40}Z"), nested_repetition(".*a.*b.*c.*d")
    (True, True, True)
    """
    unbounded_total = 0

    def bad(items, outer_hi: int) -> bool:  # outer_hi: the enclosing repeats' product of maxima (1: none)
        nonlocal unbounded_total
        for op, arg in items:
            if op in (re_parser.MAX_REPEAT, re_parser.MIN_REPEAT, re_parser.POSSESSIVE_REPEAT):
                lo, hi, sub = arg
                unbounded = hi == re_parser.MAXREPEAT
                unbounded_total += unbounded
                if hi > 1 and outer_hi > 1:  # even (.{0,30}){0,30} splits a name in 30^30 ways
                    return True
                if bad(sub, re_parser.MAXREPEAT if unbounded or outer_hi == re_parser.MAXREPEAT
                       else outer_hi * max(hi, 1)):
                    return True
            elif op == re_parser.SUBPATTERN and bad(arg[-1], outer_hi):
                return True
            elif op == re_parser.BRANCH:
                if outer_hi > 1:
                    return True
                if any(bad(b, outer_hi) for b in arg[1]):
                    return True
            elif op in (re_parser.ASSERT, re_parser.ASSERT_NOT) and bad(arg[1], outer_hi):
                return True
        return False

    return bad(re_parser.parse(pattern), 1) or unbounded_total > MAX_UNBOUNDED_REPEATS


@dataclasses.dataclass(frozen=True)
class Plan:
    """Ordered (regex, scheme spec) rules, a default scheme, and the official passthrough limit."""

    name: str
    rules: tuple[tuple[str, str], ...] = ()
    default: str = official.FORMAT_TAG
    keep_float_max_numel: int = official.KEEP_FLOAT_MAX_NUMEL
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "rules", tuple((str(p), str(s)) for p, s in self.rules))
        for pattern, spec in self.rules:
            try:
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}: OverflowError
                raise PgolfInputError(None, f"plan {self.name!r}: bad regex {pattern!r} ({exc}); "
                                            f"write a Python regex such as '\\.mlp\\.'") from None
            if nested_repetition(pattern):
                raise PgolfInputError(None, f"plan {self.name!r}: regex {pattern!r} repeats a repetition or an "
                                            f"alternation (like (a+)+ or (a|a)*) or holds over {MAX_UNBOUNDED_REPEATS} "
                                            f"unbounded repeats, which can take exponential time; write it simpler")
            get_scheme(spec)
        get_scheme(self.default)
        if int(self.keep_float_max_numel) != self.keep_float_max_numel or self.keep_float_max_numel < 0:
            raise PgolfInputError(None, f"plan {self.name!r}: keep_float_max_numel must be an integer >= 0, "
                                        f"got {self.keep_float_max_numel!r}")

    def kept_as(self, name: str, t: Tensor) -> str | None:
        """The spec the official passthrough rule keeps `t` as (non-float, or a float tensor of at
        most `keep_float_max_numel` values), None where the plan's rules decide.

        A small float tensor becomes what official.keep_float_tensor makes of an empty tensor of its
        dtype: control tensors fp32, other fp32/bf16 cast to fp16, the rest as they are.

        >>> import torch
        >>> p = resolve_plan("int6")
        >>> [p.kept_as("x", t) for t in (torch.zeros(3).bfloat16(), torch.zeros(3).half(), torch.zeros(2**17))]
        ['fp16', 'passthrough', None]
        """
        if not t.is_floating_point():
            return "passthrough"
        if t.numel() > self.keep_float_max_numel:
            return None
        kept = official.keep_float_tensor(name, torch.empty(0, dtype=t.dtype), {}).dtype
        if kept != t.dtype or official.is_control(name):  # a control tensor is fp32 even when it already was
            return FLOAT_FORMATS[kept]
        return "passthrough"

    def scheme_for(self, name: str, t: Tensor) -> str:
        """Scheme spec for one tensor: official passthrough first (`kept_as`), then rules, then the default."""
        kept = self.kept_as(name, t)
        if kept is not None:
            return kept
        for pattern, spec in self.rules:
            if re.search(pattern, name):
                return get_scheme(spec).name
        return get_scheme(self.default).name

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "name": self.name, "description": self.description,
                "rules": [{"pattern": p, "scheme": s} for p, s in self.rules],
                "default": self.default, "keep_float_max_numel": self.keep_float_max_numel}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        return write_text_atomic(path, self.to_json())


def plan_from_dict(obj: object, source: str | os.PathLike | None = None) -> Plan:
    """A Plan from its JSON form; PgolfInputError naming `source` on anything unexpected."""
    def bad(problem: str):
        return PgolfInputError(source, f"plan file: {problem}")

    if not isinstance(obj, dict):
        raise bad(f"expected a JSON object, found {type(obj).__name__}") from None
    if obj.get("format") != PLAN_FORMAT:
        raise bad(f"format tag is {obj.get('format')!r}, expected {PLAN_FORMAT!r}") from None
    unknown = set(obj) - {"format", "name", "description", "rules", "default", "keep_float_max_numel"}
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}") from None
    rules = obj.get("rules", [])
    if not isinstance(rules, list) or not all(
            isinstance(r, dict) and set(r) == {"pattern", "scheme"} and all(isinstance(v, str) for v in r.values())
            for r in rules):
        raise bad('"rules" must be a list of {"pattern": str, "scheme": str}') from None
    fields = {"name": obj.get("name", Path(str(source or "plan")).stem), "default": obj.get("default", official.FORMAT_TAG),
              "description": obj.get("description", ""),
              "keep_float_max_numel": obj.get("keep_float_max_numel", official.KEEP_FLOAT_MAX_NUMEL)}
    for key in ("name", "default", "description"):
        if not isinstance(fields[key], str):
            raise bad(f'"{key}" must be a string') from None
    if not isinstance(fields["keep_float_max_numel"], int) or isinstance(fields["keep_float_max_numel"], bool):
        raise bad('"keep_float_max_numel" must be an integer') from None
    try:
        return Plan(rules=tuple((r["pattern"], r["scheme"]) for r in rules), **fields)
    except PgolfInputError as exc:
        raise bad(exc.problem) from None


def load_plan(path: str | os.PathLike) -> Plan:
    """Read a plan JSON file written by `Plan.save` (or by hand).

    >>> import tempfile, pathlib
    >>> path = resolve_plan("int5-mlp-int6-attn").save(pathlib.Path(tempfile.mkdtemp()) / "plan.json")
    >>> load_plan(path).name
    'int5-mlp-int6-attn'
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():  # a named pipe would block, /dev/zero never end
            raise PgolfInputError(p, "plan path is not a regular file")
        if size > MAX_PLAN_BYTES:
            raise PgolfInputError(p, f"plan file is {size:,} bytes; plans are small (limit {MAX_PLAN_BYTES:,})")
        with p.open("rb") as f:
            data = f.read(MAX_PLAN_BYTES + 1)
        if len(data) > MAX_PLAN_BYTES:
            raise PgolfInputError(p, f"plan file grew past {MAX_PLAN_BYTES:,} bytes while read")
        obj = json.loads(data.decode("utf-8"))
    except OSError as exc:
        raise PgolfInputError(p, f"cannot read plan file ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, deep nesting, a 5,000-digit number
        raise PgolfInputError(p, f"plan file is not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    return plan_from_dict(obj, p)


def resolve_plan(spec: str | Plan) -> Plan:
    """A Plan from a preset name, a bare scheme spec, or a path to a plan JSON file.

    >>> resolve_plan("int6").default, resolve_plan("official-int8").keep_float_max_numel
    ('int6', 65536)
    """
    if isinstance(spec, Plan):
        return spec
    text = str(spec).strip()
    if text in PRESETS:
        return PRESETS[text]
    if text.endswith(".json") or os.sep in text or Path(text).is_file():
        return load_plan(text)
    try:
        scheme = get_scheme(text)
    except PgolfInputError as exc:
        raise PgolfInputError(None, f"unknown plan {text!r}: not a preset ({', '.join(PRESETS)}) or a plan "
                                    f".json file, and as a scheme: {exc.problem}") from None
    return Plan(name=scheme.name, default=scheme.name, description=f"{scheme.name} for every tensor "
                                                                      f"the passthrough rules do not keep")


_EMB = r"^tok_emb\.|^lm_head\.|^bigram\.embed\."
PRESETS: dict[str, Plan] = {p.name: p for p in (
    Plan("official-int8", description="the baseline export: int8_clean_per_row_v1 + official passthrough"),
    Plan("fp16-embed", ((_EMB, "fp16"),),
         description="official int8, embeddings kept in fp16 (records: quant gap -0.007 BPB for ~0.5 MB)"),
    Plan("int6", default="int6", description="int6 per row for every large matrix, one value per byte"),
    Plan("int5-mlp-int6-attn", ((r"\.mlp\.", "int5"), (_EMB, "int8"), (r"\.attn\.", "int6")), default="int6",
         description="int5 MLP matrices, int6 attention, int8 embeddings (records' mixed precision)"),
    Plan("sdclip-int6-int8emb", ((_EMB, "int8:sdclip(20)"),), default="int6:sdclip(12.85)",
         description="SDClip: scale = k*std(row)/qmax, k=12.85 for int6 matrices, k=20 for int8 embeddings"),
    Plan("ternary", ((_EMB, "fp8_e4m3"),), default="ternary",
         description="ternary absmean per group of 128, base-3 packed; fp8 e4m3 embeddings (ternary records)"),
    # The int6 records' quantize_int6_per_row: scale = (row max / 31).clamp_min(1/31) -> amax clip, floor(1).
    # With weight decay most rows sit below max 1, so the floor binds and their symbols take few levels.
    Plan("int6-floor", default="int6:amax:floor(1)",
         description="int6 per row clipped at max |w|, scale at least 1/31, every large matrix (the int6 "
                     "records' quantize_int6_per_row, embeddings included)"),
    Plan("int6-floor-int8emb", ((_EMB, official.FORMAT_TAG),), default="int6:amax:floor(1)",
         description="int6 amax with the 1/31 floor for block matrices, official int8 embeddings (records "
                     "2026-03-20_11L_XSA4_EMA_Int6_MLP3x_WD04_1.1271, 11L_EfficientPartialXSA_FA3_SWA120)"),
    Plan("int6-floor-fp16emb", ((_EMB, "fp16"),), default="int6:floor(1)",
         description="int6 percentile clip with the 1/31 floor, fp16 embeddings beside int6 blocks (record "
                     "2026-03-19_Seq2048_FP16Emb_TunedLR)"),
    Plan("int6-floor-int8emb-latek", ((r"^blocks\.(9|10)\.attn\.c_k\.", "fp16"), (_EMB, official.FORMAT_TAG)),
         default="int6:amax:floor(1)",
         description="int6-floor-int8emb with a late-layer exception: the last two blocks' c_k kept fp16, as "
                     "for 11 layers (the 'late-K passthrough' of 11L_EfficientPartialXSA_FA3_SWA120's docstring)"),
    Plan("sdclip-int6-int7emb", ((_EMB, "int7:sdclip(15)"), (r"\.mlp\.", "int6:sdclip(12)"),
                                 (r"\.attn\.", "int6:sdclip(13)")), default="int6:sdclip(12.85)",
         description="SDClip per kind: int6 MLP k=12, attention k=13, other matrices k=12.85, int7 embeddings "
                     "k=15 (SP8192 CaseOps records from 2026-04-19 on: MLP_CLIP_SIGMAS=12 ATTN_CLIP_SIGMAS=13 "
                     "EMBED_BITS=7 EMBED_CLIP_SIGMAS=15)"),
    Plan("sdclip-int6-int7emb-k14", ((_EMB, "int7:sdclip(14)"), (r"\.mlp\.", "int6:sdclip(11.5)"),
                                     (r"\.attn\.", "int6:sdclip(13)")), default="int6:sdclip(12.85)",
         description="SDClip per kind, tighter: int6 MLP k=11.5, attention k=13, int7 embeddings k=14 (the "
                     "2026-04-29 V18_PR1797Tuned_FullStack family: MLP_CLIP_SIGMAS=11.5 EMBED_CLIP_SIGMAS=14)"),
)}


def quantize_small(plan: str | Plan) -> Plan:
    """The plan with the official small-tensor passthrough switched off: float tensors of
    <= 65,536 values follow the plan's rules too, control tensors (by name) stay fp32.

    Plans keep the official rule by default, so on small models (the fixtures' 128-wide blocks)
    only the embedding would be quantized; this is how their block matrices get measured.

    >>> import torch
    >>> p = quantize_small("int4")
    >>> p.scheme_for("blocks.0.attn.c_q.weight", torch.zeros(128, 128)), p.scheme_for("blocks.0.attn_scale", torch.zeros(128))
    ('int4', 'fp32')
    """
    plan = resolve_plan(plan)
    if plan.keep_float_max_numel == 0:
        return plan
    return Plan(name=f"{plan.name}+small", rules=((official.CONTROL_REGEX, "fp32"),) + plan.rules, default=plan.default,
                keep_float_max_numel=0, description=(plan.description + "; " if plan.description else "")
                + "small float tensors quantized too (control tensors fp32)")


def small_plans(names) -> list[Plan]:
    """Presets or scheme names as plans that also quantize small matrices (`quantize_small`).

    >>> [p.name for p in small_plans(["int6", "official-int8"])]
    ['int6+small', 'official-int8+small']
    """
    return [quantize_small(n) for n in names]
