"""Does a participant's script count BPB's bytes as the challenge does? Its LUTs vs the official ones.

val_bpb = val_loss / ln 2 x tokens / bytes, and the bytes come from the script's own
`build_sentencepiece_luts(sp, vocab_size, device)`: (base bytes, has leading space, is boundary) per
token. A script that counts differently reports a different val_bpb for the same model. This loads
the script (its inner source when it ships wrapped) as a uniquely named module, never `__main__`,
so its `main()` stays unrun, and compares its tables with `pgolf.trainer.train_gpt`'s, which copy
the official ones; on a token stream (the embedded default's val split, tokenized with the record's
tokenizer) it counts both sides' bytes and the factor that turns the script's val_bpb into the official one.
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgolf.budget.files.codebytes import read_code, unwrap_source
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.inputs import read_shard, read_tokenizer
from pgolf.trainer.corpus import prepare_default
from pgolf.trainer.train_gpt import build_sentencepiece_luts

_COUNTER = itertools.count()


def load_script_module(path: str | os.PathLike):
    """Import a training script as module `_pgolf_script_<n>` (a wrapper: its inner source); its `main()` is not run.

    Raises whatever the script's top level raises (a missing module such as flash_attn_interface).
    """
    p = Path(path)
    shipped = read_code(p)
    inner = unwrap_source(shipped, p)
    source = inner.source if inner is not None else shipped
    name = f"_pgolf_script_{next(_COUNTER)}"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(p))
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(p)
    sys.modules[name] = module  # dataclasses and typing look their module up while the body runs
    try:
        exec(compile(source, str(p), "exec"), module.__dict__)
    finally:
        sys.modules.pop(name, None)
    return module


def _token_bytes(tokens: np.ndarray, luts) -> int:
    """Bytes of the targets tokens[1:] as the challenge counts: base + (space and previous not boundary)."""
    base, space, boundary = (np.asarray(t.cpu().numpy()) for t in luts)
    prev, cur = tokens[:-1], tokens[1:]
    return int(base[cur].astype(np.int64).sum() + (space[cur] & ~boundary[prev]).sum())


def check_bpb_luts(script: str | os.PathLike, tokenizer: str | os.PathLike, max_tokens: int = 262_144,
                   quiet: bool = True) -> dict[str, Any]:
    """{status, detail, tokens, bytes_official, bytes_script, bpb_factor, differing_tokens}.

    status 'pass' when the script's bytes equal the official count on the token stream, 'fail' with
    bpb_factor = bytes_script / bytes_official (official val_bpb = script's val_bpb x bpb_factor),
    'not checked' when the script cannot be imported or has no `build_sentencepiece_luts`.
    """
    sp = read_tokenizer(tokenizer)
    vocab = int(sp.vocab_size())
    official = build_sentencepiece_luts(sp, vocab, torch.device("cpu"))
    out: dict[str, Any] = {"status": "not checked", "detail": "", "tokens": None, "bytes_official": None,
                           "bytes_script": None, "bpb_factor": None, "differing_tokens": None}
    try:
        module = load_script_module(script)
    except PgolfInputError:
        raise
    except BaseException as exc:  # a script's import may fail any way it likes; SystemExit included
        out["detail"] = f"could not import the script: {type(exc).__name__}: {exc}"[:300]
        return out
    builder = getattr(module, "build_sentencepiece_luts", None)
    if builder is None:
        out["detail"] = "the script has no build_sentencepiece_luts"
        return out
    try:
        theirs = builder(sp, vocab, torch.device("cpu"))
    except Exception as exc:
        out["detail"] = f"its build_sentencepiece_luts failed: {type(exc).__name__}: {exc}"[:300]
        return out
    info = prepare_default(tokenizer=str(tokenizer), quiet=quiet)
    val_dir = Path(info.data_path)
    shards = sorted(val_dir.glob("*val_*.bin"))
    tokens = np.concatenate([read_shard(s, None) for s in shards]).astype(np.int64)[: max_tokens + 1]
    official_bytes, script_bytes = _token_bytes(tokens, official), _token_bytes(tokens, theirs)
    n = min(len(official[0]), len(theirs[0]))
    differing = sum(int((a[:n].cpu().to(torch.int64) != b[:n].cpu().to(torch.int64)).sum())
                    for a, b in zip(official, theirs))
    factor = script_bytes / official_bytes
    out.update(tokens=len(tokens) - 1, bytes_official=official_bytes, bytes_script=script_bytes, bpb_factor=factor,
               differing_tokens=differing)
    if script_bytes == official_bytes and differing == 0:
        out.update(status="pass", detail=f"same bytes per token as the official tables ({vocab:,} pieces)")
    else:
        out.update(status="fail", detail=f"{differing:,} table entries differ; on {len(tokens) - 1:,} tokens the script "
                                         f"counts {script_bytes:,} bytes, official {official_bytes:,}: official "
                                         f"val_bpb = reported x {factor:.6f}")
    return out
