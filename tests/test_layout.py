"""The house rules that can be checked mechanically: packages import no test code, the project's
modules form no import cycle, and every package says its role in its docstring."""
import ast
import glob
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "components", "trainer_module", "data_sources", "run_report", "serving_client", "bench")
ENTRY_POINTS = ("local_runner.py", "kubeflow_v2_runner.py", "setup.py")
TEST_MODULES = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "tests", "*.py"))}


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _project_modules():
    paths = [p for pkg in PACKAGES for p in glob.glob(os.path.join(REPO, pkg, "**", "*.py"), recursive=True)]
    paths += [os.path.join(REPO, p) for p in ENTRY_POINTS]
    return {_module_name(p): p for p in paths}


def _imports(path: str, package: str):
    """Every module an import statement names (module level and inside functions)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def _graph():
    modules = _project_modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        graph[name] = {m for m in _imports(path, package) if m in modules and m != name}
    return graph


def test_no_package_imports_test_code():
    offenders = {name: sorted(m for m in _imports(path, name) if m.split(".")[0] in TEST_MODULES | {"tests"})
                 for name, path in _project_modules().items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_says_its_role(package):
    with open(os.path.join(REPO, package, "__init__.py")) as f:
        docstring = ast.get_docstring(ast.parse(f.read()))
    assert docstring and len(docstring) > 40, f"{package}/__init__.py needs a docstring saying its role"
