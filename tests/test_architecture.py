"""The structure rules, read from the source (scripts/architecture.py; nothing of nlpexp is imported): no import
cycle, core never imports ops code, no stack-frame inspection, libraries' private API only in nlpexp.adapters."""

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" / "architecture.py")
arch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(arch)

MODS = arch.modules(ROOT)
TREES = {m: ast.parse(p.read_text(), str(p)) for m, p in MODS.items()}
GRAPH = arch.import_graph(MODS, TREES)
CYCLES = arch.cycles(GRAPH)
CORE = ("nlpexp.config", "nlpexp.pipeline", "nlpexp.task", "nlpexp.model", "nlpexp.data", "nlpexp.trainer",
        "nlpexp.logger")  # nlpexp.model.registry: the registry's store
OPS = ("nlpexp.cli", "nlpexp.runs", "nlpexp.registry", "nlpexp.tb", "nlpexp.sweep.summary", "nlpexp.sweep.__main__",
       "nlpexp.sweep.plots", "nlpexp.help")  # nlpexp.registry: `nlpexp registry`


def _inside(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _path_to_ops(start: str) -> list[str] | None:
    """The import chain (with file:line of each hop) from `start` to an ops module, if any."""
    came = {start: None}
    queue = [start]
    while queue:
        here = queue.pop(0)
        if _inside(here, OPS):
            hops = []
            while came[here]:
                prev = came[here]
                hops.append(f"{prev} -> {here} ({MODS[prev].relative_to(ROOT)}:{GRAPH[prev][here]})")
                here = prev
            return hops[::-1]
        for nxt in GRAPH[here]:
            if nxt not in came:
                came[nxt] = here
                queue.append(nxt)
    return None


def test_no_import_cycle_at_all():
    assert not CYCLES, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in CYCLES)


@pytest.mark.parametrize("area", CORE)
def test_core_never_imports_ops_code(area):
    found = {m: p for m in MODS if _inside(m, (area,)) and not _inside(m, OPS) and (p := _path_to_ops(m))}
    assert not found, "core imports ops code:\n" + "\n".join(f"{m}: {' ; '.join(p)}" for m, p in found.items())


def test_no_stack_frame_inspection():
    assert not arch.frame_inspections(TREES, MODS, ROOT)


def test_private_library_api_only_in_adapters():
    assert not arch.private_uses(TREES, MODS, ROOT, deep=False)


def test_the_rules_see_what_they_look_for(tmp_path):
    """The analyser itself: a lazy import cycle, a frame walk and a private import in a made-up tree."""
    pkg = tmp_path / "src" / "nlpexp"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import sys\nfrom nlpexp import b\nf = sys._getframe(0).f_back\n")
    (pkg / "b.py").write_text("def g():\n    from nlpexp.a import f\n    from hydra._internal.utils import x\n")
    fig = arch.analyse(tmp_path, deep=False)
    assert fig["import_cycles"] == [["nlpexp.a", "nlpexp.b"]]
    assert fig["frame_inspections"] == ["src/nlpexp/a.py:3: f_back", "src/nlpexp/a.py:3: sys._getframe"]
    assert fig["private_api_uses"] == ["src/nlpexp/b.py:3: import hydra._internal.utils.x [hydra]"]
