#!/usr/bin/env bash
# Set up and run the whole test suite (lint, unit, DAG integrity, end-to-end `airflow dags test`, OCR, browser).
#   bash scripts/test.sh [pytest args]
# It installs what it needs: the OS packages (scripts/setup_os.sh, with apt-get), the .venv and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_os.sh
bash scripts/setup_env.sh
bash scripts/setup_tools.sh
export PATH=$PWD/.venv/bin:$PATH
ruff check src dags plugins scripts tests agent.py
# The bad-input catalogue of this run goes to build/ (git-ignored); docs/bad_inputs.md is refreshed on request.
# --durations: the slowest tests are named at the end of every run (the suite aims to stay under 45 minutes).
BATCHOPS_BAD_INPUTS_DOC=${BATCHOPS_BAD_INPUTS_DOC:-build/bad_inputs.md} pytest -q --durations=40 --durations-min=20 "$@"
