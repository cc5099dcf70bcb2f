"""The layout is the map: no import circle, the method (timer1/core) imports only itself and
timer1/util, and files, functions and parameter lists stay short enough to read. Read from the
source with ast, so the checks see every import, lazy ones inside functions included."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("train_sft.py", "train_grip.py", "forecast.py", "evaluate.py")
MAX_FILE_LINES, MAX_FUNCTION_LINES, MAX_PARAMETERS = 500, 60, 8


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((REPO / "timer1").rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The timer1 modules `path` imports (``from timer1.x import y`` counts y when y is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "timer1":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "timer1"}
    return found & known


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle as a path that returns to its start (depth-first search, each found once
    per back edge)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle_and_only_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_in_timer1():
    assert cycles(import_graph()) == []


def test_core_imports_only_core_and_util():
    outside = {name: sorted(t for t in targets if not t.startswith(("timer1.core", "timer1.util")))
               for name, targets in import_graph().items() if name.startswith("timer1.core")}
    assert {name: bad for name, bad in outside.items() if bad} == {}


def test_no_file_in_timer1_is_over_500_lines():
    lines = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in package_modules().values()}
    assert {name: n for name, n in lines.items() if n > MAX_FILE_LINES} == {}


def functions(paths):
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(REPO)}:{node.name}", node


def code_files() -> list[Path]:
    return list(package_modules().values()) + [REPO / s for s in SCRIPTS]


def test_no_function_is_over_60_lines():
    long = {name: node.end_lineno - node.lineno + 1 for name, node in functions(code_files())}
    assert {name: n for name, n in long.items() if n > MAX_FUNCTION_LINES} == {}


def named_parameters(node: ast.FunctionDef) -> int:
    """Parameters a caller names, as pylint's too-many-arguments counts them: positional and keyword
    ones, not ``self``/``cls``, not ``*args``/``**kwargs``."""
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return len([n for n in names if n not in ("self", "cls")])


# Signatures DESIGN.md's contract fixes name by name (statsforecast's, which outside checks call): the
# one place a parameter list may be longer.
CONTRACT_SIGNATURES = {"timer1/forecast/forecaster.py:cross_validation"}


def test_no_parameter_list_is_over_8():
    counts = {name: named_parameters(node) for name, node in functions(code_files())}
    assert {name: n for name, n in counts.items() if n > MAX_PARAMETERS and name not in CONTRACT_SIGNATURES} == {}


@pytest.mark.parametrize("source, expected", [("def f(self, a, b=1, *rest, c, **kw): pass", 3),
                                               ("def g(a, /, b, *, c): pass", 3)])
def test_parameters_are_counted_as_pylint_counts_them(source, expected):
    assert named_parameters(ast.parse(source).body[0]) == expected
