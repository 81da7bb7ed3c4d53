"""The package's layering, read from the source (lazy imports inside functions included).

- no import cycle between the package's modules;
- the guard, the observation and the control-plane core do not depend on the simulator
  (a production controller runs them without one);
- nothing in ``shift_rl.controller`` reaches the env, the vector env or the env's batch;
- the exported-policy runtime needs numpy alone (no torch, no SB3, no training side).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shift_rl"


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: all but the bodies of ``if TYPE_CHECKING:`` blocks (imports
    for type hints only, never executed)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def imports_of(module: str) -> dict[str, set[str]]:
    """{'package': internal modules imported, 'external': top-level external packages}."""
    tree = ast.parse(MODULES[module].read_text())
    internal: set[str] = set()
    external: set[str] = set()
    for node in _runtime_nodes(tree):  # every import, module level or in functions
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("shift_rl"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    internal.add(full if full in MODULES else _resolve(node.module) or "")
                continue
            names = [node.module]
        for name in names:
            if name.startswith("shift_rl"):
                internal.add(_resolve(name) or "")
            else:
                external.add(name.split(".")[0])
    internal.discard(module)
    internal.discard("")
    return {"package": internal, "external": external}


GRAPH = {m: imports_of(m)["package"] for m in MODULES}


def closure(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        for dep in GRAPH[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_the_reader_sees_lazy_imports_and_skips_type_hints() -> None:
    # the forecaster registry and the figures are imported inside functions
    assert "shift_rl.forecast" in GRAPH["shift_rl.config"]
    assert "shift_rl.plots" in GRAPH["shift_rl.evaluate"]
    assert "shift_rl.core" in GRAPH["shift_rl.plane"]
    # plots names EvaluationReport for type hints only (under TYPE_CHECKING)
    assert "shift_rl.evaluate" not in GRAPH["shift_rl.plots"]


def test_no_import_cycle() -> None:
    assert cycles() == []


@pytest.mark.parametrize("module", ["shift_rl.safety", "shift_rl.observation", "shift_rl.core"])
def test_tick_parts_do_not_depend_on_the_simulator(module: str) -> None:
    sim = sorted(m for m in closure(module) if m == "shift_rl.sim" or m.startswith("shift_rl.sim."))
    assert sim == [], f"{module} reaches {sim}"


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m.startswith("shift_rl.controller"))
)
def test_controller_does_not_reach_the_env(module: str) -> None:
    env = {"shift_rl.env", "shift_rl.vector", "shift_rl.plane", "shift_rl.training_envs"}
    assert sorted(closure(module) & env) == [], module


RUNTIME = {"shift_rl.runtime", "shift_rl.policyfile", "shift_rl.modular"}
"""The exported-policy runtime: the MLP runtime, the policy file primitives, the modular net."""


@pytest.mark.parametrize("module", sorted(RUNTIME))
def test_runtime_needs_numpy_alone(module: str) -> None:
    """Loading and running an exported policy (either kind) needs numpy and nothing of the
    package beyond the runtime's own three modules."""
    deps = imports_of(module)
    # the modular net reads an unbound observation's names with the observation's own
    # naming (a lazy import, only for an observation of no scenario); nothing else
    lazy = {"shift_rl.observation"} if module == "shift_rl.modular" else set()
    assert deps["package"] - lazy <= RUNTIME - {module}
    assert deps["external"] - {"__future__", "hashlib", "json", "os", "zipfile", "dataclasses",
                               "pathlib", "typing", "math", "io", "logging", "re", "stat",
                               "zlib", "collections"} <= {"numpy"}  # fmt: skip
