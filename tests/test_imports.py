"""The package's import rules, read from its source: layers point one way, and nothing cycles.

- `render/` (the sinks) imports nothing from `backends/`;
- `backends/` imports nothing from `render/` or from the command modules;
- `tokens/` and `llama/` import nothing from `backends/`;
- the layers read top to bottom (LAYERS): an import only goes down a layer, or stays in its own;
- no cycle among the packages (and top-level modules), nor among the modules' imports of any
  kind: at the top of a module, inside a function, or for the type checker alone (a type-only
  circle is still two modules that need each other).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wai

PACKAGE = Path(wai.__file__).parent
# The modules that run a command (and `wai chat`'s pieces): the top of the flow of a turn.
COMMAND_PACKAGES = ("wai.commands", "wai.serve")
COMMAND_MODULES = {"wai.app", "wai.turn.play", "wai.turn.planner"}


# Top to bottom: the command line, the turn planner, backends and sinks, what they plan with
# (tokens and windows, catalog, transcripts, the llama.cpp binding, the schema a reply follows),
# and the small values every layer shares.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__main__", "launch", "app", "commands", "serve"}),
    frozenset({"turn"}),
    frozenset({"backends", "render"}),
    frozenset({"tokens", "catalog", "store", "llama", "schema"}),
    frozenset(
        {
            "wai",
            "settings",
            "terminal",
            "notices",
            "providers",
            "errors",
            "events",
            "pricing",
            "conversation",
            "sampling",
            "turn_result",
            "toml_files",
            "wording",
        }
    ),
)


def _unit(name: str) -> str:
    """The package (or top-level module) of wai that module `name` belongs to: `wai` for wai itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _layer(unit: str) -> int:
    found = [index for index, layer in enumerate(LAYERS) if unit in layer]
    assert found, f"wai.{unit} is in no layer: put it in LAYERS"
    return found[0]


def _is_command(name: str) -> bool:
    return name in COMMAND_MODULES or name.startswith(tuple(f"{p}." for p in COMMAND_PACKAGES))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, *, typing_only_too: bool) -> set[str]:
    """The wai modules `path` imports, wherever the import statement stands."""
    found: set[str] = set()

    def visit(node: ast.AST, for_typing: bool) -> None:
        for child in ast.iter_child_nodes(node):
            typing_block = for_typing or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            )
            counted = typing_only_too or not typing_block
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0 and counted:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    found.add(full if full in MODULES else child.module)
            elif isinstance(child, ast.Import) and counted:
                found.update(alias.name for alias in child.names)
            visit(child, typing_block)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return {name for name in found if name in MODULES}


def test_render_imports_nothing_from_backends() -> None:
    wrong = {
        name: sorted(i for i in _imports(path, typing_only_too=True) if i.startswith("wai.backends"))
        for name, path in MODULES.items()
        if name.startswith("wai.render")
    }
    assert {name: found for name, found in wrong.items() if found} == {}


def test_backends_import_nothing_from_render_or_the_commands() -> None:
    wrong = {
        name: sorted(
            i for i in _imports(path, typing_only_too=True) if i.startswith("wai.render") or _is_command(i)
        )
        for name, path in MODULES.items()
        if name.startswith("wai.backends")
    }
    assert {name: found for name, found in wrong.items() if found} == {}
    assert MODULES.keys() >= COMMAND_MODULES  # a renamed command module must be renamed here too


def test_tokens_and_llama_reach_into_no_backend() -> None:
    # The counters and the llama.cpp binding are shared by the backends, not part of them.
    wrong = {
        name: sorted(i for i in _imports(path, typing_only_too=True) if i.startswith("wai.backends"))
        for name, path in MODULES.items()
        if name.startswith(("wai.tokens", "wai.llama"))
    }
    assert {name: found for name, found in wrong.items() if found} == {}


def test_imports_go_down_the_layers() -> None:
    upward = sorted(
        f"{name} -> {imported}"
        for name, path in MODULES.items()
        for imported in _imports(path, typing_only_too=True)
        if _layer(_unit(imported)) < _layer(_unit(name))
    )
    assert upward == []


def test_no_cycle_among_the_packages() -> None:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        graph.setdefault(_unit(name), set()).update(
            _unit(i) for i in _imports(path, typing_only_too=True) if _unit(i) != _unit(name)
        )
    done: set[str] = set()

    def reach(unit: str, trail: tuple[str, ...]) -> None:
        assert unit not in trail, " -> ".join((*trail, unit))
        if unit not in done:
            for other in sorted(graph.get(unit, ())):
                reach(other, (*trail, unit))
            done.add(unit)

    for unit in sorted(graph):
        reach(unit, ())


def test_no_import_cycle() -> None:
    graph = {name: _imports(path, typing_only_too=True) - {name} for name, path in MODULES.items()}
    cycles: list[list[str]] = []
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def connect(name: str) -> None:  # Tarjan's strongly connected components
        order[name] = low[name] = len(order)
        stack.append(name)
        for other in graph[name]:
            if other not in order:
                connect(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], order[other])
        if low[name] == order[name]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in graph:
        if name not in order:
            connect(name)
    assert cycles == []


@pytest.mark.e2e
def test_every_module_imports_alone() -> None:
    # Each module imported first, in a fresh interpreter: an order that only works because
    # another module happened to be imported before would fail here.
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    light = sorted(name for name in MODULES if name != "wai.__main__")
    for name in light:
        done = subprocess.run(
            [sys.executable, "-c", script, name], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"
