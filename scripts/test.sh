#!/usr/bin/env bash
# Sets up the environment if needed, then runs the test suite. Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not slow"` for the quick subset.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export TF_USE_LEGACY_KERAS=1 PYTHONUNBUFFERED=1
exec "$ROOT/.venv/bin/python" -m pytest "$@"
