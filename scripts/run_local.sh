#!/usr/bin/env bash
# Sets up the environment if needed, then runs the whole pipeline locally (local_runner.py).
# Arguments go to local_runner.py, e.g. `scripts/run_local.sh --data-dir ../shared/data/intel-dev`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export TF_USE_LEGACY_KERAS=1 PYTHONUNBUFFERED=1
exec "$ROOT/.venv/bin/python" "$ROOT/local_runner.py" "$@"
