"""Open any model file pgolf reads, and infer the baseline-family architecture from its tensors.

`load_model(path, script=...)` is the one entry point for evaluation: the built-in baseline
family, or the participant's own `GPT` built from their script (`pgolf.trainer.script_model`).
`open_model(path)` loads through `pgolf.budget.exact.inputs.load_input` (our checkpoints, `.pt`,
safetensors, official `.ptz`, pgolf artifacts) and infers the architecture; `build_model`
turns a state dict into the trainer's `GPT` loaded with `strict=True`, so a participant's
checkpoint can be evaluated without its script. A checkpoint sidecar's config wins over shapes.

>>> from pgolf.budget.forecast.shapes import baseline_specs
>>> sd = {s.name: torch.zeros(s.shape, dtype=s.dtype) for s in baseline_specs()}
>>> arch = infer_architecture(sd)
>>> arch.num_layers, arch.model_dim, arch.num_heads, arch.num_kv_heads, arch.tie_embeddings
(9, 512, 8, 4, True)
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.inputs import LoadedInput, load_input

_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
BLOCK_TENSORS = ("attn_scale", "mlp_scale", "resid_mix", "attn.q_gain", "attn.c_q.weight", "attn.c_k.weight",
                 "attn.c_v.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight")
TOP_TENSORS = ("tok_emb.weight", "skip_weights", "lm_head.weight")
# What shapes cannot tell: the official defaults (records that change them ship a sidecar or say so)
DEFAULTS = {"logit_softcap": 30.0, "rope_base": 10000.0, "qk_gain_init": 1.5, "tied_embed_init_std": 0.005,
            "train_seq_len": 1024}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The baseline GPT's constructor arguments, plus where they came from."""

    vocab_size: int
    num_layers: int
    model_dim: int
    num_heads: int
    num_kv_heads: int
    mlp_mult: float
    tie_embeddings: bool
    num_unique_layers: int | None = None
    logit_softcap: float = DEFAULTS["logit_softcap"]
    rope_base: float = DEFAULTS["rope_base"]
    qk_gain_init: float = DEFAULTS["qk_gain_init"]
    tied_embed_init_std: float = DEFAULTS["tied_embed_init_std"]
    train_seq_len: int = DEFAULTS["train_seq_len"]
    source: str = "shapes"

    def gpt_kwargs(self) -> dict:
        mlp = int(self.mlp_mult) if float(self.mlp_mult).is_integer() else self.mlp_mult
        return dict(vocab_size=self.vocab_size, num_layers=self.num_layers, model_dim=self.model_dim,
                    num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, mlp_mult=mlp,
                    tie_embeddings=self.tie_embeddings, tied_embed_init_std=self.tied_embed_init_std,
                    logit_softcap=self.logit_softcap, rope_base=self.rope_base,
                    qk_gain_init=self.qk_gain_init, num_unique_layers=self.num_unique_layers)

    def describe(self) -> str:
        rec = f", {self.num_unique_layers} unique blocks" if self.num_unique_layers else ""
        return (f"{self.num_layers}x{self.model_dim}, {self.num_heads} heads / {self.num_kv_heads} kv, "
                f"MLP x{self.mlp_mult:g}, vocab {self.vocab_size:,}, "
                f"{'tied' if self.tie_embeddings else 'untied'} embeddings{rec} (from {self.source})")


def _shape(sd: dict[str, Tensor], name: str, path) -> tuple[int, ...]:
    if name not in sd:
        raise PgolfInputError(path, f"not the baseline GPT family: missing {name}") from None
    return tuple(sd[name].shape)


def _blocks(sd: dict[str, Tensor], path) -> int:
    found: dict[int, set[str]] = {}
    for key in sd:
        m = _BLOCK_KEY.fullmatch(key)
        if m:
            found.setdefault(int(m.group(1)), set()).add(m.group(2))
        elif key not in TOP_TENSORS:
            raise PgolfInputError(path, f"not the baseline GPT family: unexpected tensor {key} (build it from "
                                        f"your training script with --script train_gpt.py)") from None
    n = len(found)
    if n == 0 or sorted(found) != list(range(n)):
        raise PgolfInputError(path, f"not the baseline GPT family: blocks numbered {sorted(found)[:12]}") from None
    for i, names in found.items():
        if names != set(BLOCK_TENSORS):
            odd = sorted(names ^ set(BLOCK_TENSORS))[0]
            raise PgolfInputError(path, f"not the baseline GPT family: block {i} has or lacks {odd}") from None
    return n


def _config_value(config: dict, key: str, default, kind=float, positive: bool = True, path=None):
    """A sidecar setting as `kind`: a finite number (positive where `positive`), else one line."""
    value = config.get(key, default)
    if value is None:
        return default
    expected = f"a finite {'positive ' if positive else ''}{'whole ' if kind is int else ''}number"
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number) or (positive and number <= 0) or (kind is int and not number.is_integer()):
        raise PgolfInputError(path, f"config {key} is {str(value)[:40]!r}; expected {expected}") from None
    return kind(number)


def infer_architecture(sd: dict[str, Tensor], config: dict | None = None, path=None) -> Architecture:
    """Constructor arguments of the baseline GPT that owns `sd` (sidecar `config` wins where given).

    Layers from blocks.N, dim and vocab from tok_emb, heads from q_gain, kv heads from c_k rows /
    head_dim, MLP width from mlp.fc, tied iff there is no lm_head.weight; depth recurrence
    (fewer stored blocks than layers) needs the sidecar's num_layers or num_unique_layers.
    """
    config = dict(config or {})
    n_blocks = _blocks(sd, path)
    vocab, dim = _shape(sd, "tok_emb.weight", path)
    heads = _shape(sd, "blocks.0.attn.q_gain", path)[0]
    if heads < 1 or dim % heads:
        raise PgolfInputError(path, f"q_gain has {heads} heads, which do not divide model_dim {dim}") from None
    head_dim = dim // heads
    kv_rows = _shape(sd, "blocks.0.attn.c_k.weight", path)[0]
    if kv_rows % head_dim or heads % (kv_rows // head_dim or 1):
        raise PgolfInputError(path, f"c_k has {kv_rows} rows, not a whole number of {head_dim}-wide kv heads") from None
    hidden = _shape(sd, "blocks.0.mlp.fc.weight", path)[0]
    skips = _shape(sd, "skip_weights", path)[0]
    num_layers, unique = n_blocks, None
    if "num_layers" in config or "num_unique_layers" in config:
        num_layers = _config_value(config, "num_layers", n_blocks, int, path=path)
        unique = config.get("num_unique_layers")
        if unique in (0, num_layers):
            unique = None
        unique = _config_value(config, "num_unique_layers", None, int, path=path) if unique is not None else None
        if (unique or num_layers) != n_blocks:
            raise PgolfInputError(path, f"sidecar config says {unique or num_layers} stored blocks, the weights "
                                        f"hold {n_blocks}") from None
    elif skips != n_blocks // 2:
        raise PgolfInputError(path, f"{n_blocks} stored blocks but {skips} U-Net skips: depth recurrence with "
                                    f"{2 * skips} or {2 * skips + 1} layers; a checkpoint sidecar with "
                                    f"num_layers is needed to tell which") from None
    if skips != num_layers // 2:
        raise PgolfInputError(path, f"skip_weights has {skips} rows, expected {num_layers // 2} for "
                                    f"{num_layers} layers") from None
    return Architecture(
        vocab_size=vocab, num_layers=num_layers, model_dim=dim, num_heads=heads, num_kv_heads=kv_rows // head_dim,
        mlp_mult=hidden / dim, tie_embeddings="lm_head.weight" not in sd, num_unique_layers=unique,
        logit_softcap=_config_value(config, "logit_softcap", DEFAULTS["logit_softcap"], path=path),
        rope_base=_config_value(config, "rope_base", DEFAULTS["rope_base"], path=path),
        qk_gain_init=_config_value(config, "qk_gain_init", DEFAULTS["qk_gain_init"], positive=False, path=path),
        tied_embed_init_std=_config_value(config, "tied_embed_init_std", DEFAULTS["tied_embed_init_std"],
                                          positive=False, path=path),
        train_seq_len=_config_value(config, "train_seq_len", DEFAULTS["train_seq_len"], int, path=path),
        source="sidecar config" if config else "tensor shapes")


def build_model(sd: dict[str, Tensor], arch: Architecture | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The trainer's GPT with `sd` loaded strictly, in eval mode, on `device` (its own dtypes: tok_emb bf16)."""
    from pgolf.inspect.evaluate import load_weights
    from pgolf.trainer.train_gpt import GPT

    arch = arch or infer_architecture(sd)
    with torch.device(device):
        model = GPT(**arch.gpt_kwargs())
    emb = sd.get("tok_emb.weight")
    if emb is not None and emb.is_floating_point() and emb.dtype != model.tok_emb.weight.dtype:
        # the trainer keeps tok_emb in bf16 as the baseline does; a checkpoint saved with another
        # dtype (fp32 in some participants' scripts) is evaluated in that dtype, not rounded
        model.tok_emb.to(emb.dtype)
    return load_weights(model.eval(), sd)


def state_dict_sha256(sd: dict[str, Tensor]) -> str:
    """Content hash of a state dict: names, dtypes, shapes and bytes, in key order."""
    h = hashlib.sha256(b"pgolf-sd-v1")
    for name, t in sd.items():
        t = t.detach().cpu().contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
    return h.hexdigest()


def model_function_sha256(model: nn.Module) -> str:
    """Hash of everything besides the weights that decides what a model computes: its module
    tree, each module's scalar settings (softcap, rope base, ...) and every buffer, persistent
    or not (rotary frequencies). Two models with equal weights and equal hashes score alike."""
    h = hashlib.sha256(b"pgolf-fn-v1|" + repr(model).encode())
    for name, module in model.named_modules():
        h.update(f"|{name}|{type(module).__module__}.{type(module).__qualname__}|".encode())
        for attr, value in sorted(vars(module).items()):
            if not attr.startswith("_") and isinstance(value, (bool, int, float, str, tuple)):
                h.update(f"{attr}={value!r};".encode())
    for name, buf in model.named_buffers():
        t = buf.detach().cpu().contiguous()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class OpenedModel:
    """A loaded input, its inferred architecture (None outside the baseline family) and hash."""

    loaded: LoadedInput
    arch: Architecture | None
    arch_problem: str = ""

    @property
    def state_dict(self) -> dict[str, Tensor]:
        return self.loaded.state_dict

    @property
    def config(self) -> dict:
        config = self.loaded.metadata.get("config") if isinstance(self.loaded.metadata, dict) else None
        return config if isinstance(config, dict) else {}

    def require_arch(self) -> Architecture:
        if self.arch is None:
            raise PgolfInputError(self.loaded.path, self.arch_problem) from None
        return self.arch


def open_model(path: str | Path) -> OpenedModel:
    """Load any input and infer its architecture (a non-baseline model still opens, arch=None).

    >>> import torch
    >>> sd = {"w": torch.linspace(-1, 1, 70_000).reshape(100, 700)}
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "w.pt"
    >>> torch.save(sd, path)
    >>> m = open_model(path)
    >>> m.loaded.format, m.arch is None
    ('state-dict-pt', True)
    """
    loaded = load_input(path)
    config = loaded.metadata.get("config") if isinstance(loaded.metadata, dict) else None
    try:
        arch = infer_architecture(loaded.state_dict, config if isinstance(config, dict) else None, loaded.path)
        return OpenedModel(loaded, arch)
    except PgolfInputError as exc:
        return OpenedModel(loaded, None, exc.problem)


def inspect_summary(opened: OpenedModel, plan=None, compressor: str = "zlib", code=None, cap: int | None = None,
                    schemes: tuple[str, ...] | None = None, quiet: bool = True):
    """`pgolf inspect`: params (tied once), tensors, dtypes, the architecture, bytes under the
    input's own format (an official .ptz as stored; otherwise `plan`, default official-int8),
    headroom; with `schemes`, weight-space metrics of every float tensor under each scheme."""
    from collections import Counter

    from pgolf.budget.glossary import CAP_BYTES
    from pgolf.budget.exact.measure import measure_input
    from pgolf.inspect.metrics import weight_metrics
    from pgolf.inspect.reports import InspectReport

    loaded = opened.loaded
    budget = measure_input(loaded, plan or "official-int8", compressor, code=code, cap=cap or CAP_BYTES, quiet=quiet)
    bh = budget.headline
    dtypes = Counter(str(t.dtype).removeprefix("torch.") for t in loaded.state_dict.values())
    head = {"format": loaded.format, "file_bytes": loaded.raw_bytes, "params": bh["params"],
            "num_tensors": len(loaded.state_dict), "dtypes": ", ".join(f"{k} x{v}" for k, v in sorted(dtypes.items())),
            "architecture": opened.arch.describe() if opened.arch else f"not inferred: {opened.arch_problem}",
            **{k: bh[k] for k in ("plan", "compressor", "bytes_model", "bytes_code", "bytes_total", "cap",
                                  "headroom_bytes", "bits_per_param")}}
    if loaded.format == "pgolf-checkpoint":
        for key in ("step", "val_bpb"):
            if loaded.metadata.get(key) is not None:
                head[f"checkpoint_{key}"] = loaded.metadata[key]
    cols = ["name", "shape", "numel", "dtype", "scheme", "kind", "payload_bytes", "compressed_bytes", "tied_to"]
    frame = budget.frame[[c for c in cols if c in budget.frame]].copy()
    notes = list(budget.notes)
    if loaded.format == "official-ptz" and (plan is None or bh["plan"] == "official-int8"):
        notes.insert(0, "bytes_model: the .ptz file as stored (its int8 tensors, not requantized)")
    elif loaded.format == "pgolf-artifact":
        notes.insert(0, f"file_bytes: the artifact as stored; bytes_model: its dequantized tensors re-measured "
                        f"under {bh['plan']}")
    metrics = weight_metrics(loaded.state_dict, schemes=list(schemes)) if schemes else None
    return InspectReport.build(head, frame, source=str(loaded.path), notes=notes, metrics=metrics)


@dataclasses.dataclass
class LoadedModel:
    """A model ready to evaluate (`forward(x, y) -> mean loss`) and the state dict it holds.

    `state_dict` has the stored dtypes (what quantization sees) and the model's key names;
    `script` says which script built it (None: the built-in baseline family).
    """

    model: nn.Module
    state_dict: dict[str, Tensor]
    opened: OpenedModel
    vocab_size: int | None
    seq_len: int
    device: torch.device
    script: object = None  # pgolf.trainer.script_model.ScriptInfo
    module: object = None  # the imported script, for its build_sentencepiece_luts
    batch_seqs: int | None = None  # windows per evaluation batch (None: pgolf's default)

    def notes(self) -> list[str]:
        if self.script is None:
            return []
        return [self.script.describe()]

    def headline(self) -> dict:
        """Extra report headline fields: where the model came from and the script's code bytes."""
        if self.script is None:
            return {}
        head = {"model_source": self.script.built_as, "script": self.script.path,
                "script_bytes_shipped": self.script.shipped_bytes}
        if self.script.inner_bytes is not None:
            head["script_bytes_inner"] = self.script.inner_bytes
        return head


def load_model(path: str | Path, script: str | Path | None = None, env=None, factory: str | None = None,
               device: str | torch.device = "cpu", stream=None, opened: OpenedModel | None = None) -> LoadedModel:
    """Open `path` and build the model that evaluates it: the participant's `GPT` from `script`
    (imported: runs its code) or `factory` (`FILE.py:function`), else the built-in baseline family.

    >>> lm = load_model("final_model.pt", script="train_gpt.py", env=["NUM_LAYERS=3"])   # doctest: +SKIP
    >>> lm.model(x, y)   # doctest: +SKIP
    tensor(4.1234)
    """
    from pgolf.trainer.devices import prepare_model, resolve_device

    dev = resolve_device(device)
    opened = opened or open_model(path)
    if script is None and factory is None:
        arch = opened.require_arch()
        model = build_model(opened.state_dict, arch)
        if dev.type != "cpu":
            model = prepare_model(model, dev, contract=False)
            model.pgolf_identity = f"builtin|{dev.type}-bf16-autocast"
        return LoadedModel(model, opened.state_dict, opened, arch.vocab_size, arch.train_seq_len, dev)
    from pgolf.trainer.script_model import script_model

    sm = script_model(opened.state_dict, script, env, factory, path=opened.loaded.path, stream=stream)
    model = prepare_model(sm.model, dev, where=Path(sm.info.path).name, eager=True)
    model.pgolf_identity = f"{sm.info.identity}|{dev.type}"  # gap-cache entries belong to this script
    seq_len = sm.seq_len or (opened.arch.train_seq_len if opened.arch else DEFAULTS["train_seq_len"])
    vocab = sm.vocab_size or (opened.arch.vocab_size if opened.arch else None)
    return LoadedModel(model, sm.state_dict, opened, vocab, int(seq_len), dev, sm.info, sm.module)
