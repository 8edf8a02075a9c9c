"""The package's shape (docs/architecture.md): stages import only stages below them, no import
circle, no function over 60 lines. Read from the source text with ast, so it costs no imports."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "cultural_music"
MAX_LINES = 60

# Lower rank = closer to the data. A module may import its own stage or any stage of lower rank;
# stages of equal rank do not import each other. Top-level modules are stages of their own.
RANK: dict[str, float] = {
    "errors": 0, "atomic": 0.5,
    "config": 1,
    "data": 2, "metrics": 2,
    "augment": 3, "backbones": 3,
    "features": 4,
    "models": 5,
    "training": 6,
    "inference": 7,
    "evaluation": 8, "cluster": 8, "search": 8,
    "demo": 9, "serve": 9,
    "cli": 10,
}



def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> list[str]:
    """Package modules that ``name`` imports, lazy imports and TYPE_CHECKING blocks included
    (``from cultural_music import __version__`` is the public face, module ``cultural_music``)."""
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                mod = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found += [mod] + [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m == "cultural_music" or m.startswith("cultural_music.")]


def _stage(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else None


def _violations() -> set[str]:
    mods = _modules()
    found: set[str] = set()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_LINES:
                found.add(f"long {name}.{node.name}")
        for target in _imports(name, path, mods):
            if target in mods and target != name and not (path.name == "__init__.py" and target.startswith(name + ".")):
                edges[name].add(target)
            a, b = _stage(name), _stage(target)
            if a is None or b is None or a == b:
                continue
            assert a in RANK and b in RANK, f"stage {a if a not in RANK else b} has no rank in test_architecture.RANK"
            if RANK[b] >= RANK[a]:
                found.add(f"up {name} -> {target}")
    found |= {f"circle {' <-> '.join(c)}" for c in _circles(edges)}
    return found


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative enough for ~100)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
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

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_no_arrow_up_no_circle_no_long_function():
    found = sorted(_violations())
    assert not found, "shape violations (see docs/architecture.md):\n" + "\n".join(found)


def test_the_checker_sees_an_arrow_up(tmp_path, monkeypatch):
    """The check itself can fail: a features module importing training is reported."""
    fake = tmp_path / "cultural_music"
    (fake / "features").mkdir(parents=True)
    (fake / "training").mkdir()
    for d in (fake, fake / "features", fake / "training"):
        (d / "__init__.py").write_text("")
    (fake / "training" / "loop.py").write_text("X = 1\n")
    (fake / "features" / "bad.py").write_text("from cultural_music.training.loop import X\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    assert _violations() == {"up cultural_music.features.bad -> cultural_music.training.loop"}
