# Sourced by the scripts: an embedded Airflow (SQLite metadata, LocalExecutor) inside the project folder.
BATCHOPS_HOME=${BATCHOPS_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export BATCHOPS_HOME
export AIRFLOW_HOME=${AIRFLOW_HOME:-$BATCHOPS_HOME/airflow_home}
# SQLite allows one writer at a time; a writer waits up to 30 s for the lock (sqlite3's default is 5 s, and a
# busy scheduler on a slow machine held it longer: `airflow backfill create` failed with "database is locked").
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db?timeout=30}
export AIRFLOW__CORE__DAGS_FOLDER=$BATCHOPS_HOME/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$BATCHOPS_HOME/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}
export PATH=$BATCHOPS_HOME/.venv/bin:$PATH
