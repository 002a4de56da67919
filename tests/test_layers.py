"""The package's layers: each module imports only its own layer and those below, nothing imports in a cycle, and
only the plugin layer imports pytest, so the engine, the stores and the renderers work without a pytest run.

Read from the source of every module (not a hand list): imports inside functions and under TYPE_CHECKING count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_laj"

# Lowest first. A top-level module is its own layer; a subpackage is one layer.
LAYERS = ["errors", "core", "simulator", "judges", "store", "engine", "results", "render", "cli", "plugin"]
ABOVE_ALL = {"pytest_laj"}  # the package's public names, resolved lazily from every layer
PYTEST_LAYERS = {"plugin"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    return module if len(parts) == 1 else parts[1]


def _imports(module: str) -> set[str]:
    """Every module this one imports, absolute or relative, wherever the import statement stands."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return found


def _own(imported: set[str]) -> set[str]:
    return {name for name in imported if name in MODULES}


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = sorted(m for m in MODULES if m not in ABOVE_ALL and _layer(m) not in LAYERS)
    assert not unknown, f"modules outside every layer: {unknown}; add their layer to LAYERS"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in ABOVE_ALL))
def test_a_module_imports_only_its_layer_and_those_below(module: str) -> None:
    rank = LAYERS.index(_layer(module))
    upward = sorted(
        name for name in _own(_imports(module)) if name not in ABOVE_ALL and LAYERS.index(_layer(name)) > rank
    )
    assert not upward, f"{module} ({_layer(module)}) imports from layers above it: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) not in PYTEST_LAYERS))
def test_only_the_plugin_layer_imports_pytest(module: str) -> None:
    imported = _imports(module)
    assert not {n for n in imported if n.split(".")[0] in ("pytest", "_pytest")}, f"{module} imports pytest"


def test_no_module_imports_another_in_a_cycle() -> None:
    graph = {module: _own(_imports(module)) - {module} - ABOVE_ALL for module in MODULES}
    # A package's __init__ is imported with each of its modules: that edge is not a cycle of ours.
    graph = {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_layers_below_the_plugin_run_without_pytest() -> None:
    """Importing every module below the plugin layer loads no pytest (checked in a fresh interpreter)."""
    below = sorted(m for m in MODULES if m not in ABOVE_ALL and _layer(m) not in PYTEST_LAYERS and m != "pytest_laj")
    code = "import sys\n" + "".join(f"import {m}\n" for m in below)
    code += "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest'))\nassert not bad, bad\n"

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
