# Shared by scripts/dev and scripts/test: a project virtualenv with the pinned dependencies.
# Re-installs only when a requirements file changed (a stamp holds their hash).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SIDEBAR_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "Sidebar Sync needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1))." >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
  echo "Python's venv module is missing: install it (Debian/Ubuntu: sudo apt-get install python3-venv)." >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing dependencies"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements-dev.txt"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"

# The browser tests' accessibility checks use axe-core (package.json, pinned by package-lock.json).
# npm ci installs exactly the locked version into node_modules/ (ignored by git), again only when
# the lock file changed.
if command -v npm >/dev/null; then
  npm_stamp="$ROOT/node_modules/.package-lock.sha256"
  npm_want="$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$npm_want" ]; then
    echo "==> installing node dev dependencies (npm ci)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$npm_want" > "$npm_stamp"
  fi
else
  echo "npm is missing: the browser tests need axe-core from npm (Debian: sudo apt-get install npm)." >&2
fi
