"""The figures of issue 27's "Measure and report" for a checkout: `python scripts/architecture.py [ROOT] [--json F]`.

- src/ lines and modules (every .py under src/);
- modules of src/nlpexp that a smoke run executes (coverage.py; a module counts if any line ran; an empty package
  __init__ counts when a module below it ran); --no-run skips the run;
- import cycles among the modules of src/ (every import statement, lazy ones inside functions included);
- stack-frame inspections (sys._getframe, f_back, f_locals, inspect.stack/currentframe, sys._current_frames);
- private-API uses of hydra, omegaconf, optuna, transformers, sentence_transformers, datasets, accelerate, torch
  outside src/nlpexp/adapters.py: private imports, `lib._x` chains, getattr(..., "_x"), and `obj._x` / overridden
  `def _x` where nlpexp defines no attribute `_x` but one of those libraries does.
The static parts (`analyse(root)`) import nothing of the checkout; tests/test_architecture.py uses them.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

LIBRARIES = ("hydra", "omegaconf", "optuna", "transformers", "sentence_transformers", "datasets", "accelerate", "torch")
FRAME_ATTRS = {"_getframe", "f_back", "f_locals", "_current_frames", "currentframe"}
SMOKE = ["task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none"]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under root/src."""
    src = root / "src"
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path, tree: ast.AST) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import statement, wherever it sits."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, path, node)
            out += [(target, a.name, node.lineno) for a in node.names]
    return out


def import_graph(mods: dict[str, Path], trees: dict[str, ast.AST]) -> dict[str, dict[str, int]]:
    """Module -> {module of src/ it imports: line}: `from p import m` names p.m when that is a module, else p."""
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for mod, path in mods.items():
        for target, name, line in imports(mod, path, trees[mod]):
            dest = f"{target}.{name}" if f"{target}.{name}" in mods else target
            if dest in mods and dest != mod:
                graph[mod].setdefault(dest, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted; one per cycle cluster."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            comp.append(v)
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _bindings(tree: ast.AST) -> dict[str, str]:
    """Local name -> the module it was imported from (or the module itself), for every import in the file."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _chain(node: ast.AST) -> list[str]:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return [node.id, *reversed(names)] if isinstance(node, ast.Name) else list(reversed(names))


def _library(dotted: str) -> str | None:
    top = dotted.split(".")[0]
    return top if top in LIBRARIES else None


def _own_attributes(trees: dict[str, ast.AST]) -> set[str]:
    """Attribute names nlpexp itself defines: methods, class-level names, `x._a = ...`, setattr(x, "_a", ...)."""
    out = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        out.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        out.add(item.target.id)
                    elif isinstance(item, ast.Assign):
                        out |= {t.id for t in item.targets if isinstance(t, ast.Name)}
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                out |= {t.attr for target in targets for t in ast.walk(target) if isinstance(t, ast.Attribute)}
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr" and len(node.args) > 1:
                if isinstance(node.args[1], ast.Constant):
                    out.add(str(node.args[1].value))
    return out


@cache
def _library_files(lib: str) -> tuple[Path, ...]:
    spec = importlib.util.find_spec(lib)
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.py"))


def _defined_by(names: set[str]) -> dict[str, list[str]]:
    """name -> the libraries whose source defines an attribute of that name (def, class, `.x =`, indented `x =`)."""
    found: dict[str, list[str]] = {}
    if not names:
        return found
    alt = "|".join(sorted(map(re.escape, names)))
    pattern = re.compile(rf"(?:\bdef |\bclass |\.|^\s+)({alt})\b\s*(?:\(|:|=[^=])", re.M)
    for lib in LIBRARIES:
        hits = set()
        for path in _library_files(lib):
            hits |= set(pattern.findall(path.read_text(errors="replace")))
        for name in hits:
            found.setdefault(name, []).append(lib)
    return found


def _class_bases(trees: dict[str, ast.AST]) -> dict[str, set[str]]:
    """Class name -> its bases' dotted origins ('transformers.Trainer', or an nlpexp class name)."""
    out: dict[str, set[str]] = {}
    for tree in trees.values():
        bind = _bindings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = set()
                for b in node.bases:
                    chain = _chain(b)
                    if chain:
                        bases.add(".".join([bind.get(chain[0], chain[0]), *chain[1:]]))
                out.setdefault(node.name, set()).update(bases)
    return out


def _library_bases(bases: dict[str, set[str]]) -> dict[str, set[str]]:
    """Class name -> the library classes it derives from, directly or through nlpexp classes."""
    out = {c: {b for b in bs if _library(b)} for c, bs in bases.items()}
    changed = True
    while changed:
        changed = False
        for c, bs in bases.items():
            more = set().union(*(out.get(b.split(".")[-1], set()) for b in bs)) - out[c]
            changed |= bool(more)
            out[c] |= more
    return {c: bs for c, bs in out.items() if bs}


@cache
def _library_class(dotted: str) -> type | None:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:  # noqa: BLE001  (a base we cannot import is reported as not overridden)
        return None


def _inherited(name: str, library_bases: set[str]) -> str | None:
    """The library class among library_bases whose MRO defines `name`, if any."""
    for dotted in sorted(library_bases):
        cls = _library_class(dotted)
        if cls is not None and any(name in vars(k) for k in cls.__mro__ if k is not object):
            return dotted
    return None


def frame_inspections(trees: dict[str, ast.AST], mods: dict[str, Path], root: Path) -> list[str]:
    out = []
    for mod, tree in trees.items():
        for node in ast.walk(tree):
            chain = _chain(node) if isinstance(node, ast.Attribute) else []
            if chain and (chain[-1] in FRAME_ATTRS or chain[-2:] == ["inspect", "stack"]):
                out.append(f"{mods[mod].relative_to(root)}:{node.lineno}: {'.'.join(chain)}")
    return sorted(set(out))


def _subclass_uses(node: ast.ClassDef, bases: set[str], where: str) -> dict[tuple[str, str], str]:
    """Private members of a library base class that a subclass overrides (`def _x`) or uses (`self._x`)."""
    out = {}
    for item in ast.walk(node):
        is_self = isinstance(item, ast.Attribute) and _chain(item)[:1] == ["self"] and len(_chain(item)) == 2
        name = item.attr if is_self else getattr(item, "name", "") if isinstance(item, ast.FunctionDef) else ""
        if _private(name) and (base := _inherited(name, bases)):
            verb = "uses" if is_self else "overrides"
            out[(f"{where}:{item.lineno}", name)] = f"{verb} {base}.{name} [{_library(base)}]"
    return out


def private_uses(trees: dict[str, ast.AST], mods: dict[str, Path], root: Path, deep: bool = True) -> list[str]:
    """Each private-API use of LIBRARIES outside src/nlpexp/adapters.py, as 'file:line: what [library]'.

    deep=False: only private imports and `lib._x` chains (no library is imported or read: fast)."""
    own = _own_attributes(trees)
    derived = _library_bases(_class_bases(trees)) if deep else {}
    sure: dict[tuple[str, str], str] = {}  # (file:line, name) -> what
    unsure: dict[tuple[str, str], str] = {}  # the same, to attribute by the libraries' own definitions
    for mod, tree in trees.items():
        if mod.startswith("nlpexp.adapters"):
            continue
        where = str(mods[mod].relative_to(root))
        bind = _bindings(tree)
        for target, name, line in imports(mod, mods[mod], tree):
            lib = _library(target)
            if lib and (any(map(_private, target.split("."))) or _private(name)):
                sure[(f"{where}:{line}", name)] = f"import {target}{'.' + name if name else ''} [{lib}]"
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in derived:
                sure |= _subclass_uses(node, derived[node.name], where)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "setattr", "hasattr"):
                arg = node.args[1] if len(node.args) > 1 else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _private(arg.value):
                    unsure[(f"{where}:{node.lineno}", arg.value)] = f"{node.func.id}(..., {arg.value!r})"
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            chain = _chain(node)
            origin = bind.get(chain[0], "") if len(chain) > 1 else ""
            if lib := _library(origin):
                sure[(f"{where}:{node.lineno}", node.attr)] = f"{'.'.join(chain)} [{lib}]"
            elif not origin and node.attr not in own:
                unsure[(f"{where}:{node.lineno}", node.attr)] = ".".join(chain) or f"<expr>.{node.attr}"
    libs = _defined_by({name for _, name in unsure}) if deep else {}
    for key, what in unsure.items():
        if key[1] in libs and key not in sure:
            sure[key] = f"{what} [{','.join(libs[key[1]])}]"
    order = sorted(sure, key=lambda k: (k[0].split(":")[0], int(k[0].split(":")[1]), k[1]))
    return [f"{k[0]}: {sure[k]}" for k in order]


def analyse(root: Path, deep: bool = True) -> dict:
    root = root.resolve()
    mods = modules(root)
    trees = {m: ast.parse(p.read_text(), str(p)) for m, p in mods.items()}
    graph = import_graph(mods, trees)
    found = cycles(graph)
    at = {a: mods[a].relative_to(root) for a in mods}
    out = {
        "root": str(root),
        "src_lines": sum(len(p.read_text().splitlines()) for p in mods.values()),
        "src_modules": len(mods),
        "import_cycles": found,
        "cycle_edges": [[f"{a} -> {b} ({at[a]}:{graph[a][b]})" for a in c for b in graph[a] if b in c] for c in found],
        "frame_inspections": frame_inspections(trees, mods, root),
        "private_api_uses": private_uses(trees, mods, root, deep),
    }
    return out


def executed_modules(root: Path, data_dir: str) -> list[str]:
    """Modules of src/nlpexp that the smoke run executes, under coverage.py; every output in a temporary folder."""
    root = root.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(root / "src"), "NLPEXP_ROOT": str(root), "NLPEXP_DATA_DIR": data_dir}
        env |= {f"NLPEXP_{k}_DIR": f"{tmp}/{k.lower()}" for k in ("RUNS", "SWEEPS", "LEDGER", "CACHE", "REGISTRY")}
        data = f"{tmp}/.coverage"
        cov = [sys.executable, "-m", "coverage"]
        run = [*cov, "run", f"--data-file={data}", f"--include={root}/src/nlpexp/*", "run.py", *SMOKE]
        done = subprocess.run(run, cwd=root, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"error: the smoke run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        subprocess.run([*cov, "json", f"--data-file={data}", "-o", f"{tmp}/cov.json", "-q"], check=True, env=env)
        files = json.loads(Path(f"{tmp}/cov.json").read_text())["files"]
    ran = {Path(f).resolve() for f, info in files.items() if info["executed_lines"]}
    pkg = root / "src" / "nlpexp"
    for path in pkg.rglob("__init__.py"):  # an empty __init__ has no line to run: it ran when a module below it did
        if any(r.is_relative_to(path.parent) for r in ran):
            ran.add(path.resolve())
    mods = modules(root)
    return sorted(m for m, p in mods.items() if p.resolve() in ran)


def report(fig: dict) -> str:
    lines = [f"root: {fig['root']}", f"src/ lines: {fig['src_lines']}", f"src/ modules: {fig['src_modules']}"]
    if "executed_modules" in fig:
        lines.append(f"modules executed by run.py {' '.join(SMOKE)}: {len(fig['executed_modules'])}")
        lines += [f"  {m}" for m in fig["executed_modules"]]
    lines.append(f"import cycles: {len(fig['import_cycles'])}")
    for cycle, edges in zip(fig["import_cycles"], fig["cycle_edges"], strict=True):
        lines += [f"  {' <-> '.join(cycle)}", *(f"      {e}" for e in edges)]
    lines.append(f"stack-frame inspections: {len(fig['frame_inspections'])}")
    lines += [f"  {f}" for f in fig["frame_inspections"]]
    lines.append(f"private-API uses outside src/nlpexp/adapters.py: {len(fig['private_api_uses'])}")
    lines += [f"  {u}" for u in fig["private_api_uses"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=here, help="a checkout (default: this one)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-run", action="store_true", help="static figures only (no smoke run)")
    parser.add_argument("--data-dir", default=os.environ.get("NLPEXP_DATA_DIR", str(here.parent / "shared" / "data")))
    args = parser.parse_args(argv)
    fig = analyse(args.root)
    if not args.no_run:
        fig["executed_modules"] = executed_modules(args.root, args.data_dir)
    print(report(fig))
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
