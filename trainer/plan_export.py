"""The trainer's export under any plan: build the exact artifact, write it, read it back, score it.

train_gpt.py writes the official int8+zlib artifact; this module does the same for any plan
(preset, scheme, or plan JSON such as `pgolf allocate` writes) and compressor, with pgolf.budget's
exact builder, and scores the weights read back from disk with the script's own model, data and
val_bpb code (same validation tokens as the run). Output file: `final_model.<plan>.<compressor>.ptz`
in the run folder, where <plan> and <compressor> are `slug()`s of the plan and compressor names.
The run's train.log gets official-style lines, so `parse_log_summary` reads them like the script's:

    Serialized model int6+zlib: 1234567 bytes (payload:1500000 serialized:1512345)
    Total submission size int6+zlib: 1281778 bytes
    final_int6_zlib_roundtrip_exact val_loss:2.01234567 val_bpb:1.20123456

>>> artifact_name("int6:sdclip(12.85)", "zstd:19")
'final_model.int6-sdclip-12-85.zstd-19.ptz'
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Callable

import torch

from pgolf.budget.atomic import refuse_overwriting, write_bytes_atomic, write_text_atomic
from pgolf.budget.files.compressors import Compressor, get_compressor
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.glossary import CAP_BYTES, totals
from pgolf.budget.exact.measure import measure_budget
from pgolf.budget.quant.plans import Plan, resolve_plan
from pgolf.budget.exact.decode import DEFAULT_MAX_OUTPUT, read_artifact
from pgolf.budget.exact.inputs import load_input, newest_checkpoint, read_json
from pgolf.budget.files.validate import MAX_JSON_BYTES, parse_json_bytes, read_file_bytes
from pgolf.budget.report_base import Report

CHECKPOINT_FORMAT = "pgolf-checkpoint-v1"
FRAME_COLUMNS = ["name", "shape", "numel", "dtype", "scheme", "storage", "bits_per_value", "payload_bytes", "tied_to"]


RUN_FILE_SUFFIXES = (".log", ".json", ".safetensors", ".pt")  # what a run folder holds that pgolf did not write


def slug(text: str) -> str:
    """A name safe in file names and log labels: letters, digits, `_` and `-` only.

    >>> slug("brotli+byte-shuffle"), slug("int8_clean_per_row_v1")
    ('brotli-byte-shuffle', 'int8_clean_per_row_v1')
    """
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "plan"


def export_label(plan: str, compressor: str) -> str:
    """`<plan>+<compressor>`, the word after `Serialized model` (official: `int8+zlib`)."""
    return f"{slug(plan)}+{slug(compressor)}"


def eval_label(plan: str, compressor: str) -> str:
    """`final_<plan>_<compressor>_roundtrip` (official: `final_int8_zlib_roundtrip`)."""
    return f"final_{slug(plan)}_{slug(compressor)}_roundtrip"


def artifact_name(plan: str, compressor: str) -> str:
    return f"final_model.{slug(plan)}.{slug(compressor)}.ptz"


@dataclasses.dataclass
class ExportSource:
    """Weights to export and what is known about the run that made them."""

    path: Path                  # the file the weights came from
    state_dict: dict
    config: dict | None         # the run's hyperparameters (checkpoint sidecar); None for plain files
    code_bytes: int | None      # the training script's UTF-8 bytes, as the script counts them
    run_dir: Path | None        # set when the input is a run folder (OUT_DIR): its train.log gets the lines
    val_bpb_full: float | None  # the run's last unquantized val_bpb, when logged at the final step


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "final_model.pt").is_file() or (path / "checkpoints").is_dir())


def open_source(path: str | Path) -> ExportSource:
    """A run folder (final_model.pt, else its newest checkpoint; config from the newest sidecar),
    a pgolf checkpoint, or any model file `pgolf.budget.exact.inputs.load_input` reads."""
    p = Path(path)
    if not p.exists():
        raise PgolfInputError(p, "no such file or folder")
    if not is_run_dir(p):
        loaded = load_input(p)
        meta = loaded.metadata if loaded.format == "pgolf-checkpoint" else {}
        return _source(loaded.path, loaded.state_dict, meta, None)
    try:
        ckpt = newest_checkpoint(p / "checkpoints")
    except PgolfInputError:
        ckpt = None
    final = p / "final_model.pt"
    # final_model.pt is written after the last checkpoint; an older one belongs to an earlier run
    if final.is_file() and (ckpt is None or final.stat().st_mtime >= ckpt.with_suffix(".json").stat().st_mtime):
        meta = read_json(ckpt.with_suffix(".json"), CHECKPOINT_FORMAT, ("config", "step")) if ckpt else {}
        return _source(final, load_input(final).state_dict, meta, p)
    if ckpt is None:
        raise PgolfInputError(p, "run folder holds neither final_model.pt nor a complete checkpoint")
    loaded = load_input(ckpt)
    return _source(loaded.path, loaded.state_dict, loaded.metadata, p)


def _source(path: Path, sd: dict, meta: dict, run_dir: Path | None) -> ExportSource:
    config = meta.get("config") if isinstance(meta.get("config"), dict) else None
    code = meta.get("code_bytes")
    bpb = meta.get("val_bpb")
    return ExportSource(Path(path), sd, config, code if isinstance(code, int) else None, run_dir,
                        float(bpb) if isinstance(bpb, (int, float)) else None)


class RunScorer:
    """Scores state dicts like the run's script: its model, its validation tokens (VAL_TOKENS,
    TRAIN_SEQ_LEN, VAL_BATCH_SIZE), its val_bpb code. Built from a checkpoint's config; data,
    tokenizer and device problems surface here, before any output is written.

    >>> RunScorer(sidecar["config"])(state_dict)["val_bpb"]   # doctest: +SKIP
    1.7321...
    """

    def __init__(self, config: dict, *, data_path: str | None = None, tokenizer_path: str | None = None,
                 device: str | None = None, source=None, model=None, keys=None):
        from pgolf.trainer import train_gpt as tg

        self.tg, self.source = tg, source
        names = {f.name for f in dataclasses.fields(tg.Hyperparameters)}
        try:
            args = tg.Hyperparameters(**{k: v for k, v in config.items() if k in names})
            args.validate()
        except (TypeError, ValueError) as exc:
            raise PgolfInputError(source, f"checkpoint config: {exc}") from None
        if data_path:  # a lone .model beside other shards is their tokenizer (the script's rule)
            beside = sorted(Path(data_path).glob("*.model"))
            args.data_path = str(data_path)
            args.tokenizer_path = str(beside[0]) if len(beside) == 1 else args.tokenizer_path
        if tokenizer_path:
            args.tokenizer_path = str(tokenizer_path)
        wanted = device or args.device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise PgolfInputError(None, "the run's DEVICE is cuda but no CUDA device is available here: "
                                        "pass --device cpu")
        from pgolf.trainer.devices import resolve_device

        self.device = resolve_device(wanted)
        use_bf16 = args.autocast == "bf16" or (args.autocast == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        try:
            tg.resolve_data(args)  # a config without DATA_PATH: the script's own default
            sp = tg.load_tokenizer(args.tokenizer_path, args.vocab_size)
            self.val_tokens = tg.load_validation_tokens(args.val_files, args.train_seq_len, args.val_tokens)
        except (OSError, ValueError) as exc:
            raise PgolfInputError(None, f"validation data of the run: {exc} (--data DIR / --tokenizer MODEL)") \
                from None
        self.luts = tg.build_sentencepiece_luts(sp, args.vocab_size, self.device)
        self.args, self.model = args, (model if model is not None else tg.build_model(args))
        self.keys = keys  # a participant's model: state-dict keys normalised first (_orig_mod., module.)

    def check(self, sd: dict) -> None:
        """Load `sd` into the run's architecture (strict), or say why it does not fit."""
        if self.keys is not None:
            from pgolf.trainer.script_model import load_strict

            load_strict(self.model, self.keys(sd), self.source)
            return
        try:
            self.model.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise PgolfInputError(self.source, f"weights do not fit the run's architecture "
                                               f"({str(exc).splitlines()[0]})") from None

    def __call__(self, sd: dict) -> dict:
        """{"val_loss", "val_bpb", "eval_ms", "val_tokens"} of `sd`."""
        self.check(sd)
        self.model.to(self.device)
        t0 = time.perf_counter()
        # the script evaluates VAL_BATCH_SIZE / (world_size * grad_accum_steps) = VAL_BATCH_SIZE / 8 tokens a batch
        loss, bpb = self.tg.eval_val_bpb(self.model, self.val_tokens, self.luts, self.args.train_seq_len,
                                         batch_tokens=self.args.val_batch_size // 8, device=self.device,
                                         autocast_dtype=self.autocast_dtype)
        return {"val_loss": loss, "val_bpb": bpb, "eval_ms": 1000.0 * (time.perf_counter() - t0),
                "val_tokens": int(self.val_tokens.numel() - 1)}


@dataclasses.dataclass(repr=False)
class PlanExportReport(Report):
    """What `export_with_plan` wrote and measured; `log_lines` are the lines it appended to train.log."""

    log_lines: list[str] = dataclasses.field(default_factory=list)


def default_output(src: ExportSource, plan: Plan, comp: Compressor) -> Path:
    if src.run_dir is not None:
        return src.run_dir / artifact_name(plan.name, comp.name)
    return src.path.with_name(f"{src.path.stem}.{slug(plan.name)}.{slug(comp.name)}.ptz")


def script_scorer(sd: dict, script=None, env=None, factory: str | None = None, *, data_path: str | None = None,
                  tokenizer_path: str | None = None, device: str | None = None, source=None) -> RunScorer:
    """A RunScorer whose model is the participant's, built from their script (imported: runs its
    code) or factory; validation data from `data_path`, else the embedded default's val split."""
    from pgolf.trainer.devices import prepare_model, resolve_device
    from pgolf.trainer.script_model import normalise_keys, script_model

    dev = resolve_device(device or "auto")
    sm = script_model(sd, script, env, factory, path=source)
    config = {"vocab_size": sm.vocab_size or 1024, "train_seq_len": sm.seq_len or 1024}
    scorer = RunScorer(config, data_path=data_path, tokenizer_path=tokenizer_path, device=dev.type, source=source,
                       model=prepare_model(sm.model, dev, where=Path(sm.info.path).name, eager=True),
                       keys=normalise_keys)
    scorer.info = sm.info
    return scorer


def export_with_plan(path: str | Path, plan: str | Plan = "official-int8", compressor: str | Compressor = "zlib", *,
                     output: str | Path | None = None, score: bool | None = None, data_path: str | None = None,
                     tokenizer_path: str | None = None, device: str | None = None,
                     code_bytes: int | Callable[[bytes], int] | None = None, log: bool = True, cap: int = CAP_BYTES, quiet: bool = True, script=None, env=None,
                     factory: str | None = None) -> PlanExportReport:
    """Build `path`'s weights into the exact artifact of `plan` + `compressor`, write it atomically,
    read it back from disk and (when `score`) evaluate the dequantized weights like the script does.

    `path`: a run folder (OUT_DIR), a checkpoint or any model file; `score=None` scores when the
    input carries its run config; `log` appends the official-style lines to a run folder's train.log.
    `code_bytes` overrides the bytes the script counted for itself (sidecar `code_bytes`); a function
    gets the artifact's bytes before they are written (a decoder spliced for the codecs they hold).
    `script`/`env`/`factory` score with the participant's own model (see `script_scorer`); the
    script's shipped bytes are then the code bytes unless `code_bytes` is given.

    >>> r = export_with_plan("runs/x", "int6")                     # doctest: +SKIP
    >>> r.headline["artifact_path"], r.headline["val_bpb_quantized"]  # doctest: +SKIP
    ('runs/x/final_model.int6.zlib.ptz', 1.7321...)
    """
    plan, comp = resolve_plan(plan), get_compressor(compressor)
    comp.require()
    src = open_source(path)
    own_model = script is not None or factory is not None
    if score and src.config is None and not own_model:
        raise PgolfInputError(src.path, "scoring needs the run's config: give a run folder or a pgolf checkpoint "
                                        "(step_NNNNNN.safetensors + .json)")
    score = (src.config is not None or own_model) if score is None else score
    out = Path(output) if output is not None else default_output(src, plan, comp)
    run_files = [] if src.run_dir is None else [p for p in src.run_dir.iterdir() if p.suffix in RUN_FILE_SUFFIXES]
    refuse_overwriting(out, src.path, *run_files, what="the input or a file of its run")
    code = code_bytes if code_bytes is not None else src.code_bytes
    if code_bytes is None and script is not None:  # the participant's script is the code that ships
        from pgolf.budget.files.codebytes import read_code

        code = len(read_code(script))
    scorer = None
    if score and own_model:
        scorer = script_scorer(src.state_dict, script, env, factory, data_path=data_path,
                               tokenizer_path=tokenizer_path, device=device, source=src.path)
    elif score:  # every input problem surfaces before the artifact is written
        scorer = RunScorer(src.config, data_path=data_path, tokenizer_path=tokenizer_path, device=device,
                           source=src.path)
        scorer.check(src.state_dict)
    if log and score and src.run_dir is not None:  # a broken results.json is refused before any output
        results_path = src.run_dir / "results.json"
        if results_path.is_file():
            parse_json_bytes(read_file_bytes(results_path, MAX_JSON_BYTES), results_path)
    budget = measure_budget(src.state_dict, plan, comp, per_tensor=False, verify=True, quiet=quiet,
                            source=str(src.path))
    if callable(code):
        code = code(budget.artifact)
    write_bytes_atomic(out, budget.artifact)
    on_disk = out.read_bytes()
    roundtrip = read_artifact(on_disk, max(DEFAULT_MAX_OUTPUT, 2 * budget.headline["serialized_bytes"]))
    if on_disk != budget.artifact:  # measure_budget checked those bytes decode bit for bit to fake_quantize
        raise RuntimeError(f"{out}: the file read back differs from the artifact written")
    h = budget.headline
    t = totals(len(on_disk), code or 0, h["params"], cap)
    head = {"source": str(src.path), "plan": plan.name, "compressor": comp.name, "artifact_path": str(out),
            "artifact": h["artifact"], "params": h["params"], "payload_bytes": h["payload_bytes"],
            "serialized_bytes": h["serialized_bytes"], "bytes_model": len(on_disk), "bytes_code": code or 0,
            "bytes_total": t.bytes_total, "cap": int(cap), "headroom_bytes": t.headroom_bytes, "roundtrip_exact": True}
    notes = [] if code is not None else ["bytes_code = 0: the input carries no code size (--code FILE adds one)"]
    if getattr(scorer, "info", None) is not None:
        notes.append(scorer.info.describe())
    result = None
    if scorer is not None:
        result = scorer(roundtrip)
        head.update(val_loss_quantized=result["val_loss"], val_bpb_quantized=result["val_bpb"],
                    val_bpb_full=src.val_bpb_full,
                    quant_gap_bpb=None if src.val_bpb_full is None else result["val_bpb"] - src.val_bpb_full,
                    val_tokens=result["val_tokens"])
    lines = log_lines(head, result)
    report = PlanExportReport(title=f"pgolf export: {src.path}", headline=head,
                              frame=budget.frame[FRAME_COLUMNS].copy(), notes=notes, log_lines=lines)
    if log and src.run_dir is not None and score:
        append_log(src.run_dir / "train.log", lines)
        record_in_results(src.run_dir / "results.json", report)
        report.notes.append(f"appended {len(lines)} lines to {src.run_dir / 'train.log'}")
    elif src.run_dir is not None and log:
        report.notes.append("train.log unchanged: it records scored exports only (drop --no-score)")
    return report


def log_lines(head: dict, result: dict | None) -> list[str]:
    """The official-style lines for one export (scored or not)."""
    label = export_label(head["plan"], head["compressor"])
    # the official line's raw_torch is the torch.save size; pgolf's container is not torch.save
    raw_key = "raw_torch" if head["artifact"] == "official-export" else "serialized"
    sizes = f"payload:{head['payload_bytes']} {raw_key}:{head['serialized_bytes']}"
    lines = [f"plan_export source:{head['source']} plan:{slug(head['plan'])} compressor:{slug(head['compressor'])} "
             f"artifact:{head['artifact_path']} kind:{head['artifact']}",
             f"Serialized model {label}: {head['bytes_model']} bytes ({sizes})",
             f"Total submission size {label}: {head['bytes_total']} bytes"]
    if result is not None:
        name = eval_label(head["plan"], head["compressor"])
        lines += [f"{name} val_loss:{result['val_loss']:.4f} val_bpb:{result['val_bpb']:.4f} "
                  f"eval_time:{result['eval_ms']:.0f}ms",
                  f"{name}_exact val_loss:{result['val_loss']:.8f} val_bpb:{result['val_bpb']:.8f}"]
    return lines


def append_log(path: Path, lines: list[str]) -> None:
    """Add lines at the end of a log, atomically (the whole file is rewritten under a temp name)."""
    try:
        before = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise PgolfInputError(path, f"cannot read the run's log ({exc})") from None
    if before and not before.endswith("\n"):
        before += "\n"
    write_text_atomic(path, before + "\n".join(lines) + "\n")


def record_in_results(path: Path, report: PlanExportReport) -> None:
    """Add this export to results.json under "plan_exports" (keyed by `<plan>+<compressor>`)."""
    if not path.is_file():
        return
    results = parse_json_bytes(read_file_bytes(path, MAX_JSON_BYTES), path)
    keys = ("plan", "compressor", "artifact_path", "artifact", "bytes_model", "bytes_code", "bytes_total",
            "payload_bytes", "serialized_bytes", "val_loss_quantized", "val_bpb_quantized", "quant_gap_bpb")
    entry = {k: report.headline.get(k) for k in keys}
    results.setdefault("plan_exports", {})[export_label(report.headline["plan"], report.headline["compressor"])] = entry
    write_text_atomic(path, json.dumps(results, indent=2) + "\n")

