"""The house rules that can be checked mechanically: every package sits on a level and imports only
from levels below it (and its own package), no package imports test code, the project's modules
form no import cycle, and every package says its role in its docstring.

The levels, bottom up (a change to a higher level never invalidates the cache of a lower one:
TFX hashes trainer_module/ alone for the Transform and Trainer):
  0  trainer_module   the Trainer user module: Transform and Trainer code, and the names and formats
                      they write (TFX packages and hashes this folder)
  1  common           names, formats and helpers every level above shares (artifacts, ingest report,
                      the folder walk, ML Metadata, the TFLite runtime)
  2  components, data_sources     custom TFX components; getting the data
  3  pipeline         the DAG (create_pipeline), its configs, flags, recipes, the curated schema
  4  run_control      what a command-line run needs: exit codes, lock, recovery, console, a local run
  5  run_report, serving_client, releases, monitoring   what reads runs and serves models: reports,
                      lineage, predict, release control (labels, promote, rollback), the prediction
                      monitor and the labelling queue
  6  entry points     local_runner.py, kubeflow_v2_runner.py, setup.py
  7  bench            measurements, which may drive the entry points
third_party/ is vendored code that imports nothing of the project.
"""
import ast
import glob
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = {
    "third_party": -1,
    "trainer_module": 0,
    "common": 1,
    "components": 2, "data_sources": 2,
    "pipeline": 3,
    "run_control": 4,
    "run_report": 5, "serving_client": 5, "releases": 5, "monitoring": 5,
    "local_runner": 6, "kubeflow_v2_runner": 6, "setup": 6,
    "bench": 7,
}
PACKAGES = tuple(name for name in LEVELS if os.path.isdir(os.path.join(REPO, name)))
ENTRY_POINTS = ("local_runner.py", "kubeflow_v2_runner.py", "setup.py")
TEST_MODULES = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "tests", "*.py"))}


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _project_modules(repo: str = REPO):
    paths = [p for pkg in PACKAGES for p in glob.glob(os.path.join(repo, pkg, "**", "*.py"), recursive=True)]
    paths += [os.path.join(repo, p) for p in ENTRY_POINTS]
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


def _graph(modules=None):
    modules = modules or _project_modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        graph[name] = {m for m in _imports(path, package) if m in modules and m != name}
    return graph


def upward_imports(graph) -> list:
    """(importer, imported) pairs where a module imports from its own level or above, outside its package."""
    bad = []
    for name, deps in graph.items():
        top = name.split(".")[0]
        for dep in deps:
            dep_top = dep.split(".")[0]
            if dep_top != top and LEVELS[dep_top] >= LEVELS[top]:
                bad.append((name, dep))
    return sorted(bad)


def test_every_package_and_entry_point_has_a_level():
    tops = {name.split(".")[0] for name in _project_modules()}
    assert tops <= set(LEVELS), sorted(tops - set(LEVELS))
    on_disk = {d for d in os.listdir(REPO) if os.path.isfile(os.path.join(REPO, d, "__init__.py"))}
    assert on_disk <= set(LEVELS), f"packages without a level: {sorted(on_disk - set(LEVELS))}"


def test_imports_only_run_down_the_levels():
    assert upward_imports(_graph()) == []


def test_the_level_check_catches_an_upward_import(tmp_path):
    """A copy of two real modules with one added upward import (the Trainer module reading a
    report name) fails the check; the same copy without it passes."""
    for rel in ("trainer_module/names.py", "common/pipeline_names.py"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        with open(os.path.join(REPO, rel)) as f:
            (tmp_path / rel).write_text(f.read())
    modules = {"trainer_module.names": str(tmp_path / "trainer_module/names.py"),
               "common.pipeline_names": str(tmp_path / "common/pipeline_names.py")}
    assert upward_imports(_graph(modules)) == []
    with open(modules["trainer_module.names"], "a") as f:
        f.write("\nfrom common.pipeline_names import TRAINER_NODE  # noqa\n")
    assert upward_imports(_graph(modules)) == [("trainer_module.names", "common.pipeline_names")]


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


@pytest.mark.parametrize("package", [p for p in PACKAGES if p not in ("third_party", "bench")])
def test_every_module_of_a_package_is_listed_in_its_docstring(package):
    """A package's docstring names each of its modules and sub-packages, so a reader can find them."""
    with open(os.path.join(REPO, package, "__init__.py")) as f:
        docstring = ast.get_docstring(ast.parse(f.read()))
    entries = sorted(n for n in os.listdir(os.path.join(REPO, package))
                     if (n.endswith(".py") and n != "__init__.py")
                     or os.path.isfile(os.path.join(REPO, package, n, "__init__.py")))
    missing = [n for n in entries if n.removesuffix(".py") not in docstring]
    assert missing == [], f"{package}/__init__.py does not mention {missing}"
