"""Replay of cached block activations: per-tensor sweeps at a fraction of a full evaluation each.

`BlockReplay` records the output of every call of `model.blocks[j]` in one evaluation; a later
evaluation restarts from call r, the earlier calls returning their recorded outputs. The model's
own forward still runs around the blocks (embedding, U-Net skip additions, head), so the restart
reproduces a full evaluation bit for bit whenever the tensors feeding calls < r are unchanged: a
tensor of block j only changes calls >= j's first call.

>>> Restart(3, after_attn=True)
Restart(call=3, after_attn=True)
"""
from __future__ import annotations

import contextlib
import dataclasses
import re

from torch import Tensor, nn

from pgolf.inspect.evaluate import EvalResult, EvalSlice, _run, default_batch_seqs

MAX_REPLAY_BYTES = 8 * 10**9  # refuse to cache more activations than this; fall back to full evals
_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.")


@dataclasses.dataclass(frozen=True)
class Restart:
    """Where a replayed evaluation starts computing: block call `call`, from its start or, with
    `after_attn`, from its MLP (the call's attention output replayed too)."""

    call: int = 0
    after_attn: bool = False


class BlockReplay:
    """Record every block call's output (and attention output) once, then evaluate restarting
    from any block call.

    >>> replay = BlockReplay(model)        # doctest: +SKIP
    >>> base = replay.record(sl)           # doctest: +SKIP
    >>> replay.evaluate_from(replay.restart_for("blocks.3.mlp.fc.weight"))   # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, batch_seqs: int | None = None, max_bytes: int = MAX_REPLAY_BYTES,
                 cache_attention: bool = True):
        self.model = model
        self.batch_seqs = batch_seqs
        self.max_bytes = max_bytes
        blocks = getattr(model, "blocks", None)
        self.blocks = list(blocks) if isinstance(blocks, nn.ModuleList) else []
        # the MLP restart needs the block's attention as a submodule whose output the block adds
        self.attns = [getattr(b, "attn", None) if cache_attention else None for b in self.blocks]
        self.outputs: list[list[Tensor]] = []
        self.attn_outputs: list[dict[int, Tensor]] = []
        self.call_modules: list[int] = []  # module index of each call (depth recurrence repeats)
        self.sl: EvalSlice | None = None
        self.replayed = 0  # evaluations that restarted from a recording
        self.peak_bytes = 0  # the largest recording kept, for reports
        self.over_limit = False  # a recording was dropped for max_bytes: those sweeps ran full evaluations
        self._mode, self._batch, self._call, self._restart = "off", 0, 0, Restart()
        self._current, self._n_batches = 0, 0

    @property
    def supported(self) -> bool:
        return bool(self.blocks) and bool(self.outputs) and len(self.outputs) == self._n_batches

    @property
    def n_calls(self) -> int:
        return len(self.call_modules)

    def cached_bytes(self) -> int:
        tensors = [t for b in self.outputs for t in b] + [t for b in self.attn_outputs for t in b.values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def _wrap_block(self, j: int, block: nn.Module):
        real = type(block).forward

        def forward(*args, **kwargs):
            i = self._call
            self._call += 1
            if self._mode == "replay" and i < self._restart.call:
                return self.outputs[self._batch][i]
            self._current = i
            out = real(block, *args, **kwargs)
            if self._mode == "record":
                self.outputs[self._batch].append(out)
                if self._batch == 0:
                    self.call_modules.append(j)
            return out
        return forward

    def _wrap_attn(self, attn: nn.Module):
        real = type(attn).forward

        def forward(*args, **kwargs):
            i = self._current
            if self._mode == "replay" and self._restart.after_attn and i == self._restart.call:
                return self.attn_outputs[self._batch][i]
            out = real(attn, *args, **kwargs)
            if self._mode == "record":
                self.attn_outputs[self._batch][i] = out
            return out
        return forward

    @contextlib.contextmanager
    def _patched(self, mode: str, restart: Restart = Restart()):
        patched = [(b, self._wrap_block(j, b)) for j, b in enumerate(self.blocks)]
        patched += [(a, self._wrap_attn(a)) for a in self.attns if isinstance(a, nn.Module)]
        for module, fn in patched:
            module.forward = fn  # an instance attribute: parameters and state dict are untouched
        self._mode, self._restart = mode, restart
        try:
            yield
        finally:
            self._mode = "off"
            for module, _ in patched:
                module.__dict__.pop("forward", None)

    def _start_batch(self, b: int) -> None:
        self._batch, self._call = b, 0
        if self._mode == "record" and b == 1 and self.cached_bytes() * self._n_batches > self.max_bytes:
            # the whole recording would not fit the memory budget: evaluate on without keeping it
            self._mode, self.outputs, self.attn_outputs = "off", [], []
            self.over_limit = True
        if self._mode == "record":
            self.outputs.append([])
            self.attn_outputs.append({})

    def record(self, sl: EvalSlice, desc: str = "", quiet: bool = True) -> EvalResult:
        """Full evaluation that keeps every block output (falls back to plain when too large)."""
        self.release()
        self.sl = sl
        self.batch_seqs = self.batch_seqs or default_batch_seqs(sl)
        if not self.blocks:
            return _run(self.model, sl, self.batch_seqs, desc=desc, quiet=quiet)
        self._n_batches = -(-sl.n_seqs // self.batch_seqs)
        with self._patched("record"):
            result = _run(self.model, sl, self.batch_seqs, self._start_batch, desc, quiet)
        self.peak_bytes = max(self.peak_bytes, self.cached_bytes())
        return result

    def evaluate_from(self, restart: Restart | int) -> EvalResult:
        """Evaluation with calls before `restart` replayed from the recording (0 = full)."""
        if self.sl is None:
            raise RuntimeError("record() a slice before evaluate_from()")
        restart = restart if isinstance(restart, Restart) else Restart(int(restart))
        if (restart.call <= 0 and not restart.after_attn) or not self.supported:
            return _run(self.model, self.sl, self.batch_seqs)
        if restart.call >= self.n_calls:
            restart = Restart(self.n_calls)
        self.replayed += 1
        with self._patched("replay", restart):
            return _run(self.model, self.sl, self.batch_seqs, self._start_batch)

    def cost_from(self, restart: Restart) -> float:
        """Multiply-adds per token of `evaluate_from(restart)`, the unit `--nproc` deals by: the
        matrix parameters of every block call computed plus its seq_len x width attention scores,
        and the parameters outside the blocks (the head). Equal costs when nothing is recorded."""
        if not self.supported:
            return 1.0
        width = self.outputs[0][0].shape[-1]
        scores = self.sl.seq_len * width  # q.k and attention x v, per token

        def size(module) -> int:
            return sum(p.numel() for p in module.parameters()) if isinstance(module, nn.Module) else 0

        in_blocks = sum(size(b) for b in self.blocks)
        cost = float(sum(p.numel() for p in self.model.parameters()) - in_blocks)
        for call in range(max(0, restart.call), self.n_calls):
            j = self.call_modules[call]
            cost += size(self.blocks[j]) + scores
            if call == restart.call and restart.after_attn:
                cost -= size(self.attns[j]) + scores
        return cost

    def restart_for(self, name: str) -> Restart:
        """The earliest computation that a change of state-dict entry `name` can affect."""
        if not self.supported:
            return Restart()
        m = _BLOCK_NAME.match(name)
        if m:
            j = int(m.group(1))
            if j not in self.call_modules:
                return Restart()
            call = self.call_modules.index(j)
            rest = name[m.end():]
            # the MLP and its scale act after the attention output is added: replay that output
            mlp_only = rest.startswith("mlp.") or rest == "mlp_scale"
            return Restart(call, mlp_only and self.attns[j] is not None and bool(self.attn_outputs[0]))
        if name.startswith("lm_head."):
            return Restart(self.n_calls)  # the head reads only the last block's output
        if name == "skip_weights":
            # U-Net skips are added before decoder blocks only; encoder calls come first
            return Restart(int(getattr(self.model, "num_encoder_layers", 0)))
        return Restart()  # embeddings and anything unknown feed every block

    def release(self) -> None:
        self.outputs, self.attn_outputs, self.call_modules, self.sl = [], [], [], None
