"""Imported by every Airflow process at start (the plugins folder is on Airflow's sys.path): see
batchops.metadata_db for why SQLite write transactions that start with a SAVEPOINT take the lock first."""

from batchops import metadata_db

__all__: list[str] = []  # Airflow copies every exported name of this module into airflow.settings

metadata_db.install()
