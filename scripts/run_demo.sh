#!/usr/bin/env bash
# The main job on a fresh machine: set up, generate a provider drop, run provider_a__propensity_model
# end to end with `airflow dags test` (SQLite metadata), and print where the artifacts are.
#   bash scripts/run_demo.sh [SNAPSHOT_DATE] [PROVIDER]
set -euo pipefail
cd "$(dirname "$0")/.."
SNAPSHOT_DATE=${1:-2026-02-01}
PROVIDER=${2:-provider_a}
bash scripts/setup_env.sh
source scripts/airflow_env.sh
python -m batchops validate
python scripts/generate_data.py --provider "$PROVIDER" --snapshot-date "$SNAPSHOT_DATE"
airflow db migrate >/dev/null
DAG_ID="${PROVIDER}__propensity_model"
airflow dags test "$DAG_ID" "$SNAPSHOT_DATE" --conf "{\"snapshot_date\": \"$SNAPSHOT_DATE\"}" >"$AIRFLOW_HOME/last_dags_test.log" 2>&1 || {
  tail -40 "$AIRFLOW_HOME/last_dags_test.log"; echo "DAG run failed; full log: $AIRFLOW_HOME/last_dags_test.log" >&2; exit 1; }
RUN_DIR=$(ls -td "${BATCHOPS_RUNS_DIR:-runs}/$DAG_ID"/*/ | head -1)
RUN_DIR=${RUN_DIR%/}  # ls marks folders with a trailing slash
echo
sed -n '1,3p' "$RUN_DIR/run_summary.md"
echo "Artifacts: $RUN_DIR"
ls "$RUN_DIR"
NEXT_DATE=$(date -d "$SNAPSHOT_DATE + 7 days" +%F)
cat <<NEXT

Next:
  - read the run: $RUN_DIR/run_summary.md (and dq_report.md, metrics.json, predictions/)
  - score a later snapshot with the approved model:
      source scripts/airflow_env.sh
      python scripts/generate_data.py --provider $PROVIDER --snapshot-date $NEXT_DATE --seed 8   # --seed: another random draw
      airflow dags test ${PROVIDER}__propensity_scoring $NEXT_DATE --conf '{"snapshot_date": "$NEXT_DATE"}'
  - open the UI: bash scripts/run_local_stack.sh start, then http://localhost:${AIRFLOW_PORT:-8080}
    (user admin, password in airflow_home/simple_auth_manager_passwords.json.generated),
    trigger a DAG with a Snapshot date and open the run's BatchOps tab
  - onboard your own provider: docs/configs.md
NEXT
