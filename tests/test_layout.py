"""The package's layout: no import cycles between its modules, and every module imports alone.

The spec (``config``) is the ground floor and imports only ``errors``; plug-ins validate their
options one floor up (``plugins``). Lazy imports inside functions count as edges too: a cycle
through them is still a cycle in the design, only hidden until run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "noisegrid"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        mods[".".join(parts)] = path
    return mods


def _import_edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the package modules it imports (``TYPE_CHECKING`` blocks aside)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                typing_only |= {id(n) for n in ast.walk(node)}
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here[: len(here) - node.level + 1] + (
                        [node.module] if node.module else []
                    )
                    base = ".".join(parts)
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            edges[name].update(t for t in targets if t in mods and t != name)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[str]:
    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    return sorted(m for m in edges if m in reach(m))


def test_no_import_cycles_in_the_package() -> None:
    edges = _import_edges(_modules())
    assert _cycles(edges) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == ["a", "b"]


def test_config_is_the_ground_floor() -> None:
    edges = _import_edges(_modules())
    assert edges["noisegrid.config"] <= {"noisegrid.errors"}


def test_every_module_imports_on_its_own() -> None:
    # One interpreter, but the package is forgotten before each import, so every module is
    # imported first, as a user or a worker process would import it alone.
    names = sorted(m for m in _modules() if not m.endswith("__main__"))  # __main__ runs the CLI
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'noisegrid']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        if 'torch' in str(exc) or 'ray' in str(exc):\n"
        "            continue\n"
        "        raise SystemExit(f'{name}: {exc!r}')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
