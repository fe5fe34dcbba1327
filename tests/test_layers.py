"""The import graph keeps the house's shape (docs/ARCHITECTURE.md, "Map"): no circles between modules, none
between analysis/'s sub-packages, and no arrow from a lower layer up to a higher one.

Every .py file of the repository is parsed (ast, never imported), and every import counts: at module level,
inside functions (a lazy import is still an arrow) and under `if TYPE_CHECKING`. Relative imports are resolved
against the importing module's package. An import names the module it reaches (`from a.b import c` is `a.b.c`
when that is a module, else `a.b`); the packages above it are not counted as imported.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "sample_data", "build", "dist"}


# analysis/'s sub-packages, lowest first: each imports only those before it (analysis/__init__.py says why)
ANALYSIS_ORDER = ["core", "interp", "behaviour", "media", "publish", "research"]

# (importer's top-level folder, what it must never import): lower layers never reach up
FORBIDDEN = {
    "trajectories": {"envs", "models", "analysis", "ui", "views", "streamlit", "cli", "bench", "home", "app"},
    "envs": {"models", "analysis", "ui", "views", "streamlit", "cli", "bench", "home", "app"},
    "models": {"analysis", "ui", "views", "streamlit", "cli", "bench", "home", "app"},
    "analysis": {"ui", "views", "streamlit", "cli", "bench", "home", "app"},
    "ui": {"views", "cli", "bench", "home", "app"},
    "views": {"cli", "bench", "home", "app"},
    "home": {"views", "cli", "bench", "app"},
    "app": {"views", "cli", "bench", "home"},   # the router names the pages' files (ui/nav.py), never imports them
    "cli": {"views", "home", "app", "streamlit"},
    "bench": {"views", "home", "app"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _python_files() -> list[Path]:
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        out += [Path(folder) / f for f in sorted(files) if f.endswith(".py")]
    return out


def _imported_names(path: Path, module: str) -> list[str]:
    """Every dotted name an import statement of the file reaches (absolute), with `from X import y` as X.y."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            names += [stem if a.name == "*" else f"{stem}.{a.name}" for a in node.names]   # resolved to a module later
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the repository's modules it imports (third-party names are left out)."""
    files = {_module_name(p): p for p in _python_files()}

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts:
            if ".".join(parts) in files:
                return ".".join(parts)
            parts.pop()
        return None

    graph = {}
    for module, path in files.items():
        deps = set()
        for name in _imported_names(path, module):
            target = resolve(name)
            if target is not None and target != module:
                deps.add(target)
        graph[module] = deps
    return graph


def external_imports() -> dict[str, set[str]]:
    """module -> top-level names of everything it imports (repository folders and third-party packages)."""
    out = {}
    for path in _python_files():
        module = _module_name(path)
        out[module] = {n.split(".")[0] for n in _imported_names(path, module) if n}
    return out


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(component)
    return out


def _show(components) -> str:
    return "; ".join(" <-> ".join(sorted(c)) for c in components)


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert circles(graph) == [{"a", "b", "c"}]
    assert circles({"x": {"y"}, "y": set()}) == []


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "bench.hostile" in graph["cli.benchmarks"]                               # inside cmd_bench
    assert "analysis.publish.figures.style" in graph["analysis.publish.figures"]     # from .style import ...
    assert "models.loading" in graph["models.hf_import"]                            # from .loading import ...
    assert "analysis.publish" not in graph["ui.page"] and "analysis.publish.catalog" in graph["ui.page"]
    # the value views (issue 24): interp computes, publish draws, the page wires; none reaches up
    assert {"analysis.core.inputs", "models.checks"} <= graph["analysis.interp.values"]
    assert "analysis.interp.values" in graph["analysis.interp.value_patching"]
    assert {"analysis.interp.values", "analysis.interp.value_patching", "analysis.publish.figures.values",
            "analysis.publish.figures.value_patching"} <= graph["analysis.publish.entries.values"]
    assert "ui.page" in graph["views.11_Values"] and not any(m.startswith("analysis.") for m in graph["views.11_Values"])


def test_no_import_circles_between_modules():
    found = circles(import_graph())
    assert not found, f"import circles: {_show(found)}"


def test_analysis_lives_in_subpackages():
    """analysis/ holds packages named for their job (core, interp, behaviour, media, publish, research), no flat modules."""
    flat = sorted(p.name for p in (ROOT / "analysis").glob("*.py") if p.name != "__init__.py")
    assert not flat, f"modules directly in analysis/: {flat}"


def test_no_circles_between_analysis_subpackages():
    graph = import_graph()
    sub = {}
    for module, deps in graph.items():
        if not module.startswith("analysis."):
            continue
        top = ".".join(module.split(".")[:2])
        sub.setdefault(top, set()).update(".".join(d.split(".")[:2]) for d in deps
                                          if d.startswith("analysis.") and ".".join(d.split(".")[:2]) != top)
    found = circles(sub)
    assert not found, f"circles between analysis sub-packages: {_show(found)}"


def test_analysis_subpackages_import_only_lower_ones():
    graph = import_graph()
    present = sorted(p.name for p in (ROOT / "analysis").iterdir() if (p / "__init__.py").is_file())
    assert present == sorted(ANALYSIS_ORDER), f"analysis/ sub-packages {present}: add a new one to ANALYSIS_ORDER"
    wrong = []
    for module, deps in graph.items():
        parts = module.split(".")
        if parts[0] != "analysis" or len(parts) < 2:
            continue
        for d in sorted(deps):
            dp = d.split(".")
            if dp[0] == "analysis" and len(dp) > 1 and ANALYSIS_ORDER.index(dp[1]) > ANALYSIS_ORDER.index(parts[1]):
                wrong.append(f"{module} imports {d}")
    assert not wrong, "analysis/ imports up its order (" + " < ".join(ANALYSIS_ORDER) + "):\n" + "\n".join(wrong)


def test_no_upward_imports():
    wrong = []
    for module, names in external_imports().items():
        banned = FORBIDDEN.get(module.split(".")[0], set())
        wrong += [f"{module} imports {n}" for n in sorted(names & banned)]
    assert not wrong, "imports from a lower layer up to a higher one:\n" + "\n".join(wrong)
