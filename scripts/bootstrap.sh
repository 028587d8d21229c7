#!/usr/bin/env bash
# Creates or refreshes .venv (Python 3.10 + the locked TFX 1.16 stack + this package, editable).
# Idempotent and fast when nothing changed: a stamp records the hash of what was installed.
# Sourced by scripts/run_local.sh and scripts/test.sh; usable alone: `bash scripts/bootstrap.sh`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

log() { echo "[bootstrap] $*" >&2; }

find_uv() {
  if command -v uv >/dev/null 2>&1; then echo uv; return; fi
  local py; py="$(command -v python3 || command -v python)"
  if ! "$py" -m uv --version >/dev/null 2>&1; then
    log "uv not found: installing it with pip (${py})"
    "$py" -m pip install --quiet uv || "$py" -m pip install --quiet --user uv
  fi
  echo "$py -m uv"
}

is_py310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_python310() {
  local cand
  # 1. $PYTHON, 2. python3.10 on PATH, 3. pyenv's versions, 4. uv's managed interpreters.
  for cand in "${PYTHON:-}" "$(command -v python3.10 || true)"; do
    if [ -n "$cand" ] && is_py310 "$cand"; then echo "$cand"; return; fi
  done
  local pyenv_root="${PYENV_ROOT:-}"
  if [ -z "$pyenv_root" ] && command -v pyenv >/dev/null 2>&1; then pyenv_root="$(pyenv root)"; fi
  [ -n "$pyenv_root" ] || pyenv_root="$HOME/.pyenv"
  for cand in $(ls -d "$pyenv_root"/versions/3.10.* 2>/dev/null | sort -V -r); do
    if is_py310 "$cand/bin/python"; then echo "$cand/bin/python"; return; fi
  done
  cand="$($UV python find 3.10 2>/dev/null || true)"
  if [ -z "$cand" ]; then
    log "no Python 3.10 found: asking uv to install one (needs network)"
    $UV python install 3.10 >&2
    cand="$($UV python find 3.10)"
  fi
  echo "$cand"
}

UV="$(find_uv)"
STAMP_WANT="$(cat "$ROOT/requirements.in" "$ROOT/requirements.lock" "$ROOT/setup.py" | sha256sum | cut -c1-16)"
STAMP_FILE="$VENV/.bootstrap-stamp"
if [ -x "$VENV/bin/python" ] && is_py310 "$VENV/bin/python" && [ "$(cat "$STAMP_FILE" 2>/dev/null)" = "$STAMP_WANT" ]; then
  return 0 2>/dev/null || exit 0
fi

PY="$(find_python310)"
log "using Python 3.10 at $PY"
if ! { [ -x "$VENV/bin/python" ] && is_py310 "$VENV/bin/python"; }; then
  # --seed: TFX installs the user-module wheels it builds with `python -m pip`, so the venv needs pip.
  $UV venv --seed --python "$PY" "$VENV" >&2
fi
# sync, not install: the venv then holds exactly the lock (a dependency dropped from the lock leaves it).
$UV pip sync --python "$VENV/bin/python" "$ROOT/requirements.lock" >&2
$UV pip install --python "$VENV/bin/python" --no-deps --no-build-isolation -e "$ROOT" >&2
echo "$STAMP_WANT" > "$STAMP_FILE"
log "environment ready: $VENV"
