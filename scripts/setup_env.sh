#!/usr/bin/env bash
# Create .venv (Python 3.11) with the pinned requirements and the batchops package. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check uv
# --compile-bytecode: PYTHONDONTWRITEBYTECODE is set on these machines, so without it every task
# process would compile the libraries it imports again (about 2 s of sklearn/pandas per task).
.venv/bin/python -m uv pip install -q --compile-bytecode --python .venv/bin/python -r requirements.txt -c constraints.txt -e .
# (uv compiles only what it installs; compileall also covers an existing .venv, and skips fresh .pyc files.)
.venv/bin/python -m compileall -q -j 0 .venv/lib/python3.11/site-packages >/dev/null 2>&1 || true
