#!/usr/bin/env bash
# Sets up the environment if needed, then runs the test suite. Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not slow"` for the quick subset, `TEST_WORKERS=0 scripts/test.sh` for one process.
# Two pytest-xdist workers by default: the tests that read the shared pipeline runs stay together
# on one worker (tests/conftest.py) while the other runs the rest; TensorFlow's graph building
# and TFX's orchestration are mostly single-threaded, so two workers use a 2-core machine fully.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export TF_USE_LEGACY_KERAS=1 PYTHONUNBUFFERED=1
exec "$ROOT/.venv/bin/python" -m pytest -n "${TEST_WORKERS:-2}" --dist loadgroup "$@"
