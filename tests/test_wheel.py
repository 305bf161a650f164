"""The built wheel holds every sub-package and the data files: built from a copy of the checkout,
installed into a scratch folder, imported from there (not from this checkout)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from conftest import ROOT

AREAS = ("budget", "inspect", "trainer", "figures")

PROBE = r"""
import importlib, json, sys
import pgolf
files = {name: importlib.import_module(name).__file__ for name in json.loads(sys.argv[1])}
from pgolf.budget.forecast.calibration import load_weight_stats
from pgolf.budget.forecast.estimate import load_fit
data = {"weight_stats": sorted(load_weight_stats()["roles"]), "fit": sorted(load_fit())[:3],
        "version": pgolf.__version__}
print(json.dumps({"files": files, "data": data}))
"""


def expected_members() -> set[str]:
    """Wheel paths of every module and data file the checkout has."""
    out = {"pgolf/__init__.py"}
    for area in AREAS:
        for path in (ROOT / area).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".json"):
                out.add(f"pgolf/{area}/{path.relative_to(ROOT / area).as_posix()}")
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the checkout's files")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    (whl,) = (tmp / "dist").glob("pgolf-*.whl")
    site = tmp / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(whl)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return whl, site


def test_wheel_holds_every_module_and_data_file(wheel):
    whl, _ = wheel
    names = set(zipfile.ZipFile(whl).namelist())
    missing = sorted(expected_members() - names)
    assert missing == []
    assert not any(n.startswith(("tests/", "src/", "notebooks/")) for n in names)


def test_pyproject_lists_every_subpackage():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"pgolf"} | {f"pgolf.{a}" for a in AREAS} | {
        "pgolf." + ".".join((a, *p.parent.relative_to(ROOT / a).parts)) for a in AREAS
        for p in (ROOT / a).rglob("__init__.py")}
    assert listed == found


def test_installed_wheel_imports_everything_and_reads_its_data(wheel, tmp_path):
    _, site = wheel
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    want = sorted({m.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for m in expected_members()
                   if m.endswith(".py") and not m.endswith("train_gpt.py")})
    run = subprocess.run([sys.executable, "-c", PROBE, json.dumps(want)], cwd=tmp_path, capture_output=True, text=True,
                         env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    files = out["files"]
    assert all(f.startswith(str(site)) for f in files.values()), [f for f in files.values() if not f.startswith(str(site))]
    assert sorted(files) == want and len(want) > 60
    assert out["data"]["weight_stats"] and out["data"]["fit"]
    assert out["data"]["version"] == "0.1.0"
