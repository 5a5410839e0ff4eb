#!/usr/bin/env bash
# Airflow UI + scheduler on this machine without Docker (`airflow standalone`: SQLite, LocalExecutor),
# with the project's DAGs. UI and REST on http://localhost:${AIRFLOW_PORT:-8080}; the admin password is
# printed at start and kept in airflow_home/simple_auth_manager_passwords.json.generated.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
source scripts/airflow_env.sh
export AIRFLOW__API__PORT=${AIRFLOW_PORT:-8080}
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://localhost:${AIRFLOW_PORT:-8080}/execution/
exec airflow standalone
