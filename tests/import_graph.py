"""pgolf's modules and what each imports (module level and inside functions), read with `ast`."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

AREAS = ("budget", "trainer", "inspect", "figures")  # lowest first: an area imports only those before it
# Rooms of budget/, lowest first; a module imports only its own room or lower ones.
BUDGET_ROOMS = ("base", "quant", "files", "exact", "forecast", "commands")
BUDGET_TOP = {"commands": "commands", "predict_commands": "commands", "squeeze_commands": "commands"}  # the rest of budget/*.py is the base
STANDALONE = {"pgolf.trainer.train_gpt"}  # the official-style script: never imports pgolf


def modules() -> dict[str, Path]:
    """Every pgolf module name -> its file (the areas, their rooms, and src/pgolf)."""
    found = {}
    for area in AREAS:
        for path in sorted((ROOT / area).rglob("*.py")):
            rel = path.relative_to(ROOT / area).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join(["pgolf", area, *parts])] = path
    found["pgolf"] = ROOT / "src" / "pgolf" / "__init__.py"
    return {name: path for name, path in found.items() if path.exists()}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The pgolf modules a file imports anywhere in it (function bodies and importlib strings too)."""
    out = set()

    def add(name: str, names=()):
        for sub in names:  # `from pgolf.budget.quant import official` imports the module official
            if f"{name}.{sub}" in known:
                out.add(f"{name}.{sub}")
        if name in known and not any(f"{name}.{sub}" in known for sub in names):
            out.add(name)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            add(node.module, [a.name for a in node.names])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant):
            add(str(node.args[0].value))
    return {m for m in out if m.startswith("pgolf")}


def graph() -> dict[str, set[str]]:
    """Module -> the pgolf modules it imports (self-imports dropped)."""
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def layer(module: str) -> tuple[int, int]:
    """(area rank, room rank inside budget/) of a module; `pgolf` itself sits above every area."""
    parts = module.split(".")
    if len(parts) == 1:
        return (len(AREAS), 0)
    area = AREAS.index(parts[1])
    if parts[1] != "budget" or len(parts) == 2:
        return (area, 0)
    room = parts[2] if parts[2] in BUDGET_ROOMS else BUDGET_TOP.get(parts[2], "base")
    return (area, BUDGET_ROOMS.index(room))
