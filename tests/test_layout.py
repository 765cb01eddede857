"""The package's shape: subpackages import only the layers below them, no module imports itself
back through a cycle, plotting stays in ``repro``, and no module or function outgrows the style rules.

Read from the source with ``ast``, so a violation fails here before it can hide behind lazy imports.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "elmlib"

# What each part may import from elmlib (besides itself). ``errors`` and ``io`` are the base;
# ``model`` is copied into exported folders and so imports nothing of elmlib at all.
ALLOWED = {
    "errors": set(),
    "io": {"errors"},
    "model": set(),
    "train": {"errors", "io"},
    "data": {"errors", "io", "train"},
    "nas": {"errors", "io", "model", "train"},
    "extensions": {"errors", "io", "model", "train", "data", "nas"},
    "pipeline": {"errors", "io", "model", "train", "data", "nas", "extensions"},
    "repro": {"errors", "io", "model", "train", "data", "nas", "extensions", "pipeline"},
    "benchmarks": set(),  # packaged data files (the FlexiBERT records), no code
}
TOP = {"elmlib", "elmlib.__main__"}  # the package's front door may re-export from anywhere
PLOTTING = ("matplotlib", "seaborn")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def part(module: str) -> str:
    """``elmlib.nas.space`` -> ``nas``; ``elmlib.errors`` -> ``errors``."""
    return module.split(".")[1] if "." in module else module


def imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import of the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in nested) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
            found += [(n if n in MODULES else base, node.lineno, id(node) in nested) for n in names]
    return found


MODULES = modules()
GRAPH = {m: imports(p, m) for m, p in MODULES.items()}


def test_every_subpackage_imports_only_the_layers_below_it():
    bad = []
    for module, found in GRAPH.items():
        if module in TOP:
            continue
        for target, line, _ in found:
            if not target.startswith("elmlib") or target in TOP and target != "elmlib":
                continue
            mine, theirs = part(module), part(target)
            if theirs == "elmlib" or (theirs != mine and theirs not in ALLOWED[mine]):
                bad.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} {module} imports {target}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first walk, as the cycle it closes."""
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycle():
    edges = {m: {t for t, _, _ in found if t in MODULES and t != m and t not in TOP}
             for m, found in GRAPH.items() if m not in TOP}
    cycles = find_cycles(edges)
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} import edges, {len(cycles)} cycles")
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_elmlib_modules_are_imported_at_the_top_of_the_file():
    """An import inside a function hides a dependency (and a cycle) from readers and from this test."""
    bad = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {t} inside a function"
           for m, found in GRAPH.items() for t, line, nested in found
           if nested and t.startswith("elmlib") and m not in TOP]
    assert not bad, "\n".join(bad)


def test_deferred_imports_say_why():
    """Third-party imports inside functions are allowed only to defer a heavy or optional dependency,
    and the line says which (a comment)."""
    bad = []
    for m, found in GRAPH.items():
        lines = MODULES[m].read_text().splitlines()
        bad += [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} {t}" for t, line, nested in found
                if nested and not t.startswith("elmlib") and "#" not in lines[line - 1]]
    assert not bad, "deferred imports without a comment naming why:\n" + "\n".join(bad)


def test_only_repro_plots():
    bad = [f"{m} imports {t}" for m, found in GRAPH.items() for t, _, _ in found
           if t.split(".")[0] in PLOTTING and part(m) != "repro"]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_and_function_sizes(module):
    source = MODULES[module].read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{module} has {len(source.splitlines())} lines"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_the_checks_catch_what_they_claim():
    """The cycle finder and the layering table are not vacuous: a planted cycle and a planted upward
    import are both reported."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    assert "pipeline" not in ALLOWED["nas"] and "repro" not in ALLOWED["extensions"]
    assert {part(m) for m in MODULES if m not in TOP} <= set(ALLOWED), "a subpackage is missing from ALLOWED"
