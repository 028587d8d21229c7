"""Run an entry point under the project's Python environment, whatever `python` started it.

`python local_runner.py` typed with the machine's default interpreter (another Python, no TFX)
would stop at its first import. Each entry point calls ensure_project_python() before importing
anything outside the standard library: under an interpreter that cannot run the project, it sets
up (or refreshes) the project's .venv with scripts/bootstrap.sh and re-executes the same command
there. Standard library only: it runs before any dependency can be imported.
"""
import importlib.util
import os
import subprocess
import sys
from typing import Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_DIR = os.path.join(REPO_ROOT, ".venv")
VENV_PYTHON = os.path.join(VENV_DIR, "bin", "python")
BOOTSTRAP = os.path.join(REPO_ROOT, "scripts", "bootstrap.sh")
REEXEC_MARK = "PROJECT_VENV_REEXEC"  # set in the re-executed process: no second attempt
PYTHON_VERSION = (3, 10)  # TFX 1.16 supports no newer Python
SETUP_FAILED = 4  # run_control.exit_codes.ENVIRONMENT_ERROR (that module is not importable yet)


def can_run_project() -> bool:
    """This interpreter is the project's: Python 3.10 with the pipeline's stack importable."""
    return sys.version_info[:2] == PYTHON_VERSION and importlib.util.find_spec("tfx") is not None


def in_project_venv() -> bool:
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV_DIR)


def ensure_project_python(main_module: Optional[str] = None) -> None:
    """Returns when this interpreter can run the project; otherwise sets up .venv if needed and
    replaces this process with the same command under .venv's Python (never returns).

    main_module: the dotted name of a module run with `python -m` (its __spec__.name), so the
    command is re-executed the same way; None for a script run by its path.
    """
    if in_project_venv() or can_run_project():
        return
    if os.environ.get(REEXEC_MARK):
        _fail(f"{VENV_PYTHON} cannot import the pipeline's packages; run `bash {BOOTSTRAP}` to rebuild .venv")
    # bootstrap.sh is idempotent and returns at once when .venv matches the lock (a stamp of its hash).
    done = subprocess.run(["bash", BOOTSTRAP], stdout=sys.stderr)
    if done.returncode != 0 or not os.access(VENV_PYTHON, os.X_OK):
        _fail(f"setting up the project's Python environment failed (bash {BOOTSTRAP}: exit "
              f"{done.returncode}); its lines above say why")
    command = ["-m", main_module] if main_module else [os.path.abspath(sys.argv[0])]
    env = {**os.environ, REEXEC_MARK: "1"}
    os.execve(VENV_PYTHON, [VENV_PYTHON, *command, *sys.argv[1:]], env)


def _fail(message: str) -> None:
    print(f"error: {message} (exit {SETUP_FAILED})", file=sys.stderr, flush=True)
    sys.exit(SETUP_FAILED)
