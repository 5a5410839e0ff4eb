"""Every BatchOps Airflow DAG (one per provider x pipeline), built by batchops.factory from the YAML configs.

Nothing here knows about any provider: add include/configs/<provider>.yaml and its DAGs appear.
"""

from pathlib import Path

from batchops.factory import build_dags
from batchops.settings import Settings

globals().update(build_dags(Settings.from_env(default_home=Path(__file__).resolve().parents[1])))
