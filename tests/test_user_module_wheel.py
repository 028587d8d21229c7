"""The user-module wheel TFX builds from trainer_module/ is harmless in any environment.

TFX packages every .py file of the module file's folder as a TOP-LEVEL module of a wheel (`names`,
`model`, `trainer`, ...), installs it in a temporary folder appended to the END of sys.path, and
imports the entry module (`trainer`, `preprocessing`) by that bare name. That stays harmless while
(1) no other importable module has one of those names (else TFX would import the other one, or
our copy would answer someone else's `import model`), and (2) our code never imports a sibling by
its bare name (every import goes through the installed `trainer_module` package, so the
top-level copies are only TFX's entry points).
"""
import ast
import glob
import importlib.machinery
import os
import sys
import zipfile

from tfx.components.util import udf_utils

from pipeline import configs


def _wheel_modules(tmp_path):
    wheel, user_module_path = udf_utils.package_user_module_file(
        "Trainer", configs.TRAINER_MODULE_FILE, str(tmp_path))
    with zipfile.ZipFile(wheel) as zf:
        modules = {n[:-3] for n in zf.namelist() if n.endswith(".py") and "/" not in n}
    return modules, user_module_path


def test_the_wheel_holds_trainer_module_as_top_level_modules(tmp_path):
    modules, entry = _wheel_modules(tmp_path)
    expected = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(configs.TRAINER_MODULE_DIR, "*.py"))}
    assert modules == expected - {"__init__"}
    assert entry.split("@")[0] == "trainer"  # what TFX imports by bare name


def test_no_other_module_in_the_environment_has_a_wheel_modules_name(tmp_path):
    modules, _ = _wheel_modules(tmp_path)
    # The environment's import path, minus anything that is ours (sys.modules is not consulted: a
    # test process that ran a pipeline holds TFX's own imports of the wheel's copies).
    search_path = [p for p in sys.path if os.path.abspath(p or ".") != configs.TRAINER_MODULE_DIR]
    clashes = {m: "builtin" for m in modules if m in sys.builtin_module_names}
    for module in modules:
        spec = importlib.machinery.PathFinder.find_spec(module, search_path)
        if spec is not None:
            clashes[module] = spec.origin
    assert clashes == {}, f"rename these trainer_module files: {clashes}"


def test_trainer_module_imports_siblings_only_through_the_package(tmp_path):
    modules, _ = _wheel_modules(tmp_path)
    bare = []
    for path in glob.glob(os.path.join(configs.TRAINER_MODULE_DIR, "*.py")):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bare += [(path, a.name) for a in node.names if a.name.split(".")[0] in modules]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] in modules:
                    bare.append((path, node.module))
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                bare.append((path, "." * node.level + (node.module or "")))  # relative: no package in the wheel
    assert bare == []
