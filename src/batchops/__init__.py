"""BatchOps: config-driven batch ML pipelines on Apache Airflow."""

__version__ = "0.1.0"
