"""The shape of the package: layers without cycles, no private names across modules,
files a reader can hold, and imports that load only what they need."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "rmsprop"
MAX_LINES = 600


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for every import of the package's
    modules in ``path``, at any depth (imports inside functions count too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name in known]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            if base not in known:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule, None) if submodule in known else (base, alias.name))
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _ in imports(name, path, known):
            if target != name:
                edges[name].add(target)
    return edges


def test_no_module_imports_another_in_a_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_the_walk_sees_imports_inside_functions():
    """The cycle test has teeth: rmsprop._accel imports the kernels inside a function."""
    assert "rmsprop._kernels" in graph()["rmsprop._accel"]


def test_no_module_imports_a_private_name_of_another():
    known = modules()
    offences = []
    for name, path in known.items():
        for target, taken in imports(name, path, known):
            if taken is not None and taken.startswith("_") and not taken.startswith("__"):
                offences.append(f"{name} imports {taken} from {target}")
    assert offences == []


def test_no_file_is_longer_than_a_reader_can_hold():
    long = {
        str(path.relative_to(SRC)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize("statement", ["import rmsprop", "import rmsprop.torch"])
def test_the_library_loads_neither_the_bench_nor_a_timing_peer(statement):
    if "torch" in statement:
        pytest.importorskip("torch")
    code = (
        f"import sys\n{statement}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'optax')"
        " or m.startswith(('rmsprop.bench', 'rmsprop.cli', 'rmsprop.demo', 'matplotlib'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
