"""Dependencies point one way: figures -> inspect -> trainer -> budget, and down the rooms of budget/
(base <- quant <- files <- exact <- forecast <- commands); no module imports its way back to itself.
Imports inside functions count: they are imports all the same."""
from __future__ import annotations

import pytest

from import_graph import AREAS, BUDGET_ROOMS, STANDALONE, graph, imports_of, layer, modules

GRAPH = graph()


def test_graph_sees_every_area_and_room():
    names = set(GRAPH)
    assert {f"pgolf.{a}.commands" for a in ("budget", "trainer", "inspect", "figures")} <= names
    for room in BUDGET_ROOMS[1:-1]:
        assert any(n.startswith(f"pgolf.budget.{room}.") for n in names), room
    assert "pgolf.budget.exact.decode" in GRAPH["pgolf.budget.exact.inputs"]


def test_function_level_and_importlib_imports_are_seen(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from pgolf.budget.quant import official\n"
                   "    import importlib\n    importlib.import_module('pgolf.inspect.gaps')\n")
    assert imports_of(src, set(modules())) == {"pgolf.budget.quant.official", "pgolf.inspect.gaps"}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_its_own_layer_or_lower(module):
    up = sorted(d for d in GRAPH[module] if layer(d) > layer(module))
    assert up == [], f"{module} imports a higher layer: {up} (order {AREAS}, budget rooms {BUDGET_ROOMS})"


def test_script_and_budget_never_import_the_trainer_script():
    users = sorted(m for m, deps in GRAPH.items() if STANDALONE & deps and not m.startswith(("pgolf.inspect",
                   "pgolf.figures", "pgolf.trainer")))
    assert users == []
    assert not any(d.startswith("pgolf") for s in STANDALONE for d in GRAPH[s])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(GRAPH) == []
