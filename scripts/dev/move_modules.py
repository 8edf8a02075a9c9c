"""Move package modules to new dotted names and rewrite every import and reference (issue 15: stage folders).

Usage: python scripts/dev/move_modules.py REPO scripts/dev/stage_layout.txt   (MAPFILE lines: old.dotted new.dotted, relative to cultural_music)
A development tool, not part of the package: run it once in a clean checkout, then run the suite.
"""
import ast, re, subprocess, sys
from pathlib import Path

repo = Path(sys.argv[1]).resolve()
PKG = "cultural_music"
src = repo / "src" / PKG
mapping = {}
SEP = "\x01"
for line in Path(sys.argv[2]).read_text().splitlines():
    line = line.split("#")[0].strip()
    if line:
        a, b = line.split()
        mapping[f"{PKG}.{a}"] = f"{PKG}.{b}"

def path_of(mod, pkg_init=False):
    parts = mod.split(".")[1:]
    return src.joinpath(*parts).with_suffix(".py")

def remap(mod):
    """Absolute module name after the move (longest old prefix wins)."""
    for old in sorted(mapping, key=len, reverse=True):
        if mod == old or mod.startswith(old + "."):
            return mapping[old] + mod[len(old):]
    return mod

# 1. module name of every package file before the move
def modname(p):
    rel = p.relative_to(src.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)

files = [p for p in repo.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".sh", ".toml", ".txt", ".html", ".js")
         and ".git" not in p.parts and ".venv" not in p.parts and "static" not in p.parts]
allmods = {modname(p) for p in src.rglob("*.py")}

def rewrite_py_imports(p, text):
    """Make package imports absolute and remapped (package files: relative ones too)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    in_pkg = src in p.parents
    mod = modname(p) if in_pkg else None
    is_init = p.name == "__init__.py"
    lines = text.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            if not in_pkg:
                continue
            base = mod.split(".") if is_init else mod.split(".")[:-1]
            up = base[: len(base) - (node.level - 1)]
            absmod = ".".join(up + ([node.module] if node.module else []))
        else:
            absmod = node.module or ""
            if not (absmod == PKG or absmod.startswith(PKG + ".")):
                continue
        # names that are submodules
        new_parent = remap(absmod)
        name_parts = []
        changed = node.level > 0 or new_parent != absmod
        for a in node.names:
            full = f"{absmod}.{a.name}"
            if full in allmods or full in mapping:
                nf = remap(full)
                par, _, leaf = nf.rpartition(".")
                if par != new_parent or leaf != a.name:
                    changed = True
                name_parts.append((a, par, leaf))
            else:
                name_parts.append((a, None, None))
        if not changed:
            continue
        groups = {}
        for a, par, leaf in name_parts:
            if par is None:
                groups.setdefault(new_parent, []).append(a.name + (f" as {a.asname}" if a.asname else ""))
            else:
                alias = a.asname or a.name
                groups.setdefault(par, []).append(leaf + (f" as {alias}" if alias != leaf else ""))
        indent = re.match(r"\s*", lines[node.lineno - 1]).group(0)
        stmt = "".join(f"{indent}from {g.replace('.', SEP)} import {', '.join(ns)}\n" for g, ns in groups.items())
        stmt = stmt[len(indent):]  # first line keeps original indentation
        edits.append((node.lineno, node.end_lineno, node.col_offset, stmt, indent))
    for lo, hi, col, stmt, indent in sorted(edits, reverse=True):
        stmt_lines = stmt.splitlines(keepends=True)
        first = lines[lo - 1][:col] + stmt_lines[0]
        tail = lines[hi - 1]
        # keep anything after the statement on its last line (rare) -- assume none
        lines[lo - 1:hi] = [first] + stmt_lines[1:]
    return "".join(lines)

SEP = "\x01"
olds = sorted(mapping, key=len, reverse=True)
pat = re.compile(r"\b(" + "|".join(re.escape(o) for o in olds) + r")\b(?![\w])")

def rewrite_text(text):
    return pat.sub(lambda m: mapping[m.group(1)], text)

new_texts = {}
for p in files:
    t = p.read_text(encoding="utf-8", errors="surrogateescape")
    t2 = t
    if p.suffix == ".py":
        t2 = rewrite_py_imports(p, t2)
    t2 = rewrite_text(t2)
    # path references like src/cultural_music/inference/classifier.py in docs
    for old, new in mapping.items():
        op = "/".join(old.split(".")) + ".py"; np_ = "/".join(new.split(".")) + ".py"
        t2 = t2.replace(op, np_)
    t2 = t2.replace(SEP, ".")
    if t2 != t:
        new_texts[p] = t2
for p, t in new_texts.items():
    p.write_text(t, encoding="utf-8", errors="surrogateescape")
# 2. git mv
for old, new in mapping.items():
    a, b = path_of(old), path_of(new)
    if not a.exists() and a.with_suffix("").is_dir():
        a = a.with_suffix("") ; b = b.with_suffix("")
    b.parent.mkdir(parents=True, exist_ok=True)
    init = b.parent / "__init__.py"
    if not init.exists():
        init.write_text(f'"""{b.parent.name} stage."""\n')
        subprocess.run(["git", "add", str(init)], cwd=repo, check=True)
    subprocess.run(["git", "mv", str(a), str(b)], cwd=repo, check=True)
print(f"rewrote {len(new_texts)} files, moved {len(mapping)} modules")
