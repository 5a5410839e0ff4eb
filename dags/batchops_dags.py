"""Every BatchOps Airflow DAG (one per provider x pipeline), built by batchops.factory from the YAML configs.

Nothing here knows about any provider: add include/configs/<provider>.yaml and its DAGs appear.
"""

from pathlib import Path

from airflow.sdk import get_parsing_context

from batchops.factory import build_dags
from batchops.settings import Settings

# A task's parse needs only its own DAG: Airflow names it in the parsing context (None in the DAG processor).
globals().update(build_dags(Settings.from_env(default_home=Path(__file__).resolve().parents[1]),
                            only_dag_id=get_parsing_context().dag_id))
