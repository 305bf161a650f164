"""The participant's own model: import their `train_gpt.py` and build its `GPT` for a state dict.

Importing a script runs its code, so pgolf does it only for a script the user names (`--script`).
The script is read, unwrapped when it ships as a self-extracting one-liner (never executed to
unwrap), and executed as a module with a unique name, never `__main__`, so its `main()` guard
holds. `--env KEY=VALUE` pairs are set in `os.environ` while it is imported and its model built,
then restored. The model is `GPT(**kwargs)` with the constructor's arguments taken from the
script's `Hyperparameters`, or `GPT(h)` when the constructor takes the hyperparameters object,
the convention of the challenge's `measure_variance_ratio.py --script`. `--factory
FILE.py:function` replaces all of that with the user's `function(state_dict) -> nn.Module`.

>>> parse_env(["NUM_LAYERS=3 MODEL_DIM=128", "RUN_ID=my run"])
{'NUM_LAYERS': '3', 'MODEL_DIM': '128', 'RUN_ID': 'my run'}
>>> normalise_keys({"_orig_mod.module.tok_emb.weight": 1})
{'tok_emb.weight': 1}
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import inspect as pyinspect
import itertools
import os
import re
import sys
import traceback
import types
from pathlib import Path

import torch
from torch import Tensor, nn

from pgolf.budget.files.codebytes import read_code, unwrap_source
from pgolf.budget.errors import PgolfInputError
from pgolf.trainer.flash_stub import install_stand_ins

_counter = itertools.count()
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class ScriptInfo:
    """What was imported: the file, its counted (shipped) bytes, the source that ran."""

    path: str
    shipped_bytes: int
    inner_bytes: int | None = None  # set when the file is a self-extracting wrapper
    layers: tuple[str, ...] = ()
    stand_ins: tuple[str, ...] = ()
    built_as: str = ""
    identity: str = ""  # sha256 of the shipped bytes, the --env pairs and the factory
    source: bytes = dataclasses.field(default=b"", repr=False)  # what ran (the inner source when wrapped)
    outside_settings: tuple[str, ...] = ()  # model flags the script sets after construction

    def describe(self) -> str:
        size = f"{self.shipped_bytes:,} bytes"
        if self.inner_bytes is not None:
            size = f"{self.shipped_bytes:,} bytes shipped, {self.inner_bytes:,} bytes of source inside its " \
                   f"{'+'.join(self.layers)} wrapper"
        extra = f"; {', '.join(self.stand_ins)} replaced by pgolf's SDPA stand-in" if self.stand_ins else ""
        if self.outside_settings:
            extra += (f"; the script also sets {', '.join(self.outside_settings)} on a model outside its "
                      f"constructor, which pgolf does not do: if its evaluation needs that, build the model with "
                      f"--factory")
        return f"model built by {self.built_as or 'the script'} from {self.path} ({size}){extra}"


def parse_env(pairs) -> dict[str, str]:
    """KEY=VALUE strings (from repeated --env, or one string with several) -> dict, in order."""
    out: dict[str, str] = {}
    for item in pairs or ():
        words = str(item).split()
        # "A=1 B=2" is two pairs; "RUN_ID=my run" is one value with a space
        for pair in words if all("=" in w for w in words) else [str(item)]:
            key, sep, value = pair.partition("=")
            if not sep or not _ENV_KEY.fullmatch(key):
                raise PgolfInputError(None, f"--env {pair!r}: expected KEY=VALUE")
            out[key] = value
    return out


@contextlib.contextmanager
def environment(env: dict[str, str] | None):
    """`os.environ` with `env` set, restored afterwards."""
    env = dict(env or {})
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _script_line(exc: BaseException, filename: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return f" at line {frames[-1].lineno}" if frames else ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def import_script(path: str | os.PathLike, env: dict[str, str] | None = None,
                  stream=None) -> tuple[types.ModuleType, ScriptInfo]:
    """Execute a script as a fresh module (unique name, `__name__` != "__main__"), unwrapped first.

    ImportError of a missing module (triton, CUDA kernels) and any exception the script raises at
    import become one PgolfInputError line naming the module or the exception and its line.
    """
    path = Path(path)
    shipped = read_code(path)
    unwrapped = unwrap_source(shipped, path)  # a corrupt payload raises PgolfInputError here
    source = unwrapped.source if unwrapped else shipped
    filename = str(path) if unwrapped is None else f"{path} (unwrapped)"
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise PgolfInputError(path, f"script does not parse: {exc.msg} at line {exc.lineno}") from None
    stand_ins = install_stand_ins(source, stream)
    digest = hashlib.sha256(shipped + repr(sorted((env or {}).items())).encode()).hexdigest()[:12]
    name = f"pgolf_script_{digest}_{next(_counter)}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses and typing resolve the defining module by name
    try:
        # a script's prints go to stderr: stdout carries pgolf's report (and --json)
        with environment(env), contextlib.redirect_stdout(sys.stderr):
            exec(code, module.__dict__)
    except ModuleNotFoundError as exc:
        sys.modules.pop(name, None)
        hint = " (GPU-only: it needs a CUDA machine, or --factory to build the model another way)" \
            if (exc.name or "").split(".")[0] in ("triton", "flash_attn_interface", "flash_attn") else ""
        raise PgolfInputError(path, f"script imports {exc.name}{_script_line(exc, filename)}, which is not "
                                    f"installed here{hint}") from None
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from a script's top level too
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PgolfInputError(path, f"script raised {_one_line(exc)}{_script_line(exc, filename)} while "
                                    f"being imported") from None
    info = ScriptInfo(str(path), len(shipped), unwrapped.inner_bytes if unwrapped else None,
                      tuple(unwrapped.layers) if unwrapped else (), tuple(stand_ins), source=source)
    return module, info


def normalise_keys(sd: dict) -> dict:
    """Drop torch.compile's `_orig_mod.` and DDP's `module.` prefixes (and compiled submodules')."""
    out = {}
    for key, value in sd.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key.replace("._orig_mod.", ".")] = value
    return out


def mismatch(model: nn.Module, sd: dict[str, Tensor]) -> str | None:
    """One line naming the first missing and unexpected keys and the first shape difference."""
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [k for k in want if k in sd and tuple(want[k].shape) != tuple(sd[k].shape)]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            parts.append(f"{label} {keys[0]}" + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""))
    if shapes:
        k = shapes[0]
        parts.append(f"{k} is {tuple(sd[k].shape)} in the file, {tuple(want[k].shape)} in the model"
                     + (f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else ""))
    return "; ".join(parts) or None


def load_strict(model: nn.Module, sd: dict[str, Tensor], path, hint: str = "") -> nn.Module:
    problem = mismatch(model, sd)
    if problem:
        raise PgolfInputError(path, f"state dict does not fit the script's model: {problem}{hint}") from None
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise PgolfInputError(path, f"state dict does not fit the script's model: "
                                    f"{str(exc).strip().splitlines()[-1].strip()}") from None
    return model


def _constructor_call(cls: type, h, path) -> tuple[tuple, dict, str]:
    """(args, kwargs, description) to call `cls` with the hyperparameters object `h`."""
    params = [p for p in list(pyinspect.signature(cls.__init__).parameters.values())[1:]
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = [p for p in params if p.default is p.empty]
    if h is not None and len(required) == 1 and not hasattr(h, required[0].name):
        return (h,), {}, f"GPT({type(h).__name__}())"
    kwargs = {}
    for p in params:
        if h is not None and hasattr(h, p.name):
            kwargs[p.name] = getattr(h, p.name)
        elif p.default is p.empty:
            source = "the script's Hyperparameters does not define it" if h is not None else \
                "the script has no Hyperparameters class"
            raise PgolfInputError(path, f"GPT.__init__ needs argument {p.name!r}, which pgolf cannot supply: "
                                        f"{source} (set it through --env if the script reads it from the "
                                        f"environment, or build the model with --factory FILE.py:function)") from None
    return (), kwargs, f"GPT(**Hyperparameters: {len(kwargs)} keyword arguments)"


def build_from_module(module: types.ModuleType, path) -> tuple[nn.Module, str, object]:
    """(model, how it was built, hyperparameters object or None) from an imported script."""
    cls = getattr(module, "GPT", None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise PgolfInputError(path, "script defines no GPT class (an nn.Module); build the model with "
                                    "--factory FILE.py:function instead") from None
    h = None
    hp = getattr(module, "Hyperparameters", None)
    if isinstance(hp, type):
        try:
            h = hp()
        except Exception as exc:
            raise PgolfInputError(path, f"Hyperparameters() raised {_one_line(exc)}") from None
    args, kwargs, how = _constructor_call(cls, h, path)
    try:
        model = cls(*args, **kwargs)
    except Exception as exc:
        filename = getattr(getattr(cls.__init__, "__code__", None), "co_filename", "")
        raise PgolfInputError(path, f"GPT(...) raised {_one_line(exc)}{_script_line(exc, filename)}") from None
    return model, how, h


def outside_settings(source: bytes, model: nn.Module) -> tuple[str, ...]:
    """`x.attr = constant` assignments in the script (outside any `self.`) to a plain attribute of
    the built model whose value differs: switches its training flips before evaluating (depth
    recurrence's `looping_active = True`), as "attr=value (line N)".

    >>> m = nn.Module(); m.looping_active = False
    >>> outside_settings(b"model.looping_active = True\\nself.looping_active = False\\n", m)
    ('looping_active=True (line 1)',)
    """
    found = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.value, ast.Constant)):
            continue
        target = node.targets[0]
        if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)) or target.value.id == "self":
            continue
        attr, value = target.attr, node.value.value
        if attr in vars(model) and not isinstance(vars(model)[attr], (nn.Module, Tensor)) \
                and vars(model)[attr] != value and attr not in found:
            found[attr] = f"{attr}={value!r} (line {node.lineno})"
    return tuple(found.values())


def load_factory(spec: str, env: dict[str, str] | None = None, stream=None):
    """`FILE.py:function` -> (the function, ScriptInfo of FILE)."""
    file, sep, func = str(spec).rpartition(":")
    if not sep or not file or not func.isidentifier():
        raise PgolfInputError(None, f"--factory {spec!r}: expected FILE.py:function")
    module, info = import_script(file, env, stream)
    fn = getattr(module, func, None)
    if not callable(fn):
        raise PgolfInputError(file, f"defines no function {func!r} for --factory") from None
    return fn, info


@dataclasses.dataclass
class ScriptModel:
    """A model built from a participant's script (or factory), holding `state_dict`."""

    model: nn.Module
    state_dict: dict[str, Tensor]
    info: ScriptInfo
    module: types.ModuleType | None = None
    hparams: object = None

    @property
    def vocab_size(self) -> int | None:
        emb = self.state_dict.get("tok_emb.weight")
        if emb is not None and emb.dim() == 2:
            return int(emb.shape[0])
        value = getattr(self.hparams, "vocab_size", None)
        return int(value) if value is not None else None

    @property
    def seq_len(self) -> int | None:
        for key in ("eval_seq_len", "train_seq_len"):
            value = getattr(self.hparams, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None


def script_model(sd: dict[str, Tensor] | None, script=None, env=None, factory: str | None = None, path=None,
                 stream=None) -> ScriptModel:
    """Build the participant's model for `sd` (keys normalised) and load it strictly; with
    `sd=None` (script only) the freshly initialised model and its own state dict.

    The model keeps its own dtypes here; `pgolf.trainer.devices.prepare_model` sets them for
    evaluation. `path` names the weights in messages.
    """
    if sd is None and factory is not None:
        raise ValueError("a factory needs the state dict it builds the model for")
    if script is None and factory is None:
        raise ValueError("script_model needs a script or a factory")
    env = parse_env(env) if not isinstance(env, dict) else env
    sd = normalise_keys(sd) if sd is not None else None
    module = hparams = None
    hint = ""
    with environment(env), _eager():
        if script is not None:
            module, info = import_script(script, env, stream)
        if factory is not None:
            fn, finfo = load_factory(factory, env, stream)
            info = finfo if script is None else info
            try:
                model = fn(sd, module) if module is not None and _takes_two(fn) else fn(sd)
            except PgolfInputError:
                raise
            except Exception as exc:
                raise PgolfInputError(factory.rpartition(":")[0], f"factory raised {_one_line(exc)}") from None
            if not isinstance(model, nn.Module):
                raise PgolfInputError(factory.rpartition(":")[0], f"factory returned {type(model).__name__}, "
                                                                  f"not an nn.Module") from None
            how = f"factory {Path(factory.rpartition(':')[0]).name}:{factory.rpartition(':')[2]}"
        else:
            model, how, hparams = build_from_module(module, script)
            hint = f" (the model was built with {_env_text(env)}; set the script's size with --env KEY=VALUE)"
    if sd is None:
        sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    load_strict(model, sd, path, hint)
    identity = hashlib.sha256(f"{info.path}|{info.shipped_bytes}|{sorted(env.items())}|{factory}".encode())
    identity.update(Path(info.path).read_bytes())
    if script is not None and factory is not None:
        identity.update(Path(script).read_bytes())
    settings = outside_settings(info.source, model) if factory is None else ()
    info = dataclasses.replace(info, built_as=how, identity=identity.hexdigest(), outside_settings=settings)
    return ScriptModel(model.eval(), sd, info, module, hparams)


def _env_text(env: dict[str, str]) -> str:
    return "--env " + " ".join(f"{k}={v}" for k, v in env.items()) if env else "the script's defaults"


def _takes_two(fn) -> bool:
    try:
        return len(pyinspect.signature(fn).parameters) >= 2
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def _eager():
    """torch.compile as a no-op while the script is imported and built: pgolf evaluates eagerly."""
    import torch._dynamo

    old = torch._dynamo.config.disable
    torch._dynamo.config.disable = True
    try:
        yield
    finally:
        torch._dynamo.config.disable = old
