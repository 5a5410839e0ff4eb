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
echo
sed -n '1,3p' "$RUN_DIR/run_summary.md"
echo "Artifacts: $RUN_DIR"
ls "$RUN_DIR"
