"""Inputs beyond mutated fixtures: defined orders, special files, sizes that lie, outputs that
must not destroy what pgolf did not write. Each case is bounded in time by running in a thread."""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import tracemalloc
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from conftest import default_sigint

from pgolf.budget.atomic import write_bytes_atomic
from pgolf.budget.files.cache import JsonCache
from pgolf.budget.errors import PgolfInputError
from pgolf.budget.exact.measure import measure_input
from pgolf.budget.quant.plans import load_plan
from pgolf.budget.exact.inputs import load_bytes, load_input
from pgolf.figures.cli import main as pgolf
from pgolf.figures.demo.train import train_demo

BOUND_S = 60


def bounded(fn, *args):
    """fn(*args) in a worker thread; fails the test instead of hanging it."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(fn, *args).result(timeout=BOUND_S)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _many_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"blocks.{i}.w": torch.randn(64, 64, generator=g) for i in range(12)}


def test_safetensors_order_is_the_files_own_and_bytes_do_not_change_between_loads():
    data = st_save(_many_tensors())
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    orders = {tuple(load_bytes(data).state_dict) for _ in range(8)}
    assert orders == {tuple(k for k in header if k != "__metadata__")}
    sizes = {measure_input(load_bytes(data), "int6", "zlib", per_tensor=False).headline["bytes_model"]
             for _ in range(4)}
    assert len(sizes) == 1


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    return path


def test_a_named_pipe_is_refused_wherever_json_is_read(fifo, tmp_path):
    with pytest.raises(PgolfInputError, match="not a regular file"):
        bounded(load_plan, fifo)
    with pytest.raises(PgolfInputError, match="not a regular file"):
        bounded(load_input, fifo)
    cache = JsonCache(tmp_path / "cache", ("k",))
    key = {"k": 1}
    entry = cache.path_for(cache.check_key(key))
    entry.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(entry)
    assert bounded(cache.get, key) is None
    assert entry.exists()  # not pgolf's file: skipped, not deleted


def test_a_sparse_file_claiming_gigabytes_is_refused_before_reading(tmp_path):
    big = tmp_path / "huge.pt"
    with open(big, "wb") as f:
        f.truncate(8_000_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(PgolfInputError, match="8,000,000,000 bytes, over the"):
            bounded(load_input, big)
        assert tracemalloc.get_traced_memory()[1] < 10_000_000
    finally:
        tracemalloc.stop()


def test_budget_write_artifact_refuses_the_input_and_leaves_it_alone(tmp_path, capsys):
    model = tmp_path / "m.pt"
    torch.save(_many_tensors(), model)
    before = model.read_bytes()
    assert pgolf(["budget", str(model), "--plan", "int6", "--write-artifact", str(model)]) == 2
    assert "output would overwrite an input file" in capsys.readouterr().err
    assert model.read_bytes() == before


def test_atomic_write_goes_through_a_link_and_names_unwritable_places(tmp_path):
    target = tmp_path / "real.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    write_bytes_atomic(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PgolfInputError, match="afile/out.bin: cannot write"):
        write_bytes_atomic(tmp_path / "afile" / "out.bin", b"data")
    with pytest.raises(PgolfInputError, match="not a regular file"):
        write_bytes_atomic(tmp_path, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "link.bin", "real.bin"]  # no temp litter


def test_demo_never_deletes_a_folder_it_did_not_write(tmp_path):
    mine = tmp_path / "train"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(PgolfInputError, match="was not written by pgolf demo"):
        train_demo(mine)
    assert (mine / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("argv, problem", [
    (["budget", "--baseline", "--cap", "1e999"], "argument --cap: expected a whole number"),
    (["budget", "--baseline", "--cap", "inf"], "argument --cap: expected a whole number"),
    (["predict", "--layers", "1000000000000"], "argument --layers: expected a whole number from 1 to 10,000"),
    (["predict", "--mlp-mult", "nan"], "argument --mlp-mult: expected a finite number"),
    (["budget", "--baseline", "--plan", "int6:group(1e999)"], "must be a finite number"),
    (["train", "--logit-softcap", "nan", "--out-dir", "never"], "argument --logit-softcap: expected a finite number"),
])
def test_edge_numbers_are_one_line_exit_2(argv, problem, capsys):
    try:
        code = bounded(pgolf, argv)  # a flag's type error exits through argparse, a plan's returns 2
    except SystemExit as done:
        code = done.code
    err = capsys.readouterr().err
    assert code == 2 and problem in err and "Traceback" not in err


def test_fp16_passthrough_overflow_is_refused_not_stored_as_inf(tmp_path, capsys):
    model = tmp_path / "big.pt"
    torch.save({"w": torch.randn(10, 10), "big": torch.tensor([1.0, 70_000.0, -3.0])}, model)
    assert pgolf(["budget", str(model), "--plan", "official-int8"]) == 2
    err = capsys.readouterr().err
    assert "tensor 'big' under fp16: 1 value beyond fp16's range (max |w| = 70000)" in err and err.count("\n") == 1


def test_a_plan_regex_with_nested_repetition_is_refused_quickly(tmp_path, capsys):
    plan = tmp_path / "redos.json"
    plan.write_text(json.dumps({"format": "pgolf-plan-v1", "rules": [
        {"pattern": r"^((([a-z_.0-9])+)+)+\d$", "scheme": "int6"}]}))
    assert bounded(pgolf, ["budget", "--baseline", "--plan", str(plan)]) == 2
    assert "repeats a repetition" in capsys.readouterr().err


@pytest.mark.parametrize("config, problem", [
    ({"logit_softcap": "nan"}, "config logit_softcap is 'nan'; expected a finite positive number"),
    ({"logit_softcap": float("nan")}, "config logit_softcap is 'nan'"),
    ({"rope_base": float("inf")}, "config rope_base is 'inf'"),
    ({"logit_softcap": -1.0}, "config logit_softcap is '-1.0'"),
    ({"train_seq_len": 0}, "config train_seq_len is '0'; expected a finite positive whole number"),
    ({"train_seq_len": "two"}, "config train_seq_len is 'two'"),
    ({"qk_gain_init": [1.5]}, "config qk_gain_init is '[1.5]'; expected a finite number"),
    ({"num_layers": 10**400}, "config num_layers is"),
])
def test_impossible_config_values_are_refused(config, problem):
    from pgolf.budget.forecast.shapes import baseline_specs, synthetic_state_dict
    from pgolf.inspect.load import infer_architecture

    sd = synthetic_state_dict(baseline_specs(num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, vocab_size=64))
    with pytest.raises(PgolfInputError, match=re.escape(f"sidecar.json: {problem}")):
        infer_architecture(sd, config, "sidecar.json")
    assert infer_architecture(sd, {"logit_softcap": 12, "train_seq_len": 64.0}).train_seq_len == 64


def test_greedy_allocation_ends_with_infinite_and_nan_gaps():
    from pgolf.inspect.allocate import Option, greedy

    inf = float("inf")
    options = {"a": [Option("int4", 10, inf), Option("int5", 10, inf), Option("int8", 20, 0.1)],
               "b": [Option("int4", 10, inf), Option("int6", 15, 0.2), Option("int8", 20, 0.0)]}
    assert bounded(greedy, options, 20) == {"a": "int4", "b": "int4"}  # int4 -> int5 is inf - inf: no move
    assert bounded(greedy, options, 35) == {"a": "int8", "b": "int6"}
    assert bounded(greedy, options, 40) == {"a": "int8", "b": "int8"}
    options["b"][1] = Option("int6", 15, float("nan"))
    with pytest.raises(PgolfInputError, match="the gap of b under int6 is NaN"):
        bounded(greedy, options, 40)


def _peak_rss_of_pgolf(argv: list[str]) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in bytes) of `pgolf ARGV` in a fresh process."""
    import subprocess
    import sys

    code = ("import resource, sys\nfrom pgolf.figures.cli import main\n"
            f"code = main({argv!r})\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND_S)
    lines = done.stderr.strip().splitlines()
    return done.returncode, "\n".join(lines[:-1]), int(lines[-1]) * 1024  # ru_maxrss is in KiB on Linux


def test_small_files_that_decode_to_huge_tensors_are_refused_under_2_gb(tmp_path):
    view = tmp_path / "view.pt"
    torch.save({"w": torch.zeros(1).expand(20_000, 20_000)}, view)  # stored: 4 bytes; dense: 1.6 GB
    assert view.stat().st_size < 10_000
    code, err, peak = _peak_rss_of_pgolf(["budget", str(view), "--plan", "int6"])
    assert code == 2 and "would take over 1,500,000,000 bytes once materialised" in err, err
    assert peak < 2_000_000_000


def test_an_export_declaring_float64_for_int8_values_is_refused_before_decoding(tmp_path):
    import io
    import zlib as zlib_module

    from pgolf.budget.quant import official

    q = torch.zeros(12_000, 16_000, dtype=torch.int8)  # 192 MB of int8, 1.5 GB as float64
    obj = {"__quant_format__": official.FORMAT_TAG, "quantized": {"w": q},
           "scales": {"w": torch.ones(12_000, dtype=torch.float16)}, "dtypes": {"w": "float64"}, "passthrough": {}}
    buf = io.BytesIO()
    torch.save(obj, buf)
    ptz = tmp_path / "m.ptz"
    ptz.write_bytes(zlib_module.compress(buf.getvalue(), 9))
    with pytest.raises(PgolfInputError, match="would take 1,536,000,000 bytes decoded"):
        bounded(load_input, ptz)


def test_a_container_declaring_more_decoded_bytes_than_the_limit_is_refused_before_unpacking(monkeypatch):
    from pgolf.budget.exact import decode
    from pgolf.budget.exact.build import build_artifact

    blob = build_artifact({"w": torch.randn(300, 300)}, "binary", "zlib")  # 90,000 values, 360,000 bytes decoded
    assert decode.read_artifact(blob)["w"].shape == (300, 300)
    monkeypatch.setattr(decode, "MAX_DENSE_BYTES", 359_999)
    with pytest.raises(PgolfInputError, match="would take 360,000 bytes decoded, over the 359,999-byte limit"):
        decode.read_artifact(blob)


def test_fp8_tensors_and_huge_rows_under_the_official_rule(tmp_path, capsys):
    fp8 = tmp_path / "fp8.pt"
    torch.save({"w": torch.randn(300, 300, generator=torch.Generator().manual_seed(0)).to(torch.float8_e4m3fn)}, fp8)
    assert pgolf(["budget", str(fp8), "--json", "--quiet"]) == 0  # the baseline's export holds float8 too
    assert json.loads(capsys.readouterr().out)["roundtrip_exact"] is True
    big = tmp_path / "big.pt"
    w = torch.randn(300, 300)
    w[0] *= 1e30
    torch.save({"w": w}, big)
    assert pgolf(["budget", str(big)]) == 2
    assert "a row scale beyond fp16's range" in capsys.readouterr().err


def test_compare_refuses_two_plans_of_one_name(tmp_path, capsys):
    plan = tmp_path / "int6.json"
    plan.write_text(json.dumps({"format": "pgolf-plan-v1", "name": "int6", "rules": [{"pattern": "w", "scheme": "int6"}]}))
    assert pgolf(["compare", "--baseline", "--plans", f"int6,{plan}"]) == 2
    assert "two plans are named 'int6'" in capsys.readouterr().err


@pytest.mark.parametrize("flags, problem", [
    (["--num-heads", "3", "--model-dim", "64"], "heads must divide the width"),
    (["--model-dim", "0"], "MODEL_DIM=0 must be at least 1"),
    (["--resume", "nope.safetensors"], "--resume needs a checkpoint"),
])
def test_pgolf_train_refuses_impossible_runs_before_starting(flags, problem, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pgolf(["train", *flags, "--out-dir", "run", "--device", "cpu"]) == 2
    assert problem in capsys.readouterr().err and not (tmp_path / "run").exists()
    (tmp_path / "afile").write_text("x")
    assert pgolf(["train", "--out-dir", "afile", "--device", "cpu"]) == 2
    assert "--out-dir is a file" in capsys.readouterr().err


def test_json_with_a_5000_digit_number_or_100000_levels_is_one_line(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text('{"format": "pgolf-plan-v1", "rules": [], "keep_float_max_numel": ' + "9" * 5000 + "}")
    assert pgolf(["budget", "--baseline", "--plan", str(plan)]) == 2
    assert "plan file is not valid JSON (Exceeds the limit" in capsys.readouterr().err
    deep = tmp_path / "deep.json"
    deep.write_text('{"tensors": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert pgolf(["plot", "headroom", str(deep), "-o", str(tmp_path / "out")]) == 2
    assert "not usable JSON: maximum recursion depth" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_ascii_terminal_and_a_non_ascii_path_print_escaped(tmp_path):
    import os
    import subprocess
    import sys

    folder = tmp_path / "modèle"
    folder.mkdir()
    torch.save({"w": torch.randn(30, 30)}, folder / "m.pt")
    done = subprocess.run([sys.executable, "-m", "pgolf.figures.cli", "budget", str(folder / "m.pt")],
                          capture_output=True, timeout=BOUND_S, env=dict(os.environ, PYTHONIOENCODING="ascii"))
    assert done.returncode == 0, done.stderr.decode("ascii", "replace")[-500:]
    assert b"mod\\xe8le" in done.stdout and b"Traceback" not in done.stderr


@pytest.mark.parametrize("name, as_key", [("key.pt", True), ("tag.ptz", False)])
def test_a_pickle_of_shared_tuples_is_refused_in_bounded_time_and_memory(tmp_path, name, as_key):
    import zlib

    from bad_inputs import shared_tuple_pickle, with_pickle
    from pgolf.budget.files.validate import short_repr

    pkl = shared_tuple_pickle(40, as_key)  # 2^40 objects once expanded
    data = pkl if as_key else zlib.compress(with_pickle(pkl), 9)
    assert len(data) < 600
    (tmp_path / name).write_bytes(data)
    code, err, peak = _peak_rss_of_pgolf(["budget", str(tmp_path / name)])  # a hang fails by the subprocess timeout
    assert code == 2 and err.count("\n") == 0 and "expands to over 5,000,000 objects through shared references" in err
    assert peak < 2_000_000_000
    deep = ()
    for _ in range(200):
        deep = (deep, deep)
    assert len(bounded(short_repr, deep)) <= 63  # and a message never prints one unbounded


def test_ctrl_c_stops_compare_promptly_with_one_line(tmp_path):
    """12 pairs of slow codecs (zpaq, best: seconds per MB, read back too) take minutes on 2 cores;
    SIGINT mid-way ends the process at once: queued pairs cancelled, running ones not waited on."""
    import signal
    import subprocess
    import sys
    import time

    g = torch.Generator().manual_seed(0)
    torch.save({f"blocks.{i}.w": torch.randn(512, 512, generator=g) * 0.02 for i in range(4)}, tmp_path / "m.pt")
    argv = ["compare", str(tmp_path / "m.pt"), "--plans", "int4,int5,int6,int8", "--compressors", "zpaq,best,brotli"]
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pgolf.figures.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            preexec_fn=default_sigint)
    time.sleep(12)  # imports, load and quantize take a few seconds; the compressions tens of seconds more
    assert proc.poll() is None, "finished before it could be interrupted"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    latency = time.monotonic() - sent
    assert proc.returncode == 130 and err.decode().splitlines() == ["pgolf: interrupted"], err[-500:]
    assert out == b"" and latency < 10, f"exit {latency:.1f} s after SIGINT ({sent - started:.1f} s in)"


@pytest.mark.parametrize("kind, header, row", [
    ("headroom", "plan,compressor,bytes_total,val_bpb,cap", "int6,zlib,15000000,{v},16000000"),
    ("headroom", "plan,compressor,bytes_total,val_bpb,cap", "int6,zlib,15000000,1.25,{v}"),
    ("tensor-bytes", "name,kind,values_bytes,scales_bytes,payload_bytes", "a.w,int6,{v},20,1020"),
    ("compressors", "scheme,compressor,compressed_bytes,entropy_bytes", "int6,zlib,1000,{v}"),
    ("squeeze", "name,entropy_bytes,zlib_bytes,ans_bytes", "a.w,900,{v},920"),
    ("quant-gap", "name,gap_only_this_bpb,scheme", "a.w,{v},int6"),
])
@pytest.mark.filterwarnings("error::RuntimeWarning")  # an overflow inside matplotlib is no sane plot
@pytest.mark.parametrize("value", ["1e308", "-1e308", "inf", "nan", "1e999", "5e-324", "9" * 30])
def test_plot_with_extreme_values_is_one_line_or_a_plot(kind, header, row, value, tmp_path, capsys):
    data = tmp_path / "in.csv"
    data.write_text("\n".join([header, row.format(v=value), row.replace("{v}", "7").replace("a.w", "b.w")
                               .replace("int6,zlib", "int8,zstd")]) + "\n")
    code = bounded(pgolf, ["plot", kind, str(data), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    if code == 0:
        assert (tmp_path / "out" / f"{kind}.png").stat().st_size > 1000 and err == ""
    else:
        assert code == 2 and err.count("\n") == 1 and err.startswith("pgolf: error: ") and not (tmp_path / "out").exists()
    if value in ("1e308", "inf", "1e999") and "{v}," in row:
        assert code == 2 and "beyond ±1e+15" in err


def test_complex_tensors_are_stored_as_the_official_export_stores_them(tmp_path, capsys):
    """The baseline's export passes non-float tensors through, complex included: pgolf's
    official-int8 artifact is the export's own bytes, and its containers keep them exactly."""
    import io
    import zlib

    from pgolf.budget.exact.build import build_artifact
    from pgolf.budget.exact.decode import read_artifact
    from pgolf.budget.quant.official import quantize_state_dict_int8

    g = torch.Generator().manual_seed(0)
    sd = {"w": torch.randn(300, 300, generator=g), "c": torch.randn(4, 8, dtype=torch.complex128, generator=g),
          "z": torch.tensor(1 + 2j, dtype=torch.complex128), "big": torch.randn(300, 300, dtype=torch.complex64, generator=g)}
    buf = io.BytesIO()
    torch.save(quantize_state_dict_int8(sd)[0], buf)
    assert build_artifact(sd, "official-int8", "zlib") == zlib.compress(buf.getvalue(), 9)
    back = read_artifact(build_artifact(sd, "int6", "zstd"))
    assert all(torch.equal(back[k], sd[k]) and back[k].dtype == sd[k].dtype for k in ("c", "z", "big"))
    torch.save(sd, tmp_path / "c.pt")
    assert pgolf(["budget", str(tmp_path / "c.pt"), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["roundtrip_exact"] is True
    torch.save({"h": torch.ones(3, dtype=torch.complex64).to(torch.complex32)}, tmp_path / "half.pt")
    assert pgolf(["budget", str(tmp_path / "half.pt")]) == 2
    assert "complex32 is experimental in torch" in capsys.readouterr().err
