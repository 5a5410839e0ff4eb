#!/usr/bin/env bash
# Airflow UI + scheduler on this machine without Docker (`airflow standalone`: SQLite, LocalExecutor), with the
# project's DAGs (src/batchops/localstack.py):
#   bash scripts/run_local_stack.sh          # run in the foreground; Ctrl-C (or SIGTERM) stops every process
#   bash scripts/run_local_stack.sh start    # in the background; returns when the UI answers
#   bash scripts/run_local_stack.sh status   # pids and whether each port answers (exit 3 when not running)
#   bash scripts/run_local_stack.sh stop     # ends every process start started, by pid, and waits for them
# Ports, checked free before start: AIRFLOW_PORT (8080: UI, REST), AIRFLOW_WORKER_LOG_PORT (8793),
# AIRFLOW_TRIGGER_LOG_PORT (8794). The admin password is printed at start and kept in
# airflow_home/simple_auth_manager_passwords.json.generated.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-run}" in
  start|run) bash scripts/setup_env.sh ;;
esac
source scripts/airflow_env.sh
exec python -m batchops.localstack "$@"
